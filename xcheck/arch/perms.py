"""Stage 1 and stage 2 data access permissions for AT instructions.

Arm ARM DDI 0487 (M.a), D8.4 "Memory access control" and the ASL of
J1.1.4: AArch64.S1DirectBasePermissions, AArch64.S1ComputePermissions,
AArch64.S2DirectBasePermissions, with CreateAccDescAT (J1.3) deciding which
AT operations are subject to PSTATE.PAN.

An AT checks data access permissions only: execute-never fields never deny
an AT read or write (D8.4.4 R_WRCYB, "Except for the purposes of PSTATE.PAN,
the descriptor execute-never fields do not prevent data accesses"), and WXN
only removes execute permission (D8.4.1.4 R_SYMMB, R_QXXPC; in the ASL
``s1perms.x = x AND NOT(wxn)``), so it never denies a read or a write.
Stage 1 Indirect permissions (FEAT_S1PIE) are in xcheck.arch.indirect;
Overlay permissions (FEAT_S1POE, FEAT_S2POE) are not modelled. Stage 2
Indirect permissions (FEAT_S2PIE, D8.4.2.2) are: AArch64.S2IndirectBasePermissions
and the checks of AArch64.S2CheckPermissions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from xcheck.arch.rules import Rule


class S1Access(NamedTuple):
    """The access an AT makes at stage 1 (CreateAccDescAT); a NamedTuple
    (hashed in C: it keys the memoized permission check of every walk).

    ``el``: 0 for AT S1E0*, 1 for S1E1*, 2 for S1E2* (the EL of the access,
    accdesc.el); ``write``: a W operation; ``pan_op``: AT S1E1RP/S1E1WP
    (ATAccess_ReadPAN/WritePAN, accdesc.pan == TRUE)."""

    el: int
    write: bool
    pan_op: bool
    any_access: bool = False
    """AT S1E1A/S1E2A (ATAccess_Any: accdesc.read and accdesc.write both
    FALSE), which no stage 1 permission check denies (AArch64.S1CheckPermissions
    tests only reads and writes; C5.4.7 "while ignoring the permission checks")."""
    fetch: bool = False
    """An instruction fetch at ``el`` rather than an AT's data access: not an
    AT, but what decides whether code runs at a VA (xcheck.needs)."""


@dataclass(frozen=True)
class S1LeafPerms:
    """The leaf descriptor's permission fields: AP[2:1] as a 2-bit value,
    UXN and PXN. For the single-privilege EL2 regime pass XN as ``pxn``
    and ``uxn=False``; AP[1] is then ignored (RES1, D8.4.1.2.1 R_MGGZM)."""

    ap: int
    uxn: bool
    pxn: bool


@dataclass(frozen=True)
class TablePerms:
    """Hierarchical fields ORed over the Table descriptors of the walk:
    APTable[1:0], UXNTable (XNTable in the single-privilege regime goes in
    ``pxn_table``) and PXNTable. Zero when TCR_ELx.HPD disables them."""

    ap_table: int
    uxn_table: bool
    pxn_table: bool


@dataclass(frozen=True)
class S1Permissions:
    """The stage 1 Direct permissions after hierarchical control, before
    PSTATE.PAN (AArch64.S1DirectBasePermissions): privileged and
    unprivileged read, write and execute."""

    pr: bool
    pw: bool
    px: bool
    ur: bool
    uw: bool
    ux: bool


# Table D8-63 (R_RNGJG): AP[2:1] -> (PrivRead, PrivWrite, UnprivRead, UnprivWrite).
_AP_TWO_PRIV = {
    0b00: (True, True, False, False),
    0b01: (True, True, True, True),
    0b10: (True, False, False, False),
    0b11: (True, False, True, False),
}


def s1_direct_permissions(regime_two_priv: bool, leaf: S1LeafPerms,
                          table: TablePerms) -> S1Permissions:
    """Stage 1 Direct permissions with hierarchical control applied.

    Two privilege levels (EL1&0, EL2&0): AP[2:1] per Table D8-63 (R_RNGJG);
    APTable[0] removes UnprivRead/UnprivWrite, APTable[1] removes
    PrivWrite/UnprivWrite (Table D8-64, R_YTXKB); UnprivWrite removes
    PrivExecute (R_VWLLR). One privilege level (EL2): AP[2] only, Table D8-62
    (R_CBNKR), AP[1] RES1 (R_MGGZM), APTable[0] RES0 (I_PCLHM). No
    unprivileged permission exists in a single-privilege regime.
    """
    if regime_two_priv:
        pr, pw, ur, uw = _AP_TWO_PRIV[leaf.ap & 3]
        if table.ap_table & 1:
            ur = uw = False
        if table.ap_table & 2:
            pw = uw = False
        px = not (leaf.pxn or table.pxn_table or uw)
        ux = not (leaf.uxn or table.uxn_table)
        return S1Permissions(pr, pw, px, ur, uw, ux)
    pw = not (leaf.ap & 2) and not (table.ap_table & 2)
    px = not (leaf.pxn or table.pxn_table)
    return S1Permissions(True, pw, px, False, False, False)


def pan_applies(regime_two_priv: bool, perms: S1Permissions, acc: S1Access,
                pstate_pan: bool, epan: bool, pan_feature: int, nv1: bool = False) -> bool:
    """Whether PSTATE.PAN removes PrivRead and PrivWrite for this AT.

    AArch64.S1DirectBasePermissions: with FEAT_PAN, for an access with
    accdesc.pan (only AT S1E1RP/S1E1WP among the AT operations, CreateAccDescAT;
    D8.4.5 R_PMTWB), in a two-privilege regime (R_TBYDZ) other than EL1&0 with
    HCR_EL2.{NV,NV1} == {1,1} (I_YMLJD):
    ``pan = PSTATE.PAN AND (ur OR uw OR (epan AND ux))``, where ur/uw/ux are
    the unprivileged permissions after APTable/UXNTable (R_XTSQH: "accessible
    to data accesses at EL0", of any kind), and epan is SCTLR_ELx.EPAN with
    FEAT_PAN3 (R_ZGCNT/I_HKGQP). WXN does not enter: ux is taken before the
    WXN step, which only concerns the accessing EL's own execute permission.
    """
    if pan_feature < 1 or not acc.pan_op or acc.el == 0 or not pstate_pan:
        return False
    if not regime_two_priv or nv1:
        return False
    epan_effective = pan_feature >= 3 and epan
    return perms.ur or perms.uw or (epan_effective and perms.ux)


class Denied(NamedTuple):
    """Why a permission check failed: the rule in the registry, and in words."""

    rule: Rule
    why: str


def s1_permission_fault(regime_two_priv: bool, leaf: S1LeafPerms, table: TablePerms,
                        acc: S1Access, pstate_pan: bool, epan: bool, wxn: bool,
                        pan_feature: int, *, nv1: bool = False) -> Denied | None:
    """None if the stage 1 Direct permissions allow the AT's data access,
    else the rule that denied it (a stage 1 Permission fault).

    ``wxn`` removes execute permission only (R_SYMMB, R_QXXPC), so it never
    decides an AT result; it decides an instruction fetch (``acc.fetch``):
    executable at the fetching EL (PrivExecute or UnprivExecute after
    hierarchical control) and not writable there when SCTLR_ELx.WXN is set
    (AArch64.S1DirectBasePermissions). ``nv1``
    (HCR_EL2.{NV,NV1} == {1,1}, EL1&0 regime): AP[1] is treated as 0
    (I_ZRMQJ) and PSTATE.PAN is treated as 0 (I_YMLJD).
    """
    if acc.any_access and not acc.fetch:
        return None
    if nv1 and regime_two_priv:
        leaf = S1LeafPerms(ap=leaf.ap & 2, uxn=leaf.uxn, pxn=leaf.pxn)
    p = s1_direct_permissions(regime_two_priv, leaf, table)
    if acc.fetch:
        x, w = (p.ux, p.uw) if acc.el == 0 else (p.px, p.pw)
        if not x:
            return Denied(Rule.FETCH_XN, "D8.4.1.3 execute-never at this EL (UXN/PXN/XN, or "
                          "the table's XN bits)")
        if wxn and w:
            return Denied(Rule.FETCH_WXN, "D8.4.1.4 R_SYMMB: SCTLR_ELx.WXN == 1 and the "
                          "location is writable")
        return None
    if acc.el == 0:
        if not regime_two_priv:
            return Denied(Rule.PERM_EL0_SINGLE_PRIVILEGE, "D8.4.1.2.1 R_CBNKR: no "
                          "unprivileged access in a single-privilege regime")
        allowed = p.uw if acc.write else p.ur
        if not allowed:
            return _why_unpriv(leaf, table, acc.write)
        return None
    if pan_applies(regime_two_priv, p, acc, pstate_pan, epan, pan_feature, nv1):
        if p.ur or p.uw:
            return Denied(Rule.PERM_PAN, "D8.4.5 R_XTSQH: PSTATE.PAN == 1 and the page is "
                          "accessible to data accesses at EL0 "
                          "(AArch64.S1DirectBasePermissions, AT S1E1RP/WP)")
        return Denied(Rule.PERM_PAN3, "D8.4.5 R_ZGCNT: PSTATE.PAN == 1, SCTLR_ELx.EPAN == 1 "
                      "and the page is executable at EL0 (FEAT_PAN3, AT S1E1RP/WP)")
    if acc.write and not p.pw:
        if leaf.ap & 2:
            if regime_two_priv:
                return Denied(Rule.PERM_AP_READ_ONLY, f"D8.4.1.2.1 AP[2:1]=0b{leaf.ap & 3:02b}: "
                              f"read-only at EL{acc.el}")
            return Denied(Rule.PERM_AP_READ_ONLY_SINGLE, "D8.4.1.2.1 R_CBNKR AP[2]=1: read-only")
        return Denied(Rule.PERM_APTABLE_NO_PRIV_WRITE, f"D8.4.1.2 R_YTXKB "
                      f"APTable=0b{table.ap_table & 3:02b}: removes PrivWrite")
    return None


def _why_unpriv(leaf: S1LeafPerms, table: TablePerms, write: bool) -> Denied:
    what = "UnprivWrite" if write else "UnprivRead"
    ap_ur, ap_uw = _AP_TWO_PRIV[leaf.ap & 3][2:]
    if not (ap_uw if write else ap_ur):
        return Denied(Rule.PERM_AP_NO_UNPRIV, f"D8.4.1.2.1 R_RNGJG "
                      f"AP[2:1]=0b{leaf.ap & 3:02b}: no {what} (EL0)")
    return Denied(Rule.PERM_APTABLE_NO_UNPRIV, f"D8.4.1.2 R_YTXKB "
                  f"APTable=0b{table.ap_table & 3:02b}: removes {what}")


# Table D8-76 (R_HBFHL): S2AP[1:0] -> (read, write).
_S2AP = {0b00: (False, False), 0b01: (True, False), 0b10: (False, True), 0b11: (True, True)}


def s2_permission_fault(s2ap: int, write: bool) -> Denied | None:
    """None if S2AP permits the access, else the rule (a stage 2 Permission
    fault, D8.4.2.1.1 R_FQNDX). S2AP: 0b00 none, 0b01 RO, 0b10 WO, 0b11 RW
    (Table D8-76, R_HBFHL); the same for EL1 and EL0 accesses (I_HXWLL).
    A stage 1 walk access is a read (R_TVZYF: MMURead needs Read)."""
    r, w = _S2AP[s2ap & 3]
    if (w if write else r):
        return None
    return Denied(Rule.S2_NO_WRITE if write else Rule.S2_NO_READ,
                  f"D8.4.2.1.1 R_FQNDX S2AP=0b{s2ap & 3:02b}: no stage 2 "
                  f"{'write' if write else 'read'} permission")


# Table D8-82 (R_CXFCS) and AArch64.S2IndirectBasePermissions: S2BasePerm ->
# (r, w, w_mmu), r_mmu being r. MRO* give MMUWrite without data write; WO gives
# a data write only; the reserved 0b0001 and 0b0101 are treated as NoAccess.
_S2PI: dict[int, tuple[bool, bool, bool]] = {
    0b0000: (False, False, False), 0b0001: (False, False, False),
    0b0010: (True, False, True), 0b0011: (True, False, True),
    0b0100: (False, True, False), 0b0101: (False, False, False),
    0b0110: (True, False, True), 0b0111: (True, False, True),
    **{perm: (True, False, False) for perm in range(0b1000, 0b1100)},
    **{perm: (True, True, True) for perm in range(0b1100, 0b10000)},
}
S2PI_NAMES = ("NoAccess", "Reserved (NoAccess)", "MRO", "MRO-TL1", "WO", "Reserved (NoAccess)",
              "MRO-TL0", "MRO-TL01", "RO", "RO+uX", "RO+pX", "RO+puX", "RW", "RW+uX", "RW+pX",
              "RW+puX")
"""S2PIR_EL2.Perm<m> encodings by name (D24.2 S2PIR_EL2, Table D8-82)."""


def s2_pi_index(desc: int) -> int:
    """AArch64.S2ApplyOutputPerms, VMSAv8-64: PIIndex = descriptor<54:53,51,6>."""
    return ((desc >> 53) & 3) << 2 | ((desc >> 51) & 1) << 1 | ((desc >> 6) & 1)


def s2_indirect_permission_fault(perm: int, s2dirty: bool, write: bool, ttw: bool,
                                 hd: bool) -> Denied | None:
    """None if the stage 2 Base permission ``perm`` (S2PIR_EL2.Perm<PIIndex>,
    D8.4.2.2.1 R_CYQGN) allows the access, else the rule (a stage 2 Permission
    fault). AArch64.S2CheckPermissions with VTCR_EL2.S2PIE == 1 and no stage 2
    Overlay (R_QNYFF): a stage 1 walk (``ttw``) needs MMURead, its Access flag
    update MMUWrite; an AT read needs Read, an AT write Write; then a write to
    a location whose S2Dirty (descriptor bit 7) is 0 with dirty state managed by
    software (VTCR_EL2.HD == 0) is a Permission fault with PAR.DirtyBit set."""
    r, w, w_mmu = _S2PI[perm & 0xF]
    name = f"S2BasePerm=0b{perm & 0xF:04b} ({S2PI_NAMES[perm & 0xF]})"
    if ttw and not r:
        return Denied(Rule.S2PIE_NO_READ, f"{name}: no MMURead for the stage 1 walk "
                      "(AArch64.S2CheckPermissions)")
    if not ttw and not write and not r:
        return Denied(Rule.S2PIE_NO_READ, f"{name}: no read permission "
                      "(AArch64.S2IndirectBasePermissions)")
    if write and not (w_mmu if ttw else w):
        return Denied(Rule.S2PIE_NO_WRITE, f"{name}: no {'MMUWrite' if ttw else 'write'} "
                      "permission (AArch64.S2IndirectBasePermissions)")
    if write and not hd and not s2dirty:
        return Denied(Rule.S2PIE_DIRTY, f"{name}: S2Dirty (bit 7) == 0 and VTCR_EL2.HD == 0, "
                      "dirty state managed by software (AArch64.S2CheckPermissions)")
    return None
