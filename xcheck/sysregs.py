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

from collections.abc import Callable
from dataclasses import dataclass

Encoding = tuple[int, int, int, int, int]
"""(op0, op1, CRn, CRm, op2)."""


@dataclass(frozen=True)
class SysReg:
    name: str
    encoding: Encoding
    regime: str
    """"EL10", "EL2" (the EL2 and EL2&0 regimes), "S2" (stage 2) or "EL2ctl"
    (controls that select regimes and stages)."""
    reset: int = 0
    """The value a setup gives the register when the scenario does not."""
    feature: str | None = None
    """The feature without which the register does not exist (its encoding
    is UNDEFINED: D24.2, "Configurations")."""


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

TABLE: tuple[SysReg, ...] = (
    SysReg("SCTLR_EL1", (3, 0, 1, 0, 0), "EL10", SCTLR_EL1_RESET),
    SysReg("TCR_EL1", (3, 0, 2, 0, 2), "EL10"),
    SysReg("TTBR0_EL1", (3, 0, 2, 0, 0), "EL10"),
    SysReg("TTBR1_EL1", (3, 0, 2, 0, 1), "EL10"),
    SysReg("MAIR_EL1", (3, 0, 10, 2, 0), "EL10"),
    SysReg("SCTLR_EL2", (3, 4, 1, 0, 0), "EL2", SCTLR_EL2_RESET),
    SysReg("TCR_EL2", (3, 4, 2, 0, 2), "EL2", TCR_EL2_RESET),
    SysReg("TTBR0_EL2", (3, 4, 2, 0, 0), "EL2"),
    SysReg("TTBR1_EL2", (3, 4, 2, 0, 1), "EL2", feature="VHE"),
    SysReg("MAIR_EL2", (3, 4, 10, 2, 0), "EL2"),
    SysReg("HCR_EL2", (3, 4, 1, 1, 0), "EL2ctl", HCR_EL2_RESET),
    SysReg("VTCR_EL2", (3, 4, 2, 1, 2), "S2", VTCR_EL2_RESET),
    SysReg("VTTBR_EL2", (3, 4, 2, 1, 0), "S2"),
    SysReg("S2PIR_EL2", (3, 4, 10, 2, 5), "S2", feature="S2PIE"),
)
"""Every register a setup gives a value, in the order the loader lists them."""

BY_NAME = {r.name: r for r in TABLE}


def implemented(has: Callable[[str], bool]) -> tuple[str, ...]:
    """The names of the registers that exist on a PE, given its feature test
    (``Features.has``)."""
    return tuple(r.name for r in TABLE if r.feature is None or has(r.feature))
