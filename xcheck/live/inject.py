"""Run code inside a halted kernel and leave no trace of it.

A :class:`Injection` writes a program over the start of the page the kernel
was halted in (that page is executable in the current regime: the CPU was
running there), runs it with interrupts masked (PSTATE.DAIF set) to a
breakpoint at its end, and afterwards writes back every byte it replaced and
every register it may have changed: X0-X30, SP, PC, PSTATE through the stub,
and PAR_EL1 and the ESR/ELR/FAR/SPSR of the current EL (which an unexpected
exception would overwrite) by a second injected program of MSRs, since
QEMU's stub does not write system registers. Breakpoints on the kernel's
synchronous exception vectors turn an exception taken by the program into a
TargetError instead of a kernel oops.

Code bytes are read and written in the stub's virtual-memory mode, i.e.
through the translation the CPU itself uses; everything else in
physical-memory mode.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType

from xcheck.machine import TargetException
from xcheck.target import isa
from xcheck.target.errors import GdbTimeout, TargetError
from xcheck.target.gdb import Gdb

CORE = [f"x{i}" for i in range(31)] + ["sp", "pc", "cpsr"]
"""gdb's aarch64 core registers, numbered 0..33 in this order."""
DAIF_MASK = 0xF << 6
"""PSTATE.{D,A,I,F} (SPSR/CPSR bits [9:6])."""
VECTOR_SYNC = (0x000, 0x200)
"""Synchronous exception from the current EL, with SP_EL0 and with SP_ELx
(Arm ARM D1.3.1, Table D1-5 vector offsets)."""


def read_core(gdb: Gdb) -> dict[str, int]:
    """X0-X30, SP, PC, CPSR in one request."""
    rec = gdb.command("-data-list-register-values x " + " ".join(map(str, range(len(CORE)))))
    out: dict[str, int] = {}
    for item in rec["payload"]["register-values"]:
        out[CORE[int(item["number"])]] = int(item["value"], 16) & ((1 << 64) - 1)
    return out


def exception_regs(el: int) -> tuple[str, ...]:
    return tuple(f"{r}_EL{el}" for r in ("ESR", "ELR", "FAR", "SPSR"))


class Injection:
    """Code placed at ``code_va`` for the lifetime of a ``with`` block.

    :meth:`run` sets X registers, runs from ``code_va`` to ``end_va`` and
    returns the X registers afterwards; it may be called many times."""

    def __init__(
        self, gdb: Gdb, code_va: int, words: Sequence[int], end_offset: int, *,
        el: int, vbar: int, timeout: float,
    ) -> None:
        self.gdb = gdb
        self.code_va = code_va
        self.code = b"".join(w.to_bytes(4, "little") for w in words)
        self.end_va = code_va + end_offset
        self.el = el
        self.vbar = vbar
        self.timeout = timeout
        self.sys_names = ("PAR_EL1", *exception_regs(el))
        self._restore_words = [isa.msr(n, k) for k, n in enumerate(self.sys_names)] + [isa.b(0)]
        self._span = max(len(self.code), 4 * len(self._restore_words))
        self._orig: bytes | None = None
        self._core: dict[str, int] = {}
        self._sys: dict[str, int] = {}
        self._bkpts: dict[str, str] = {}

    # --- gdb helpers ---------------------------------------------------------------
    def _virtual(self, on: bool) -> None:
        reply = self.gdb.packet(f"Qqemu.PhyMemMode:{0 if on else 1}")
        if reply != "OK":
            raise TargetError(f"QEMU's stub refused to switch memory mode ({reply!r})")

    def read_core(self) -> dict[str, int]:
        return read_core(self.gdb)

    def _break(self, va: int) -> str:
        rec = self.gdb.command(f"-break-insert *0x{va:x}")
        return str(rec["payload"]["bkpt"]["number"])

    # --- lifecycle ---------------------------------------------------------------
    def __enter__(self) -> Injection:
        g = self.gdb
        self._core = self.read_core()
        self._sys = {r: g.read_reg(r) for r in self.sys_names}
        self._virtual(True)
        try:
            self._orig = g.read_memory(self.code_va, self._span)
            g.write_memory(self.code_va, self.code)
        finally:
            self._virtual(False)
        self._bkpts["end"] = self._break(self.end_va)
        for off in VECTOR_SYNC:
            self._bkpts[f"vector+0x{off:x}"] = self._break(self.vbar + off)
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.restore()

    def restore(self) -> None:
        """Write back the system registers (by MSR), the code bytes and the
        core registers (idempotent)."""
        g = self.gdb
        try:
            if self._orig is not None and self._sys:
                g.command(f"-break-delete {self._bkpts.pop('end')}")
                self._write_code(b"".join(w.to_bytes(4, "little") for w in self._restore_words))
                end = self.code_va + 4 * (len(self._restore_words) - 1)
                self._bkpts["end"] = self._break(end)
                self._run_to(end, {k: self._sys[n] for k, n in enumerate(self.sys_names)})
                self._sys = {}
        finally:
            self._undo()

    def _undo(self) -> None:
        g = self.gdb
        for number in self._bkpts.values():
            g.command(f"-break-delete {number}")
        self._bkpts = {}
        if self._orig is not None:
            self._write_code(self._orig)
            self._orig = None
        if self._core:
            now = self.read_core()
            for name, value in self._core.items():
                if now[name] != value:
                    g.write_reg(name, value & 0xFFFF_FFFF if name == "cpsr" else value)
            self._core = {}

    def _write_code(self, code: bytes) -> None:
        self._virtual(True)
        try:
            self.gdb.write_memory(self.code_va, code)
        finally:
            self._virtual(False)

    # --- running -----------------------------------------------------------------
    def run(self, xregs: Mapping[int, int], outputs: Sequence[int] = ()) -> dict[int, int]:
        """Set X<n> = value for ``xregs``, run the program to its end, and
        return the values of the X registers in ``outputs``."""
        self._run_to(self.end_va, xregs)
        return {n: self.gdb.read_reg(f"x{n}") for n in outputs}

    def _run_to(self, end_va: int, xregs: Mapping[int, int]) -> None:
        g = self.gdb
        for n, value in xregs.items():
            g.write_reg(f"x{n}", value)
        g.write_reg("pc", self.code_va)
        g.write_reg("cpsr", (self._core["cpsr"] | DAIF_MASK) & 0xFFFF_FFFF)
        try:
            stop = g.resume("-exec-continue", self.timeout)
        except GdbTimeout as err:
            raise TargetError(f"the injected program did not finish: {err}") from None
        frame = (stop.get("payload") or {}).get("frame") or {}
        pc = int(frame["addr"], 16) if frame.get("addr") else g.read_reg("pc")
        if pc != end_va:
            raise TargetError(self._stray(pc, end_va))

    def _stray(self, pc: int, end_va: int) -> str:
        for off in VECTOR_SYNC:
            if pc == self.vbar + off:
                esr, elr, far, _ = (self.gdb.read_reg(r) for r in exception_regs(self.el))
                exc = TargetException(esr=esr, elr=elr, far=far, el=self.el)
                return f"the injected program took an exception: {exc.describe()}"
        return f"the injected program stopped at 0x{pc:x}, not at its end 0x{end_va:x}"
