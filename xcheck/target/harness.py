"""The in-guest program xcheck generates for one machine setup.

Layout of the harness region (xcheck.machine.HARNESS_PA, code half then
data half; the same offsets in every regime, only the base VA differs):

    code +0x000  EL2 vector table      (VBAR_EL2; 2 KiB aligned, Arm ARM D1.3.1)
         +0x800  EL1 vector table      (VBAR_EL1)
         +0x1000 exception handlers
         +0x1E00 AT stubs: ``AT <op>, X0; RET``, one per AtOp (STUB_SLOT)
         +0x1EF0 (MMU_ON) MSR SCTLR_EL2, X1 (turns the EL2 MMU on, for a
                 harness VA other than its PA); +0x1EF4 where the driver stops
         +0x1F00 teardown: MSR SCTLR_EL2, X1 (turns the EL2 MMU off at the end);
                 +0x1F04 (HALT) the stop: ISB; B .
         +0x1F10 the loader: copies code blocks, branches to the entry (load_list)
         +0x2000 EL3 vector table      (VBAR_EL3, on a CPU that starts at EL3)
         +0x2800 the program
    data +0     one PAR_EL1 per probe (pre-filled with SENTINEL)
         +8n    one exception record per probe and one for the setup code:
                flags (bit 0 taken, [15:8] EL, [23:16] vector), ESR, ELR, FAR
         +40n+32 the probe table, group after group: per probe its VA and
                its index | the offset of its op's AT stub << 32

The program starts at EL2 with its MMU off (segment A): it writes every
system register by MSR (HCR_EL2 cleared first so that *_EL1 names are not
redirected to EL2 by E2H, D5.8.4), invalidates the TLBs, installs the
vectors and finally writes SCTLR_EL2. When the EL2 regime maps the harness
at a VA other than its PA, that write is MMU_ON's, the same instruction for
every program, and the CPU stops right after it (``mmu_stop``, where the
driver keeps a breakpoint) so the driver can move the PC to the harness's
VA in the EL2 regime; it goes on
(segment B) group by group: probes at EL2 run in place with PSTATE.PAN set by
MSR PAN; probes at EL1 are reached by ERET (SPSR_EL2.M = EL1h, SPSR.PAN) and
come back by HVC. A group is a loop over its part of the probe table: ``LDP
X0, X1 (VA, index and stub); X21 = index; BLR to the stub (AT <op>, X0;
RET); ISB; MRS X1, PAR_EL1; STR X1, [X20, X21, LSL #3]``, so the code does
not grow with the probes and is generated once per shape (registers, groups
and their sizes) and cached. An exception the probes did not
expect is recorded by the handler of the EL it is taken to, in the slot of
the probe that ran (X21), or in the setup record when it came before a
group's first probe (X21 = n again at each group's start: an EL1 group
whose first instruction fetch faults is the harness's trouble, not the
previous group's last probe's); the handler resumes after the faulting
instruction; after MAX_EXCEPTIONS it gives up. The
program ends by branching to the teardown with X1 = SCTLR_EL2 with M = 0:
the PC after the MSR (HALT at the EL2 regime's VA, now a PA) is where it
stops, at the same address for every setup of that VA, with the CPU at EL2
and its MMU off, ready for the next setup.

On a CPU that starts at EL3 (``scr_el3`` given), the program starts there
instead (segment E3, at physical addresses): it installs the EL3 vectors,
writes SCR_EL3 (Non-secure, EL2 in AArch64, the feature enables of
target/el3.py), turns the EL2 MMU off and drops to segment A by ERET. The
program then ends by SMC back to EL3 (the EL3 handler branches to X24 on an
SMC from EL2), turns the EL3 MMU off and stops at HALT (at its PA), ready
for the next setup.

Probes at EL1 or EL2 of the Secure or Realm state are entered from EL3 in
the same way (_lower_group): SMC, SCR_EL3 for the state, TLB maintenance,
ERET to EL1h or EL2h of that state at the harness's VA; they run the same
loop with the same vectors and records and come back by SMC.

Step mode runs the same program with a breakpoint right after each loop's
store (``Group.stored``): the guest stops after every probe, with its PAR or
its exception record already in the data half.

Registers: X0 VA, X1 scratch/PAR, X20 result buffer, X21 probe index,
X19/X22/X23 exception records (EL3/EL1/EL2 VA), X24 where HVC returns to at
EL2 (and where SMC goes at EL3),
X25-X27 handler scratch, X28 exception count, X29 where to give up,
X12 where EL1's handler gives up (its group's HVC or SMC), X13 X29 saved
across a Secure or Realm group, X14 the AT stubs, X15/X16 the next and the
end of the group's probe table, X30 the stub's return.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache

from xcheck import sysregs
from xcheck.arch.features import Features
from xcheck.machine import (
    HARNESS_CODE_SIZE,
    HARNESS_DATA_PA,
    HARNESS_PA,
    HARNESS_SIZE,
    TRANSLATION_SYSREGS,
    AtOp,
    MachineSetup,
    Probe,
    SecurityState,
    TargetException,
)
from xcheck.target import el3, isa

VEC_EL2 = 0x000
VEC_EL1 = 0x800
HANDLERS = 0x1000
STUBS = 0x1E00
MMU_ON = 0x1EF0
"""MSR SCTLR_EL2, X1: where a program whose harness VA is not its PA turns
the EL2 MMU on, to stop at the next instruction (Program.mmu_stop)."""
TEARDOWN = 0x1F00
HALT = TEARDOWN + 4
"""Where a program stops when done: the instruction after the teardown's MSR."""
LOADER = 0x1F10
"""The loader (see :func:`load_list`)."""
LOAD_LIST = 0x8_0000
"""Offset of the loader's input in the data half (past the largest batch's
results and probe table)."""
VEC_EL3 = 0x2000
PROGRAM = 0x2800
SENTINEL = (1 << 64) - 1
"""Pre-filled PAR slot: all ones has RES0 bits set, no AT can return it."""
MAX_BATCH = 4000
"""Probes per program (code and data halves have room for more)."""
MAX_EXCEPTIONS = MAX_BATCH + 64
"""Exceptions a program takes before it gives up: each probe may take one (an
AT that is UNDEFINED on this CPU), a few more are the harness's own trouble.
A loop that never reaches the handler's count (a vector that cannot be
fetched) is caught by the driver instead (QemuTarget's stall check)."""
_SENTINELS = SENTINEL.to_bytes(8, "little") * MAX_BATCH
PLACEHOLDER = (1 << 64) - 1
"""A four-word constant load, patched once the label it names is placed."""
RECORD = 32
SCTLR_EL3_OFF = 0x30C5_0830
"""SCTLR_EL3 with its RES1 bits and M = 0 (D24.2 SCTLR_EL3)."""
SPSR_EL1H = 0x3C5
"""SPSR_EL2 for an ERET to EL1h with D, A, I, F masked (C5.2.19)."""
PSTATE_PAN_BIT = 22
HCR_RESET = 1 << 31
"""HCR_EL2 with only RW set while the registers are written."""
SCTLR_EL2_OFF = 0x30C5_0830
"""SCTLR_EL2 with RES1 bits and M = 0 (teardown)."""
EL1_FIRST = sysregs.EL1_NAMES
"""Written while HCR_EL2.E2H = 0, before HCR_EL2 (D5.8.4 redirection)."""
ALL = Features.everything()
"""The CPU a program is written for when the caller does not say."""
EC_HVC64 = 0x16
EC_SMC64 = 0x17
VECTOR_LOWER_SYNC = 8
"""Vector slot of a synchronous exception from a lower EL using AArch64 (+0x400)."""

R_VA, R_PAR, R_RES, R_IDX, R_EXC1, R_EXC2, R_CONT = 0, 1, 20, 21, 22, 23, 24
R_T0, R_T1, R_T2, R_COUNT, R_GIVEUP = 25, 26, 27, 28, 29
R_EXC3, R_ELR3, R_SPSR3 = 19, 17, 18
R_STUB, R_NEXT, R_LAST = 14, 15, 16
R_GIVEUP1, R_SAVED = 12, 13
STUB_SLOT = {op: 8 * k for k, op in enumerate(AtOp)}
"""Offset of each op's ``AT <op>, X0; RET`` from STUBS."""
TABLE_ENTRY = 16
"""Bytes per probe in the probe table: its VA, its index | stub offset << 32."""
EL3_REGS = tuple(r.name for r in sysregs.TABLE if r.regime in ("EL3", "SS2", "EL3ctl"))
"""Written at EL3 (segment E3): their encodings are UNDEFINED at EL2."""


class Asm:
    """Words at offsets from the harness base, with labels and branch fixups."""

    def __init__(self, origin: int) -> None:
        self.origin = origin
        self.words: list[int] = []
        self.labels: dict[str, int] = {}
        self._fixups: list[tuple[int, str, Callable[[int], int]]] = []

    @property
    def here(self) -> int:
        return self.origin + 4 * len(self.words)

    def emit(self, *words: int) -> None:
        self.words.extend(words)

    def pad_to(self, addr: int) -> None:
        """NOPs up to ``addr`` (nothing when already there or beyond)."""
        self.words.extend([isa.NOP] * max(0, (addr - self.here + 3) // 4))

    def label(self, name: str) -> None:
        self.labels[name] = self.here

    def branch(self, name: str, encode: Callable[[int], int] = isa.b) -> None:
        """A PC-relative branch to a label, resolved in :meth:`resolve`."""
        self._fixups.append((len(self.words), name, encode))
        self.words.append(0)

    def mov(self, reg: int, value: int) -> None:
        self.emit(*isa.mov_imm(reg, value))

    def resolve(self) -> bytes:
        self.settle()
        if self._fixups:
            raise KeyError(f"labels never placed: {sorted({n for _, n, _ in self._fixups})}")
        return struct.pack(f"<{len(self.words)}I", *self.words)

    def settle(self) -> None:
        """Resolve the branches to the labels placed so far (the others wait
        for :meth:`resolve`)."""
        waiting = []
        for i, name, encode in self._fixups:
            if name in self.labels:
                self.words[i] = encode(self.labels[name] - (self.origin + 4 * i))
            else:
                waiting.append((i, name, encode))
        self._fixups = waiting

    def copy(self) -> Asm:
        """An assembler that goes on from where this one is."""
        out = Asm(self.origin)
        out.words, out.labels, out._fixups = [*self.words], {**self.labels}, [*self._fixups]
        return out


@dataclass(frozen=True)
class Group:
    """Consecutive probes run at one EL with one PSTATE.PAN value in one
    Security state (at EL3: the SCR_EL3.NS their AT runs with)."""

    el: int
    pan: bool
    indices: tuple[int, ...]
    stored: int = 0
    """The VA of the NOP after the loop's store of a probe's PAR: where
    step mode stops after each probe."""
    space: SecurityState = SecurityState.NONSECURE


@dataclass(frozen=True)
class Program:
    """One generated program and what the driver needs to run it."""

    code: bytes
    """Bytes to write at HARNESS_PA (vectors, handlers, program)."""
    nprobes: int
    el2_base: int
    el1_base: int
    entry: int
    mmu_stop: int
    resume: int
    end: int
    groups: tuple[Group, ...]
    stop: int = 0
    """The address where the program stops when done: the same for every
    program of one EL2 regime VA (HALT at el2_base, with the EL2 MMU just
    turned off), or at HARNESS_PA when the program started at EL3 (its MMU
    off); ``end`` with ``exit_store``."""
    table: bytes = b""
    """The probe table (batch mode), written at :attr:`table_offset` of the
    data half."""

    @property
    def data_size(self) -> int:
        """Bytes of results (PAR slots and exception records): what is read
        back; the probe table follows them."""
        return 8 * self.nprobes + RECORD * (self.nprobes + 1)

    @property
    def records_offset(self) -> int:
        return 8 * self.nprobes

    @property
    def table_offset(self) -> int:
        return self.data_size

    def initial_data(self) -> bytes:
        """The data half as the program starts: PAR slots, records, table."""
        return _SENTINELS[: 8 * self.nprobes] + bytes(RECORD * (self.nprobes + 1)) + self.table


def el2_regime(sysregs: Mapping[str, int], features: Features = ALL) -> str:
    """The EL2 translation regime: EL2&0 when HCR_EL2.E2H = 1, else EL2
    (E2H is RES0 without FEAT_VHE: D24.2 HCR_EL2)."""
    return "EL20" if features.vh and sysregs.get("HCR_EL2", 0) >> 34 & 1 else "EL2"


def groups_of(probes: Sequence[Probe]) -> list[Group]:
    """Probes grouped by (EL, PAN, Security state), in order of first appearance."""
    order: dict[tuple[int, bool, SecurityState], list[int]] = {}
    for i, p in enumerate(probes):
        order.setdefault((p.el, p.pan, p.space), []).append(i)
    return [Group(el, pan, tuple(ix), space=ss) for (el, pan, ss), ix in order.items()]


def _vectors(a: Asm, handler: str) -> None:
    """16 entries of 0x80 bytes: X27 = slot number, branch to the handler."""
    base = a.here
    for slot in range(16):
        a.pad_to(base + slot * 0x80)
        a.emit(isa.movz(R_T2, slot))
        a.branch(handler)


def _handler(a: Asm, el: int, records: int, give_up: Callable[[Asm], None]) -> None:
    """Record ESR/ELR/FAR of an unexpected exception in the probe's slot,
    resume after the faulting instruction (ELR + 4). At EL2 an HVC from EL1
    is the end of an EL1 group, at EL3 an SMC from EL2 asks for EL3: branch
    to X24."""
    esr, elr, far = (f"ESR_EL{el}", f"ELR_EL{el}", f"FAR_EL{el}")
    a.label(f"handler{el}")
    a.emit(isa.mrs(R_T0, esr))
    if el in (2, 3):
        a.emit(isa.ubfx(R_T1, R_T0, 26, 6), isa.cmp_imm(R_T1, EC_HVC64 if el == 2 else EC_SMC64))
        a.branch(f"record{el}", lambda off: isa.b_cond("NE", off))
        a.emit(isa.cmp_imm(R_T2, VECTOR_LOWER_SYNC))
        a.branch(f"record{el}", lambda off: isa.b_cond("NE", off))
        a.emit(isa.br(R_CONT))
        a.label(f"record{el}")
    a.emit(isa.add_imm(R_COUNT, R_COUNT, 1), isa.cmp_imm(R_COUNT, MAX_EXCEPTIONS))
    a.branch(f"giveup{el}", lambda off: isa.b_cond("HI", off))
    a.emit(
        isa.add_lsl(R_T1, records, R_IDX, 5),
        isa.str_imm(R_T0, R_T1, 8),
        isa.movz(R_T0, 1 | el << 8),
        isa.add_lsl(R_T0, R_T0, R_T2, 16),
        isa.str_imm(R_T0, R_T1, 0),
        isa.mrs(R_T0, elr),
        isa.str_imm(R_T0, R_T1, 16),
        isa.mrs(R_T0, far),
        isa.str_imm(R_T0, R_T1, 24),
        isa.mrs(R_T0, elr),
        isa.add_imm(R_T0, R_T0, 4),
        isa.msr(elr, R_T0),
        isa.ERET,
    )
    a.label(f"giveup{el}")
    give_up(a)


def _probe_loop(a: Asm, code_base: int, table: int, start: int, count: int) -> int:
    """Run entries ``start`` to ``start + count`` of the probe table (at VA
    ``table``): per entry X0 = VA, X21 = index, BLR to the op's stub, then
    PAR_EL1 to the index's slot (X20). The ISB makes the AT's PAR_EL1 visible
    to the MRS (context synchronization, D24.2 PAR_EL1). The store is
    followed by a NOP, where step mode stops (a breakpoint) and which it
    resumes after (a jump, so gdb need not step over its breakpoint); returns
    its VA at ``code_base`` (Group.stored)."""
    a.mov(R_STUB, code_base + STUBS)
    a.mov(R_NEXT, table + TABLE_ENTRY * start)
    a.mov(R_LAST, table + TABLE_ENTRY * (start + count))
    loop = a.here
    a.emit(
        isa.ldp_post(R_VA, R_PAR, R_NEXT, TABLE_ENTRY),
        isa.ubfx(R_IDX, R_PAR, 0, 32),
        isa.ubfx(R_PAR, R_PAR, 32, 32),
        isa.add_lsl(R_PAR, R_STUB, R_PAR, 0),
        isa.blr(R_PAR),
        isa.ISB,
        isa.mrs(R_PAR, "PAR_EL1"),
        isa.str_reg(R_PAR, R_RES, R_IDX),
    )
    stored = code_base + a.here
    a.emit(isa.NOP, isa.cmp_reg(R_NEXT, R_LAST))
    a.emit(isa.b_cond("LO", loop - a.here))
    return stored


def probe_table(probes: Sequence[Probe], groups: Sequence[Group]) -> bytes:
    """The probe table: group after group, per probe its VA and its index |
    its stub's offset << 32."""
    slot = {op._name_: off << 32 for op, off in STUB_SLOT.items()}  # str keys hash in C
    words: list[int] = []
    for g in groups:
        for i in g.indices:
            p = probes[i]
            words += (p.va, i | slot[p.op._name_])
    return struct.pack(f"<{len(words)}Q", *words)


def el12_name(name: str) -> str:
    """The ``*_EL12`` alias of an EL1 register where it has one, else ``name``.

    With HCR_EL2.E2H = 1 an MSR at EL2 to a ``*_EL1`` name reaches the EL2
    register; the EL1 register is reached through its ``*_EL12`` name
    (Arm ARM D5.8.4 "Virtualization Host Extensions", register redirection).
    """
    alias = name[: -len("_EL1")] + "_EL12" if name.endswith("_EL1") else name
    return alias if alias in isa.SYSREGS else name


def assemble(
    setup: MachineSetup,
    probes: Sequence[Probe] | None = None,
    *,
    el1_via_el12: bool = False,
    exit_store: int | None = None,
    features: Features = ALL,
    scr_el3: int | None = None,
) -> Program:
    """The program for ``setup`` (or a slice of its probes).

    Two options serve targets nobody can stop at a breakpoint (both off by
    default, leaving the program as described above):

    ``el1_via_el12``: write the EL1 registers through their ``*_EL12`` names,
    for an EL2 whose HCR_EL2.E2H is fixed at 1 (no FEAT_E2H0).

    ``exit_store``: at ``end``, turn the EL2 stage 1 off (SCTLR_EL2 = its
    RES1 bits) and store zero to this physical address, so that a target
    which traps the store learns the program is done. Only valid when the
    harness runs at VA = PA in the EL2 regime (no ``code_va`` for it): the
    instruction after the MSR is fetched with the MMU off.

    ``scr_el3``: the CPU starts at EL3; the program starts there (segment
    E3), runs the lower ELs with this SCR_EL3 and ends there.

    ``features``: what the CPU implements. Only the registers it has are
    written (xcheck.sysregs; the others' encodings are UNDEFINED), and
    PSTATE.PAN is touched only with FEAT_PAN.
    """
    probes = setup.probes if probes is None else probes
    if len(probes) > MAX_BATCH:
        raise ValueError(f"at most {MAX_BATCH} probes per program")
    if scr_el3 is not None and exit_store is not None:
        raise ValueError("exit_store is for a target without EL3")
    groups = groups_of(probes)
    if any(g.el == 3 or g.space is not SecurityState.NONSECURE for g in groups) \
            and scr_el3 is None:
        raise ValueError("probes at EL3, or in the Secure or Realm state, need a CPU that "
                         "starts at EL3")
    if setup.code_va.get("EL3", HARNESS_PA) != HARNESS_PA:
        raise ValueError("the EL3 regime must map the harness at VA = PA")
    if not features.has("PAN") and any(g.pan for g in groups):
        raise ValueError("probes with PSTATE.PAN = 1 need FEAT_PAN")
    key = (tuple(setup.sysregs.items()), tuple(setup.code_va.items()),
           tuple((replace(g, indices=()), len(g.indices)) for g in groups),
           el1_via_el12, exit_store, features, scr_el3)
    program = _CACHE.get(key)
    if program is None:
        if len(_CACHE) >= CACHE_SIZE:
            _CACHE.clear()
        program = _CACHE[key] = _generate(
            setup.sysregs, setup.code_va, groups, len(probes),
            el1_via_el12=el1_via_el12, exit_store=exit_store, features=features,
            scr_el3=scr_el3)
    return replace(
        program,
        groups=tuple(replace(c, indices=g.indices)
                     for c, g in zip(program.groups, groups, strict=True)),
        table=probe_table(probes, groups),
    )


_CACHE: dict[object, Program] = {}
CACHE_SIZE = 64
"""Programs kept by shape (registers, code VAs, groups and their sizes,
options): a setup run again, or split into batches of one size, is not
generated again."""


def _generate(
    sysreg_values: Mapping[str, int], code_va: Mapping[str, int], groups: Sequence[Group],
    n: int, *, el1_via_el12: bool, exit_store: int | None, features: Features,
    scr_el3: int | None,
) -> Program:
    """The program for ``n`` probes in ``groups`` (see :func:`assemble`);
    the probes themselves are in the table."""
    regs = dict(sysreg_values)
    el2_base = code_va.get(el2_regime(regs, features), HARNESS_PA)
    exists = _implemented(features)
    el1_base = code_va.get("EL10", HARNESS_PA)
    rec = 8 * n
    table = rec + RECORD * (n + 1)
    a = _fixed(scr_el3 is not None).copy()
    if scr_el3 is not None:
        # Segment E3: EL3, MMU off, physical addresses.
        _segment_start(a, 3, n, R_EXC3, HARNESS_DATA_PA + rec)
        a.mov(R_PAR, scr_el3)
        a.emit(isa.msr("SCR_EL3", R_PAR))
        a.mov(R_PAR, el3.CPTR_EL3_NO_TRAPS)
        a.emit(isa.msr("CPTR_EL3", R_PAR))
        a.mov(R_PAR, SCTLR_EL2_OFF)
        a.emit(isa.msr("SCTLR_EL2", R_PAR), isa.ISB)
        for name in EL3_REGS:
            if name in exists and name not in ("SCTLR_EL3", "SCR_EL3"):
                a.mov(R_PAR, regs.get(name, 0))
                a.emit(isa.msr(name, R_PAR))
        a.emit(isa.dsb("SY"), isa.tlbi("ALLE3"), isa.dsb("SY"), isa.ISB)
        if "GPCCR_EL3" in exists:
            # GPT information may be cached in TLBs: TLBI PAALL (D9.8)
            a.emit(isa.tlbi("PAALL"), isa.dsb("SY"), isa.ISB)
        if "SCTLR_EL3" in exists:
            # With the EL3 MMU on, the next fetch is at the same VA: the EL3
            # regime maps the harness at VA = PA (checked above).
            a.mov(R_PAR, regs.get("SCTLR_EL3", SCTLR_EL3_OFF))
            a.emit(isa.msr("SCTLR_EL3", R_PAR), isa.ISB)
        a.mov(R_PAR, el3.SPSR_EL2H)
        a.emit(isa.msr("SPSR_EL3", R_PAR))
        entry_at = len(a.words)
        a.emit(*isa.mov_imm(R_PAR, PLACEHOLDER))
        a.emit(isa.msr("ELR_EL3", R_PAR), isa.ERET)

    # Segment A: EL2, MMU off, physical addresses.
    _segment_start(a, 2, n, R_EXC2, HARNESS_DATA_PA + rec)
    a.mov(R_PAR, HCR_RESET)
    a.emit(isa.msr("HCR_EL2", R_PAR), isa.ISB)
    late = _late(features)
    extra = [r for r in regs if r not in TRANSLATION_SYSREGS]
    def el1_reg(name: str) -> str:
        return el12_name(name) if el1_via_el12 else name

    def value(name: str) -> int:
        reg = sysregs.BY_NAME.get(name)
        v = regs.get(name, 0)
        return v if reg is None else reg.value_for(v, features.has)

    for name in (*(r for r in EL1_FIRST if r in exists), *extra):
        a.mov(R_PAR, value(name))
        a.emit(isa.msr(el1_reg(name), R_PAR))
    a.mov(R_PAR, el1_base + VEC_EL1)
    a.emit(isa.msr(el1_reg("VBAR_EL1"), R_PAR), isa.ISB)
    a.mov(R_PAR, regs.get("HCR_EL2", HCR_RESET))
    a.emit(isa.msr("HCR_EL2", R_PAR), isa.ISB)
    for name in late:
        a.mov(R_PAR, value(name))
        a.emit(isa.msr(name, R_PAR))
    a.emit(isa.dsb("SY"), isa.tlbi("ALLE2"), isa.tlbi("ALLE1"), isa.dsb("SY"), isa.ISB)
    a.mov(R_PAR, el2_base + VEC_EL2)
    a.emit(isa.msr("VBAR_EL2", R_PAR))
    a.mov(R_PAR, regs.get("SCTLR_EL2", SCTLR_EL2_OFF))
    if el2_base == HARNESS_PA:
        a.emit(isa.msr("SCTLR_EL2", R_PAR))
        a.label("mmu_stop")
        a.branch("resume")
    else:
        # The next fetch already uses the new regime (a system register
        # write ends QEMU's translation block), so the driver stops right
        # after MMU_ON's MSR, at the same address for every program. The
        # branch after it is never reached: it keeps segment B where the
        # MSR in place would put it (the addresses in reports unchanged).
        a.emit(isa.b(MMU_ON - a.here))
        a.branch("resume")
        a.labels["mmu_stop"] = MMU_ON + 4

    # Segment B: EL2 regime VAs from here on.
    a.label("resume")
    a.emit(isa.ISB)
    a.mov(R_EXC2, el2_base + HARNESS_CODE_SIZE + rec)
    a.mov(R_EXC1, el1_base + HARNESS_CODE_SIZE + rec)
    a.mov(R_COUNT, 0)
    giveup_at = len(a.words)
    a.emit(*isa.mov_imm(R_GIVEUP, PLACEHOLDER))
    placed: list[Group] = []
    start = 0
    for gi, g in enumerate(groups):
        # until its first probe, a group's exceptions are the harness's own
        # (the setup record), not the previous group's last probe's
        a.mov(R_IDX, n)
        if g.el != 3 and g.space in (SecurityState.SECURE, SecurityState.REALM):
            assert scr_el3 is not None
            stored = _lower_group(
                a, gi, g, el1_base if g.el == 1 else el2_base, el2_base,
                table + TABLE_ENTRY * start, scr_el3,
                _group_scr(scr_el3, g.space, regs, features))
        elif g.el == 2:
            if features.has("PAN"):
                a.emit(isa.msr_pan(int(g.pan)))
            a.mov(R_RES, el2_base + HARNESS_CODE_SIZE)
            stored = _probe_loop(a, el2_base, el2_base + HARNESS_CODE_SIZE + table, start,
                                 len(g.indices))
        elif g.el == 1:
            cont = f"cont{gi}"
            # X24 = the EL2 VA of the continuation, patched after layout
            cont_at = len(a.words)
            a.emit(*isa.mov_imm(R_CONT, PLACEHOLDER))
            a.mov(R_PAR, SPSR_EL1H | int(g.pan) << PSTATE_PAN_BIT)
            a.emit(isa.msr("SPSR_EL2", R_PAR))
            el1_at = len(a.words)
            a.emit(*isa.mov_imm(R_PAR, PLACEHOLDER))
            a.emit(isa.msr("ELR_EL2", R_PAR))
            a.mov(R_RES, el1_base + HARNESS_CODE_SIZE)
            giveup1_at = len(a.words)
            a.emit(*isa.mov_imm(R_GIVEUP1, PLACEHOLDER))
            a.emit(isa.ERET)
            el1_start = a.here
            stored = _probe_loop(a, el1_base, el1_base + HARNESS_CODE_SIZE + table, start,
                                 len(g.indices))
            _patch_mov(a, giveup1_at, R_GIVEUP1, el1_base + a.here)
            a.emit(isa.hvc(0))
            a.label(cont)
            _patch_mov(a, cont_at, R_CONT, el2_base + a.labels[cont])
            _patch_mov(a, el1_at, R_PAR, el1_base + el1_start)
        elif g.el == 3:
            assert scr_el3 is not None
            stored = _el3_group(a, gi, g, HARNESS_DATA_PA + table + TABLE_ENTRY * start,
                                scr_el3, features, _group_scr(scr_el3, g.space, regs, features))
        else:
            raise ValueError(f"probes run at EL1, EL2 or EL3, not EL{g.el}")
        placed.append(Group(g.el, g.pan, g.indices, stored, g.space))
        start += len(g.indices)
    a.label("end")
    if scr_el3 is not None:
        end3_at = len(a.words)
        a.emit(*isa.mov_imm(R_CONT, PLACEHOLDER))
        a.emit(isa.smc(0))
        a.label("end3")
        a.mov(R_PAR, SCTLR_EL3_OFF)
        a.emit(isa.msr("SCTLR_EL3", R_PAR), isa.ISB)
        if "GPCCR_EL3" in exists:
            # granule protection off again: the next setup rewrites the GPT's memory
            a.mov(R_PAR, 0)
            a.emit(isa.msr("GPCCR_EL3", R_PAR), isa.ISB, isa.tlbi("PAALL"), isa.dsb("SY"),
                   isa.ISB)
        _patch_mov(a, end3_at, R_CONT, HARNESS_PA + a.labels["end3"])
        _patch_mov(a, entry_at, R_PAR, HARNESS_PA + a.labels["entry"])
        a.emit(isa.b(HALT - a.here))  # EL3, MMU off: VA = PA
        stop = HARNESS_PA + HALT
    elif exit_store is not None:
        a.mov(R_PAR, SCTLR_EL2_OFF)
        a.emit(isa.msr("SCTLR_EL2", R_PAR), isa.ISB)
        a.mov(R_PAR, exit_store)
        a.emit(isa.str_imm(isa.XZR, R_PAR, 0), isa.dsb("SY"), isa.b(0))
        stop = el2_base + a.labels["end"]
    else:
        # The teardown turns the EL2 MMU off; the PC after it, el2_base +
        # HALT, is then a PA, where the driver stops before any fetch.
        a.mov(R_PAR, SCTLR_EL2_OFF)
        a.emit(isa.b(TEARDOWN - a.here))
        stop = el2_base + HALT
    _patch_mov(a, giveup_at, R_GIVEUP, el2_base + a.labels["end"])
    code = a.resolve()
    if len(code) > HARNESS_CODE_SIZE:
        raise ValueError("program larger than the harness code region")
    return Program(
        code=code,
        nprobes=n,
        el2_base=el2_base,
        el1_base=el1_base,
        entry=a.labels["entry3" if scr_el3 is not None else "entry"],
        mmu_stop=a.labels["mmu_stop"],
        resume=a.labels["resume"],
        end=a.labels["end"],
        groups=tuple(placed),
        stop=stop,
    )


@cache
def _implemented(features: Features) -> frozenset[str]:
    """The registers ``features`` has (xcheck.sysregs.implemented)."""
    return frozenset(sysregs.implemented(features.has))


@cache
def _late(features: Features) -> tuple[str, ...]:
    """The translation registers segment A writes after HCR_EL2 (all but
    the EL1 ones, SCTLR_EL2, HCR_EL2 and EL3's), those ``features`` has."""
    exists = _implemented(features)
    return tuple(
        r for r in TRANSLATION_SYSREGS
        if r not in EL1_FIRST and r not in ("SCTLR_EL2", "HCR_EL2", *EL3_REGS) and r in exists
    )


@cache
def _fixed(el3: bool) -> Asm:
    """The part of every program up to PROGRAM, the same for every setup
    (but for the EL3 vectors and handler, on a CPU that starts at EL3):
    vectors, handlers, AT stubs, teardown and loader. The EL3 handler's
    branch to ``end3`` is left for the program to resolve."""
    a = Asm(0)
    _vectors(a, "handler2")
    a.pad_to(VEC_EL1)
    _vectors(a, "handler1")
    a.pad_to(HANDLERS)
    _handler(a, 2, R_EXC2, lambda a: a.emit(isa.br(R_GIVEUP)))
    _handler(a, 1, R_EXC1, lambda a: a.emit(isa.br(R_GIVEUP1)))
    if el3:
        _handler(a, 3, R_EXC3, lambda a: a.branch("end3"))
    if a.here > STUBS:
        raise AssertionError("the handlers overlap the AT stubs")
    a.pad_to(STUBS)
    for op in AtOp:  # at STUBS + STUB_SLOT[op]
        a.emit(isa.at(op, R_VA), isa.RET)
    if a.here > TEARDOWN:
        raise AssertionError("the AT stubs overlap the teardown instruction")
    a.pad_to(MMU_ON)
    a.emit(isa.msr("SCTLR_EL2", R_PAR), isa.b(0))
    if a.here > TEARDOWN:
        raise AssertionError("MMU_ON overlaps the teardown instruction")
    a.pad_to(TEARDOWN)
    a.emit(isa.msr("SCTLR_EL2", R_PAR), isa.ISB, isa.b(0))
    a.pad_to(LOADER)
    _loader(a)
    a.pad_to(VEC_EL3)
    if el3:
        _vectors(a, "handler3")
    a.pad_to(PROGRAM)
    a.settle()
    return a


def _loader(a: Asm) -> None:
    """The loader, at PAs with the MMU off: per entry of the load list
    (X1) copy its bytes, 16 at a time, to its address, then synchronize
    the instruction stream with what was written (DSB, IC IALLU, DSB, ISB:
    B2.4.4 "Concurrent modification and execution of instructions") and
    branch to the list's entry (X2)."""
    a.mov(1, HARNESS_DATA_PA + LOAD_LIST)
    a.emit(isa.ldp_post(2, 3, 1, 16))
    entry = a.here
    a.emit(isa.ldp_post(3, 4, 1, 16), isa.cmp_imm(4, 0))
    a.branch("loaded", lambda off: isa.b_cond("EQ", off))
    a.emit(isa.add_lsl(4, 3, 4, 0))
    copy = a.here
    a.emit(isa.ldp_post(5, 6, 1, 16), isa.str_imm(5, 3, 0), isa.str_imm(6, 3, 8),
           isa.add_imm(3, 3, 16), isa.cmp_reg(3, 4))
    a.emit(isa.b_cond("LO", copy - a.here))
    a.emit(isa.b(entry - a.here))
    a.label("loaded")
    a.emit(isa.dsb("SY"), isa.IC_IALLU, isa.dsb("SY"), isa.ISB, isa.br(2))
    if a.here > VEC_EL3:
        raise AssertionError("the loader overlaps the EL3 vectors")


def load_list(entry: int, blocks: Sequence[tuple[int, bytes]]) -> bytes | None:
    """The loader's input, written at LOAD_LIST of the data half: the PA
    to branch to, then per block its PA, its size and its bytes, and a zero
    size. The harness's code is written this way, by the guest, so that
    QEMU drops what it translated there (a write into the shared RAM goes
    unseen) without gdb's MI hex. None when a block is not 16-byte aligned
    in address and size, or the list does not fit."""
    if any(addr % 16 or len(data) % 16 for addr, data in blocks):
        return None
    parts = [struct.pack("<2Q", entry, 0)]
    for addr, data in blocks:
        parts += (struct.pack("<2Q", addr, len(data)), data)
    parts.append(bytes(16))
    out = b"".join(parts)
    return out if len(out) <= HARNESS_SIZE - HARNESS_CODE_SIZE - LOAD_LIST else None


def _segment_start(a: Asm, el: int, n: int, records: int, setup_record: int) -> None:
    """The start of segment E3 (``entry3``) or A (``entry``), MMU off: the
    setup code's exceptions go to the record after the probes' (X21 = n), no
    exception counted yet, and VBAR_ELx at xcheck's vectors for that EL."""
    a.label("entry3" if el == 3 else "entry")
    a.mov(R_IDX, n)
    a.mov(R_COUNT, 0)
    a.mov(records, setup_record)
    a.mov(R_PAR, HARNESS_PA + (VEC_EL3 if el == 3 else VEC_EL2))
    a.emit(isa.msr(f"VBAR_EL{el}", R_PAR))


def _group_scr(scr_el3: int, space: SecurityState, regs: Mapping[str, int],
               features: Features) -> int:
    """SCR_EL3 for the probes at EL3 in ``space`` (D24.2 SCR_EL3, {NSE, NS}):
    Secure is NS = 0, with EEL2 as the setup gives it (Secure EL2 enabled; the
    bit is RES0 without FEAT_SEL2); Realm is {NSE, NS} = {1, 1} (FEAT_RME);
    Non-secure and Root keep the harness's own (NS = 1: AT S1E3* translate
    the EL3 regime whatever NS says)."""
    if space is SecurityState.SECURE:
        eel2 = regs.get("SCR_EL3", 0) & sysregs.SCR_EL3_EEL2 if features.sel2 else 0
        return (scr_el3 & ~el3.SCR_NS) | eel2
    if space is SecurityState.REALM:
        return scr_el3 | el3.SCR_NSE | el3.SCR_NS
    return scr_el3


def _smc_entry(a: Asm, gi: int) -> None:
    """How segment B (at EL2) reaches a group run from EL3: X24 = the group's
    EL3 address (VA = PA, just after the SMC's branch), SMC (EL3's handler
    branches to X24), and the branch over the group that the group's ERET
    returns to."""
    x24_at = len(a.words)
    a.emit(*isa.mov_imm(R_CONT, PLACEHOLDER), isa.smc(0))
    a.branch(f"after{gi}")
    _patch_mov(a, x24_at, R_CONT, HARNESS_PA + a.here)


def _enter_state(a: Asm, group_scr: int) -> None:
    """At EL3: SCR_EL3 = ``group_scr`` with an ISB (a write to SCR_EL3 is
    context-synchronized by ISB), then invalidate the EL1&0 TLB entries of
    the Security state SCR_EL3.{NSE, NS} selects (TLBI ALLE1) and, where EL2
    is enabled in it (Secure EL2, Realm), its EL2 and EL2&0 ones (TLBI
    ALLE2): entries an earlier setup may have left."""
    a.mov(R_PAR, group_scr)
    a.emit(isa.msr("SCR_EL3", R_PAR), isa.ISB, isa.dsb("SY"), isa.tlbi("ALLE1"))
    if group_scr & (sysregs.SCR_EL3_EEL2 | el3.SCR_NSE):
        a.emit(isa.tlbi("ALLE2"))
    a.emit(isa.dsb("SY"), isa.ISB)


def _el3_group(a: Asm, gi: int, g: Group, table: int, scr_el3: int,
               features: Features, group_scr: int) -> int:
    """An EL3 group, inline in segment B: EL2 sets X24 to the group's (EL3,
    VA = PA) address and executes SMC; the group saves ELR_EL3/SPSR_EL3 (the
    handler may overwrite them), sets PSTATE.PAN and, for Secure or Realm
    probes, SCR_EL3 = ``group_scr`` (_group_scr), an ISB so that the AT
    sees it (a write to SCR_EL3 is context-synchronized by ISB), then
    invalidates the EL1&0 and EL2 (and EL2&0) TLB entries of that Security
    state (TLBI ALLE1/ALLE2 at EL3 act on the state SCR_EL3.{NSE, NS}
    selects) an earlier setup may have left; runs its probes (from ``table``), restores
    SCR_EL3 (and ISB) and returns by ERET to the instruction after the SMC,
    which branches over the group. Returns the loop's Group.stored."""
    _smc_entry(a, gi)
    a.emit(isa.mrs(R_ELR3, "ELR_EL3"), isa.mrs(R_SPSR3, "SPSR_EL3"))
    if features.has("PAN"):
        a.emit(isa.msr_pan(int(g.pan)))
    switch = group_scr != scr_el3
    if switch:
        _enter_state(a, group_scr)
    a.mov(R_RES, HARNESS_DATA_PA)
    stored = _probe_loop(a, HARNESS_PA, table, 0, len(g.indices))
    if switch:
        a.mov(R_PAR, scr_el3)
        a.emit(isa.msr("SCR_EL3", R_PAR), isa.ISB)
    a.emit(isa.msr("ELR_EL3", R_ELR3), isa.msr("SPSR_EL3", R_SPSR3), isa.ERET)
    a.label(f"after{gi}")
    return stored


def _lower_group(a: Asm, gi: int, g: Group, base: int, el2_base: int, table: int,
                 scr_el3: int, group_scr: int) -> int:
    """A group at EL1 or EL2 of the Secure or Realm state, inline in segment
    B. EL2 sets X24 to the group's EL3 entry and executes SMC; at EL3 (VA =
    PA) the group saves ELR_EL3/SPSR_EL3, writes SCR_EL3 = ``group_scr``
    ({NSE, NS, EEL2} of the state, _group_scr) with ISB, invalidates that
    state's EL1&0 (and, where EL2 is enabled in it, EL2) TLB entries as the
    EL3 group does, and enters the group's EL by ERET (SPSR_EL3.M = EL1h or
    EL2h, SPSR_EL3.PAN from the probes; ELR_EL3 the loop at the harness's
    VA ``base``, the same VA as in the Non-secure regime: the EL1 and EL2
    registers, and so the tables, are shared between the Security states).

    The probes run there as in the Non-secure state: the vectors are the
    harness's (VBAR_EL1 and VBAR_EL2 are not banked by Security state), and
    the exception records are the same slots, reached at the same VAs. The
    group comes back by SMC (HVC is UNDEFINED at Secure EL1 without Secure
    EL2, C6.2 HVC), which EL3's handler turns into a branch to X24; should
    the handler of EL1 (X12) or EL2 (X29) give up, it branches to that same
    SMC. At EL3 again the group restores SCR_EL3 (ISB), X29, ELR_EL3 and
    SPSR_EL3 and returns by ERET to the instruction after the first SMC,
    which branches over the group. Returns the loop's Group.stored (at
    ``base``)."""
    _smc_entry(a, gi)
    a.emit(isa.mrs(R_ELR3, "ELR_EL3"), isa.mrs(R_SPSR3, "SPSR_EL3"),
           isa.add_imm(R_SAVED, R_GIVEUP, 0))
    _enter_state(a, group_scr)
    back_at = len(a.words)
    a.emit(*isa.mov_imm(R_CONT, PLACEHOLDER))
    giveup_at = len(a.words)
    a.emit(*isa.mov_imm(R_GIVEUP, PLACEHOLDER), *isa.mov_imm(R_GIVEUP1, PLACEHOLDER))
    spsr = SPSR_EL1H if g.el == 1 else el3.SPSR_EL2H
    a.mov(R_PAR, spsr | int(g.pan) << PSTATE_PAN_BIT)
    a.emit(isa.msr("SPSR_EL3", R_PAR))
    entry_at = len(a.words)
    a.emit(*isa.mov_imm(R_PAR, PLACEHOLDER))
    a.emit(isa.msr("ELR_EL3", R_PAR), isa.ERET)
    _patch_mov(a, entry_at, R_PAR, base + a.here)
    # at EL1 or EL2 of the state, the harness's VAs from here to the SMC
    a.mov(R_RES, base + HARNESS_CODE_SIZE)
    stored = _probe_loop(a, base, base + HARNESS_CODE_SIZE + table, 0, len(g.indices))
    smc = a.here
    a.emit(isa.smc(0))
    _patch_mov(a, giveup_at, R_GIVEUP, el2_base + smc)
    _patch_mov(a, giveup_at + 4, R_GIVEUP1, base + smc)
    _patch_mov(a, back_at, R_CONT, HARNESS_PA + a.here)
    # EL3 again (X24, from the handler of the SMC)
    a.mov(R_PAR, scr_el3)
    a.emit(isa.msr("SCR_EL3", R_PAR), isa.ISB, isa.add_imm(R_GIVEUP, R_SAVED, 0),
           isa.msr("ELR_EL3", R_ELR3), isa.msr("SPSR_EL3", R_SPSR3), isa.ERET)
    a.label(f"after{gi}")
    return stored


def _patch_mov(a: Asm, at: int, reg: int, value: int) -> None:
    """Fill a four-word constant load left at word ``at`` (MOVZ + 3 MOVK)."""
    words = [isa.movz(reg, value & 0xFFFF)] + [
        isa.movk(reg, value >> (16 * hw) & 0xFFFF, hw) for hw in (1, 2, 3)
    ]
    a.words[at : at + 4] = words


def decode_results(
    program: Program, data: bytes
) -> tuple[list[int | TargetException], TargetException | None]:
    """PARs or exceptions per probe, and an exception of the setup code."""
    n = program.nprobes
    out: list[int | TargetException] = list(struct.unpack_from(f"<{n}Q", data, 0))
    rec = program.records_offset
    # A record's first byte is 1 when it was taken (flags bit 0; [7:1] are 0)
    taken = data[rec : rec + RECORD * (n + 1) : RECORD]
    setup_exc = None
    at = taken.find(1)
    while at >= 0:
        flags, esr, elr, far = struct.unpack_from("<4Q", data, rec + RECORD * at)
        exc = TargetException(esr=esr, elr=elr, far=far, el=flags >> 8 & 0xFF)
        if at < n:
            out[at] = exc
        else:
            setup_exc = exc
        at = taken.find(1, at + 1)
    return out, setup_exc
