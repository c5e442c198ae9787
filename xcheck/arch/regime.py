"""Which translation regime an AT instruction translates, and at which EL.

Arm ARM DDI 0487, C5.4 (A64 system instructions for address translation,
"Executing AT ..." pseudocode) and J1.1.3.10 AArch64.AT. Below EL3 the
harness runs Non-secure (SCR_EL3.NS == 1, or no EL3), where EL2 is always
enabled. At EL3, SCR_EL3.NS selects the Security state the EL1 and EL2 ops
translate for. In the Secure state EL2 is enabled only with Secure EL2
(SCR_EL3.EEL2 == 1, FEAT_SEL2): then the ops route as in the Non-secure
state, to the Secure EL2, EL2&0 and EL1&0 (+ stage 2) regimes; without it
AT S1E2* is UNDEFINED, and the EL1&0 ops translate the Secure EL1&0 regime,
stage 1 only, HCR_EL2 without effect (at EL3 and at Secure EL1 alike; there
is no Secure EL2 to run at). In the Realm state (SCR_EL3.{NSE, NS}
== {1, 1}, FEAT_RME) EL2 is always enabled (EL2Enabled(): SCR_EL3.NS == 1):
the ops route as in the Non-secure state, to the Realm regimes.
"""

from __future__ import annotations

from dataclasses import dataclass

from xcheck.arch.features import Features
from xcheck.arch.regs import HCR, bit
from xcheck.arch.rules import Rule
from xcheck.machine import AtOp, IdentityEnum, SecurityState


class Regime(IdentityEnum):
    EL10 = "EL1&0"
    EL2 = "EL2"
    EL20 = "EL2&0"
    EL3 = "EL3"

    @property
    def two_ranges(self) -> bool:
        """HasUnprivileged(regime): two VA ranges, EL0 and a privileged EL."""
        return self not in (Regime.EL2, Regime.EL3)


@dataclass(frozen=True)
class HcrState:
    """Effective HCR_EL2 controls (D24.2 HCR_EL2): VM and DC are 0 when
    {E2H, TGE} == {1, 1}; E2H is RES0 without FEAT_VHE; NV and AT are RES0
    without FEAT_NV; PTW is ignored when TGE == 1; FWB needs FEAT_S2FWB."""

    e2h: bool
    tge: bool
    vm: bool
    dc: bool
    ptw: bool
    nv: bool
    at: bool
    fwb: bool

    @classmethod
    def decode(cls, hcr: int, features: Features) -> HcrState:
        e2h = features.vh and bit(hcr, HCR.E2H)
        tge = bit(hcr, HCR.TGE)
        host = e2h and tge
        return cls(
            e2h=e2h,
            tge=tge,
            vm=bit(hcr, HCR.VM) and not host,
            dc=bit(hcr, HCR.DC) and not host,
            ptw=bit(hcr, HCR.PTW) and not tge,
            nv=features.nv >= 1 and bit(hcr, HCR.NV),
            at=features.nv >= 1 and bit(hcr, HCR.AT),
            fwb=features.s2fwb and bit(hcr, HCR.FWB),
        )

    @property
    def el0_in_host(self) -> bool:
        """ELIsInHost(EL0): HCR_EL2.{E2H, TGE} == {1, 1}."""
        return self.e2h and self.tge


@dataclass(frozen=True)
class AtRoute:
    """An AT that executes: the regime it translates, the EL the access is
    made as (``acc_el``), whether stage 2 applies to its output (AT S12E*),
    whether it checks write permission, and whether it is PAN-aware."""

    regime: Regime
    acc_el: int
    stage12: bool
    write: bool
    pan_op: bool
    why: str
    rule: Rule
    space: SecurityState = SecurityState.NONSECURE
    """The Security state of the regime (SecurityStateForRegime): a regime
    other than Non-secure reports its output PA space in PAR_EL1 (the EL3
    regime is Secure without FEAT_RME, Root with it)."""


@dataclass(frozen=True)
class NotExecuted:
    """An AT that is UNDEFINED, or trapped to EL2 (``kind`` = "trap")."""

    kind: str
    why: str
    rule: Rule


def route(op: AtOp, el: int, hcr: HcrState, features: Features,
          space: SecurityState = SecurityState.NONSECURE,
          eel2: bool = False) -> AtRoute | NotExecuted:
    """The "Executing AT ..." pseudocode of C5.4 for PSTATE.EL == ``el``;
    ``space``: at EL3, the Security state SCR_EL3.{NSE, NS} selects for the
    EL1 and EL2 operations; at EL1 and EL2, the Security state the PE runs
    in (the regimes are those of that state, the UNDEFINED and trapped ops
    are those of the EL); ``eel2``: EL2 is enabled in the Secure state."""
    name = op.value
    pan_op = name.endswith("P")
    write = op.is_write
    if el not in (1, 2, 3) or (el == 3 and not features.el3):
        return NotExecuted("undefined", f"AT is UNDEFINED at EL{el} here (C5.4)",
                           Rule.AT_UNDEFINED_AT_EL)
    if not op.checks_permissions and not features.ats1a:
        return NotExecuted("undefined", f"AT {name} needs FEAT_ATS1A (C5.4.7, C5.4.12)",
                           Rule.AT_NEEDS_ATS1A)
    if pan_op and features.pan < 2:
        return NotExecuted("undefined", f"AT {name} needs FEAT_PAN2 (C5.4.9)",
                           Rule.AT_NEEDS_PAN2)
    if name.startswith("S1E3"):
        if el != 3:
            return NotExecuted("undefined", f"AT {name} is UNDEFINED below EL3 (C5.4.16)",
                               Rule.AT_EL3_OP_UNDEFINED_BELOW_EL3)
        return AtRoute(Regime.EL3, 3, False, write, False,
                       f"AT {name}: the EL3 regime, a Secure regime (C5.4.16, "
                       "TranslationRegime(EL3))", Rule.REGIME_EL3,
                       space=SecurityState.ROOT if features.rme else SecurityState.SECURE)
    if space is SecurityState.ROOT:
        return NotExecuted("undefined", f"AT {name} at EL3 with SCR_EL3.{{NSE, NS}} == {{1, 0}}: "
                                        "only AT S1E3* translate for the Root state (AArch64.AT)",
                           Rule.AT_ROOT_UNDEFINED)
    if space is SecurityState.REALM and not features.rme:
        raise ValueError(f"AT {name} in the Realm state: the CPU has no FEAT_RME")
    if el == 2 and space is SecurityState.SECURE and not eel2:
        raise ValueError(f"AT {name} at Secure EL2: EL2 is not enabled in the Secure state "
                         "(SCR_EL3.EEL2 == 0)")
    if el == 1 and space is SecurityState.SECURE and not eel2:
        if name.startswith(("S1E2", "S12")):
            return NotExecuted("undefined", f"AT {name} is UNDEFINED at EL1; EL2 is not enabled "
                                            "in the Secure state, so HCR_EL2.NV does not trap it "
                                            "(C5.4, AArch64.AT)",
                               Rule.AT_EL2_OP_UNDEFINED_AT_EL1)
        acc_el = 0 if name.startswith("S1E0") else 1
        return AtRoute(Regime.EL10, acc_el, False, write, pan_op,
                       f"AT {name} at Secure EL1 with SCR_EL3.EEL2 == 0: the Secure EL1&0 "
                       f"regime, accessed from EL{acc_el}, stage 1 only; HCR_EL2 has no effect "
                       "(EL2Enabled() is FALSE: C5.4, AArch64.AT)",
                       Rule.REGIME_EL10_SECURE_EL1, space=space)
    if el == 3 and space is SecurityState.SECURE and not eel2:
        if name.startswith("S1E2"):
            return NotExecuted("undefined", f"AT {name} at EL3 with SCR_EL3.NS == 0: EL2 is not "
                                            "enabled in the Secure state (C5.4.13)",
                               Rule.AT_S1E2_UNDEFINED_AT_EL3)
        acc_el = 0 if name.startswith(("S1E0", "S12E0")) else 1
        return AtRoute(Regime.EL10, acc_el, False, write, pan_op,
                       f"AT {name} at EL3 with SCR_EL3.NS == 0: the Secure EL1&0 regime, "
                       f"accessed from EL{acc_el}, stage 1 only (C5.4, AArch64.AT: "
                       "!EL2Enabled())", Rule.REGIME_EL10_SECURE, space=space)
    if name.startswith(("S1E2", "S12")):
        if el == 1:
            if hcr.nv:
                return NotExecuted("trap", f"AT {name} at EL1 with HCR_EL2.NV == 1 traps "
                                           "to EL2, EC 0x18 (C5.4)", Rule.AT_TRAP_NV)
            return NotExecuted("undefined", f"AT {name} is UNDEFINED at EL1 (C5.4)",
                               Rule.AT_EL2_OP_UNDEFINED_AT_EL1)
        if name.startswith("S1E2"):
            regime = Regime.EL20 if hcr.e2h else Regime.EL2
            return AtRoute(regime, 2, False, write, False,
                           f"AT {name}: the {_state(space)}{regime.value} regime (C5.4, "
                           "TranslationRegime(EL2))",
                           Rule.REGIME_EL20 if hcr.e2h else Rule.REGIME_EL2, space)
    elif el == 1 and hcr.at:
        return NotExecuted("trap", f"AT {name} at EL1 with HCR_EL2.AT == 1 traps to EL2, "
                                   "EC 0x18 (C5.4)", Rule.AT_TRAP_HCR_AT)
    acc_el = 0 if name.startswith(("S1E0", "S12E0")) else 1
    if hcr.el0_in_host:
        # AArch64.AT: with {E2H, TGE} == {1, 1} a stage 1 EL1 request uses EL2&0 from EL2;
        # AT S12E* then perform stage 1 only (C5.4.1-4).
        acc_el = 2 if acc_el == 1 else 0
        return AtRoute(Regime.EL20, acc_el, False, write, pan_op,
                       f"AT {name}: HCR_EL2.{{E2H,TGE}} == {{1,1}}: {_state(space)}EL2&0 regime, "
                       f"accessed from EL{acc_el} (C5.4, AArch64.AT)", Rule.REGIME_HOST, space)
    stage12 = name.startswith("S12") and (hcr.vm or hcr.dc)
    why = f"AT {name}: {_state(space)}EL1&0 regime, accessed from EL{acc_el}"
    if name.startswith("S12"):
        why += (", stages 1 and 2" if stage12 else
                "; HCR_EL2.{DC,VM} == {0,0}: stage 1 only (C5.4.1-4)")
    return AtRoute(Regime.EL10, acc_el, stage12, write, pan_op, why,
                   Rule.REGIME_EL10_S12 if stage12 else Rule.REGIME_EL10, space)


def _state(space: SecurityState) -> str:
    return {SecurityState.SECURE: "Secure ", SecurityState.REALM: "Realm "}.get(space, "")
