"""The AT operations: translate(op, va, state, mem) -> AtResult.

Arm ARM DDI 0487, J1.1.3.10 AArch64.AT and J1.1.3.11 AArch64.EncodePAR:
route the operation to a regime (regime.py), translate stage 1 and, for
AT S12E*, stage 2 (walk.py), then encode PAR_EL1 (par.py) with the mask
of the bits the architecture determines.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Literal

from xcheck.arch import attrs, perms
from xcheck.arch.descupdate import DescriptorWord, PermittedUpdate, descriptor_words
from xcheck.arch.fault import Fault, FaultRecord
from xcheck.arch.features import Features
from xcheck.arch.gpc import PASpace, report_as_gpc_exception
from xcheck.arch.memory import PhysMem
from xcheck.arch.par import (
    FAULT_MASK,
    FAULT_NOTES,
    NSE_BIT,
    REALM_NOTES,
    REALM_S1_NOTES,
    RME_NOTES,
    SECURE_SUCCESS_MASK,
    SUCCESS_MASK,
    SUCCESS_NOTES,
    describe_par,
    encode_fault,
    encode_success,
)
from xcheck.arch.regime import AtRoute, HcrState, NotExecuted, Regime, route
from xcheck.arch.rules import Rule
from xcheck.arch.trace import TraceStep, render_trace
from xcheck.arch.walk import Access, Translated, s1_translate, s2_translate
from xcheck.arch.walkparams import (
    ImpDef,
    S1RegimeParams,
    S2TTWParams,
    s1_regime_params,
    s2_params,
    secure_el2_enabled,
)
from xcheck.machine import AtOp, SecurityState

AtKind = Literal["par", "undefined", "trap", "abort"]
HCR_GPF_BIT = 38
"""HCR_EL2.GPF (D24.2 HCR_EL2, FEAT_RME)."""


@dataclass(frozen=True)
class ArchState:
    """The translation registers decoded once (every regime, stage 2), and
    the PSTATE the AT runs with. ``with_pstate`` reuses the decode."""

    features: Features
    hcr: HcrState
    el10: S1RegimeParams
    el2: S1RegimeParams
    el20: S1RegimeParams
    s2: S2TTWParams
    el3: S1RegimeParams
    el10_secure: S1RegimeParams
    el2_secure: S1RegimeParams
    el20_secure: S1RegimeParams
    ss2_nonsecure_ipa: S2TTWParams
    """Stage 2 of a Non-secure IPA in the Secure state (VTTBR_EL2, VTCR_EL2.{NSW, NSA})."""
    ss2_secure_ipa: S2TTWParams
    """Stage 2 of a Secure IPA (VSTTBR_EL2, VSTCR_EL2)."""
    el10_realm: S1RegimeParams
    el2_realm: S1RegimeParams
    el20_realm: S1RegimeParams
    s2_realm: S2TTWParams
    """Realm stage 2 (AArch64.RLS2TTWParams: VTTBR_EL2, VTCR_EL2)."""
    eel2: bool = False
    """EL2 is enabled in the Secure state (secure_el2_enabled)."""
    el: int = 1
    pan: bool = False
    space: SecurityState = SecurityState.NONSECURE
    """The Security state the AT runs in (at EL3: the one SCR_EL3.{NSE, NS}
    selects for the EL1 and EL2 operations)."""
    hcr_gpf: bool = False
    """HCR_EL2.GPF (FEAT_RME): a granule protection fault of an AT at EL1 is
    taken to EL2 (AArch64.AT), in a Security state where EL2 is enabled."""
    scr_gpf: bool = False
    """SCR_EL3.GPF (FEAT_RME): granule protection faults below EL3 are GPC
    exceptions. The harness runs with SCR_EL3.GPF == 0 (xcheck.target.el3)."""
    _routes: dict[AtOp, tuple[AtRoute | NotExecuted, Access | None]] = field(
        default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_sysregs(cls, sysregs: Mapping[str, int], features: Features, el: int, pan: bool,
                     impdef: ImpDef | None = None) -> ArchState:
        choices = impdef or ImpDef()
        hcr = HcrState.decode(sysregs.get("HCR_EL2", 0), features)
        secure, realm = SecurityState.SECURE, SecurityState.REALM
        return cls(
            features=features, hcr=hcr,
            el10=s1_regime_params(Regime.EL10, sysregs, hcr, features, choices),
            el2=s1_regime_params(Regime.EL2, sysregs, hcr, features, choices),
            el20=s1_regime_params(Regime.EL20, sysregs, hcr, features, choices),
            s2=s2_params(sysregs, hcr, features, choices),
            el3=s1_regime_params(Regime.EL3, sysregs, hcr, features, choices),
            el10_secure=s1_regime_params(Regime.EL10, sysregs, hcr, features, choices, secure),
            el2_secure=s1_regime_params(Regime.EL2, sysregs, hcr, features, choices, secure),
            el20_secure=s1_regime_params(Regime.EL20, sysregs, hcr, features, choices, secure),
            ss2_nonsecure_ipa=s2_params(sysregs, hcr, features, choices, secure),
            ss2_secure_ipa=s2_params(sysregs, hcr, features, choices, secure, secure_ipa=True),
            el10_realm=s1_regime_params(Regime.EL10, sysregs, hcr, features, choices, realm),
            el2_realm=s1_regime_params(Regime.EL2, sysregs, hcr, features, choices, realm),
            el20_realm=s1_regime_params(Regime.EL20, sysregs, hcr, features, choices, realm),
            s2_realm=s2_params(sysregs, hcr, features, choices, realm),
            eel2=secure_el2_enabled(sysregs, features), el=el, pan=pan,
            hcr_gpf=bool(features.rme) and bool(sysregs.get("HCR_EL2", 0) >> HCR_GPF_BIT & 1),
        )

    @property
    def decoded(self) -> tuple[object, ...]:
        """Everything decoded from the registers (two states that decode alike
        answer alike)."""
        return (self.el10, self.el2, self.el20, self.s2, self.el3, self.el10_secure,
                self.el2_secure, self.el20_secure, self.ss2_nonsecure_ipa, self.ss2_secure_ipa,
                self.el10_realm, self.el2_realm, self.el20_realm, self.s2_realm)

    def with_pstate(self, el: int, pan: bool,
                    space: SecurityState = SecurityState.NONSECURE) -> ArchState:
        return replace(self, el=el, pan=pan, space=space, _routes={})

    def regime(self, regime: Regime,
               space: SecurityState = SecurityState.NONSECURE) -> S1RegimeParams:
        if regime is Regime.EL3:
            return self.el3
        if space is SecurityState.REALM:
            return {Regime.EL10: self.el10_realm, Regime.EL2: self.el2_realm,
                    Regime.EL20: self.el20_realm}[regime]
        secure = space is SecurityState.SECURE
        if regime is Regime.EL10:
            return self.el10_secure if secure else self.el10
        if regime is Regime.EL2:
            return self.el2_secure if secure else self.el2
        return self.el20_secure if secure else self.el20

    def stage2(self, space: SecurityState, ipa_ns: bool) -> S2TTWParams:
        """The stage 2 that translates an IPA of the Non-secure (``ipa_ns``) or
        Secure IPA space in Security state ``space`` (AArch64.S2Translate,
        AArch64.GetS2TTWParams)."""
        if space is SecurityState.REALM:
            return self.s2_realm
        if space is not SecurityState.SECURE:
            return self.s2
        return self.ss2_nonsecure_ipa if ipa_ns else self.ss2_secure_ipa

    def route(self, op: AtOp) -> tuple[AtRoute | NotExecuted, Access | None]:
        """The op's routing at this EL, and the access it makes (memoized)."""
        cached = self._routes.get(op)
        if cached is None:
            r = route(op, self.el, self.hcr, self.features, self.space, self.eel2)
            acc = None
            if isinstance(r, AtRoute):
                acc = Access(perms.S1Access(el=r.acc_el, write=r.write, pan_op=r.pan_op,
                                            any_access=not op.checks_permissions),
                             r.write, self.pan, self.features.pan)
            cached = self._routes[op] = (r, acc)
        return cached


@dataclass(frozen=True)
class AtResult:
    """What the architecture requires of one AT: a PAR_EL1 value (``par``,
    compare only ``mask``), or an exception: "undefined", "trap" (to EL2), or
    "abort" (a Data Abort instead of a PAR: a stage 2 fault on the stage 1
    walk of an AT executed at EL1, or an External abort on a walk)."""

    kind: AtKind
    par: int
    mask: int
    mask_notes: tuple[tuple[int, str], ...]
    fault: FaultRecord | None
    trace: tuple[TraceStep, ...]
    detail: str = ""
    alternatives: tuple[AtResult, ...] = ()
    """Other results the architecture permits, from IMPLEMENTATION DEFINED
    choices (walkparams.ImpDef) that decided this AT; a target matching any
    of them conforms."""
    memory: tuple[DescriptorWord, ...] = ()
    """Every descriptor word the AT's walks read, with the bits it may set
    there (xcheck.arch.descupdate); the rest of each word must not change."""

    def render(self) -> str:
        if self.kind == "par":
            head = f"PAR_EL1 = 0x{self.par:016x}: {describe_par(self.par)}"
        else:
            head = f"{self.kind}: {self.detail}"
        lines = [head, render_trace(self.trace)]
        lines += [f"mask 0x{bits:016x}: {why}" for bits, why in self.mask_notes]
        return "\n".join(line for line in lines if line)


def _not_executed(kind: AtKind, why: str, trace: list[TraceStep], cites: Rule,
                  fault: FaultRecord | None = None) -> AtResult:
    trace.append(TraceStep(0, kind, why, cites=cites))
    return AtResult(kind, 0, 0, (), fault, tuple(trace), why)


@lru_cache(maxsize=1024)
def _par_attrs(final: attrs.MemAttrs) -> tuple[attrs.MemAttrs, int, tuple[str, ...]]:
    """PAR_EL1.{ATTR, SH} for final attributes and the bits they leave open
    (attrs.par_attrs, attrs.par_attr_mask), memoized: few distinct inputs."""
    reported = attrs.par_attrs(final)
    mask, notes = attrs.par_attr_mask(reported)
    return reported, mask, notes


def translate(op: AtOp, va: int, state: ArchState, mem: PhysMem) -> AtResult:
    """Execute AT ``op`` on ``va`` at state.el with PSTATE.PAN = state.pan:
    the result, and the descriptors it read with the updates it may make."""
    updates: list[PermittedUpdate] = []
    res = _translate(op, va, state, mem, updates)
    words = descriptor_words(res.trace, updates, mem)
    return replace(res, memory=words) if words else res


def _translate(op: AtOp, va: int, state: ArchState, mem: PhysMem,
               updates: list[PermittedUpdate]) -> AtResult:
    trace: list[TraceStep] = []
    r, acc = state.route(op)
    if isinstance(r, NotExecuted):
        return _not_executed("trap" if r.kind == "trap" else "undefined", r.why, trace, r.rule)
    assert acc is not None
    trace.append(TraceStep(0, "regime", r.why, cites=r.rule))
    if not op.checks_permissions:
        trace.append(TraceStep(0, "access", f"AT {op.value}: ATAccess_Any, neither a read nor a "
                               "write: no stage 1 permission check (CreateAccDescAT, "
                               "AArch64.S1CheckPermissions; C5.4.7)",
                               cites=Rule.AT_ANY_NO_PERMISSIONS))
    rp = state.regime(r.regime, r.space)
    nonsecure = r.space is SecurityState.NONSECURE
    realm = r.space is SecurityState.REALM
    if r.space is SecurityState.SECURE and state.eel2 and r.regime is not Regime.EL3:
        trace.append(TraceStep(0, "Secure EL2", "SCR_EL3.EEL2 == 1: EL2 is enabled in the "
                               "Secure state (EL2Enabled(); D24.2 SCR_EL3.EEL2)",
                               rule="EL2Enabled", cites=Rule.SECURE_EL2_ENABLED))
    if realm:
        trace.append(TraceStep(0, "Realm", "SCR_EL3.{NSE, NS} == {1, 1}: the Realm state, where "
                               "EL2 is enabled (EL2Enabled(): SCR_EL3.NS == 1)",
                               rule="EL2Enabled, SecurityStateAtEL", cites=Rule.REALM_EL2_ENABLED))
    s2_on = (r.regime is Regime.EL10 and state.s2.enabled
             and (nonsecure or realm or state.eel2))
    s2_walks = state.stage2(r.space, True) if s2_on else None
    s2_walks_secure = (state.stage2(r.space, False)
                       if s2_on and r.space is SecurityState.SECURE else None)
    out = s1_translate(rp, va, acc, s2_walks, mem, trace, updates, s2_walks_secure)
    s1_out = out
    if isinstance(out, Translated) and r.stage12:
        s1 = out
        s2_out = state.stage2(r.space, s1.ns)
        out = s2_translate(s2_out, s1.address, s1.attrs, r.write, False, mem, trace, updates)
        if isinstance(out, Translated) and s1.descriptor_attrs is not None:
            s2_plain = s2_translate(s2_out, s1.address, s1.descriptor_attrs, r.write,
                                    False, mem, [])
            if isinstance(s2_plain, Translated):
                out = replace(out, descriptor_attrs=s2_plain.attrs)
    notes = [(0, n) for n in rp.params(va).notes] if rp.enabled else []
    if s2_walks or r.stage12:
        notes += [(0, n) for n in state.stage2(r.space, True).notes]
    if s2_walks_secure is not None or (r.stage12 and r.space is SecurityState.SECURE):
        notes += [(0, n) for n in state.ss2_secure_ipa.notes]
    if isinstance(out, FaultRecord):
        if out.statuscode is Fault.EXTERNAL_ABORT_ON_WALK:
            return _not_executed("abort", "Synchronous External abort on a translation table "
                                 "walk is taken as a Data Abort, not reported in PAR_EL1 "
                                 "(AArch64.AT; D24.2 PAR_EL1.FST note)", trace,
                                 Rule.AT_ABORT_EXTERNAL, out)
        if out.gpcf is not None and (
                report_as_gpc_exception(out.gpcf, state.el, state.scr_gpf)
                or (state.el == 1 and state.hcr_gpf and r.regime is Regime.EL10
                    and (r.space is not SecurityState.SECURE or state.eel2))):
            return _not_executed("abort", f"a GPC fault on the walk ({out.gpcf.describe()}) "
                                 "is taken as an exception: ReportAsGPCException, or "
                                 "HCR_EL2.GPF == 1 for an AT at EL1 (AArch64.AT)", trace,
                                 Rule.AT_GPC_EXCEPTION, out)
        if out.s2fs1walk and state.el == 1:
            return _not_executed("abort", "a stage 2 fault on the stage 1 walk of an AT "
                                 "executed at EL1 is taken as a Data Abort to EL2 "
                                 "(AArch64.AT)", trace, Rule.AT_ABORT_S2_ON_WALK_EL1, out)
        faulted = AtResult("par", encode_fault(out), FAULT_MASK, FAULT_NOTES + tuple(notes),
                           out, tuple(trace))
        if out.stage == 2 and not out.s2fs1walk:  # the output's stage 2, after stage 1
            return _with_af_update_fault(faulted, s1_out, s2_walks, s2_walks_secure, state,
                                         mem, trace)
        return faulted
    if rp.gpc is not None or state.s2.gpc is not None:
        trace.append(TraceStep(0, "GPC", "the output address is not checked: AT reports the "
                               "translation, it does not access it", rule="AArch64.AT",
                               cites=Rule.AT_NO_OUTPUT_GPC))
    reported, attr_mask, attr_notes = _par_attrs(out.attrs)
    # AArch64.EncodePAR: a Secure regime reports NS, the Root state's EL3
    # regime {NSE, NS}; with FEAT_RME a Secure regime's NSE is UNKNOWN.
    nse = out.nse if rp.root else None
    # a Realm regime's NS: 0 the Realm PA space, 1 the Non-secure one
    par_ns = out.paspace is not PASpace.REALM if realm else out.ns
    par = encode_success(out.address, reported.attr, reported.sh, par_ns, nse)
    success_mask, success_notes = SUCCESS_MASK, SUCCESS_NOTES
    if realm and r.regime is Regime.EL10 and not op.value.startswith("S12"):
        success_mask, success_notes = SUCCESS_MASK & ~NSE_BIT, SUCCESS_NOTES + REALM_S1_NOTES
    elif not nonsecure:
        success_mask, success_notes = SECURE_SUCCESS_MASK, SUCCESS_NOTES[1:]
        if state.features.rme and not rp.root:
            success_mask &= ~NSE_BIT
            success_notes += REALM_NOTES if realm else RME_NOTES
    trace.append(TraceStep(0, "output", f"PA 0x{out.address:x}, ATTR 0x{reported.attr:02x}, "
                           f"SH 0b{reported.sh:02b}", rule="AArch64.EncodePAR",
                           cites=Rule.ENCODE_PAR))
    cleared = ~attr_mask & ((1 << 64) - 1)
    notes += [(cleared, n) for n in attr_notes]
    result = AtResult("par", par, success_mask & attr_mask, success_notes + tuple(notes), None,
                      tuple(trace))
    if out.descriptor_attrs is not None:
        # D24.2 PAR_EL1.ATTR: the reported attributes may be those the
        # descriptor gives, before SCTLR_ELx.C made them Non-cacheable.
        plain, plain_mask, _ = _par_attrs(out.descriptor_attrs)
        why = ("PAR_EL1.ATTR may report the descriptor's attributes instead of the "
               "resulting Non-cacheable ones (D24.2 PAR_EL1.ATTR: \"can be the resulting "
               "attribute ... instead of the value that appears in the translation table "
               "descriptor\"); an IMPLEMENTATION DEFINED choice")
        alt = replace(result, par=encode_success(out.address, plain.attr, plain.sh, par_ns, nse),
                      mask=success_mask & plain_mask,
                      mask_notes=(*result.mask_notes, (0, why)))
        result = replace(result, alternatives=(alt,))
    return _with_af_update_fault(result, s1_out, s2_walks, s2_walks_secure, state, mem, trace)


def _with_af_update_fault(result: AtResult, s1_out: Translated | FaultRecord,
                          s2_walks: S2TTWParams | None, s2_walks_secure: S2TTWParams | None,
                          state: ArchState, mem: PhysMem, trace: list[TraceStep]) -> AtResult:
    """``result`` with, as a permitted alternative, the stage 2 fault that
    the AT's permitted AF update takes (TCR.HA == 1, AF == 0, D8.5): the
    write to the stage 1 descriptor goes through stage 2 (AArch64.S1Translate,
    CreateAccDescTTEUpdate), before AArch64.FullTranslate translates the
    output address at stage 2, so it is an alternative to a translation and
    to a fault on the output's stage 2 alike."""
    if not (isinstance(s1_out, Translated) and s1_out.af_update is not None and s2_walks):
        return result
    walk_s2 = s2_walks if s1_out.leaf_ns or s2_walks_secure is None else s2_walks_secure
    update = s2_translate(walk_s2, s1_out.af_update, None, True, True, mem, [])
    if not isinstance(update, FaultRecord):
        return result
    why = ("an AT is permitted to set AF (TCR.HA == 1, D8.5); that write to the "
           "descriptor goes through stage 2 (AArch64.S1Translate, "
           "CreateAccDescTTEUpdate) and faults: " + update.describe())
    alt = (_not_executed("abort", why, list(trace), Rule.AF_UPDATE_S2_FAULT, update)
           if state.el == 1 else
           AtResult("par", encode_fault(update), FAULT_MASK, (*FAULT_NOTES, (0, why)),
                    update, tuple(trace)))
    return replace(result, alternatives=(*result.alternatives, alt))
