"""FEAT_S2PIE (stage 2 Indirect permissions) and FEAT_ATS1A (AT S1E*A).

Expected values from Arm ARM DDI 0487 M.a: D24.2 S2PIR_EL2 and Table D8-82
(S2BasePerm encodings), D8.4.2.2.1 R_CYQGN (S2BasePerm is
S2PIR_EL2[PIIndex*4+3:PIIndex*4]), AArch64.S2ApplyOutputPerms (PIIndex =
descriptor<54:53,51,6>, S2Dirty = descriptor<7>), AArch64.S2CheckPermissions
(walks need MMURead; reads Read, writes Write; then the software dirty check,
PAR_EL1.DirtyBit), C5.4.7/C5.4.12 (AT S1E1A/S1E2A: UNDEFINED without
FEAT_ATS1A, ATAccess_Any: no stage 1 permission check).
"""

from __future__ import annotations

import dataclasses

import pytest
from archtables import AF, MAX, Tables
from archtables import at as at_max
from test_stage2 import HCR_VM, IPA, PA, S2_RW, f, s2_tables, setup, stage1_on, two_stages

from xcheck.arch.at import AtResult
from xcheck.arch.features import Features
from xcheck.arch.memory import PhysMem
from xcheck.arch.par import decode_par
from xcheck.machine import AtOp

V94 = dataclasses.replace(MAX, s2pie=True, ats1a=True)
"""QEMU's "max" CPU with FEAT_S2PIE and FEAT_ATS1A (as 11.1 has them)."""

S2PIE = 1 << 36
S2_NO_PERMS = S2_RW & ~(0b11 << 6)
# Table D8-82: perm -> (data read, data write, MMURead/MMUWrite by a walk)
READ = {0b0010, 0b0011, 0b0110, 0b0111, 0b1000, 0b1001, 0b1010, 0b1011, 0b1100, 0b1101,
        0b1110, 0b1111}
WRITE = {0b0100, 0b1100, 0b1101, 0b1110, 0b1111}
PERM_FAULT_L3 = 0b001111


def at(op: AtOp, va: int, sysregs: dict[str, int], mem: PhysMem, el: int = 1,
       features: Features = V94) -> AtResult:
    return at_max(op, va, sysregs, mem, el=el, features=features)


def pi_bits(index: int) -> int:
    """PIIndex into descriptor bits 54, 53, 51, 6 (AArch64.S2ApplyOutputPerms)."""
    return ((index >> 3) & 1) << 54 | ((index >> 2) & 1) << 53 | ((index >> 1) & 1) << 51 \
        | (index & 1) << 6


def with_s2pie(s2: Tables, s2pir: int, **over: int) -> dict[str, int]:
    base = setup(s2, **over)
    return {**base, "VTCR_EL2": base["VTCR_EL2"] | S2PIE, "S2PIR_EL2": s2pir}


@pytest.mark.parametrize("perm", range(16))
@pytest.mark.parametrize("op", [AtOp.S12E1R, AtOp.S12E1W, AtOp.S12E0R, AtOp.S12E0W])
def test_every_s2pir_encoding(perm: int, op: AtOp) -> None:
    """Every S2PIR_EL2.Perm encoding at PIIndex 5, S2Dirty == 1: reads need
    Read, writes Write (Table D8-82; EL0 and EL1 alike, execute ignored)."""
    s2 = s2_tables()
    s2.map(IPA, PA, flags=S2_NO_PERMS | pi_bits(5) | 1 << 7)
    r = at(op, IPA, with_s2pie(s2, perm << 20), s2.image(), el=2)
    allowed = perm in (WRITE if op.is_write else READ)
    if allowed:
        assert decode_par(r.par)["PA"] << 12 == PA, r.render()
    else:
        assert f(r.par) == (PERM_FAULT_L3, 1, 0), r.render()
        assert not r.par >> 15 & 1


@pytest.mark.parametrize(("hd", "faults"), [(0, True), (1, False)])
def test_software_dirty_state(hd: int, faults: bool) -> None:
    """A write to an RW location with S2Dirty == 0: a Permission fault with
    PAR_EL1.DirtyBit when VTCR_EL2.HD == 0 (dirty state managed by software)."""
    s2 = s2_tables()
    s2.map(IPA, PA, flags=S2_NO_PERMS | pi_bits(0))
    sysregs = with_s2pie(s2, 0b1100)
    sysregs["VTCR_EL2"] |= hd << 22 | 1 << 21
    r = at(AtOp.S12E1W, IPA, sysregs, s2.image(), el=2)
    assert bool(r.par & 1) == faults, r.render()
    if faults:
        assert f(r.par) == (PERM_FAULT_L3, 1, 0) and r.par >> 15 & 1
    assert not at(AtOp.S12E1R, IPA, sysregs, s2.image(), el=2).par & 1


def test_s2ap_bits_are_the_index_not_permissions() -> None:
    """With S2PIE, descriptor bits 7:6 are S2Dirty and PIIndex[0], not S2AP:
    S2AP == 0b00 at PIIndex 0 with Perm0 == RW reads."""
    s2 = s2_tables()
    s2.map(IPA, PA, flags=S2_NO_PERMS)
    assert not at(AtOp.S12E1R, IPA, with_s2pie(s2, 0b1100), s2.image(), el=2).par & 1
    # without FEAT_S2PIE, VTCR_EL2.S2PIE is RES0: S2AP == 0b00 denies
    no = dataclasses.replace(V94, s2pie=False)
    r = at(AtOp.S12E1R, IPA, with_s2pie(s2, 0b1100), s2.image(), el=2, features=no)
    assert f(r.par) == (PERM_FAULT_L3, 1, 0)


@pytest.mark.parametrize(("perm", "faults"), [(0b0000, True), (0b0100, True), (0b0010, False),
                                              (0b1000, False), (0b1100, False)])
def test_stage1_walk_needs_mmuread(perm: int, faults: bool) -> None:
    """A stage 1 table access is MMURead (r_mmu = r): NoAccess and WO fault
    with PAR.PTW == 1 at the stage 2 level; MRO, RO and RW allow it."""
    s1, s2 = two_stages(table_flags=S2_NO_PERMS | pi_bits(3) | 1 << 7)
    sysregs = stage1_on(s1, s2)
    sysregs = {**sysregs, "VTCR_EL2": sysregs["VTCR_EL2"] | S2PIE, "S2PIR_EL2": perm << 12}
    r = at(AtOp.S1E1R, 0x1000, sysregs, s2.image(), el=2)
    if faults:
        assert f(r.par)[1:] == (1, 1), r.render()
    else:
        assert not r.par & 1, r.render()


def test_ats1a_undefined_without_the_feature() -> None:
    s2 = s2_tables()
    no = dataclasses.replace(V94, ats1a=False)
    for op, el in ((AtOp.S1E1A, 1), (AtOp.S1E2A, 2)):
        assert at(op, IPA, setup(s2), s2.image(), el=el, features=no).kind == "undefined"


def test_ats1a_ignores_stage1_permissions() -> None:
    """AT S1E1A translates a page no EL1 access may read or write as EL1&0
    (AP = 0b00 with PAN: AT S1E1RP faults; here an EL1 no-access case is
    AP[2:1] read-only for a write: S1E1W faults, S1E1A does not)."""
    s1, s2 = two_stages()
    sysregs = {**stage1_on(s1, s2), "HCR_EL2": 1 << 31}
    desc = s1.entry(0x1000, 3)
    s1.set(desc, s1.words[desc] | 0b10 << 6)  # AP[2:1] = 0b10, read-only at EL1
    assert at(AtOp.S1E1W, 0x1000, sysregs, s1.image(), el=1).par & 1
    r = at(AtOp.S1E1A, 0x1000, sysregs, s1.image(), el=1)
    assert not r.par & 1, r.render()
    # Access flag faults are still reported (AArch64.S1Walk)
    s1.set(desc, s1.words[desc] & ~AF)
    r = at(AtOp.S1E1A, 0x1000, sysregs, s1.image(), el=1)
    assert decode_par(r.par)["FST"] == 0b001011


def test_ats1a_routing() -> None:
    """S1E2A at EL1 is UNDEFINED (NV == 0); S1E1A at EL1 traps with HCR_EL2.AT."""
    s2 = s2_tables()
    assert at(AtOp.S1E2A, IPA, setup(s2), s2.image(), el=1).kind == "undefined"
    trapped = setup(s2, HCR_EL2=HCR_VM | 1 << 44)
    assert at(AtOp.S1E1A, IPA, trapped, s2.image(), el=1).kind == "trap"
