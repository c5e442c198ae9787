"""Run AT on the halted kernel for many VAs and compare with the model.

One program is injected for the whole sweep (inject.Injection): for each AT
operation a loop reads the VAs from a buffer, executes ``AT <op>, X0``,
``ISB``, reads PAR_EL1 and stores it after the VAs. The buffer is a piece of
the kernel's linear map that is writable at the kernel's EL, holds no
translation table and not the injected code; its contents are saved first
and written back afterwards. Before the first batch an AT on the buffer
itself checks that QEMU maps it where the model says (so stores cannot land
anywhere else).

Registers: X1 the VA list, X2 the PAR output, X3 the count, X0 VA, X4 PAR,
X5/X6 the loop's cursor and counter.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from xcheck.arch.at import ArchState, AtResult, translate
from xcheck.arch.memory import PhysMem
from xcheck.arch.regime import AtRoute, Regime
from xcheck.check import compare
from xcheck.live import asm
from xcheck.live.inject import Injection
from xcheck.live.known import classify
from xcheck.live.physmem import RamReader
from xcheck.live.pick import Pick
from xcheck.live.state import LiveState
from xcheck.live.tables import TableMap, ranges
from xcheck.machine import AtOp, Probe, ProbeResult
from xcheck.outcome import Kind, Outcome
from xcheck.scenario.scenario import Scenario
from xcheck.scenario.spec import Layout
from xcheck.target import isa
from xcheck.target.errors import TargetError
from xcheck.target.gdb import Gdb

PAGE = 4096
BUFFER_SIZE = 256 << 10
PA_MASK = ((1 << 52) - 1) & ~0xFFF


@dataclass(frozen=True)
class Buffer:
    """Where the injected program reads VAs and writes PARs."""

    va: int
    pa: int
    size: int


def write_op(state: LiveState) -> AtOp:
    """The AT that checks a write by the kernel itself (its EL, its regime)."""
    return AtOp.S1E2W if state.el == 2 else AtOp.S1E1W


def par_pa(par: int) -> int | None:
    """PAR_EL1.PA of a successful translation (D24.2 PAR_EL1), else None."""
    return None if par & 1 else par & PA_MASK


def find_buffer(state: LiveState, arch: ArchState, maps: Sequence[TableMap], mem: PhysMem,
                avoid: set[int], size: int = BUFFER_SIZE) -> Buffer:
    """A VA range of ``size`` bytes, contiguous in PA, writable by the kernel
    according to the model, touching no page in ``avoid`` (PAs)."""
    op = write_op(state)
    candidates = sorted((r for m in maps for r in ranges(m.leaves) if r.size >= size),
                        key=lambda r: -r.size)
    for r in candidates:
        va = (r.end - size) & ~(PAGE - 1)
        while va >= r.va:
            pa = r.oa + (va - r.va)
            clash = [p for p in avoid if pa - PAGE < p < pa + size]
            if clash:
                va = (r.va + (min(clash) & ~(PAGE - 1)) - r.oa - size) & ~(PAGE - 1)
                continue
            ends = [translate(op, v, arch, mem) for v in (va, va + size - PAGE)]
            if all(e.kind == "par" and par_pa(e.par) == pa + (v - va)
                   for e, v in zip(ends, (va, va + size - PAGE), strict=True)):
                return Buffer(va, pa, size)
            break
    raise TargetError(f"no writable {size >> 10} KiB range found in the kernel's tables "
                      "for the injected program's data")


def program(ops: Sequence[AtOp]) -> tuple[list[int], int]:
    """The sweep program and the offset of its final instruction."""
    words: list[int] = []
    for op in ops:
        words += [isa.mov(5, 1), isa.mov(6, 3)]
        loop = len(words)
        words += [asm.ldr_post(0, 5, 8), isa.at(op, 0), isa.ISB, isa.mrs(4, "PAR_EL1"),
                  asm.str_post(4, 2, 8), asm.subs_imm(6, 6, 1)]
        words.append(isa.b_cond("NE", 4 * (loop - len(words))))
    end = 4 * len(words)
    words.append(isa.b(0))
    return words, end


def live_scenario(name: str, about: str, path: str) -> Scenario:
    """The Scenario that compare() reads for live probes: a name and a path
    for reports, no expectations and no known divergences."""
    p = Path(path)
    layout = Layout(path=p, sysregs=(), reg_lines=(), table_lines=(), mappings=(), memory=(),
                    overrides=())
    return Scenario(name=name, about=about, path=p, requires=(), probes=(), expect=(),
                    known=(), profile_overrides=(), layout=layout)


def check_ops(state: LiveState, arch: ArchState, ops: Sequence[AtOp]) -> str:
    """Why some op cannot run at the kernel's EL ("" when all can)."""
    for op in ops:
        r, _ = arch.route(op)
        if not isinstance(r, AtRoute):
            return f"AT {op.value} cannot run at EL{state.el}: {r.why}"
    return ""


class Sweep:
    """The injected AT program and the comparison, for one halted kernel."""

    def __init__(self, gdb: Gdb, state: LiveState, mem: RamReader, ops: Sequence[AtOp], *,
                 maps: Sequence[TableMap], timeout: float, target_version: str,
                 name: str) -> None:
        self.gdb = gdb
        self.state = state
        self.mem = mem
        self.ops = tuple(ops)
        self.maps = maps
        self.timeout = timeout
        self.version = target_version
        self.name = name
        self.arch = state.arch_state()
        self.code_va = state.pc & ~(PAGE - 1)
        self.scenario = live_scenario(name, f"live sweep of {name}", name)
        self.buffer: Buffer | None = None
        self._saved: bytes | None = None
        self._inj: Injection | None = None

    @property
    def per_batch(self) -> int:
        size = self.buffer.size if self.buffer else BUFFER_SIZE
        return size // (8 * (1 + len(self.ops)))

    # --- setup and teardown ----------------------------------------------------------
    def __enter__(self) -> Sweep:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def choose_buffer(self) -> Buffer:
        """Pick the data buffer (once): see find_buffer; it avoids every
        table page seen and the page the code goes into."""
        if self.buffer is None:
            code = translate(AtOp.S1E2R if self.state.el == 2 else AtOp.S1E1R, self.code_va,
                             self.arch, self.mem)
            avoid = {t & ~(PAGE - 1) for m in self.maps for t in m.tables}
            code_pa = par_pa(code.par) if code.kind == "par" else None
            if code_pa is not None:
                avoid.add(code_pa)
            self.buffer = find_buffer(self.state, self.arch, self.maps, self.mem, avoid)
        return self.buffer

    def _start(self) -> None:
        buf = self.choose_buffer()
        self._check_buffer(write_op(self.state), buf)
        self._saved = self.gdb.read_memory(buf.pa, buf.size)
        words, end = program(self.ops)
        self._inj = Injection(self.gdb, self.code_va, words, end, el=self.state.el,
                              vbar=self.state.vbar, timeout=self.timeout)
        self._inj.__enter__()

    def _check_buffer(self, op: AtOp, buf: Buffer) -> None:
        """QEMU must agree that the buffer is writable at buf.pa (both ends)."""
        words = [isa.at(op, 0), isa.ISB, isa.mrs(0, "PAR_EL1"), isa.b(0)]
        with Injection(self.gdb, self.code_va, words, 12, el=self.state.el,
                       vbar=self.state.vbar, timeout=self.timeout) as inj:
            for off in (0, buf.size - PAGE):
                par = inj.run({0: buf.va + off}, outputs=[0])[0]
                if par_pa(par) != buf.pa + off:
                    raise TargetError(
                        f"QEMU translates the data buffer VA 0x{buf.va + off:x} to PAR "
                        f"0x{par:x}, not PA 0x{buf.pa + off:x} as the model does: "
                        "not writing there")

    def close(self) -> None:
        """Restore the code page, the registers and the buffer."""
        if self._inj is not None:
            self._inj.restore()
            self._inj = None
        if self._saved is not None and self.buffer is not None:
            self.gdb.write_memory(self.buffer.pa, self._saved)
            self._saved = None

    # --- running -----------------------------------------------------------------------
    def target_batch(self, vas: Sequence[int]) -> list[list[int]]:
        """QEMU's PAR per op, per VA."""
        assert self._inj is not None and self.buffer is not None
        n = len(vas)
        buf = self.buffer
        self.gdb.write_memory(buf.pa, b"".join(v.to_bytes(8, "little") for v in vas))
        self._inj.run({1: buf.va, 2: buf.va + 8 * n, 3: n})
        raw = self.gdb.read_memory(buf.pa + 8 * n, 8 * n * len(self.ops))
        return [[int.from_bytes(raw[8 * (k * n + i):8 * (k * n + i) + 8], "little")
                 for i in range(n)] for k in range(len(self.ops))]

    def model(self, op: AtOp, va: int, mem: PhysMem | None = None) -> AtResult:
        return translate(op, va, self.arch, mem or self.mem)

    def run(self, picks: Sequence[Pick]) -> Iterator[Outcome]:
        """Outcomes for every pick and op, batch by batch."""
        for start in range(0, len(picks), self.per_batch):
            part = picks[start:start + self.per_batch]
            try:
                pars = self.target_batch([p.va for p in part])
            except TargetError as err:
                for p in part:
                    for op in self.ops:
                        yield self._failed(p, op, err)
                continue
            for i, p in enumerate(part):
                for k, op in enumerate(self.ops):
                    yield self.outcome(p, op, pars[k][i])

    def probe(self, pick: Pick, op: AtOp) -> Probe:
        return Probe(op, pick.va, self.state.el, self.state.pan,
                     label=f"{op.value} va=0x{pick.va:016x}")

    def outcome(self, pick: Pick, op: AtOp, got: ProbeResult) -> Outcome:
        probe = self.probe(pick, op)
        out = compare(self.scenario, probe, got, self.model(op, pick.va), target="qemu",
                      version=self.version)
        return classify(replace(out, path=f"{self.name}/{pick.where}/{pick.why}",
                                extra={"why": pick.why, "range": pick.where,
                                       "regime": self._regime_name()}))

    def _failed(self, pick: Pick, op: AtOp, err: TargetError) -> Outcome:
        out = Outcome(scenario=self.name, path=f"{self.name}/{pick.where}/{pick.why}",
                      kind=Kind.TARGET_ERROR, op=op.value, va=pick.va, el=self.state.el,
                      pan=self.state.pan, label=self.probe(pick, op).label,
                      target_version=self.version, detail=str(err))
        return out

    def _regime_name(self) -> str:
        return Regime(self.state.regime).value
