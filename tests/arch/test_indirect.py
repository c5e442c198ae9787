"""Stage 1 Indirect permissions (FEAT_S1PIE), TCR2_ELx enables and FEAT_AIE.

Every expectation is written from the Arm ARM text it cites (DDI 0487 M.a:
D8.4 R_LLZDZ, R_VFPJF, R_HJYGR; the ASL AArch64.S1ApplyOutputPerms,
AArch64.S1IndirectBasePermissions, AArch64.S1CheckPermissions,
AArch64.S1Walk; D24.2 TCR2_EL1, HCRX_EL2, PIR_EL1, MAIR2_EL1), never by
calling the function under test for the expected value.
"""

from __future__ import annotations

import dataclasses

import pytest
from archtables import LEAF, MAIR, MAX, SCTLR_ON, TCR_4K_48, Tables, at, regs

from xcheck.arch.at import AtResult
from xcheck.arch.features import Features
from xcheck.arch.indirect import pi_index, s1_indirect_permission_fault
from xcheck.arch.par import decode_par
from xcheck.arch.perms import S1Access
from xcheck.arch.rules import Rule
from xcheck.machine import RAM_BASE, AtOp, SecurityState

PA = RAM_BASE + 0x0123_4000
VA = 0x0000_0012_3456_7000
V9 = dataclasses.replace(MAX, hcx=True, tcr2=True, s1pie=True, aie=True)
PIE, AIE = 1 << 1, 1 << 4
TCR2EN = 1 << 14
PERMISSION_L3 = 0b001111

# R_LLZDZ: encoding -> (read, write); execute does not decide an AT.
READ_WRITE = {
    0b0000: (False, False), 0b0001: (True, False), 0b0010: (False, False),
    0b0011: (True, False), 0b0100: (False, False), 0b0101: (True, True),
    0b0110: (True, True), 0b0111: (True, True), 0b1000: (True, False),
    0b1001: (True, False), 0b1010: (True, False), 0b1011: (False, False),
    0b1100: (True, True), 0b1101: (False, False), 0b1110: (True, True),
    0b1111: (False, False),
}


def perm(index: int, encoding: int) -> int:
    return encoding << (4 * index)


def el1(t: Tables, pir: int, pire0: int = 0, tcr2: int = PIE, **over: int) -> dict[str, int]:
    base = {"SCTLR_EL1": SCTLR_ON, "TCR_EL1": TCR_4K_48, "TTBR0_EL1": t.root,
            "MAIR_EL1": MAIR, "TCR2_EL1": tcr2, "PIR_EL1": pir, "PIRE0_EL1": pire0,
            "HCRX_EL2": TCR2EN}
    return regs(**{**base, **over})


def faults(par: int) -> bool:
    if par & 1:
        assert decode_par(par)["FST"] == PERMISSION_L3, hex(par)
    return bool(par & 1)


def rules(r: AtResult) -> set[Rule]:
    return {s.cites for s in r.trace if s.cites is not None}


@pytest.mark.parametrize(("desc_bits", "index"), [
    (0, 0), (1 << 6, 1), (1 << 51, 2), (1 << 53, 4), (1 << 54, 8),
    ((1 << 54) | (1 << 53) | (1 << 51) | (1 << 6), 15), ((1 << 7) | (1 << 52), 0),
])
def test_pi_index_is_uxn_pxn_dbm_ap1(desc_bits: int, index: int) -> None:
    """AArch64.S1ApplyOutputPerms: PIIndex = descriptor<54:53>:<51>:<6>; AP[2]
    (bit 7) and Contiguous (bit 52) are not part of it."""
    assert pi_index(desc_bits) == index


@pytest.mark.parametrize("enc", range(16))
@pytest.mark.parametrize("op", [AtOp.S1E1R, AtOp.S1E1W])
def test_every_pir_encoding_at_el1(enc: int, op: AtOp) -> None:
    """R_LLZDZ: the PIR_EL1 entry the PIIndex selects gives EL1 its read and
    write permission; PIRE0 is 0 so R_VFPJF never applies."""
    t = Tables()
    t.map(VA, PA, flags=LEAF | (1 << 53))  # PIIndex 4
    r = at(op, VA, el1(t, pir=perm(4, enc)), t.image(), features=V9)
    read, write = READ_WRITE[enc]
    assert faults(r.par) is not (write if op is AtOp.S1E1W else read), r.render()
    assert Rule.S1_PIE in rules(r)


@pytest.mark.parametrize("enc", range(16))
@pytest.mark.parametrize("op", [AtOp.S1E0R, AtOp.S1E0W])
def test_every_pire0_encoding_at_el0(enc: int, op: AtOp) -> None:
    """R_LLZDZ for PIRE0_EL1 and AT S1E0*; PIR is 0 so R_VFPJF never applies."""
    t = Tables()
    t.map(VA, PA, flags=LEAF | (1 << 6))  # PIIndex 1
    r = at(op, VA, el1(t, pir=0, pire0=perm(1, enc)), t.image(), features=V9)
    read, write = READ_WRITE[enc]
    assert faults(r.par) is not (write if op is AtOp.S1E0W else read), r.render()


@pytest.mark.parametrize(("pir", "pire0", "ok"), [
    (0b1010, 0b1100, False),  # privileged RX, unprivileged RW: everything removed
    (0b1000, 0b1100, True),   # privileged R only: no conflict
    (0b1010, 0b1000, True),   # unprivileged read only: no conflict
    (0b0011, 0b0101, False),  # the overlay encodings alike
    (0b1010, 0b1001, False),  # unprivileged GCS counts as unprivileged write
])
def test_privileged_execute_with_unprivileged_write_removes_all(pir: int, pire0: int,
                                                                 ok: bool) -> None:
    """D8.4 R_VFPJF: when PrivExecute (or PrivGCS) and UnprivWrite (or UnprivGCS)
    are both granted, every stage 1 base permission is removed, EL1's and EL0's."""
    t = Tables()
    t.map(VA, PA, flags=LEAF)  # PIIndex 0
    setup = el1(t, pir=perm(0, pir), pire0=perm(0, pire0))
    for op in (AtOp.S1E1R, AtOp.S1E0R):
        r = at(op, VA, setup, t.image(), features=V9)
        assert faults(r.par) is not ok, (op, r.render())
    if not ok:
        assert Rule.PERM_PI_PX_UW in rules(at(AtOp.S1E1R, VA, setup, t.image(), features=V9))


@pytest.mark.parametrize(("pire0", "pan", "op", "ok"), [
    (0b0000, True, AtOp.S1E1RP, True),
    (0b1000, True, AtOp.S1E1RP, False),
    (0b0100, True, AtOp.S1E1RP, False),  # reserved: no EL0 access, yet not 0b0000
    (0b0010, True, AtOp.S1E1WP, False),  # execute-only at EL0
    (0b1000, False, AtOp.S1E1RP, True),
    (0b1000, True, AtOp.S1E1R, True),    # AT S1E1R is not subject to PAN
])
def test_pan_with_indirect_permissions(pire0: int, pan: bool, op: AtOp, ok: bool) -> None:
    """AArch64.S1IndirectBasePermissions: for an access with accdesc.pan (AT
    S1E1RP/WP) and PSTATE.PAN == 1, a PIRE0 entry other than 0b0000 removes
    privileged read and write, whatever it grants at EL0."""
    t = Tables()
    t.map(VA, PA, flags=LEAF)
    setup = el1(t, pir=perm(0, 0b1100), pire0=perm(0, pire0))
    r = at(op, VA, setup, t.image(), pan=pan, features=V9)
    assert faults(r.par) is not ok, r.render()
    if not ok:
        assert Rule.PERM_PI_PAN in rules(r)


@pytest.mark.parametrize(("tcr_hd", "ok"), [(0, False), (1, True)])
def test_write_to_ndirty_location(tcr_hd: int, ok: bool) -> None:
    """AArch64.S1CheckPermissions: with PIE, a write to a location whose
    nDirty (bit 7) is 1 faults unless TCR.HA and TCR.HD are 1; reads do not."""
    t = Tables()
    t.map(VA, PA, flags=LEAF | (1 << 7))
    tcr = TCR_4K_48 | (1 << 39) | (tcr_hd << 40)
    setup = el1(t, pir=perm(0, 0b1100), TCR_EL1=tcr)
    r = at(AtOp.S1E1W, VA, setup, t.image(), features=V9)
    assert faults(r.par) is not ok, r.render()
    assert not at(AtOp.S1E1R, VA, setup, t.image(), features=V9).par & 1


def test_no_hierarchical_permissions_with_pie() -> None:
    """AArch64.S1Walk applies table permissions only when hpd == 0 and pie == 0:
    APTable[1] == 1 (no write) does not remove the PIR's write permission."""
    t = Tables()
    t.map(VA, PA, flags=LEAF, table_flags=1 << 62)
    r = at(AtOp.S1E1W, VA, el1(t, pir=perm(0, 0b1100)), t.image(), features=V9)
    assert not r.par & 1, r.render()
    direct = at(AtOp.S1E1W, VA, el1(t, pir=perm(0, 0b1100), tcr2=0), t.image(), features=V9)
    assert faults(direct.par)


@pytest.mark.parametrize(("hcrx", "features", "indirect"), [
    (TCR2EN, V9, True),
    (0, V9, False),                                        # HCRX_EL2.TCR2En == 0
    (TCR2EN, dataclasses.replace(V9, hcx=False), False),   # no HCRX_EL2 at all
    (TCR2EN, dataclasses.replace(V9, s1pie=False), False),
    (TCR2EN, dataclasses.replace(V9, tcr2=False), False),
])
def test_tcr2_el1_effective(hcrx: int, features: Features, indirect: bool) -> None:
    """IsTCR2EL1Enabled: FEAT_TCR2 and, EL2 being enabled, HCRX_EL2.TCR2En == 1
    (FEAT_HCX); otherwise TCR2_EL1 is treated as 0 and the Direct scheme
    applies. Here PIR gives no access and AP[2:1] = 0b00 gives EL1 read/write."""
    t = Tables()
    t.map(VA, PA, flags=LEAF)
    r = at(AtOp.S1E1R, VA, el1(t, pir=0, HCRX_EL2=hcrx), t.image(), features=features)
    assert faults(r.par) is indirect, r.render()


@pytest.mark.parametrize(("eel2", "indirect"), [(0, True), (1, False)])
def test_hcrx_tcr2en_applies_only_where_el2_is_enabled(eel2: int, indirect: bool) -> None:
    """IsTCR2EL1Enabled: HCRX_EL2.TCR2En gates TCR2_EL1 only when EL2 is
    enabled in the current Security state (EL2Enabled()). An AT S1E1R at EL3
    for the Secure EL1&0 regime without Secure EL2 (SCR_EL3.EEL2 == 0) uses
    TCR2_EL1.PIE even with TCR2En == 0: PIR_EL1 = 0 gives no access."""
    t = Tables()
    t.map(VA, PA, flags=LEAF)
    features = dataclasses.replace(V9, el3=True, sel2=True)
    setup = el1(t, pir=0, HCRX_EL2=0, SCR_EL3=eel2 << 18)
    r = at(AtOp.S1E1R, VA, setup, t.image(), el=3, features=features,
           space=SecurityState.SECURE)
    assert faults(r.par) is indirect, r.render()


def test_el2_regime_uses_pir_el2() -> None:
    """AArch64.S1TTWParamsEL2: TCR2_EL2.PIE with PIR_EL2 (one privilege level;
    no HCRX_EL2 enable for EL2's own regime, IsTCR2EL2Enabled)."""
    t = Tables()
    t.map(VA, PA, flags=LEAF | (1 << 54))  # PIIndex 8
    for enc, ok in ((0b1000, False), (0b1100, True)):
        setup = regs(SCTLR_EL2=0x30C5_0830 | 1 | 4, TCR_EL2=0x8080_0000 | 16 | (0b101 << 16),
                     TTBR0_EL2=t.root, MAIR_EL2=MAIR, TCR2_EL2=PIE, PIR_EL2=perm(8, enc),
                     PIR_EL1=perm(8, 0b1100))
        r = at(AtOp.S1E2W, VA, setup, t.image(), el=2, features=V9)
        assert faults(r.par) is not ok, r.render()


def test_el20_regime_uses_pire0_el2() -> None:
    """AArch64.S1TTWParamsEL20: with {E2H, TGE} == {1, 1} AT S1E0R translates in
    EL2&0 and PIRE0_EL2 (not PIRE0_EL1) gives EL0 its permission."""
    t = Tables()
    t.map(VA, PA, flags=LEAF)
    base = {"SCTLR_EL2": SCTLR_ON, "TCR_EL2": TCR_4K_48, "TTBR0_EL2": t.root,
            "MAIR_EL2": MAIR, "HCR_EL2": (1 << 31) | (1 << 34) | (1 << 27),
            "TCR2_EL2": PIE, "PIR_EL2": perm(0, 0b1000), "PIRE0_EL1": perm(0, 0b1000)}
    for pire0, ok in ((0, False), (0b1000, True)):
        r = at(AtOp.S1E0R, VA, regs(**base, PIRE0_EL2=perm(0, pire0)), t.image(), el=2,
               features=V9)
        assert faults(r.par) is not ok, r.render()


@pytest.mark.parametrize(("aie", "bit59", "attr"), [
    (True, True, 0x04),   # AttrIndx = 8 + 1: MAIR2_EL1.Attr1 (Device-nGnRE)
    (True, False, 0x04),  # AttrIndx = 1: MAIR_EL1.Attr1 (Device-nGnRE)
    (False, True, 0x04),  # bit 59 ignored: MAIR_EL1.Attr1
])
def test_aie_attr_index_bit_3(aie: bool, bit59: bool, attr: int) -> None:
    """FEAT_AIE (AArch64.S1Walk): with TCR2_ELx.AIE == 1, AttrIndx[3] is
    descriptor bit 59 and indices 8-15 select MAIR2_ELx.Attr0-7; otherwise bit
    59 is not an attribute (D24.2 MAIR2_EL1)."""
    t = Tables()
    t.map(VA, PA, flags=LEAF | (1 << 2) | (int(bit59) << 59))
    mair2 = 0x04 << 8 if bit59 and aie else 0xFF << 8
    setup = el1(t, pir=0, tcr2=AIE if aie else 0, MAIR_EL1=0x04_FF if not bit59 or not aie
                else 0xFF_FF, MAIR2_EL1=mair2)
    r = at(AtOp.S1E1R, VA, setup, t.image(), features=V9)
    assert decode_par(r.par)["ATTR"] == attr, r.render()
    if aie and bit59:
        assert Rule.S1_ATTR_MAIR2 in rules(r)


def test_aie_without_the_feature_keeps_mair() -> None:
    """Without FEAT_AIE TCR2_EL1.AIE is RES0: MAIR2 is not used."""
    t = Tables()
    t.map(VA, PA, flags=LEAF | (1 << 59))
    setup = el1(t, pir=0, tcr2=AIE, MAIR_EL1=0xFF, MAIR2_EL1=0x04)
    r = at(AtOp.S1E1R, VA, setup, t.image(), features=dataclasses.replace(V9, aie=False))
    assert decode_par(r.par)["ATTR"] == 0xFF


@pytest.mark.parametrize(("ppi", "upi", "el", "ok"), [
    (0b1010, 0, 1, True),    # privileged RX
    (0b1100, 0, 1, False),   # RW: no execute
    (0b0110, 0, 1, False),   # RW and X, but WXN removes X (R_HJYGR)
    (0b0111, 0, 1, True),    # RWX without WXN
    (0, 0b1010, 0, True),    # unprivileged RX
    (0, 0b0110, 0, False),
])
def test_instruction_fetch(ppi: int, upi: int, el: int, ok: bool) -> None:
    """What decides whether the harness's code runs (xcheck.needs): execute
    permission from the PIR/PIRE0 entry (R_LLZDZ), removed for the 0b0110
    encoding, which also grants write (R_HJYGR, AArch64.S1ComputePermissions)."""
    acc = S1Access(el=el, write=False, pan_op=False, fetch=True)
    denied = s1_indirect_permission_fault(True, ppi, upi, acc, False, 3, False, False)
    assert (denied is None) is ok, denied


@pytest.mark.parametrize(("pir", "pire0", "ndirty"), [
    (0b0000, 0b0000, 0),  # no access
    (0b1011, 0b0000, 0),  # reserved: no access
    (0b0010, 0b0000, 0),  # execute only
    (0b1010, 0b0101, 0),  # R_VFPJF: every permission removed
    (0b1100, 0b0000, 1),  # nDirty, no hardware dirty state
])
def test_at_s1e1a_makes_no_indirect_permission_check(pir: int, pire0: int,
                                                     ndirty: int) -> None:
    """AT S1E1A (FEAT_ATS1A, ATAccess_Any: CreateAccDescAT sets neither read
    nor write; C5.4.12) translates where AT S1E1R or S1E1W would take a
    Permission fault from the Indirect permissions: AArch64.S1CheckPermissions
    tests read and write permissions, and nDirty, only for accesses that read
    or write (found by xcheck fuzz: scenarios/s1pie/ats1a.yaml)."""
    t = Tables()
    t.map(VA, PA, flags=LEAF | (ndirty << 7))  # PIIndex 0
    setup = el1(t, pir=perm(0, pir), pire0=perm(0, pire0))
    cpu = dataclasses.replace(V9, ats1a=True)
    r = at(AtOp.S1E1A, VA, setup, t.image(), el=2, features=cpu)
    assert not r.par & 1, r.render()
    assert decode_par(r.par)["PA"] << 12 == PA
    denied = at(AtOp.S1E1R if not ndirty else AtOp.S1E1W, VA, setup, t.image(), el=2,
                features=cpu)
    assert faults(denied.par), denied.render()
