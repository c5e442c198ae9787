"""The system registers a machine setup gives values to, as data.

One entry per register: its name, its MSR/MRS encoding, the feature that
makes it exist (a name of xcheck.arch.features.PREDICATES; None: every
AArch64 PE with EL2 has it), the translation regime it controls, and the
value a setup gives it when the scenario does not. The scenario loader, the
builder, the harness (which writes only the registers the CPU has) and the
model all read this table; a new register is one new entry.

Encodings and existence: Arm ARM DDI 0487, D24.2 (each register's
"Configurations" and "Accessing" paragraphs).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

Encoding = tuple[int, int, int, int, int]
"""(op0, op1, CRn, CRm, op2)."""


@dataclass(frozen=True)
class SysReg:
    name: str
    encoding: Encoding
    regime: str
    """"EL10", "EL2" (the EL2 and EL2&0 regimes), "S2" (stage 2), "EL2ctl"
    (controls that select regimes and stages), "EL3" (the EL3 regime,
    written at EL3), "SS2" (Secure stage 2, written at EL3: from Non-secure
    EL2 their encodings are UNDEFINED) or "EL3ctl" (SCR_EL3: the harness owns
    it; a setup gives only EEL2, which the harness sets for Secure probes)."""
    reset: int = 0
    """The value a setup gives the register when the scenario does not."""
    feature: str | None = None
    """The feature without which the register does not exist (its encoding
    is UNDEFINED: D24.2, "Configurations")."""
    feature_bits: tuple[tuple[str, int], ...] = ()
    """(feature, bits): bits that are RES0 on a PE without the feature; the
    harness clears them there (software writes RES0 bits as 0)."""

    def value_for(self, value: int, has: Callable[[str], bool]) -> int:
        """``value`` as written on a PE with the feature test ``has``."""
        for feature, bits in self.feature_bits:
            if not has(feature):
                value &= ~bits
        return value


SCTLR_EL1_RESET = 0x30D0_0800
"""SCTLR_EL1 with its RES1 bits (D24.2 SCTLR_EL1: 11, 20, 22, 23, 28, 29)."""
SCTLR_EL2_RESET = 0x30C5_0830
"""SCTLR_EL2 with its RES1 bits for E2H = 0 (D24.2 SCTLR_EL2: 4, 5, 11, 16,
18, 22, 23, 28, 29)."""
TCR_EL2_RESET = 0x8080_0000
"""TCR_EL2 with its RES1 bits 31 and 23 (E2H = 0 layout)."""
HCR_EL2_RESET = 1 << 31
"""HCR_EL2.RW = 1: EL1 is AArch64."""
VTCR_EL2_RESET = 1 << 31
"""VTCR_EL2 bit 31 is RES1."""
HCRX_TCR2EN = 1 << 14
"""HCRX_EL2.TCR2En: without it TCR2_EL1 is not effective in the EL1&0
regime (D24.2 TCR2_EL1, "the PE behaves as if ... 0" when EL2 is enabled and
HCRX_EL2.TCR2En == 0; AArch64 IsTCR2EL1Enabled). A setup gives it 1 so that
the scenario's TCR2_EL1 takes effect."""
SCTLR_EL3_RESET = 0x30C5_0830
"""SCTLR_EL3 with its RES1 bits (D24.2 SCTLR_EL3: 4, 5, 11, 16, 18, 22, 23,
28, 29)."""
TCR_EL3_RESET = 0x8080_0000
"""TCR_EL3 with its RES1 bits 31 and 23 (D24.2 TCR_EL3)."""
VSTCR_EL2_RESET = 1 << 31
"""VSTCR_EL2 bit 31 is RES1 (D24.2 VSTCR_EL2)."""
SCR_EL3_EEL2 = 1 << 18
"""SCR_EL3.EEL2: Secure EL2 enabled (FEAT_SEL2), the only SCR_EL3 field a
setup gives (D24.2 SCR_EL3)."""

TABLE: tuple[SysReg, ...] = (
    SysReg("SCTLR_EL1", (3, 0, 1, 0, 0), "EL10", SCTLR_EL1_RESET),
    SysReg("TCR_EL1", (3, 0, 2, 0, 2), "EL10"),
    SysReg("TTBR0_EL1", (3, 0, 2, 0, 0), "EL10"),
    SysReg("TTBR1_EL1", (3, 0, 2, 0, 1), "EL10"),
    SysReg("MAIR_EL1", (3, 0, 10, 2, 0), "EL10"),
    SysReg("TCR2_EL1", (3, 0, 2, 0, 3), "EL10", feature="TCR2"),
    SysReg("PIR_EL1", (3, 0, 10, 2, 3), "EL10", feature="S1PIE"),
    SysReg("PIRE0_EL1", (3, 0, 10, 2, 2), "EL10", feature="S1PIE"),
    SysReg("MAIR2_EL1", (3, 0, 10, 2, 1), "EL10", feature="AIE"),
    SysReg("SCTLR_EL2", (3, 4, 1, 0, 0), "EL2", SCTLR_EL2_RESET),
    SysReg("TCR_EL2", (3, 4, 2, 0, 2), "EL2", TCR_EL2_RESET),
    SysReg("TTBR0_EL2", (3, 4, 2, 0, 0), "EL2"),
    SysReg("TTBR1_EL2", (3, 4, 2, 0, 1), "EL2", feature="VHE"),
    SysReg("MAIR_EL2", (3, 4, 10, 2, 0), "EL2"),
    SysReg("TCR2_EL2", (3, 4, 2, 0, 3), "EL2", feature="TCR2"),
    SysReg("PIR_EL2", (3, 4, 10, 2, 3), "EL2", feature="S1PIE"),
    SysReg("PIRE0_EL2", (3, 4, 10, 2, 2), "EL2", feature="S1PIE"),
    SysReg("MAIR2_EL2", (3, 4, 10, 1, 1), "EL2", feature="AIE"),
    SysReg("HCR_EL2", (3, 4, 1, 1, 0), "EL2ctl", HCR_EL2_RESET),
    SysReg("HCRX_EL2", (3, 4, 1, 2, 2), "EL2ctl", HCRX_TCR2EN, feature="HCX",
           feature_bits=(("TCR2", HCRX_TCR2EN),)),
    SysReg("VTCR_EL2", (3, 4, 2, 1, 2), "S2", VTCR_EL2_RESET),
    SysReg("VTTBR_EL2", (3, 4, 2, 1, 0), "S2"),
    SysReg("SCTLR_EL3", (3, 6, 1, 0, 0), "EL3", SCTLR_EL3_RESET, feature="EL3"),
    SysReg("TCR_EL3", (3, 6, 2, 0, 2), "EL3", TCR_EL3_RESET, feature="EL3"),
    SysReg("TTBR0_EL3", (3, 6, 2, 0, 0), "EL3", feature="EL3"),
    SysReg("MAIR_EL3", (3, 6, 10, 2, 0), "EL3", feature="EL3"),
    # written before GPCCR_EL3, which may turn the checks on (D24.2 GPTBR_EL3)
    SysReg("GPTBR_EL3", (3, 6, 2, 1, 4), "EL3", feature="RME"),
    SysReg("GPCCR_EL3", (3, 6, 2, 1, 6), "EL3", feature="RME"),
    SysReg("S2PIR_EL2", (3, 4, 10, 2, 5), "S2", feature="S2PIE"),
    SysReg("VSTTBR_EL2", (3, 4, 2, 6, 0), "SS2", feature="SEL2"),
    SysReg("VSTCR_EL2", (3, 4, 2, 6, 2), "SS2", VSTCR_EL2_RESET, feature="SEL2"),
    SysReg("SCR_EL3", (3, 6, 1, 1, 0), "EL3ctl", feature="EL3"),
)
"""Every register a setup gives a value, in the order the loader lists them."""

BY_NAME = {r.name: r for r in TABLE}

EL1_NAMES = tuple(r.name for r in TABLE if r.regime == "EL10")
"""The EL1&0 regime's registers (with HCR_EL2.E2H == 1 an MSR at EL2 to
these names reaches their EL2 twins: D5.8.4)."""


def implemented(has: Callable[[str], bool]) -> tuple[str, ...]:
    """The names of the registers that exist on a PE, given its feature test
    (``Features.has``)."""
    return tuple(r.name for r in TABLE if r.feature is None or has(r.feature))


def written(name: str, regs: Mapping[str, int]) -> bool:
    """Whether a program that cannot ask the CPU what it has must write
    ``name`` of ``regs``: a register every PE with EL2 has, one a feature
    adds when its value is not its default, or one whose bits enable
    (``feature_bits``) a register the setup gives a value other than its
    default. Left alone, a register keeps its reset value where it exists,
    and is never touched where its encoding is UNDEFINED."""
    reg = BY_NAME[name]
    if reg.feature is None or regs.get(name, reg.reset) != reg.reset:
        return True
    enabled = {feature for feature, _ in reg.feature_bits}
    return any(r.feature in enabled and regs.get(r.name, r.reset) != r.reset for r in TABLE)
