"""Field layouts of the translation control registers (Arm ARM DDI 0487, D24.2).

Only what the model reads. ``field(value, lsb, width)`` extracts one field;
the constants name (lsb, width) pairs after the Arm ARM field names.
"""

from __future__ import annotations

Field = tuple[int, int]


def field(value: int, f: Field) -> int:
    lsb, width = f
    return (value >> lsb) & ((1 << width) - 1)


def bit(value: int, n: int) -> bool:
    return bool((value >> n) & 1)


class TCR:
    """TCR_EL1, and TCR_EL2 when HCR_EL2.E2H == 1 (the same layout)."""

    T0SZ: Field = (0, 6)
    EPD0: Field = (7, 1)
    IRGN0: Field = (8, 2)
    ORGN0: Field = (10, 2)
    SH0: Field = (12, 2)
    TG0: Field = (14, 2)
    T1SZ: Field = (16, 6)
    EPD1: Field = (23, 1)
    SH1: Field = (28, 2)
    TG1: Field = (30, 2)
    IPS: Field = (32, 3)
    TBI0: Field = (37, 1)
    TBI1: Field = (38, 1)
    HA: Field = (39, 1)
    HD: Field = (40, 1)
    HPD0: Field = (41, 1)
    HPD1: Field = (42, 1)
    E0PD0: Field = (55, 1)
    E0PD1: Field = (56, 1)
    DS: Field = (59, 1)


class TCR_EL2:
    """TCR_EL2 when HCR_EL2.E2H == 0 (the EL2 regime has one VA range)."""

    T0SZ: Field = (0, 6)
    IRGN0: Field = (8, 2)
    ORGN0: Field = (10, 2)
    SH0: Field = (12, 2)
    TG0: Field = (14, 2)
    PS: Field = (16, 3)
    TBI: Field = (20, 1)
    HA: Field = (21, 1)
    HD: Field = (22, 1)
    HPD: Field = (24, 1)
    DS: Field = (32, 1)


class VTCR:
    T0SZ: Field = (0, 6)
    SL0: Field = (6, 2)
    SH0: Field = (12, 2)
    TG0: Field = (14, 2)
    PS: Field = (16, 3)
    HA: Field = (21, 1)
    HD: Field = (22, 1)
    DS: Field = (32, 1)
    SL2: Field = (33, 1)
    S2PIE: Field = (36, 1)
    NSW = 29
    """Non-secure IPA stage 2 tables in the Non-secure PA space (FEAT_SEL2)."""
    NSA = 30
    """Non-secure IPA stage 2 output in the Non-secure PA space (FEAT_SEL2)."""


class VSTCR:
    """VSTCR_EL2 (D24.2, FEAT_SEL2): T0SZ, SL0, TG0 and SL2 at VTCR_EL2's
    positions, for the Secure IPA space."""

    SW = 29
    """Secure IPA stage 2 tables (and output) in the Non-secure PA space."""
    SA = 30
    """Secure IPA stage 2 output in the Non-secure PA space."""


class SCR_EL3:
    EEL2 = 18
    """Secure EL2 enable (FEAT_SEL2)."""


class SCTLR:
    M = 0
    C = 2
    WXN = 19
    EE = 25
    EPAN = 57


class TCR2:
    """TCR2_EL1, and TCR2_EL2 (PIE and AIE at the same positions in both
    layouts; D24.2 TCR2_EL1, TCR2_EL2)."""

    PnCH = 0
    PIE = 1
    E0POE = 2
    POE = 3
    AIE = 4
    D128 = 5


class HCRX:
    TCR2En = 14
    SCTLR2En = 15


class HCR:
    VM = 0
    PTW = 2
    DC = 12
    TGE = 27
    E2H = 34
    NV = 42
    AT = 44
    FWB = 46


def ttbr_base(ttbr: int, lpa_format: bool) -> int:
    """The table base address held in a TTBRn_ELx / VTTBR_EL2 (before alignment).

    AArch64.S1TTBaseAddress / S2TTBaseAddress: with 52-bit addresses
    (TCR.DS == 1, or 64KB granule with PS == 0b110 and FEAT_LPA) bits [5:2]
    hold address bits [51:48] and bits [47:6] the rest; otherwise BADDR is
    bits [47:1]."""
    if lpa_format:
        return (field(ttbr, (2, 4)) << 48) | (ttbr & 0x0000_FFFF_FFFF_FFC0)
    return ttbr & 0x0000_FFFF_FFFF_FFFE
