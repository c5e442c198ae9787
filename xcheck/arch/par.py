"""PAR_EL1 encoding, field decode and field-wise comparison.

Arm ARM DDI 0487, D24.2 PAR_EL1 (64-bit format, FEAT_D128 not implemented)
and J1.1.3.11 AArch64.EncodePAR.
"""

from __future__ import annotations

from dataclasses import dataclass

from xcheck.arch.fault import Fault, FaultRecord, encode_fst

MASK64 = (1 << 64) - 1

# Success format (F == 0): ATTR [63:56], PA [55:12], NSE/RES1 [11],
# IMPLEMENTATION DEFINED [10], NS [9], SH [8:7], RES0 [6:1], F [0].
SUCCESS_FIELDS: tuple[tuple[str, int, int], ...] = (
    ("ATTR", 56, 8),
    ("PA", 12, 44),
    ("RES1[11]", 11, 1),
    ("IMPDEF[10]", 10, 1),
    ("NS", 9, 1),
    ("SH", 7, 2),
    ("RES0[6:1]", 1, 6),
    ("F", 0, 1),
)
# Fault format (F == 1): IMPLEMENTATION DEFINED [63:48], RES0 [47:16],
# DirtyBit [15] (FEAT_S1PIE or FEAT_S2PIE, else RES0), RES0 [14:12],
# RES1 [11], RES0 [10], S [9], PTW [8], RES0 [7], FST [6:1], F [0].
FAULT_FIELDS: tuple[tuple[str, int, int], ...] = (
    ("IMPDEF[63:48]", 48, 16),
    ("RES0[47:16]", 16, 32),
    ("DirtyBit", 15, 1),
    ("RES0[14:12]", 12, 3),
    ("RES1[11]", 11, 1),
    ("RES0[10]", 10, 1),
    ("S", 9, 1),
    ("PTW", 8, 1),
    ("RES0[7]", 7, 1),
    ("FST", 1, 6),
    ("F", 0, 1),
)

NS_BIT = 1 << 9
IMPDEF_SUCCESS = 1 << 10
IMPDEF_FAULT = 0xFFFF << 48

SUCCESS_MASK = MASK64 & ~(NS_BIT | IMPDEF_SUCCESS)
"""Bits of a successful PAR the architecture determines for a Non-secure
regime: NS is UNKNOWN ("For a result from a Non-secure translation regime,
this bit is UNKNOWN", PAR_EL1.NS) and bit [10] is IMPLEMENTATION DEFINED."""
SUCCESS_NOTES: tuple[tuple[int, str], ...] = (
    (NS_BIT, "PAR_EL1.NS is UNKNOWN for a result from a Non-secure translation "
             "regime (D24.2 PAR_EL1; AArch64.EncodePAR)"),
    (IMPDEF_SUCCESS, "PAR_EL1 bit [10] is IMPLEMENTATION DEFINED on success "
                     "(D24.2 PAR_EL1; AArch64.EncodePAR \"Non-Faulting PAR\")"),
)
SECURE_SUCCESS_MASK = SUCCESS_MASK | NS_BIT
"""A Secure regime's PAR_EL1.NS is the output PA space: 0 Secure, 1
Non-secure (AArch64.EncodePAR: SecurityStateForRegime(regime) == SS_Secure)."""
NSE_BIT = 1 << 11
RME_NOTES: tuple[tuple[int, str], ...] = (
    (NSE_BIT, "PAR_EL1.NSE is UNKNOWN for a Secure regime with FEAT_RME (AArch64.EncodePAR)"),
)
REALM_NOTES: tuple[tuple[int, str], ...] = (
    (NSE_BIT, "PAR_EL1.NSE is UNKNOWN for a Realm regime; NS is the output PA space, 0 Realm, "
              "1 Non-secure (AArch64.EncodePAR)"),
)
REALM_S1_NOTES: tuple[tuple[int, str], ...] = (
    (NSE_BIT | NS_BIT, "PAR_EL1.{NSE, NS} are UNKNOWN for AT S1E1*/S1E0* in the Realm EL1&0 "
                       "regime (AArch64.EncodePAR: Regime_EL10 and is_ATS1Ex)"),
)
FAULT_MASK = MASK64 & ~IMPDEF_FAULT
FAULT_NOTES: tuple[tuple[int, str], ...] = (
    (IMPDEF_FAULT, "PAR_EL1 bits [63:48] are IMPLEMENTATION DEFINED on a fault "
                   "(D24.2 PAR_EL1; AArch64.EncodePAR \"Faulting PAR\")"),
)


def encode_success(pa: int, attr: int, sh: int, ns: bool = True, nse: bool | None = None) -> int:
    """AArch64.EncodePAR, F == 0: PA<55:12>, ATTR, SH, bit [11] RES1 (NSE
    when given: the EL3 regime with FEAT_RME), NS the output PA space (1:
    Non-secure). NS is UNKNOWN for a Non-secure regime: see SUCCESS_MASK; a
    Secure or Root regime reports it (SECURE_SUCCESS_MASK)."""
    bit11 = 1 if nse is None else int(nse)
    return ((attr & 0xFF) << 56) | (pa & 0x00FF_FFFF_FFFF_F000) | (bit11 << 11) \
        | (NS_BIT if ns else 0) | ((sh & 3) << 7)


def encode_fault(fault: FaultRecord) -> int:
    """AArch64.EncodePAR, F == 1: DirtyBit, FST, PTW, S, bit [11] RES1."""
    return (int(fault.dirtybit) << 15) | (1 << 11) | (int(fault.stage == 2) << 9) \
        | (int(fault.s2fs1walk) << 8) | (encode_fst(fault.statuscode, fault.level) << 1) | 1


@dataclass(frozen=True)
class FieldDiff:
    """One PAR field that differs: its Arm ARM name and both values."""

    name: str
    a: int
    b: int

    @property
    def a_value(self) -> int:
        return self.a

    @property
    def b_value(self) -> int:
        return self.b


def fields_of(par: int) -> tuple[tuple[str, int, int], ...]:
    return FAULT_FIELDS if par & 1 else SUCCESS_FIELDS


def decode_par(par: int) -> dict[str, int]:
    """Every field of ``par`` by name (the layout F selects)."""
    return {name: (par >> lsb) & ((1 << w) - 1) for name, lsb, w in fields_of(par)}


def diff_par(a: int, b: int, mask: int) -> list[FieldDiff]:
    """The fields of ``a`` and ``b`` that differ within ``mask``.

    If F differs the two values have different layouts: only F is reported.
    """
    if (a ^ b) & 1 & mask:
        return [FieldDiff("F", a & 1, b & 1)]
    out = []
    for name, lsb, w in fields_of(b):
        fmask = ((1 << w) - 1) << lsb
        if (a ^ b) & fmask & mask:
            out.append(FieldDiff(name, (a & fmask) >> lsb, (b & fmask) >> lsb))
    return out


_FST_KIND = {0b0000: Fault.ADDRESS_SIZE, 0b0001: Fault.TRANSLATION,
             0b0010: Fault.ACCESS_FLAG, 0b0011: Fault.PERMISSION,
             0b0101: Fault.EXTERNAL_ABORT_ON_WALK}
_FST_MINUS_1 = {0b101001: Fault.ADDRESS_SIZE, 0b101011: Fault.TRANSLATION,
                0b010011: Fault.EXTERNAL_ABORT_ON_WALK, 0b100011: Fault.GPCF_ON_WALK}


def describe_fst(fst: int) -> str:
    """"translation, level 3" for 0b000111; "other" encodings by value."""
    if fst == 0b101000:
        return Fault.GPCF_ON_OUTPUT.value
    if fst >> 2 == 0b1001:
        return f"{Fault.GPCF_ON_WALK.value}, level {fst & 3}"
    if fst in _FST_MINUS_1:
        return f"{_FST_MINUS_1[fst].value}, level -1"
    kind = _FST_KIND.get(fst >> 2)
    if kind is None:
        return "other"
    return f"{kind.value}, level {fst & 3}"


def describe_par(par: int) -> str:
    """One line: "PA=0x40001000 ATTR=0xff SH=0b11 NS=1" or
    "fault FST=0b001011 (access flag, level 3) S=0 PTW=0"."""
    f = decode_par(par)
    if par & 1:
        return (f"fault FST=0b{f['FST']:06b} ({describe_fst(f['FST'])}) "
                f"S={f['S']} PTW={f['PTW']}")
    return (f"PA=0x{f['PA'] << 12:x} ATTR=0x{f['ATTR']:02x} SH=0b{f['SH']:02b} "
            f"NS={f['NS']}")
