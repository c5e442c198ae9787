"""What the harness writes at EL3 before it drops to Non-secure EL2.

SCR_EL3 fields: Arm ARM DDI 0487, D24.2 SCR_EL3. Each enable below exists
only with its feature (the bit is RES0 otherwise), so it is set only when the
CPU's ID registers report that feature; with the enable clear, EL2's and
EL1's accesses to the feature's registers trap to EL3 (or its instructions are
UNDEFINED), which the lower ELs' setup code must never meet.
"""

from __future__ import annotations

from collections.abc import Mapping

SCR_NS = 1 << 0
"""Lower ELs are Non-secure."""
SCR_NSE = 1 << 62
"""With NS, the Security state below EL3 (FEAT_RME): {NSE, NS} = {1, 1} Realm."""
SCR_RES1 = 0b11 << 4
"""SCR_EL3 bits [5:4] are RES1."""
SCR_HCE = 1 << 8
"""HVC is enabled at EL1 and EL2 (the harness returns from EL1 by HVC)."""
SCR_RW = 1 << 10
"""The next lower EL (EL2) is AArch64."""

ENABLES: tuple[tuple[int, str, tuple[tuple[str, int], ...]], ...] = (
    # (SCR_EL3 bit, name, ID register fields (register, lsb) any non-zero of which means present)
    (16, "APK", (("ID_AA64ISAR1_EL1", 4), ("ID_AA64ISAR1_EL1", 8), ("ID_AA64ISAR1_EL1", 24),
                 ("ID_AA64ISAR1_EL1", 28), ("ID_AA64ISAR2_EL1", 8), ("ID_AA64ISAR2_EL1", 12))),
    (17, "API", (("ID_AA64ISAR1_EL1", 4), ("ID_AA64ISAR1_EL1", 8), ("ID_AA64ISAR1_EL1", 24),
                 ("ID_AA64ISAR1_EL1", 28), ("ID_AA64ISAR2_EL1", 8), ("ID_AA64ISAR2_EL1", 12))),
    (27, "FGTEn", (("ID_AA64MMFR0_EL1", 56),)),
    (38, "HXEn", (("ID_AA64MMFR1_EL1", 40),)),
    (41, "EnTP2", (("ID_AA64PFR1_EL1", 24),)),
    (43, "TCR2En", (("ID_AA64MMFR3_EL1", 0),)),
    (44, "SCTLR2En", (("ID_AA64MMFR3_EL1", 4),)),
    (45, "PIEn", (("ID_AA64MMFR3_EL1", 8), ("ID_AA64MMFR3_EL1", 12))),
    (46, "AIEn", (("ID_AA64MMFR3_EL1", 24),)),
)
"""SCR_EL3 enables and the features that make them exist: APK/API with
FEAT_PAuth (ID_AA64ISAR1_EL1 APA/API/GPA/GPI, ID_AA64ISAR2_EL1 GPA3/APA3),
FGTEn with FEAT_FGT, HXEn with FEAT_HCX (HCRX_EL2), EnTP2 with FEAT_SME,
TCR2En with FEAT_TCR2, SCTLR2En with FEAT_SCTLR2, PIEn with FEAT_S1PIE or
FEAT_S2PIE, AIEn with FEAT_AIE."""

GPC_REGISTERS = ("GPCCR_EL3",)
"""Read at EL3 when the CPU has FEAT_RME: GPCCR_EL3.L0GPTSZ (bits [23:20]) is
read-only and says how much PA space one level 0 GPT entry covers (D24.2
GPCCR_EL3); the rest of the GPC configuration follows from the ID registers."""

SPSR_EL2H = 0x3C9
"""SPSR_EL3 for an ERET to EL2h with D, A, I, F masked (C5.2.20)."""
CPTR_EL3_NO_TRAPS = 0
"""CPTR_EL3 with TFP, TTA, TAM, TCPAC clear: nothing the harness runs traps."""


def scr_el3(id_regs: Mapping[str, int]) -> int:
    """SCR_EL3 for running Non-secure EL2 and EL1 in AArch64 with every
    translation feature the CPU has reachable from them; EEL2 (Secure EL2),
    NSE (Realm) and SMD stay 0, so SMC from EL2 reaches EL3."""
    value = SCR_NS | SCR_RES1 | SCR_HCE | SCR_RW
    for bit, _name, where in ENABLES:
        if any(id_regs.get(reg, 0) >> lsb & 0xF for reg, lsb in where):
            value |= 1 << bit
    return value
