"""Stage 1 and stage 2 data access permissions for AT (Arm ARM DDI 0487 M.a,
D8.4). Every expectation is written from the rule it cites, never by calling
the function under test."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xcheck.arch.perms import (
    S1Access,
    S1LeafPerms,
    TablePerms,
    s1_permission_fault,
    s2_permission_fault,
)
from xcheck.arch.rules import Rule

NO_TABLE = TablePerms(ap_table=0, uxn_table=False, pxn_table=False)

# AT operation -> the access it makes at stage 1 (CreateAccDescAT).
OPS = {
    "S1E0R": S1Access(el=0, write=False, pan_op=False),
    "S1E0W": S1Access(el=0, write=True, pan_op=False),
    "S1E1R": S1Access(el=1, write=False, pan_op=False),
    "S1E1W": S1Access(el=1, write=True, pan_op=False),
    "S1E1RP": S1Access(el=1, write=False, pan_op=True),
    "S1E1WP": S1Access(el=1, write=True, pan_op=True),
}


def allowed(two: bool, ap: int, acc: S1Access, *, table: TablePerms = NO_TABLE,
            uxn: bool = False, pxn: bool = False, pan: bool = False, epan: bool = False,
            wxn: bool = False, feature: int = 3, nv1: bool = False) -> bool:
    leaf = S1LeafPerms(ap=ap, uxn=uxn, pxn=pxn)
    return s1_permission_fault(two, leaf, table, acc, pan, epan, wxn, feature, nv1=nv1) is None


# Table D8-63 (R_RNGJG), written out: AP[2:1] -> permissions present.
TABLE_D8_63 = {
    0b00: {"PrivRead", "PrivWrite"},
    0b01: {"PrivRead", "PrivWrite", "UnprivRead", "UnprivWrite"},
    0b10: {"PrivRead"},
    0b11: {"PrivRead", "UnprivRead"},
}


@pytest.mark.parametrize("ap", range(4))
@pytest.mark.parametrize("op", ["S1E0R", "S1E0W", "S1E1R", "S1E1W"])
def test_two_privilege_ap_table(ap: int, op: str) -> None:
    """D8.4.1.2.1 R_RNGJG, Table D8-63: EL1&0 / EL2&0 data access permissions."""
    acc = OPS[op]
    need = ("Unpriv" if acc.el == 0 else "Priv") + ("Write" if acc.write else "Read")
    assert allowed(True, ap, acc) == (need in TABLE_D8_63[ap])


@pytest.mark.parametrize("ap", range(4))
@pytest.mark.parametrize("write", [False, True])
def test_two_privilege_ap_el2_host(ap: int, write: bool) -> None:
    """R_RNGJG applies to the EL2&0 regime: an AT at EL2 is privileged."""
    acc = S1Access(el=2, write=write, pan_op=False)
    need = "PrivWrite" if write else "PrivRead"
    assert allowed(True, ap, acc) == (need in TABLE_D8_63[ap])


@pytest.mark.parametrize("ap", range(4))
@pytest.mark.parametrize("write", [False, True])
def test_single_privilege_ap2_only(ap: int, write: bool) -> None:
    """D8.4.1.2.1 R_CBNKR, Table D8-62: AP[2]=0 read/write, AP[2]=1 read-only;
    R_MGGZM: AP[1] is RES1 and does not change the result."""
    acc = S1Access(el=2, write=write, pan_op=False)
    assert allowed(False, ap, acc) == (not write or not ap & 2)


# Table D8-64 (R_YTXKB), written out: APTable[1:0] -> permissions removed.
TABLE_D8_64 = {
    0b00: set(),
    0b01: {"UnprivRead", "UnprivWrite"},
    0b10: {"UnprivWrite", "PrivWrite"},
    0b11: {"UnprivRead", "UnprivWrite", "PrivWrite"},
}


@pytest.mark.parametrize(("ap", "ap_table"), list(itertools.product(range(4), range(4))))
@pytest.mark.parametrize("op", ["S1E0R", "S1E0W", "S1E1R", "S1E1W"])
def test_hierarchical_ap_table(ap: int, ap_table: int, op: str) -> None:
    """D8.4.1.2 R_YTXKB, Table D8-64: APTable limits subsequent levels."""
    acc = OPS[op]
    need = ("Unpriv" if acc.el == 0 else "Priv") + ("Write" if acc.write else "Read")
    present = TABLE_D8_63[ap] - TABLE_D8_64[ap_table]
    table = TablePerms(ap_table=ap_table, uxn_table=False, pxn_table=False)
    assert allowed(True, ap, acc, table=table) == (need in present)


@pytest.mark.parametrize("ap", range(4))
@pytest.mark.parametrize("ap_table", range(4))
def test_single_privilege_ap_table(ap: int, ap_table: int) -> None:
    """Single privilege: APTable[1] removes write (R_YTXKB), APTable[0] is
    RES0 (I_PCLHM) and removes nothing."""
    table = TablePerms(ap_table=ap_table, uxn_table=False, pxn_table=False)
    w = S1Access(el=2, write=True, pan_op=False)
    r = S1Access(el=2, write=False, pan_op=False)
    assert allowed(False, ap, r, table=table)
    assert allowed(False, ap, w, table=table) == (not ap & 2 and not ap_table & 2)


@given(two=st.booleans(), ap=st.integers(0, 3), ap_table=st.integers(0, 3),
       op=st.sampled_from(sorted(OPS)), uxn=st.booleans(), pxn=st.booleans(),
       uxn_t=st.booleans(), pxn_t=st.booleans(), wxn=st.booleans(), epan=st.booleans())
def test_execute_never_and_wxn_do_not_affect_non_pan_at(
        two: bool, ap: int, ap_table: int, op: str, uxn: bool, pxn: bool, uxn_t: bool,
        pxn_t: bool, wxn: bool, epan: bool) -> None:
    """D8.4.4 R_WRCYB: except for PAN, XN fields never prevent data accesses;
    R_SYMMB / R_QXXPC: WXN removes execute permission only."""
    acc = OPS[op]
    if not two and acc.el == 0:
        return
    acc = S1Access(el=acc.el if two else 2, write=acc.write, pan_op=False)
    table = TablePerms(ap_table=ap_table, uxn_table=uxn_t, pxn_table=pxn_t)
    plain = TablePerms(ap_table=ap_table, uxn_table=False, pxn_table=False)
    got = allowed(two, ap, acc, table=table, uxn=uxn, pxn=pxn, wxn=wxn, pan=True, epan=epan)
    assert got == allowed(two, ap, acc, table=plain)


def pan_rule(ap: int, ap_table: int, uxn: bool, uxn_table: bool, op: str, pstate_pan: bool,
             epan: bool, feature: int) -> bool:
    """True if the access is allowed, from the rules in plain words:

    - base permission (Table D8-63 less Table D8-64) for the access;
    - PAN (R_XTSQH) only for AT S1E1RP/S1E1WP (R_PMTWB, FEAT_PAN2) with
      PSTATE.PAN == 1: fault if EL0 has any data access (read OR write) after
      the APTable restrictions, or (FEAT_PAN3, SCTLR_ELx.EPAN == 1, R_ZGCNT)
      if EL0 may execute (UXN == 0 and UXNTable == 0).
    """
    acc = OPS[op]
    present = TABLE_D8_63[ap] - TABLE_D8_64[ap_table]
    base_ok = ("PrivWrite" if acc.write else "PrivRead") in present
    el0_data = bool(present & {"UnprivRead", "UnprivWrite"})
    el0_exec = not uxn and not uxn_table
    pan_fault = (op in ("S1E1RP", "S1E1WP") and pstate_pan
                 and (el0_data or (feature == 3 and epan and el0_exec)))
    return base_ok and not pan_fault


PAN_MATRIX = list(itertools.product(range(4), [False, True], [False, True], [False, True],
                                    ["S1E1R", "S1E1W", "S1E1RP", "S1E1WP"], [2, 3]))


@pytest.mark.parametrize(("ap", "uxn", "pstate_pan", "epan", "op", "feature"), PAN_MATRIX)
def test_pan_matrix(ap: int, uxn: bool, pstate_pan: bool, epan: bool, op: str,
                    feature: int) -> None:
    """D8.4.5 R_XTSQH, R_PMTWB, R_ZGCNT, I_HKGQP: the full PAN/PAN3 matrix."""
    got = allowed(True, ap, OPS[op], uxn=uxn, pan=pstate_pan, epan=epan, feature=feature)
    assert got == pan_rule(ap, 0, uxn, False, op, pstate_pan, epan, feature)


@pytest.mark.parametrize(("ap", "ap_table", "uxn_table", "op", "epan"),
                         list(itertools.product(range(4), range(4), [False, True],
                                                ["S1E1RP", "S1E1WP"], [False, True])))
def test_pan_uses_hierarchical_permissions(ap: int, ap_table: int, uxn_table: bool, op: str,
                                           epan: bool) -> None:
    """AArch64.S1DirectBasePermissions computes PAN from ur/uw/ux after the
    APTable and UXNTable restrictions (R_YTXKB, R_XTSQH)."""
    table = TablePerms(ap_table=ap_table, uxn_table=uxn_table, pxn_table=False)
    got = allowed(True, ap, OPS[op], table=table, pan=True, epan=epan, feature=3)
    assert got == pan_rule(ap, ap_table, False, uxn_table, op, True, epan, 3)


def test_pan_el0_read_only_page_faults_a_pan_write_probe_too() -> None:
    """R_XTSQH: "accessible to data accesses at EL0" means any data access.
    AP=0b01 with APTable[1]: EL0 may read but not write; AT S1E1RP faults
    (PAN), and so does S1E1WP (no PrivWrite, and PAN)."""
    table = TablePerms(ap_table=0b10, uxn_table=False, pxn_table=False)
    assert not allowed(True, 0b01, OPS["S1E1RP"], table=table, pan=True, feature=2)
    # APTable[0] removes EL0 access: PAN no longer applies, privileged read is allowed.
    table = TablePerms(ap_table=0b01, uxn_table=False, pxn_table=False)
    assert allowed(True, 0b01, OPS["S1E1RP"], table=table, pan=True, feature=2)
    assert allowed(True, 0b01, OPS["S1E1WP"], table=table, pan=True, feature=2)


@pytest.mark.parametrize("wxn", [False, True])
def test_pan3_ignores_wxn(wxn: bool) -> None:
    """PAN3 tests UnprivExecute before WXN (ux in S1DirectBasePermissions is
    NOT(UXN OR UXNTable)); UnprivWXN needs UnprivWrite (R_FYMXJ), and then
    R_XTSQH applies anyway."""
    assert not allowed(True, 0b00, OPS["S1E1RP"], pan=True, epan=True, wxn=wxn, feature=3)
    assert not allowed(True, 0b01, OPS["S1E1RP"], pan=True, epan=True, wxn=wxn, feature=3)


@pytest.mark.parametrize("ap", range(4))
@pytest.mark.parametrize("op", ["S1E1RP", "S1E1WP"])
def test_pan_not_in_single_privilege_regime(ap: int, op: str) -> None:
    """D8.4.5 R_TBYDZ: PSTATE.PAN has no effect in a regime with one privilege level."""
    acc = S1Access(el=2, write=OPS[op].write, pan_op=True)
    assert allowed(False, ap, acc, pan=True, epan=True) == (not acc.write or not ap & 2)


@pytest.mark.parametrize("ap", range(4))
def test_pan_applies_in_el2_host_regime(ap: int) -> None:
    """R_XTSQH, R_ZGCNT: PAN applies to EL2 accesses in the EL2&0 regime."""
    acc = S1Access(el=2, write=False, pan_op=True)
    el0_data = bool(TABLE_D8_63[ap] & {"UnprivRead", "UnprivWrite"})
    assert allowed(True, ap, acc, pan=True, feature=2) == (not el0_data)
    assert not allowed(True, ap, acc, pan=True, epan=True, feature=3)


@pytest.mark.parametrize("op", ["S1E0R", "S1E0W"])
@pytest.mark.parametrize("ap", range(4))
def test_pan_never_affects_el0(op: str, ap: int) -> None:
    """PAN removes privileged permissions only (R_XTSQH: privileged data access)."""
    acc = OPS[op]
    need = "UnprivWrite" if acc.write else "UnprivRead"
    assert allowed(True, ap, acc, pan=True, epan=True) == (need in TABLE_D8_63[ap])


@pytest.mark.parametrize("ap", range(4))
def test_no_pan_without_feat_pan(ap: int) -> None:
    """R_NCMTC: PAN statements require FEAT_PAN."""
    assert allowed(True, ap, OPS["S1E1RP"], pan=True, epan=True, feature=0)


@pytest.mark.parametrize("ap", range(4))
def test_epan_needs_feat_pan3(ap: int) -> None:
    """R_ZGCNT requires FEAT_PAN3: EPAN is ignored with FEAT_PAN2."""
    el0_data = bool(TABLE_D8_63[ap] & {"UnprivRead", "UnprivWrite"})
    assert allowed(True, ap, OPS["S1E1RP"], pan=True, epan=True, feature=2) == (not el0_data)


@pytest.mark.parametrize("ap", range(4))
def test_nv1(ap: int) -> None:
    """HCR_EL2.{NV,NV1} == {1,1}: AP[1] treated as 0 (I_ZRMQJ), PSTATE.PAN
    treated as 0 (I_YMLJD)."""
    r = allowed(True, ap, OPS["S1E1RP"], pan=True, epan=True, nv1=True)
    w = allowed(True, ap, OPS["S1E1WP"], pan=True, epan=True, nv1=True)
    assert r
    assert w == (not ap & 2)
    assert not allowed(True, ap, OPS["S1E0R"], nv1=True)


def test_fault_names_the_rule() -> None:
    leaf = S1LeafPerms(ap=0b01, uxn=True, pxn=True)
    why = s1_permission_fault(True, leaf, NO_TABLE, OPS["S1E1RP"], True, False, False, 2)
    assert why is not None and "R_XTSQH" in why.why and why.rule is Rule.PERM_PAN
    leaf = S1LeafPerms(ap=0b00, uxn=False, pxn=True)
    why = s1_permission_fault(True, leaf, NO_TABLE, OPS["S1E1RP"], True, True, False, 3)
    assert why is not None and "R_ZGCNT" in why.why and why.rule is Rule.PERM_PAN3
    leaf = S1LeafPerms(ap=0b10, uxn=False, pxn=False)
    why = s1_permission_fault(True, leaf, NO_TABLE, OPS["S1E1W"], False, False, False, 3)
    assert why is not None and "read-only" in why.why and why.rule is Rule.PERM_AP_READ_ONLY


# Table D8-76 (R_HBFHL), written out.
TABLE_D8_76 = {0b00: set(), 0b01: {"R"}, 0b10: {"W"}, 0b11: {"R", "W"}}


@pytest.mark.parametrize("s2ap", range(4))
@pytest.mark.parametrize("write", [False, True])
def test_s2ap(s2ap: int, write: bool) -> None:
    """D8.4.2.1.1 R_HBFHL, R_FQNDX: S2AP none / RO / WO / RW."""
    why = s2_permission_fault(s2ap, write)
    assert (why is None) == (("W" if write else "R") in TABLE_D8_76[s2ap])
    if why is not None:
        assert "R_FQNDX" in why.why
        assert why.rule is (Rule.S2_NO_WRITE if write else Rule.S2_NO_READ)
