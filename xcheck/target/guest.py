"""QemuTarget: load a MachineSetup into QEMU and run its probes.

One QEMU and one gdb per target, kept across setups. Before each setup the
target checks the CPU is back at EL2 with its MMU off (turning it off with
the harness's teardown instruction when a setup left it on), or at EL3 with
its MMU off when the CPU starts at EL3 (``-machine virt,secure=on``: the
program then starts and ends at EL3 and drops to Non-secure EL2), clears what the
previous setup wrote, writes the tables and the generated program in
physical-memory mode, and runs it (see harness.py). Batch mode: one stop at
the end, one bulk read. Step mode: the same program, stopped by a breakpoint
after each probe's result is stored; the results come from the shared RAM.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from xcheck.arch.features import Features
from xcheck.arch.memory import MemoryImage
from xcheck.machine import (
    HARNESS_CODE_SIZE,
    HARNESS_DATA_PA,
    HARNESS_PA,
    RAM_BASE,
    MachineSetup,
    Probe,
    ProbeResult,
    Readback,
    chunks,
    word_spans,
    words_in,
)
from xcheck.target import el3, harness, isa
from xcheck.target.errors import GdbTimeout, HarnessError, QemuLaunchError, TargetError
from xcheck.target.gdb import Gdb
from xcheck.target.process import cpu_seconds
from xcheck.target.profile import Profile
from xcheck.target.shadow import PAGE, Shadow
from xcheck.target.stub import LOST_CONNECTION, AttachedQemu

ID_REGISTERS = (
    "ID_AA64ISAR1_EL1",
    "ID_AA64ISAR2_EL1",
    "ID_AA64MMFR0_EL1",
    "ID_AA64MMFR1_EL1",
    "ID_AA64MMFR2_EL1",
    "ID_AA64MMFR3_EL1",
    "ID_AA64PFR0_EL1",
    "ID_AA64PFR1_EL1",
    "MIDR_EL1",
)
SCTLR_M = 1
STALL_SLICE = 0.25
"""Seconds between looks at a running harness (see _exception_loop)."""
RESET_POLLS, RESET_POLL_S = 20, 0.005
"""How often, and how far apart, the PC is read after a monitor reset."""
MAX_STOPS = 16
"""Stop breakpoints kept inserted (one per EL2 regime VA of the harness; the
one used least recently makes room for a new one). Of 1,000 fuzz cases of
seed 1, 836 stop at the harness's PA and the others at 45 other VAs."""


HARNESS_CODE = range(HARNESS_PA, HARNESS_PA + HARNESS_CODE_SIZE)
"""The harness's code: no AT updates a descriptor there (tables are kept
out of the harness), so the shadow keeps trusting it."""


def _updates_descriptors(sysregs: Mapping[str, int]) -> bool:
    """Hardware Access flag / dirty state management is enabled somewhere
    (TCR_EL1.HA bit 39, TCR_EL2.HA bit 39 with E2H or bit 21 without,
    VTCR_EL2.HA bit 21): an emulator may then write descriptors during an AT
    (QEMU up to 10.0 does), so what xcheck wrote can no longer be trusted."""
    return bool(sysregs.get("TCR_EL1", 0) >> 39 & 1 or sysregs.get("TCR_EL2", 0) >> 39 & 1
                or sysregs.get("TCR_EL2", 0) >> 21 & 1 or sysregs.get("VTCR_EL2", 0) >> 21 & 1)


class QemuTarget:
    """QEMU driven over its GDB stub. Use as a context manager, or call
    :meth:`start` and :meth:`close`."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.version = ""
        self.gdb_version = ""
        self.id_regs: dict[str, int] = {}
        self._features = Features.from_id_regs({})
        """The CPU's features, from :attr:`id_regs` as :meth:`start` read them."""
        self.ram_size = profile.ram_size()
        self.phys_mode = False
        self._stub: AttachedQemu | None = None
        self._shadow = Shadow()
        self._el2_base = HARNESS_PA
        self._el1_base = HARNESS_PA
        self._id_program: dict[int, bytes] = {}
        self.readbacks: list[Readback] = []
        """The watched words read back by the last :meth:`run`."""
        self._written: MemoryImage | None = None
        self.scr_el3: int | None = None
        """SCR_EL3 the harness runs the lower ELs with, when the CPU starts at EL3."""
        self._stops: OrderedDict[int, None] = OrderedDict()
        """The breakpoints kept at programs' stops (Program.stop), in the stub,
        the one stopped at last at the end."""
        self._at_rest = False
        """The last program stopped at its end: the CPU is where a program
        starts (EL2 or EL3, MMU off), with nothing to check."""

    # --- lifecycle -----------------------------------------------------
    def __enter__(self) -> QemuTarget:
        self.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self, gdb: Gdb | None = None) -> None:
        """Launch QEMU and gdb (or attach ``gdb``, see :meth:`release_gdb`),
        connect, switch the stub to physical memory, read the ID registers.
        Raises QemuLaunchError when unusable."""
        self._stub = AttachedQemu(self.profile, shared_ram=True, ram_base=RAM_BASE)
        self._stub.start(gdb)
        self._stops, self._at_rest = OrderedDict(), False
        self._id_program = {}
        self.version, self.gdb_version = self._stub.version, self._stub.gdb_version
        self.phys_mode = True
        try:
            self.id_regs = self._read_id_regs()
            el = self.gdb.read_reg("cpsr") >> 2 & 3
            if el not in (2, 3) or not Features.from_id_regs(self.id_regs).el2:
                raise QemuLaunchError(
                    f"the CPU starts at EL{el} without EL2: the machine needs "
                    f"virtualization=on (machine is {self.profile.machine!r})"
                )
            self.scr_el3 = el3.scr_el3(self.id_regs) if el == 3 else None
            if el == 3 and Features.from_id_regs(self.id_regs).rme:
                self.id_regs |= self._read_id_regs(el3.GPC_REGISTERS)
            self._features = Features.from_id_regs(self.id_regs)
        except TargetError as err:
            stderr = self._stub.stderr()
            self.close()
            if isinstance(err, QemuLaunchError):
                raise
            raise QemuLaunchError(f"could not read the ID registers: {err}", stderr) from None
        self._shadow.forget(self._id_program)
        self._el2_base = self._el1_base = HARNESS_PA

    def _read_id_regs(self, names: Sequence[str] = ID_REGISTERS) -> dict[str, int]:
        """Read the ID registers (or ``names``) by running MRS at the EL the
        CPU starts at, MMU off (gdb does not name them all on every QEMU
        version); the ID register space reads as zero where a register is
        unallocated (D24.1.2)."""
        g = self.gdb
        code: list[int] = [*isa.mov_imm(2, HARNESS_DATA_PA)]
        for k, name in enumerate(names):
            code += [isa.mrs(1, name), isa.str_imm(1, 2, 8 * k)]
        end = HARNESS_PA + 4 * len(code)
        code.append(isa.b(0))
        blob = b"".join(w.to_bytes(4, "little") for w in code)
        g.write_memory(HARNESS_PA, blob)
        earlier = self._id_program.get(HARNESS_PA, b"")
        self._id_program = {HARNESS_PA: blob + earlier[len(blob):]}
        g.write_reg("pc", HARNESS_PA)
        self._continue_to(end, self.profile.timeouts.command)
        raw = g.read_memory(HARNESS_DATA_PA, 8 * len(names))
        return {
            name: int.from_bytes(raw[8 * k : 8 * k + 8], "little") for k, name in enumerate(names)
        }

    def close(self) -> None:
        """Stop gdb and QEMU (idempotent; no process is left behind)."""
        if self._stub is not None:
            self._stub.close()
            self._stub = None

    def release_gdb(self) -> Gdb | None:
        """Stop QEMU and hand over its gdb, for :meth:`start` of this or
        another target (after a crash, a new QEMU without a new gdb)."""
        stub, self._stub = self._stub, None
        return stub.release_gdb() if stub is not None else None

    def restart(self) -> None:
        self.start(self.release_gdb())

    @property
    def gdb(self) -> Gdb:
        if self._stub is None:
            raise TargetError("the target is not started")
        return self._stub.gdb

    # --- running -------------------------------------------------------------
    def run(self, setup: MachineSetup, mode: str = "batch") -> list[ProbeResult]:
        """Load ``setup`` and run its probes; a PAR or an exception per probe.
        Raises TargetError when QEMU crashes, hangs or the program goes astray."""
        if mode not in ("batch", "step"):
            raise ValueError(f"mode must be batch or step, not {mode!r}")
        probes = list(setup.probes)
        out: list[ProbeResult] = []
        self.readbacks = []
        self._written = None
        for start in range(0, max(len(probes), 1), harness.MAX_BATCH):
            part = probes[start : start + harness.MAX_BATCH]
            try:
                out += self._run_part(setup, part, start, step=(mode == "step"))
            except TargetError as err:
                raise self._explain(err) from None
        return out

    def _explain(self, err: TargetError) -> TargetError:
        """Add what QEMU did: its exit status and stderr when it died."""
        stub = self._stub
        if stub is None or stub.qemu is None:
            return err
        gone = stub.gone(dying=any(s in str(err) for s in LOST_CONNECTION))
        if gone and not str(err).startswith("QEMU "):
            return TargetError(f"{gone}: {err}", stub.stderr())
        if not err.stderr:
            err.stderr = stub.stderr()
        return err

    def _ensure_clean(self) -> None:
        """EL2 with its MMU off (EL3 with its MMU off when the CPU starts at
        EL3): the MMU turned off by the harness's teardown instruction, or
        else the machine reset (:meth:`_reset`), or else QEMU restarted.
        Nothing to do when the last program stopped at its end (HALT: the
        teardown ran, or at EL3 the MMU was turned off)."""
        if self._at_rest or self._clean(teardown=True):
            return
        if not self._reset() or not self._clean(teardown=False):
            self.restart()

    def _clean(self, *, teardown: bool) -> bool:
        """Is the CPU at the EL the harness starts at with its MMU off (after
        the teardown instruction, with ``teardown``, when only EL2's MMU is on)?"""
        g = self.gdb
        start_el = 3 if self.scr_el3 is not None else 2
        sctlr = f"SCTLR_EL{start_el}"
        regs = g.read_regs(("cpsr", sctlr))
        if regs["cpsr"] >> 2 & 3 != start_el:
            return False
        if not regs[sctlr] & SCTLR_M:
            return True
        if not teardown or start_el == 3:
            return False
        msr = self._el2_base + harness.TEARDOWN
        g.write_regs({"x1": harness.SCTLR_EL2_OFF, "pc": msr})
        stop = g.resume("-exec-step-instruction", self.profile.timeouts.command)
        if _stop_pc(stop) == msr + 4:  # the MSR ran (it cannot trap at EL2)
            return True
        return not g.read_reg("SCTLR_EL2") & SCTLR_M

    def _reset(self) -> bool:
        """Reset the machine through QEMU's monitor (``monitor system_reset``):
        the CPU back in its reset state, RAM kept, far faster than a new QEMU.
        True once gdb sees the reset PC (0; registers re-read, not cached)."""
        g = self.gdb
        try:
            self._drop_stops()  # the stub's breakpoints may not outlive a reset
            g.console_command("monitor system_reset")
            for _ in range(RESET_POLLS):
                g.console_command("maintenance flush register-cache")
                if g.read_reg("pc") == 0:
                    self._el2_base = self._el1_base = HARNESS_PA
                    return True
                time.sleep(RESET_POLL_S)
        except TargetError:
            pass
        return False

    def _load(self, setup: MachineSetup, program: harness.Program) -> int:
        """Write what changed since the last setup straight into the shared
        RAM, but for the harness's code, which QEMU must see written (to drop
        what it translated there): copied by the harness's loader when its
        own page is unchanged (harness.load_list), else written through the
        stub. Returns where the program starts: the loader or the entry."""
        assert self._stub is not None
        ram = self._stub.ram
        image = [*chunks(setup.memory), (HARNESS_PA, program.code)]
        code = []
        for addr, data in self._shadow.update(image, exact=HARNESS_CODE):
            if HARNESS_PA <= addr < HARNESS_PA + HARNESS_CODE_SIZE:
                code.append((addr, data))
            else:
                ram.write(addr, data)
        ram.write(HARNESS_DATA_PA, program.initial_data())
        if _updates_descriptors(setup.sysregs):
            self._shadow.distrust(keep=HARNESS_CODE)
        entry = HARNESS_PA + program.entry
        page = HARNESS_PA + (harness.LOADER & ~(PAGE - 1))
        listed = harness.load_list(entry, code) if code and not any(
            addr < page + PAGE and page < addr + len(data) for addr, data in code) else None
        if listed is None:
            self.gdb.write_blocks(code)
            return entry
        ram.write(HARNESS_DATA_PA + harness.LOAD_LIST, listed)
        return HARNESS_PA + harness.LOADER

    def _continue_to(self, addr: int, timeout: float, resume: str = "-exec-continue") -> int:
        """Resume (``resume``) until the PC reaches ``addr``, with a
        temporary breakpoint; the PC where it stopped (see :meth:`_continue`)."""
        g = self.gdb
        # temporary: gdb deletes it when it is hit, before its next command
        rec = g.command(f"-break-insert -t *0x{addr:x}")
        number = rec["payload"]["bkpt"]["number"]
        stop: Mapping[str, Any] = {}
        try:
            stop = self._continue(timeout, resume)
        finally:
            if (stop.get("payload") or {}).get("bkptno") != number:
                g.command(f"-break-delete {number}")
        return self._stopped_at(stop, (addr,))

    def _stop_at(self, addr: int) -> None:
        """A breakpoint at ``addr``, a program's stop (its end, or its
        mmu_stop), inserted once and kept: no PC but the end's reaches HALT
        at any harness VA aligned as the builder places them (see
        :func:`_aligned`), and none but MMU_ON's next reaches mmu_stop, so a
        breakpoint kept from an earlier program cannot stop another early."""
        stops = self._stops
        if addr in stops:
            stops.move_to_end(addr)
            return
        if len(stops) >= MAX_STOPS:
            oldest = next(iter(stops))
            self._stub_breakpoint("z0", oldest)
            del stops[oldest]
        self._stub_breakpoint("Z0", addr)
        stops[addr] = None

    def _drop_stops(self) -> None:
        """Delete the breakpoints :meth:`_stop_at` kept."""
        for addr in self._stops:
            self._stub_breakpoint("z0", addr)
        self._stops.clear()

    def _stub_breakpoint(self, kind: str, addr: int) -> None:
        """Insert (``Z0``) or remove (``z0``) a breakpoint in QEMU's stub
        directly, unknown to gdb: a stop there is a SIGTRAP to gdb, not a
        breakpoint hit. gdb announces every hit of its own breakpoints
        (``=breakpoint-modified``, the new hit count) a byte per write: some
        170 writes to its pipe at each stop, and as many wake-ups of the
        reader."""
        reply = self.gdb.packet(f"{kind},{addr:x},4")
        if reply != "OK":
            raise TargetError(f"QEMU's stub answered {reply!r} to {kind} at 0x{addr:x} "
                              "(a breakpoint at a program's stop)")

    def _continue(self, timeout: float, resume: str = "-exec-continue") -> Mapping[str, Any]:
        """Continue (with the MI command ``resume``) until the guest stops;
        its ``*stopped`` record. The guest is looked at every STALL_SLICE
        seconds: a harness caught in an exception loop is reported then, not
        when ``timeout`` runs out (and continued from where it was). A loop
        is the same place twice with QEMU having run between the looks (at
        least half a slice of CPU): a QEMU starved of CPU on a loaded
        machine may be found twice where it was, without looping."""
        deadline = time.monotonic() + timeout
        looping: tuple[int, ...] = ()
        qemu = self._stub.qemu.pid if self._stub is not None and self._stub.qemu else None
        ran = 0.0  # QEMU's CPU at the last look (none yet: a first look never decides)
        while True:
            left = deadline - time.monotonic()
            try:
                return self.gdb.resume(resume, max(0.01, min(STALL_SLICE, left)))
            except GdbTimeout:
                if time.monotonic() >= deadline:
                    raise
            resume = "-exec-continue"
            seen = self._exception_loop()
            now = cpu_seconds(qemu)
            if seen and seen == looping and now - ran >= STALL_SLICE / 2:
                raise TargetError(
                    "the harness cannot make progress: an exception loop in its vectors "
                    f"({self._state()})"
                )
            looping, ran = seen, now

    def _stopped_at(self, stop: Mapping[str, Any], expected: Sequence[int]) -> int:
        """The PC of the ``stop``, which must be one of ``expected``."""
        pc = _stop_pc(stop)
        if pc is None:
            pc = self.gdb.read_reg("pc")
        if pc not in expected:
            reason = (stop.get("payload") or {}).get("reason", "unknown")
            wanted = " or ".join(f"0x{a:x}" for a in expected)
            raise TargetError(
                f"the guest stopped at 0x{pc:x} ({reason}), not at {wanted}: " + self._state()
            )
        return pc

    def _exception_loop(self) -> tuple[int, ...]:
        """Where a halted guest is, when that is inside the harness's vectors
        or handlers (pc, EL, ESR and ELR of that EL); () elsewhere. The same
        answer twice, a slice apart, is a loop: the program finishes in
        milliseconds, and a handler returns at once."""
        g = self.gdb
        pc = g.read_reg("pc")
        bases = {HARNESS_PA, self._el2_base, self._el1_base}
        if not any(0 <= pc - b < harness.PROGRAM for b in bases):
            return ()
        el = g.read_reg("cpsr") >> 2 & 3
        return (pc, el, g.read_reg(f"ESR_EL{el}"), g.read_reg(f"ELR_EL{el}"))

    def _state(self) -> str:
        """A one-line description of where the CPU is, for error messages."""
        g = self.gdb
        try:
            parts = [f"pc=0x{g.read_reg('pc'):x}", f"EL{g.read_reg('cpsr') >> 2 & 3}"]
            els = (2, 3) if self.scr_el3 is not None else (2,)
            for name in (f"{r}_EL{n}" for n in els for r in ("ESR", "ELR", "FAR")):
                parts.append(f"{name}=0x{g.read_reg(name):x}")
            return " ".join(parts)
        except TargetError:
            return "(state unreadable)"

    def read_back(self, setup: MachineSetup, ran: tuple[int, ...]) -> None:
        """Read the setup's watched words (from the shared RAM, or one stub
        read per word_spans range outside it) into :attr:`readbacks`, as
        memory stands after the probes ``ran``. A word that is no longer what
        xcheck wrote makes the shadow rewrite everything next time."""
        if not setup.watch:
            return
        g = self.gdb
        assert self._stub is not None
        ram = self._stub.ram

        def read(addr: int, n: int) -> bytes:
            return ram.read(addr, n) if ram.holds(addr, n) else g.read_memory(addr, n)

        got = words_in({a: read(a, n) for a, n in word_spans(setup.watch)}, setup.watch)
        self.readbacks.append(Readback(ran, got))
        if self._written is None:
            self._written = MemoryImage(setup.memory, RAM_BASE, self.ram_size)
        if any(self._written.read64(pa) != v for pa, v in got.items()):
            self._shadow.distrust(keep=HARNESS_CODE)

    def _run_part(
        self, setup: MachineSetup, probes: Sequence[Probe], offset: int, *, step: bool
    ) -> list[ProbeResult]:
        if self._stub is None or not self._stub.alive():
            raise TargetError("QEMU is not running")
        bad = [p for p in probes if p.el == 1 and setup.sysregs.get("HCR_EL2", 0) >> 27 & 1]
        if bad:
            raise TargetError(
                "probes at EL1 need HCR_EL2.TGE = 0 (EL1 cannot be entered with TGE = 1)"
            )
        self._ensure_clean()  # may restart QEMU, and with it gdb
        self._at_rest = False
        program = harness.assemble(
            setup, probes, features=self._features,
            scr_el3=self.scr_el3,
        )
        start = self._load(setup, program)
        timeout = self.profile.timeouts.batch
        self._el2_base, self._el1_base = program.el2_base, program.el1_base
        try:
            jump = f"-exec-jump *0x{start:x}"
            keep = _aligned(program.el2_base) and _aligned(program.el1_base)
            if not keep:
                self._drop_stops()
            if program.el2_base != HARNESS_PA:
                mmu_stop = HARNESS_PA + program.mmu_stop
                if keep:
                    self._stop_at(mmu_stop)
                    self._stopped_at(self._continue(timeout, jump), (mmu_stop,))
                else:
                    self._continue_to(mmu_stop, timeout, jump)
                jump = f"-exec-jump *0x{program.el2_base + program.resume:x}"
            if keep:
                self._stop_at(program.stop)
            if step:
                self._step_groups(program, setup, offset, jump)
            elif keep:
                self._stopped_at(self._continue(timeout, jump), (program.stop,))
            else:
                self._continue_to(program.stop, timeout, jump)
            self._at_rest = True
            if not step:
                self.read_back(setup, tuple(offset + i for grp in program.groups
                                            for i in grp.indices))
        except GdbTimeout as err:
            raise TargetError(f"{err}: the program did not finish ({self._state()})") from None
        data = self._stub.ram.read(HARNESS_DATA_PA, program.data_size)
        results, setup_exc = harness.decode_results(program, data)
        if setup_exc is not None:
            raise HarnessError(
                f"writing the system registers took an exception: {setup_exc.describe()}"
            )
        missing = [i for i, r in enumerate(results) if r == harness.SENTINEL]
        if missing:
            raise HarnessError(
                f"{len(missing)} probe(s) did not run (the program gave up after "
                f"{harness.MAX_EXCEPTIONS} unexpected exceptions)"
            )
        return results

    def _step_groups(self, program: harness.Program, setup: MachineSetup,
                     offset: int, resume: str) -> None:
        """Step mode: the batch program with a breakpoint on the NOP after
        each loop's store (Group.stored), so the guest stops after every
        probe, its PAR or exception record already in the shared RAM, and the
        watched words are read back there. ``resume`` starts the program. One
        MI command a probe: a jump over
        the NOP (a continue would make gdb step over the breakpoint first).
        Each stop has the command timeout and the stall check of
        :meth:`_continue`; a program that gives up stops at its end (the
        probes left are reported missing)."""
        timeout = self.profile.timeouts.command
        stops = [*dict.fromkeys(grp.stored for grp in program.groups)]
        if program.stop not in self._stops:
            stops.append(program.stop)
        inserted: list[int] = []
        try:
            for addr in stops:  # the stub's, as the stops' (:meth:`_stub_breakpoint`)
                self._stub_breakpoint("Z0", addr)
                inserted.append(addr)
            ran: list[int] = []
            for grp in program.groups:
                for i in grp.indices:
                    stop = self._continue(timeout, resume)
                    if self._stopped_at(stop, (grp.stored, program.stop)) == program.stop:
                        return
                    resume = f"-exec-jump *0x{grp.stored + 4:x}"  # over the NOP
                    ran.append(offset + i)
                    self.read_back(setup, tuple(ran))
            self._stopped_at(self._continue(timeout, resume), (program.stop,))
        finally:
            if self._stub is not None and self._stub.alive():  # else the error says why
                for addr in inserted:
                    self._stub_breakpoint("z0", addr)


def _stop_pc(stop: Mapping[str, Any]) -> int | None:
    """The PC of a ``*stopped`` record (its frame's address), if it has one."""
    frame = (stop.get("payload") or {}).get("frame") or {}
    addr = frame.get("addr")
    return int(addr, 16) if addr else None


def _aligned(base: int) -> bool:
    """A harness VA at a multiple of HARNESS_CODE_SIZE from HARNESS_PA (the
    builder places the harness in 2 MiB slots), so that its HALT differs
    from every other harness VA's code."""
    return (base - HARNESS_PA) % HARNESS_CODE_SIZE == 0
