"""System register fields by name, for ``regs:`` in a scenario.

Field positions are those of Arm ARM DDI 0487, D24.2 (SCTLR_EL1/EL2/EL3,
TCR_EL1, TCR_EL2, TCR_EL3, VTCR_EL2, HCR_EL2, HCRX_EL2, MAIR_ELx, MAIR2_ELx,
TCR2_ELx, PIR_ELx, PIRE0_ELx, TTBRn_ELx, VTTBR_EL2, VSTTBR_EL2, VSTCR_EL2,
SCR_EL3); the
fields the model reads come from xcheck.arch.regs. Some fields take a named
value: a granule (TG0/TG1, whose encodings differ), a size (IPS/PS), a
shareability or a cacheability.
"""

from __future__ import annotations

from collections.abc import Mapping

from xcheck.arch.features import PARANGE_BITS
from xcheck.arch.regs import HCR, HCRX, SCR_EL3, SCTLR, TCR, TCR2, TCR_EL2, VSTCR, VTCR, Field
from xcheck.arch.walkparams import TG0_BITS, TG1_BITS

MASK64 = (1 << 64) - 1


def _bit(n: int) -> Field:
    return (n, 1)


SCTLR_FIELDS: dict[str, Field] = {
    "M": _bit(SCTLR.M), "A": _bit(1), "C": _bit(SCTLR.C), "SA": _bit(3), "SA0": _bit(4),
    "I": _bit(12), "nTWI": _bit(16), "nTWE": _bit(18), "WXN": _bit(SCTLR.WXN),
    "IESB": _bit(21), "EIS": _bit(22), "SPAN": _bit(23), "E0E": _bit(24),
    "EE": _bit(SCTLR.EE), "EOS": _bit(11), "EPAN": _bit(SCTLR.EPAN),
}
"""SCTLR_EL1, and SCTLR_EL2 (the fields at the same positions in both layouts)."""

TCR_FIELDS: dict[str, Field] = {
    "T0SZ": TCR.T0SZ, "EPD0": TCR.EPD0, "IRGN0": TCR.IRGN0, "ORGN0": TCR.ORGN0,
    "SH0": TCR.SH0, "TG0": TCR.TG0, "T1SZ": TCR.T1SZ, "A1": _bit(22), "EPD1": TCR.EPD1,
    "IRGN1": (24, 2), "ORGN1": (26, 2), "SH1": TCR.SH1, "TG1": TCR.TG1, "IPS": TCR.IPS,
    "AS": _bit(36), "TBI0": TCR.TBI0, "TBI1": TCR.TBI1, "HA": TCR.HA, "HD": TCR.HD,
    "HPD0": TCR.HPD0, "HPD1": TCR.HPD1, "TBID0": _bit(51), "TBID1": _bit(52),
    "NFD0": _bit(53), "NFD1": _bit(54), "E0PD0": TCR.E0PD0, "E0PD1": TCR.E0PD1,
    "TCMA0": _bit(57), "TCMA1": _bit(58), "DS": TCR.DS,
}
"""TCR_EL1, and TCR_EL2 when HCR_EL2.E2H == 1."""

TCR_EL2_FIELDS: dict[str, Field] = {
    "T0SZ": TCR_EL2.T0SZ, "IRGN0": TCR_EL2.IRGN0, "ORGN0": TCR_EL2.ORGN0,
    "SH0": TCR_EL2.SH0, "TG0": TCR_EL2.TG0, "PS": TCR_EL2.PS, "TBI": TCR_EL2.TBI,
    "HA": TCR_EL2.HA, "HD": TCR_EL2.HD, "HPD": TCR_EL2.HPD, "TBID": _bit(29),
    "TCMA": _bit(30), "DS": TCR_EL2.DS,
}
"""TCR_EL2 when HCR_EL2.E2H == 0, and TCR_EL3 (bits 31 and 23 are RES1)."""

VTCR_FIELDS: dict[str, Field] = {
    "T0SZ": VTCR.T0SZ, "SL0": VTCR.SL0, "IRGN0": (8, 2), "ORGN0": (10, 2),
    "SH0": VTCR.SH0, "TG0": VTCR.TG0, "PS": VTCR.PS, "VS": _bit(19), "HA": VTCR.HA,
    "HD": VTCR.HD, "NSW": _bit(29), "NSA": _bit(30), "DS": VTCR.DS, "SL2": VTCR.SL2,
    "S2PIE": VTCR.S2PIE,
}

HCR_FIELDS: dict[str, Field] = {
    "VM": _bit(HCR.VM), "SWIO": _bit(1), "PTW": _bit(HCR.PTW), "FMO": _bit(3),
    "IMO": _bit(4), "AMO": _bit(5), "DC": _bit(HCR.DC), "TWI": _bit(13), "TWE": _bit(14),
    "TSC": _bit(19), "TVM": _bit(26), "TGE": _bit(HCR.TGE), "TRVM": _bit(30),
    "RW": _bit(31), "CD": _bit(32), "ID": _bit(33), "E2H": _bit(HCR.E2H),
    "NV": _bit(HCR.NV), "NV1": _bit(43), "AT": _bit(HCR.AT), "NV2": _bit(45),
    "FWB": _bit(HCR.FWB),
}

HCRX_FIELDS: dict[str, Field] = {
    "EnAS0": _bit(0), "EnALS": _bit(1), "EnASR": _bit(2), "FnXS": _bit(3),
    "FGTnXS": _bit(4), "SMPME": _bit(5), "TALLINT": _bit(6), "VINMI": _bit(7),
    "VFNMI": _bit(8), "CMOW": _bit(9), "MCE2": _bit(10), "MSCEn": _bit(11),
    "TCR2En": _bit(HCRX.TCR2En), "SCTLR2En": _bit(HCRX.SCTLR2En), "PTTWI": _bit(16),
    "D128En": _bit(17), "EnSNERR": _bit(18), "TMEA": _bit(19), "EnSDERR": _bit(20),
    "EnIDCP128": _bit(21), "GCSEn": _bit(22), "EnFPM": _bit(23), "PACMEn": _bit(24),
    "SRMASKEn": _bit(26),
}

TCR2_FIELDS: dict[str, Field] = {
    "PnCH": _bit(TCR2.PnCH), "PIE": _bit(TCR2.PIE), "E0POE": _bit(TCR2.E0POE),
    "POE": _bit(TCR2.POE), "AIE": _bit(TCR2.AIE), "D128": _bit(TCR2.D128),
    "PTTWI": _bit(10), "HAFT": _bit(11), "DisCH0": _bit(14), "DisCH1": _bit(15),
    "A2": _bit(16), "FNG0": _bit(17), "FNG1": _bit(18), "FNGNA0": _bit(20),
    "FNGNA1": _bit(21),
}
"""TCR2_EL1, and TCR2_EL2 (whose fields are a subset at the same positions)."""

PIR_FIELDS: dict[str, Field] = {f"Perm{i}": (4 * i, 4) for i in range(16)}
"""PIR_ELx and PIRE0_ELx: one 4-bit permission encoding per PIIndex."""

MAIR_FIELDS: dict[str, Field] = {f"Attr{i}": (8 * i, 8) for i in range(8)}
"""MAIR_ELx, and MAIR2_ELx (Attr0..7 there are AttrIndx 8..15)."""

VSTCR_FIELDS: dict[str, Field] = {
    "T0SZ": VTCR.T0SZ, "SL0": VTCR.SL0, "TG0": VTCR.TG0, "SW": _bit(VSTCR.SW),
    "SA": _bit(VSTCR.SA), "SL2": VTCR.SL2,
}
"""VSTCR_EL2 (FEAT_SEL2): the Secure IPA space's size, start level and granule;
SW/SA place its stage 2 tables and output in the Non-secure PA space."""

SCR_EL3_FIELDS: dict[str, Field] = {"EEL2": _bit(SCR_EL3.EEL2)}
"""SCR_EL3: the harness sets the rest (target/el3.py); a setup gives EEL2."""

TTBR_FIELDS: dict[str, Field] = {"CnP": (0, 1), "BADDR": (1, 47), "ASID": (48, 16)}
VSTTBR_FIELDS: dict[str, Field] = {"CnP": (0, 1), "BADDR": (1, 47)}
VTTBR_FIELDS: dict[str, Field] = {"CnP": (0, 1), "BADDR": (1, 47), "VMID": (48, 16)}


def layout(reg: str, e2h: bool) -> dict[str, Field]:
    """The fields of ``reg`` (TCR_EL2's layout depends on HCR_EL2.E2H)."""
    if reg.startswith("SCTLR_"):
        return SCTLR_FIELDS
    if reg == "TCR_EL1" or (reg == "TCR_EL2" and e2h):
        return TCR_FIELDS
    if reg in ("TCR_EL2", "TCR_EL3"):
        return TCR_EL2_FIELDS
    if reg == "VTCR_EL2":
        return VTCR_FIELDS
    if reg == "HCR_EL2":
        return HCR_FIELDS
    if reg == "HCRX_EL2":
        return HCRX_FIELDS
    if reg.startswith("TCR2_"):
        return TCR2_FIELDS
    if reg.startswith(("PIR_", "PIRE0_")):
        return PIR_FIELDS
    if reg.startswith(("MAIR_", "MAIR2_")):
        return MAIR_FIELDS
    if reg == "VTTBR_EL2":
        return VTTBR_FIELDS
    if reg == "VSTTBR_EL2":
        return VSTTBR_FIELDS
    if reg == "VSTCR_EL2":
        return VSTCR_FIELDS
    if reg == "SCR_EL3":
        return SCR_EL3_FIELDS
    return TTBR_FIELDS


GRANULE_NAMES = {"4K": 12, "16K": 14, "64K": 16}
TG0_VALUES = {name: next(k for k, v in TG0_BITS.items() if v == g)
              for name, g in GRANULE_NAMES.items()}
"""TG0 encodings (TCR_ELx.TG0, VTCR_EL2.TG0): 4K 0b00, 64K 0b01, 16K 0b10."""
TG1_VALUES = {name: next(k for k, v in TG1_BITS.items() if v == g)
              for name, g in GRANULE_NAMES.items()}
"""TG1 encodings (TCR_ELx.TG1): 16K 0b01, 4K 0b10, 64K 0b11."""
SIZE_VALUES = {f"{bits}bit": enc for enc, bits in PARANGE_BITS.items()}
"""IPS/PS encodings by output address size."""
SH_VALUES = {"NSH": 0b00, "OSH": 0b10, "ISH": 0b11}
CACHE_VALUES = {"NC": 0b00, "WBWA": 0b01, "WT": 0b10, "WBnWA": 0b11}

NAMED: dict[str, dict[str, int]] = {
    "TG0": TG0_VALUES, "TG1": TG1_VALUES, "IPS": SIZE_VALUES, "PS": SIZE_VALUES,
    "SH0": SH_VALUES, "SH1": SH_VALUES, "IRGN0": CACHE_VALUES, "ORGN0": CACHE_VALUES,
    "IRGN1": CACHE_VALUES, "ORGN1": CACHE_VALUES,
}
"""Field names that accept a named value (in every register that has them)."""


def named_value(field_name: str, text: str) -> int | None:
    """The encoding of a named value, or None if ``text`` names none.
    Sizes read loosely: ``40bit``, ``40-bit``, ``40 bits``."""
    names = NAMED.get(field_name)
    if names is None:
        return None
    key = text.strip()
    if names is SIZE_VALUES:
        key = key.lower().replace(" ", "").replace("-", "").removesuffix("s")
    else:
        upper = {n.upper(): v for n, v in names.items()}
        return upper.get(key.upper())
    return names.get(key)


def set_field(value: int, f: Field, fvalue: int) -> int:
    lsb, width = f
    mask = ((1 << width) - 1) << lsb
    return (value & ~mask & MASK64) | ((fvalue << lsb) & mask)


def field_names(fields: Mapping[str, Field]) -> str:
    return ", ".join(fields)
