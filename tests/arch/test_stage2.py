"""Stage 2 translation (Arm ARM DDI 0487, D8.2, J1.1.4 AArch64.S2Translate / S2Walk)."""

from __future__ import annotations

import dataclasses

import pytest
from archtables import AF, MAIR, MAX, SCTLR_ON, TCR_4K_48, Tables, at, regs

from xcheck.arch.par import decode_par
from xcheck.machine import RAM_BASE, AtOp

HCR_VM = (1 << 31) | 1
VTCR_4K_40 = 24 | (0b01 << 6) | (0b010 << 16) | (1 << 31)  # T0SZ=24, SL0=1 (level 1), PS=40
S2_RW = AF | (0b11 << 6) | (0b1111 << 2) | (0b11 << 8)  # S2AP RW, MemAttr Normal WB, IS
IPA = 0x80_4000_0000  # in the second of two concatenated level 1 tables
PA = RAM_BASE + 0x0300_0000


def s2_tables() -> Tables:
    """A 40-bit IPA space starting at level 1 with 2 concatenated tables (D8.2.7)."""
    return Tables(iasize=40, start_level=1, arena=RAM_BASE + 0x0500_0000)


def setup(s2: Tables, **over: int) -> dict[str, int]:
    base = {"HCR_EL2": HCR_VM, "VTCR_EL2": VTCR_4K_40, "VTTBR_EL2": s2.root}
    return regs(**{**base, **over})


def f(par: int) -> tuple[int, int, int]:
    d = decode_par(par)
    assert par & 1, f"expected a fault, got {par:#x}"
    return d["FST"], d["S"], d["PTW"]


def test_s12_with_stage1_off_translates_ipa_through_concatenated_tables() -> None:
    """AT S12E1R, SCTLR_EL1.M == 0: IPA = VA, then stage 2; the start level
    table is 2 concatenated tables (AArch64.S2SLTTEntryAddress)."""
    s2 = s2_tables()
    s2.map(IPA, PA, flags=S2_RW)
    assert s2.index(IPA, 1) >= 512
    r = at(AtOp.S12E1R, IPA | 0x123, setup(s2), s2.image(), el=2)
    assert decode_par(r.par)["PA"] << 12 == PA, r.render()


def test_s12_with_vm_0_is_stage_1_only() -> None:
    """C5.4.3: with HCR_EL2.{DC,VM} == {0,0} AT S12E1R performs stage 1 only."""
    s2 = s2_tables()
    r = at(AtOp.S12E1R, IPA, setup(s2, HCR_EL2=1 << 31), s2.image(), el=2)
    assert decode_par(r.par)["PA"] << 12 == IPA


@pytest.mark.parametrize(("op", "s2ap", "faults"), [
    (AtOp.S12E1R, 0b01, False), (AtOp.S12E1R, 0b10, True), (AtOp.S12E1R, 0b00, True),
    (AtOp.S12E1W, 0b10, False), (AtOp.S12E1W, 0b01, True), (AtOp.S12E0W, 0b01, True),
])
def test_s2ap(op: AtOp, s2ap: int, faults: bool) -> None:
    """AArch64.S2DirectBasePermissions: S2AP[0] read, S2AP[1] write; a
    Permission fault is PAR.S == 1, PTW == 0 at the stage 2 level."""
    s2 = s2_tables()
    s2.map(IPA, PA, flags=(S2_RW & ~(0b11 << 6)) | (s2ap << 6))
    r = at(op, IPA, setup(s2), s2.image(), el=2)
    if faults:
        assert f(r.par) == (0b001111, 1, 0)
    else:
        assert not r.par & 1


def test_stage2_translation_fault_on_output() -> None:
    """An unmapped IPA: Translation fault at the stage 2 level, S=1, PTW=0."""
    s2 = s2_tables()
    s2.map(IPA, PA, flags=S2_RW)
    r = at(AtOp.S12E1R, IPA + 0x20_0000, setup(s2), s2.image(), el=2)
    assert f(r.par) == (0b000110, 1, 0)


def test_ipa_above_t0sz_is_stage2_translation_fault_level_0() -> None:
    """AArch64.IPAIsOutOfRange: IPA[55:iasize] != 0."""
    s2 = s2_tables()
    r = at(AtOp.S12E1R, 1 << 40, setup(s2), s2.image(), el=2)
    assert f(r.par) == (0b000100, 1, 0)


def stage1_on(s1: Tables, s2: Tables, **over: int) -> dict[str, int]:
    base = {"SCTLR_EL1": SCTLR_ON, "TCR_EL1": TCR_4K_48, "TTBR0_EL1": s1.root,
            "MAIR_EL1": MAIR}
    return setup(s2, **{**base, **over})


def two_stages(map_table_ipa: bool = True, table_flags: int = S2_RW) -> tuple[Tables, Tables]:
    """Stage 1 tables whose addresses are IPAs identity-mapped by stage 2."""
    s1 = Tables(arena=RAM_BASE + 0x0400_0000)
    s1.map(0x1000, IPA)
    s2 = Tables(iasize=40, start_level=1, arena=RAM_BASE + 0x0500_0000, words=s1.words)
    if map_table_ipa:
        s2.map(RAM_BASE + 0x0400_0000, RAM_BASE + 0x0400_0000, level=2, flags=table_flags)
    s2.map(IPA, PA, flags=S2_RW)
    return s1, s2


def test_two_stage_translation() -> None:
    """AT S12E1R: stage 1 tables are read through stage 2, then the IPA."""
    s1, s2 = two_stages()
    r = at(AtOp.S12E1R, 0x1000, stage1_on(s1, s2), s2.image(), el=2)
    assert decode_par(r.par)["PA"] << 12 == PA, r.render()
    assert {s.stage for s in r.trace} >= {1, 2}


def test_stage2_fault_on_stage1_walk_sets_ptw() -> None:
    """AArch64.S1Walk: a stage 2 fault translating a stage 1 table address is
    reported with PAR.S == 1, PAR.PTW == 1 and the stage 2 level."""
    s1, s2 = two_stages(map_table_ipa=False)
    r = at(AtOp.S12E1R, 0x1000, stage1_on(s1, s2), s2.image(), el=2)
    assert f(r.par) == (0b000101, 1, 1)
    # AT S1E1R at EL2 also walks stage 1 through stage 2 (EL1&0 with VM == 1)
    r = at(AtOp.S1E1R, 0x1000, stage1_on(s1, s2), s2.image(), el=2)
    assert f(r.par) == (0b000101, 1, 1)


def test_stage2_fault_on_stage1_walk_at_el1_is_an_abort() -> None:
    """AArch64.AT: executed at EL1, a stage 2 fault on the stage 1 walk is
    taken as an exception, not reported in PAR_EL1."""
    s1, s2 = two_stages(map_table_ipa=False)
    r = at(AtOp.S1E1R, 0x1000, stage1_on(s1, s2), s2.image(), el=1)
    assert r.kind == "abort" and r.fault is not None and r.fault.s2fs1walk


def test_stage2_read_permission_applies_to_stage1_walk() -> None:
    """AArch64.S2CheckPermissions: the stage 1 walk is a read at stage 2."""
    s1, s2 = two_stages(table_flags=(S2_RW & ~(0b11 << 6)) | (0b10 << 6))
    r = at(AtOp.S12E1W, 0x1000, stage1_on(s1, s2), s2.image(), el=2)
    assert f(r.par) == (0b001110, 1, 1)


@pytest.mark.parametrize(("ptw", "faults"), [(0, False), (1, True)])
def test_hcr_ptw_device_walk(ptw: int, faults: bool) -> None:
    """HCR_EL2.PTW == 1: a stage 1 walk to stage 2 Device memory is a stage 2
    Permission fault (AArch64.S2CheckPermissions)."""
    s1, s2 = two_stages(table_flags=AF | (0b11 << 6))  # MemAttr 0b0000: Device-nGnRnE
    r = at(AtOp.S12E1R, 0x1000, stage1_on(s1, s2, HCR_EL2=HCR_VM | (ptw << 2)), s2.image(),
           el=2)
    if faults:
        assert f(r.par) == (0b001110, 1, 1)
    else:
        assert not r.par & 1, r.render()


@pytest.mark.parametrize(("vtcr", "fst"), [
    (16 | (0b00 << 6) | (0b101 << 16), 0b000100),  # SL0=0 (level 2) with 48 bits: inconsistent
    (24 | (0b11 << 6) | (0b01 << 14) | (0b010 << 16), 0b000100),  # 64KB SL0=3: invalid
    (24 | (0b10 << 6) | (0b010 << 16), 0b000100),  # 4KB SL0=2 (level 0) needs PAMax >= 44
])
def test_invalid_or_inconsistent_sl0(vtcr: int, fst: int) -> None:
    """AArch64.S2InvalidSL / S2InconsistentSL: stage 2 Translation fault, level 0."""
    s2 = s2_tables()
    feats = dataclasses.replace(MAX, pa_range_bits=40)
    r = at(AtOp.S12E1R, IPA, setup(s2, VTCR_EL2=vtcr), s2.image(), el=2, features=feats)
    assert f(r.par) == (fst, 1, 0)


def test_vttbr_above_ps_is_address_size_fault() -> None:
    """AArch64.S2Walk: the start table address above VTCR_EL2.PS: level 0."""
    s2 = s2_tables()
    r = at(AtOp.S12E1R, IPA, setup(s2, VTTBR_EL2=s2.root | (1 << 42)), s2.image(), el=2)
    assert f(r.par) == (0b000000, 1, 0)


def test_stage2_access_flag() -> None:
    """AArch64.S2Walk: AF == 0 with VTCR_EL2.HA == 0: stage 2 Access flag fault."""
    s2 = s2_tables()
    s2.map(IPA, PA, flags=S2_RW & ~AF)
    assert f(at(AtOp.S12E1R, IPA, setup(s2), s2.image(), el=2).par) == (0b001011, 1, 0)


def test_stage2_output_address_size_comes_before_the_access_flag() -> None:
    """AArch64.S2Walk checks the output address against the PS size
    (AArch64.OAOutOfRange) before it looks at the descriptor's AF: a level 2
    block with AF == 0 beyond the 40-bit PS is an Address size fault at
    level 2; within PS it is the Access flag fault."""
    s2 = s2_tables()
    s2.map(IPA, 1 << 40, level=2, flags=S2_RW & ~AF)
    s2.map(IPA + (2 << 20), PA & ~((2 << 20) - 1), level=2, flags=S2_RW & ~AF)
    image = s2.image()
    assert f(at(AtOp.S12E1R, IPA, setup(s2), image, el=2).par) == (0b000010, 1, 0)
    assert f(at(AtOp.S12E1R, IPA + (2 << 20), setup(s2), image, el=2).par) == (0b001010, 1, 0)


def test_hcr_dc_disables_stage1_and_enables_stage2() -> None:
    """HCR_EL2.DC == 1: SCTLR_EL1.M treated as 0, HCR_EL2.VM treated as 1
    (D24.2 HCR_EL2.DC)."""
    s2 = s2_tables()
    s2.map(IPA, PA, flags=S2_RW)
    sysregs = setup(s2, HCR_EL2=(1 << 31) | (1 << 12), SCTLR_EL1=SCTLR_ON)
    assert decode_par(at(AtOp.S12E1R, IPA, sysregs, s2.image(), el=2).par)["PA"] << 12 == PA
    assert decode_par(at(AtOp.S1E1R, IPA, sysregs, s2.image(), el=2).par)["PA"] << 12 == IPA
