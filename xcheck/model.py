"""The model's side of a cross-check: every probe of a setup translated by
xcheck.arch, with the answers each IMPLEMENTATION DEFINED choice permits."""

from __future__ import annotations

from dataclasses import replace

from xcheck.arch.at import ArchState, AtResult, translate
from xcheck.arch.features import Features
from xcheck.arch.memory import MemoryImage
from xcheck.arch.walkparams import ImpDef
from xcheck.machine import RAM_BASE, MachineSetup, SecurityState

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
        if all((st.el10, st.el2, st.el20, st.s2, st.el3, st.el10_secure)
               != (o.el10, o.el2, o.el20, o.s2, o.el3, o.el10_secure) for o in states):
            states.append(st)
    return states


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
        for other in variants[1:]:
            answer = translate(probe.op, probe.va, other, mem)
            for alt in (answer, *answer.alternatives):
                if (alt.kind, alt.par & alt.mask) not in seen:
                    seen.add((alt.kind, alt.par & alt.mask))
                    res = replace(res, alternatives=(*res.alternatives, alt))
        results.append(res)
    return results
