"""Stage 1 Indirect permissions (FEAT_S1PIE), for AT instructions.

Arm ARM DDI 0487 (M.a), D8.4 "Memory access control" (Indirect permissions)
and the ASL
of J1.1.4: AArch64.S1ApplyOutputPerms (the PIIndex and nDirty),
AArch64.S1IndirectBasePermissions (the PIR_ELx / PIRE0_ELx encodings, the
rule that removes every permission when privileged execute meets
unprivileged write, PSTATE.PAN), AArch64.S1ComputePermissions (WXN for the
0b0110 encoding) and AArch64.S1CheckPermissions (the nDirty check).

With TCR2_ELx.PIE == 1 the descriptor's UXN, PXN, DBM and AP[1] bits are
no longer permissions but a 4-bit index into PIR_ELx (privileged) and
PIRE0_ELx (unprivileged); AP[2] (bit 7) becomes nDirty; hierarchical
permissions are not applied (AArch64.S1Walk applies table permissions only
when ``hpd == '0' && pie == '0'``); SCTLR_ELx.WXN has no effect (the
indirect WXN is the 0b0110 encoding).
"""

from __future__ import annotations

from dataclasses import dataclass

from xcheck.arch.perms import Denied, S1Access
from xcheck.arch.rules import Rule


@dataclass(frozen=True)
class PiPerms:
    """One PIR/PIRE0 entry decoded: read, write, execute, GCS, and WXN
    (execute removed from a writable location)."""

    r: bool
    w: bool
    x: bool
    gcs: bool
    wxn: bool


_NONE = (False, False, False, False)
# D8.4 R_LLZDZ (AArch64.S1IndirectBasePermissions): encoding -> (R, W, X, GCS).
# 0b0100, 0b1011, 0b1101 and 0b1111 are reserved and give no access.
PI_ENCODINGS: dict[int, tuple[bool, bool, bool, bool]] = {
    0b0000: _NONE,
    0b0001: (True, False, False, False),
    0b0010: (False, False, True, False),
    0b0011: (True, False, True, False),
    0b0100: _NONE,
    0b0101: (True, True, False, False),
    0b0110: (True, True, True, False),
    0b0111: (True, True, True, False),
    0b1000: (True, False, False, False),
    0b1001: (True, False, False, True),
    0b1010: (True, False, True, False),
    0b1011: _NONE,
    0b1100: (True, True, False, False),
    0b1101: _NONE,
    0b1110: (True, True, True, False),
    0b1111: _NONE,
}

PI_NAMES = {
    0b0000: "no access", 0b0001: "R (overlay)", 0b0010: "X (overlay)",
    0b0011: "RX (overlay)", 0b0100: "reserved", 0b0101: "RW (overlay)",
    0b0110: "RW, X with WXN (overlay)", 0b0111: "RWX (overlay)", 0b1000: "R",
    0b1001: "R, GCS", 0b1010: "RX", 0b1011: "reserved", 0b1100: "RW",
    0b1101: "reserved", 0b1110: "RWX", 0b1111: "reserved",
}
"""How the Arm ARM describes each encoding (D24.2 PIR_EL1.Perm<m>)."""


def pi_index(desc: int) -> int:
    """AArch64.S1ApplyOutputPerms: PIIndex = descriptor<54:53>:<51>:<6>
    (UXN, PXN, DBM, AP[1] of the Direct scheme; 64-bit descriptors)."""
    return ((desc >> 53) & 3) << 2 | ((desc >> 51) & 1) << 1 | ((desc >> 6) & 1)


def pi_entry(pir: int, index: int) -> int:
    """Elem[pir, index, 4]: the 4-bit permission of PIR/PIRE0 for ``index``."""
    return (pir >> (4 * index)) & 0xF


def decode(encoding: int) -> PiPerms:
    """One PIR/PIRE0 entry (R_LLZDZ); WXN only for 0b0110 (R_HJYGR)."""
    r, w, x, gcs = PI_ENCODINGS[encoding & 0xF]
    return PiPerms(r, w, x, gcs, wxn=encoding & 0xF == 0b0110)


def s1_indirect_permission_fault(two_priv: bool, ppi: int, upi: int, acc: S1Access,
                                 pstate_pan: bool, pan_feature: int, ndirty: bool,
                                 hw_dirty: bool) -> Denied | None:
    """None if the stage 1 Indirect permissions allow the AT's access (or
    the instruction fetch, ``acc.fetch``), else the rule that denied it.

    ``ppi``/``upi``: the PIR_ELx / PIRE0_ELx entries the PIIndex selects
    (``upi`` unused in a single-privilege regime). In a two-privilege regime
    (AArch64.S1IndirectBasePermissions): privileged execute or GCS together
    with unprivileged write or GCS removes every permission (R_VFPJF); for an
    access subject to PSTATE.PAN (AT S1E1RP/WP) with PSTATE.PAN == 1, a
    non-zero PIRE0 entry (even a reserved one) removes privileged read and
    write: PAN with S1PIE asks whether the encoding is other than "no
    access", not which permissions it gives. A write to a
    location with nDirty (descriptor bit 7) == 1 faults unless hardware dirty
    state management is on (``hw_dirty``: TCR.HA and TCR.HD;
    AArch64.S1CheckPermissions). AT S1E1A/S1E2A (``acc.any_access``,
    ATAccess_Any) neither read nor write: AArch64.S1CheckPermissions, which
    applies the Indirect permissions as it does the Direct ones, finds no
    fault (CreateAccDescAT; C5.4.7), whatever the PIR/PIRE0 entries.
    """
    if acc.any_access and not acc.fetch:
        return None
    p = decode(ppi)
    u = decode(upi) if two_priv else PiPerms(False, False, False, False, False)
    mine = u if acc.el == 0 else p
    who = "PIRE0" if acc.el == 0 else "PIR"
    enc = upi if acc.el == 0 else ppi
    if acc.fetch:
        if not mine.x:
            return Denied(Rule.FETCH_XN, f"D8.4 R_LLZDZ: {who} entry 0b{enc:04b} "
                          f"({PI_NAMES[enc]}) gives no execute permission")
        if mine.wxn:
            return Denied(Rule.FETCH_PI_WXN, f"D8.4 R_HJYGR: {who} entry 0b0110: writable, "
                          "so not executable (indirect WXN)")
    if acc.el == 0 and not two_priv:
        return Denied(Rule.PERM_EL0_SINGLE_PRIVILEGE, "D8.4.1.2.1 R_CBNKR: no unprivileged "
                      "access in a single-privilege regime")
    if not acc.fetch:
        allowed = mine.w if acc.write else mine.r
        if not allowed:
            what = "write" if acc.write else "read"
            return Denied(Rule.PERM_PI_NO_WRITE if acc.write else Rule.PERM_PI_NO_READ,
                          f"D8.4 R_LLZDZ: {who} entry 0b{enc:04b} ({PI_NAMES[enc]}) gives "
                          f"no {what} permission")
    if two_priv and (p.x or p.gcs) and (u.w or u.gcs):
        return Denied(Rule.PERM_PI_PX_UW, f"D8.4 R_VFPJF: PIR entry 0b{ppi:04b} gives "
                      f"privileged execute (or GCS) and PIRE0 entry 0b{upi:04b} unprivileged "
                      "write (or GCS): every permission is removed")
    if acc.fetch:
        return None
    if (two_priv and acc.pan_op and acc.el != 0 and pstate_pan and pan_feature >= 1
            and upi != 0):
        return Denied(Rule.PERM_PI_PAN, f"D8.4.5 PSTATE.PAN == 1 and PIRE0 entry "
                      f"0b{upi:04b} is not 0b0000 (AArch64.S1IndirectBasePermissions, "
                      "AT S1E1RP/WP)")
    if acc.write and ndirty and not hw_dirty:
        return Denied(Rule.PERM_PI_NDIRTY, "AArch64.S1CheckPermissions: a write to a "
                      "location with nDirty (bit 7) == 1 and no hardware dirty state "
                      "management (TCR.HA/HD), FEAT_S1PIE")
    return None
