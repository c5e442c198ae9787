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
from typing import Literal, NamedTuple

from xcheck.arch import attrs, perms
from xcheck.arch.decode import RegisterDecode
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
from xcheck.arch.walkparams import ImpDef, S1RegimeParams, S2TTWParams, secure_el2_enabled
from xcheck.machine import AtOp, SecurityState

AtKind = Literal["par", "undefined", "trap", "abort"]
HCR_GPF_BIT = 38
"""HCR_EL2.GPF (D24.2 HCR_EL2, FEAT_RME)."""


@dataclass(frozen=True)
class ArchState:
    """The translation registers (each regime decoded when an AT first reads
    it: xcheck.arch.decode), and the PSTATE the AT runs with. ``with_pstate``
    shares the decode."""

    regs: RegisterDecode
    features: Features
    hcr: HcrState
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
    _setups: dict[AtOp, AtSetup] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_sysregs(cls, sysregs: Mapping[str, int], features: Features, el: int, pan: bool,
                     impdef: ImpDef | None = None) -> ArchState:
        regs = RegisterDecode(sysregs, features, impdef or ImpDef())
        return cls(
            regs=regs, features=features, hcr=regs.hcr,
            eel2=secure_el2_enabled(sysregs, features), el=el, pan=pan,
            hcr_gpf=bool(features.rme) and bool(sysregs.get("HCR_EL2", 0) >> HCR_GPF_BIT & 1),
        )

    def with_pstate(self, el: int, pan: bool,
                    space: SecurityState = SecurityState.NONSECURE) -> ArchState:
        return replace(self, el=el, pan=pan, space=space, _setups={})

    def regime(self, regime: Regime,
               space: SecurityState = SecurityState.NONSECURE) -> S1RegimeParams:
        """The stage 1 of ``regime`` in Security state ``space`` (the EL3
        regime has one instance; the Root state's regimes are Non-secure)."""
        if regime is Regime.EL3 or space is SecurityState.ROOT:
            space = SecurityState.NONSECURE
        return self.regs.s1(regime, space)

    def stage2(self, space: SecurityState, ipa_ns: bool) -> S2TTWParams:
        """The stage 2 that translates an IPA of the Non-secure (``ipa_ns``) or
        Secure IPA space in Security state ``space`` (AArch64.S2Translate,
        AArch64.GetS2TTWParams)."""
        if space is SecurityState.SECURE:
            return self.regs.s2(space, not ipa_ns)
        if space is not SecurityState.REALM:
            space = SecurityState.NONSECURE
        return self.regs.s2(space, False)

    @property
    def s2(self) -> S2TTWParams:
        """The Non-secure stage 2 (VTTBR_EL2, VTCR_EL2)."""
        return self.regs.s2(SecurityState.NONSECURE, False)

    @property
    def el10(self) -> S1RegimeParams:
        """The Non-secure EL1&0 regime."""
        return self.regs.s1(Regime.EL10, SecurityState.NONSECURE)

    @property
    def ss2_nonsecure_ipa(self) -> S2TTWParams:
        """Stage 2 of a Non-secure IPA in the Secure state (VTTBR_EL2, VTCR_EL2.{NSW, NSA})."""
        return self.regs.s2(SecurityState.SECURE, False)

    @property
    def ss2_secure_ipa(self) -> S2TTWParams:
        """Stage 2 of a Secure IPA (VSTTBR_EL2, VSTCR_EL2)."""
        return self.regs.s2(SecurityState.SECURE, True)

    def route(self, op: AtOp) -> tuple[AtRoute | NotExecuted, Access | None]:
        """The op's routing at this EL, and the access it makes."""
        setup = self.at_setup(op)
        return setup.route, setup.acc

    def at_setup(self, op: AtOp) -> AtSetup:
        """What AT ``op`` reads of this state whatever its VA (memoized)."""
        setup = self._setups.get(op)
        if setup is None:
            setup = self._setups[op] = _at_setup(op, self)
        return setup


class AtSetup(NamedTuple):
    """The part of AArch64.AT that does not depend on the VA, worked out once
    per operation and ArchState: the routing (or why the AT does not
    execute), the access (CreateAccDescAT), the stage 1 regime, the stage 2
    of its table walks, and the trace steps that say so. A NamedTuple: made
    per op and PSTATE of every setup, and unpacked whole by translate."""

    route: AtRoute | NotExecuted
    acc: Access | None = None
    rp: S1RegimeParams | None = None
    s2_walks: S2TTWParams | None = None
    """Stage 2 of the stage 1 walk (EL1&0 with HCR_EL2.{VM, DC}); in the
    Secure state that of the Non-secure IPA space."""
    s2_walks_secure: S2TTWParams | None = None
    """In the Secure state, stage 2 of the walk in the Secure IPA space."""
    steps: tuple[TraceStep, ...] = ()
    notes_lower: tuple[tuple[int, str], ...] = ()
    """The configuration notes an AT on a VA of the lower range reports: the
    walk parameters', then (through stage 2) stage 2's."""
    notes_upper: tuple[tuple[int, str], ...] = ()
    """The same for the upper VA range (TTBR1)."""
    gpc: bool = False
    """The granule protection check applies to the walks (FEAT_RME, GPCCR_EL3.GPC)."""


@lru_cache(maxsize=1024)
def _at_access(op: AtOp, el: int, pan: bool, hcr: HcrState, features: Features,
               space: SecurityState, eel2: bool
               ) -> tuple[AtRoute | NotExecuted, Access | None, tuple[TraceStep, ...]]:
    """The part of AArch64.AT that reads neither the VA nor the translation
    table registers: the routing (regime.route), the access (CreateAccDescAT)
    and the trace steps that say so. Memoized: few distinct inputs, asked per
    PSTATE and op of every setup."""
    r = route(op, el, hcr, features, space, eel2)
    if isinstance(r, NotExecuted):
        return r, None, ()
    checks = op.checks_permissions
    acc = Access(perms.S1Access(el=r.acc_el, write=r.write, pan_op=r.pan_op,
                                any_access=not checks), r.write, pan, features.pan)
    steps = [TraceStep(0, "regime", r.why, cites=r.rule)]
    if not checks:
        steps.append(TraceStep(0, "access", f"AT {op.value}: ATAccess_Any, neither a read nor a "
                               "write: no stage 1 permission check (CreateAccDescAT, "
                               "AArch64.S1CheckPermissions; C5.4.7)",
                               cites=Rule.AT_ANY_NO_PERMISSIONS))
    if r.space is SecurityState.SECURE and eel2 and r.regime is not Regime.EL3:
        steps.append(TraceStep(0, "Secure EL2", "SCR_EL3.EEL2 == 1: EL2 is enabled in the "
                               "Secure state (EL2Enabled(); D24.2 SCR_EL3.EEL2)",
                               rule="EL2Enabled", cites=Rule.SECURE_EL2_ENABLED))
    if r.space is SecurityState.REALM:
        steps.append(TraceStep(0, "Realm", "SCR_EL3.{NSE, NS} == {1, 1}: the Realm state, where "
                               "EL2 is enabled (EL2Enabled(): SCR_EL3.NS == 1)",
                               rule="EL2Enabled, SecurityStateAtEL", cites=Rule.REALM_EL2_ENABLED))
    return r, acc, tuple(steps)


def _at_setup(op: AtOp, state: ArchState) -> AtSetup:
    r, acc, steps = _at_access(op, state.el, state.pan, state.hcr, state.features, state.space,
                               state.eel2)
    if isinstance(r, NotExecuted):
        return AtSetup(r)
    secure, realm = r.space is SecurityState.SECURE, r.space is SecurityState.REALM
    s2_on = (r.regime is Regime.EL10 and state.s2.enabled
             and (r.space is SecurityState.NONSECURE or realm or state.eel2))
    s2_walks = state.stage2(r.space, True) if s2_on else None
    s2_walks_secure = state.stage2(r.space, False) if s2_on and secure else None
    s2_notes: tuple[tuple[int, str], ...] = ()
    if s2_walks or r.stage12:
        s2_notes += tuple((0, n) for n in state.stage2(r.space, True).notes)
    if s2_walks_secure is not None or (r.stage12 and secure):
        s2_notes += tuple((0, n) for n in state.ss2_secure_ipa.notes)
    rp = state.regime(r.regime, r.space)
    lower = tuple((0, n) for n in rp.lower.notes) if rp.enabled else ()
    upper = tuple((0, n) for n in rp.upper.notes) if rp.enabled and rp.upper else lower
    return AtSetup(r, acc, rp, s2_walks, s2_walks_secure, steps, lower + s2_notes,
                   upper + s2_notes, rp.gpc is not None or state.s2.gpc is not None)


class AtResult(NamedTuple):
    """What the architecture requires of one AT: a PAR_EL1 value (``par``,
    compare only ``mask``), or an exception: "undefined", "trap" (to EL2), or
    "abort" (a Data Abort instead of a PAR: a stage 2 fault on the stage 1
    walk of an AT executed at EL1, or an External abort on a walk). A
    NamedTuple: immutable, and far cheaper to make than a frozen dataclass."""

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
                  fault: FaultRecord | None = None,
                  memory: tuple[DescriptorWord, ...] = ()) -> AtResult:
    trace.append(TraceStep(0, kind, why, cites=cites))
    return AtResult(kind, 0, 0, (), fault, tuple(trace), why, memory=memory)


@lru_cache(maxsize=1024)
def _par_attrs(final: attrs.MemAttrs) -> tuple[attrs.MemAttrs, int, tuple[tuple[int, str], ...]]:
    """PAR_EL1.{ATTR, SH} for final attributes, the mask of the bits they fix
    and the mask notes of those they leave open (attrs.par_attrs,
    attrs.par_attr_mask), memoized: few distinct inputs."""
    reported = attrs.par_attrs(final)
    mask, notes = attrs.par_attr_mask(reported)
    cleared = ~mask & ((1 << 64) - 1)
    return reported, mask, tuple((cleared, n) for n in notes)


def translate(op: AtOp, va: int, state: ArchState, mem: PhysMem) -> AtResult:
    """Execute AT ``op`` on ``va`` at state.el with PSTATE.PAN = state.pan:
    the result, and the descriptors it read with the updates it may make."""
    updates: list[PermittedUpdate] = []
    r, acc, rp, s2_walks, s2_walks_secure, steps, notes_lower, notes_upper, gpc = \
        state.at_setup(op)
    if isinstance(r, NotExecuted):
        return _not_executed("trap" if r.kind == "trap" else "undefined", r.why, [], r.rule)
    assert acc is not None and rp is not None
    trace = list(steps)
    nonsecure = r.space is SecurityState.NONSECURE
    realm = r.space is SecurityState.REALM
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
                out = out._replace(descriptor_attrs=s2_plain.attrs)
    notes = notes_upper if rp.params(va) is rp.upper else notes_lower
    if isinstance(out, FaultRecord):
        if out.statuscode is Fault.EXTERNAL_ABORT_ON_WALK:
            return _not_executed("abort", "Synchronous External abort on a translation table "
                                 "walk is taken as a Data Abort, not reported in PAR_EL1 "
                                 "(AArch64.AT; D24.2 PAR_EL1.FST note)", trace,
                                 Rule.AT_ABORT_EXTERNAL, out, descriptor_words(trace, updates, mem))
        if out.gpcf is not None and (
                report_as_gpc_exception(out.gpcf, state.el, state.scr_gpf)
                or (state.el == 1 and state.hcr_gpf and r.regime is Regime.EL10
                    and (r.space is not SecurityState.SECURE or state.eel2))):
            return _not_executed("abort", f"a GPC fault on the walk ({out.gpcf.describe()}) "
                                 "is taken as an exception: ReportAsGPCException, or "
                                 "HCR_EL2.GPF == 1 for an AT at EL1 (AArch64.AT)", trace,
                                 Rule.AT_GPC_EXCEPTION, out, descriptor_words(trace, updates, mem))
        if out.s2fs1walk and state.el == 1:
            return _not_executed("abort", "a stage 2 fault on the stage 1 walk of an AT "
                                 "executed at EL1 is taken as a Data Abort to EL2 "
                                 "(AArch64.AT)", trace, Rule.AT_ABORT_S2_ON_WALK_EL1, out,
                                 descriptor_words(trace, updates, mem))
        faulted = AtResult("par", encode_fault(out), FAULT_MASK, FAULT_NOTES + notes, out,
                           tuple(trace), "", (), descriptor_words(trace, updates, mem))
        if out.af_update is not None:  # a stage 1 Permission fault
            return _with_af_update_fault(faulted, out.af_update, out.af_update_ns, s2_walks,
                                         s2_walks_secure, state, mem, trace)
        if out.stage == 2 and not out.s2fs1walk and isinstance(s1_out, Translated) \
                and s1_out.af_update is not None:  # the output's stage 2, after stage 1
            return _with_af_update_fault(faulted, s1_out.af_update, s1_out.leaf_ns, s2_walks,
                                         s2_walks_secure, state, mem, trace)
        return faulted
    if gpc:
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
                           f"SH 0b{reported.sh:02b}", None, None, None, None, None,
                           "AArch64.EncodePAR", Rule.ENCODE_PAR))
    result = AtResult("par", par, success_mask & attr_mask, success_notes + notes + attr_notes,
                      None, tuple(trace), "", (), descriptor_words(trace, updates, mem))
    if out.descriptor_attrs is not None:
        # D24.2 PAR_EL1.ATTR: the reported attributes may be those the
        # descriptor gives, before SCTLR_ELx.C made them Non-cacheable.
        plain, plain_mask, _ = _par_attrs(out.descriptor_attrs)
        why = ("PAR_EL1.ATTR may report the descriptor's attributes instead of the "
               "resulting Non-cacheable ones (D24.2 PAR_EL1.ATTR: \"can be the resulting "
               "attribute ... instead of the value that appears in the translation table "
               "descriptor\"); an IMPLEMENTATION DEFINED choice")
        alt = result._replace(par=encode_success(out.address, plain.attr, plain.sh, par_ns, nse),
                      mask=success_mask & plain_mask,
                      mask_notes=(*result.mask_notes, (0, why)), memory=())
        result = result._replace(alternatives=(alt,))
    if isinstance(s1_out, Translated) and s1_out.af_update is not None:
        return _with_af_update_fault(result, s1_out.af_update, s1_out.leaf_ns, s2_walks,
                                     s2_walks_secure, state, mem, trace)
    return result


def _with_af_update_fault(result: AtResult, descaddr: int, descaddr_ns: bool,
                          s2_walks: S2TTWParams | None, s2_walks_secure: S2TTWParams | None,
                          state: ArchState, mem: PhysMem, trace: list[TraceStep]) -> AtResult:
    """``result`` with, as a permitted alternative, the stage 2 fault that
    the AT's permitted AF update of the stage 1 descriptor at ``descaddr``
    takes (TCR.HA == 1, AF == 0, D8.5): the write goes through stage 2
    (AArch64.S1Translate, CreateAccDescTTEUpdate, MemSwapTableDesc), whose
    fault replaces the walk's. AArch64.S1Translate makes it after the stage 1
    permission check, when there is no fault or (CONSTRAINED UNPREDICTABLE,
    AArch64.SettingAccessFlagPermitted) a Permission fault, and before
    AArch64.FullTranslate translates the output address at stage 2: so it is
    an alternative to a translation, to a stage 1 Permission fault and to a
    fault on the output's stage 2 alike."""
    if not s2_walks:
        return result
    walk_s2 = s2_walks if descaddr_ns or s2_walks_secure is None else s2_walks_secure
    update = s2_translate(walk_s2, descaddr, None, True, True, mem, [])
    if not isinstance(update, FaultRecord):
        return result
    why = ("an AT is permitted to set AF (TCR.HA == 1, D8.5); that write to the "
           "descriptor goes through stage 2 (AArch64.S1Translate, "
           "CreateAccDescTTEUpdate) and faults: " + update.describe())
    alt = (_not_executed("abort", why, list(trace), Rule.AF_UPDATE_S2_FAULT, update)
           if state.el == 1 else
           AtResult("par", encode_fault(update), FAULT_MASK, (*FAULT_NOTES, (0, why)),
                    update, tuple(trace)))
    return result._replace(alternatives=(*result.alternatives, alt))
