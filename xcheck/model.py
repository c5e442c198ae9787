"""The model's side of a cross-check: every probe of a setup translated by
xcheck.arch, with the answers each IMPLEMENTATION DEFINED choice permits."""

from __future__ import annotations

from dataclasses import fields, replace

from xcheck.arch.at import ArchState, AtResult, translate
from xcheck.arch.features import Features
from xcheck.arch.memory import MemoryImage
from xcheck.arch.regime import AtRoute, Regime
from xcheck.arch.walkparams import ImpDef, S1RegimeParams
from xcheck.machine import RAM_BASE, AtOp, MachineSetup, SecurityState

IMPDEF_VARIANTS = (
    ImpDef(fault_txsz_below_min=True, fault_txsz_above_max=True),
    ImpDef(granule=14),
    ImpDef(granule=16),
)
"""IMPLEMENTATION DEFINED choices other than the model's defaults (ImpDef())."""


def arch_states(setup: MachineSetup, features: Features, el: int, pan: bool) -> list[ArchState]:
    """The registers of ``setup`` decoded with the model's default
    IMPLEMENTATION DEFINED choices, then with each other choice that decodes
    them differently (the architecture permits every one)."""
    base = ArchState.from_sysregs(setup.sysregs, features, el, pan)
    states = [base]
    for choice in IMPDEF_VARIANTS:
        st = ArchState.from_sysregs(setup.sysregs, features, el, pan, impdef=choice)
        if all(st.decoded != o.decoded for o in states):
            states.append(st)
    return states


Decides = tuple[Regime, bool, str]
"""What one AT reads of the decoded registers: the regime (and whether its
Secure instance), and "lower", "upper" (the VA range's walk parameters), or
"s2" (the stage 2 parameters, Non-secure and Secure)."""
REGIMES = ((Regime.EL10, False), (Regime.EL10, True), (Regime.EL2, False), (Regime.EL2, True),
           (Regime.EL20, False), (Regime.EL20, True), (Regime.EL3, False))


def _differs(base: S1RegimeParams, other: S1RegimeParams) -> set[str]:
    """Which parts of a regime's decode differ: "lower", "upper" (one VA
    range's walk parameters) or "all" (the fields the ranges share)."""
    out = {half for half in ("lower", "upper") if getattr(base, half) != getattr(other, half)}
    if any(getattr(base, f.name) != getattr(other, f.name)
           for f in fields(base) if f.name not in ("lower", "upper")):
        out.add("all")
    return out


def _space(secure: bool) -> SecurityState:
    return SecurityState.SECURE if secure else SecurityState.NONSECURE


def variant_differs(base: ArchState, other: ArchState) -> set[Decides]:
    """The parts of the decode where ``other`` (an IMPLEMENTATION DEFINED
    choice) differs from ``base``: an AT that reads none of them gives the
    same answer under both (AArch64.AT reads the regime it routes to, the
    VA range of its VA, and stage 2 for EL1&0)."""
    out: set[Decides] = set()
    for regime, secure in REGIMES:
        for part in _differs(base.regime(regime, _space(secure)),
                             other.regime(regime, _space(secure))):
            if part == "all":
                out |= {(regime, secure, "lower"), (regime, secure, "upper")}
            else:
                out.add((regime, secure, part))
    if (base.s2, base.ss2_nonsecure_ipa, base.ss2_secure_ipa) != \
            (other.s2, other.ss2_nonsecure_ipa, other.ss2_secure_ipa):
        out.add((Regime.EL10, False, "s2"))
    return out


def reads(state: ArchState, op: AtOp, va: int) -> set[Decides]:
    """The parts of the decode an AT ``op`` on ``va`` can read (empty when
    it does not execute: routing does not depend on the choices)."""
    r, _ = state.route(op)
    if not isinstance(r, AtRoute):
        return set()
    secure = r.space is SecurityState.SECURE and r.regime is not Regime.EL3
    rp = state.regime(r.regime, r.space)
    half = "upper" if rp.upper is not None and (va >> 55) & 1 else "lower"
    out = {(r.regime, secure, half)}
    if r.regime is Regime.EL10 or r.stage12:
        out.add((Regime.EL10, False, "s2"))
    return out


def run_model(
    setup: MachineSetup, features: Features, ram_size: int
) -> list[AtResult]:
    """Translate every probe of ``setup`` in the model; the registers are
    decoded once, then re-used with each probe's PSTATE (EL, PAN) and Security state. Where an
    IMPLEMENTATION DEFINED choice (walkparams.ImpDef) changes the decoded
    registers, each result also carries the other choices' answers as
    alternatives the architecture permits."""
    mem = MemoryImage(setup.memory, RAM_BASE, ram_size)
    if not setup.probes:
        return []
    first = setup.probes[0]
    decoded = arch_states(setup, features, first.el, first.pan)
    differs = [variant_differs(decoded[0], other) for other in decoded[1:]]
    states: dict[tuple[int, bool, SecurityState], list[ArchState]] = {}
    results: list[AtResult] = []
    for probe in setup.probes:
        key = (probe.el, probe.pan, probe.space)
        variants = states.get(key)
        if variants is None:
            variants = states[key] = [s.with_pstate(probe.el, probe.pan, probe.space)
                                      for s in decoded]
        res = translate(probe.op, probe.va, variants[0], mem)
        seen = {(a.kind, a.par & a.mask) for a in (res, *res.alternatives)}
        read = reads(variants[0], probe.op, probe.va) if differs else set()
        for other, parts in zip(variants[1:], differs, strict=True):
            if not read & parts:
                continue
            answer = translate(probe.op, probe.va, other, mem)
            for alt in (answer, *answer.alternatives):
                if (alt.kind, alt.par & alt.mask) not in seen:
                    seen.add((alt.kind, alt.par & alt.mask))
                    res = replace(res, alternatives=(*res.alternatives, alt))
        results.append(res)
    return results
