"""The live translation state of a halted kernel.

Registers of EL2 are read by name over the stub; the EL1 translation
registers and the ID registers by MRS in a short injected program (the stub
does not name all of them on every QEMU version), through the *_EL12
encodings when the kernel runs at EL2 with HCR_EL2.E2H == 1 (the *_EL1
encodings would reach the EL2 registers then: Arm ARM D5.8.4, "Redirection
of EL1 register accesses when E2H is 1").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from xcheck.arch.at import ArchState
from xcheck.arch.features import Features
from xcheck.arch.regime import Regime
from xcheck.live.inject import Injection
from xcheck.machine import TRANSLATION_SYSREGS, AtOp
from xcheck.target import isa
from xcheck.target.errors import TargetError
from xcheck.target.gdb import Gdb

PAGE = 4096
EL2_BY_NAME = ("HCR_EL2", "SCTLR_EL2", "TCR_EL2", "TTBR0_EL2", "TTBR1_EL2", "MAIR_EL2",
               "VTCR_EL2", "VTTBR_EL2", "VBAR_EL2")
EL1_REGS = ("SCTLR_EL1", "TCR_EL1", "TTBR0_EL1", "TTBR1_EL1", "MAIR_EL1")
ID_REGS = ("ID_AA64MMFR0_EL1", "ID_AA64MMFR1_EL1", "ID_AA64MMFR2_EL1", "ID_AA64MMFR3_EL1",
           "ID_AA64PFR0_EL1", "ID_AA64PFR1_EL1", "MIDR_EL1")
HCR_E2H = 34
HCR_TGE = 27
PSTATE_PAN = 22

OPS_EL2 = (AtOp.S1E2R, AtOp.S1E2W, AtOp.S1E0R, AtOp.S1E0W)
"""A kernel at EL2 (VHE, HCR_EL2.{E2H,TGE} == {1,1}): AT S1E2R/W translate
the EL2&0 regime; S1E0R/W do too, checking EL0 permissions (C5.4)."""
OPS_EL1 = (AtOp.S1E1R, AtOp.S1E1W, AtOp.S1E0R, AtOp.S1E0W)
"""A kernel at EL1 (nVHE): the EL1&0 regime, privileged and EL0 accesses."""


@dataclass(frozen=True)
class LiveState:
    """What the halted kernel's CPU looked like: EL, PSTATE.PAN, PC, the
    translation registers of every regime, the ID registers."""

    el: int
    pan: bool
    pc: int
    sysregs: Mapping[str, int]
    id_regs: Mapping[str, int]
    vbar: int
    features: Features = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", Features.from_id_regs(self.id_regs))

    @property
    def e2h(self) -> bool:
        return bool(self.sysregs["HCR_EL2"] >> HCR_E2H & 1)

    @property
    def regime(self) -> Regime:
        """The kernel's own regime (TranslationRegime(PSTATE.EL))."""
        if self.el == 2:
            return Regime.EL20 if self.e2h else Regime.EL2
        return Regime.EL10

    @property
    def default_ops(self) -> tuple[AtOp, ...]:
        if self.el == 2:
            return OPS_EL2 if self.e2h and self.sysregs["HCR_EL2"] >> HCR_TGE & 1 else OPS_EL2[:2]
        return OPS_EL1

    def arch_state(self) -> ArchState:
        return ArchState.from_sysregs(self.sysregs, self.features, self.el, self.pan)

    def describe(self) -> str:
        mode = {Regime.EL20: "VHE", Regime.EL2: "EL2 (E2H=0)", Regime.EL10: "EL1"}[self.regime]
        regs = ", ".join(f"{k}=0x{v:x}" for k, v in self.sysregs.items())
        return f"EL{self.el} {mode}, {self.regime.value} regime, PAN={int(self.pan)}, " \
               f"pc=0x{self.pc:x}; {regs}"


class NotTranslating(TargetError):
    """The CPU was halted where there is nothing to check (EL0 or EL3, or
    the kernel's regime has stage 1 off, e.g. early in boot)."""


def read_state(gdb: Gdb, timeout: float) -> LiveState:
    """Read the live state of the halted CPU (an injected MRS program runs
    at the start of the PC's page, then everything is restored)."""
    cpsr = gdb.read_reg("cpsr") & 0xFFFF_FFFF
    el = cpsr >> 2 & 3
    if el not in (1, 2):
        raise NotTranslating(f"the kernel was halted at EL{el}: AT needs EL1 or EL2")
    pc = gdb.read_reg("pc")
    regs = {name: gdb.read_reg(name) for name in EL2_BY_NAME}
    e2h = bool(regs["HCR_EL2"] >> HCR_E2H & 1)
    via = [r.replace("_EL1", "_EL12") if el == 2 and e2h else r for r in EL1_REGS]
    vbar_name = "VBAR_EL2" if el == 2 else "VBAR_EL1"
    names = [*via, *ID_REGS, vbar_name]
    words = [isa.mrs(k, name) for k, name in enumerate(names)]
    end = 4 * len(words)
    words.append(isa.b(0))
    vbar = regs["VBAR_EL2"] if el == 2 else gdb.read_reg("VBAR_EL12")
    with Injection(gdb, pc & ~(PAGE - 1), words, end, el=el, vbar=vbar,
                   timeout=timeout) as inj:
        got = inj.run({}, outputs=range(len(names)))
    values = dict(zip([*EL1_REGS, *ID_REGS, vbar_name], (got[k] for k in range(len(names))),
                      strict=True))
    sysregs = {name: regs.get(name, values.get(name, 0)) for name in TRANSLATION_SYSREGS}
    return LiveState(
        el=el, pan=bool(cpsr >> PSTATE_PAN & 1), pc=pc, sysregs=sysregs,
        id_regs={k: values[k] for k in ID_REGS}, vbar=values[vbar_name],
    )
