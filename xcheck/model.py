"""The model's side of a cross-check: every probe of a setup translated by
xcheck.arch, with the answers each IMPLEMENTATION DEFINED choice permits."""

from __future__ import annotations

from dataclasses import fields

from xcheck.arch.at import ArchState, AtResult, translate
from xcheck.arch.features import Features
from xcheck.arch.memory import MemoryImage
from xcheck.arch.regime import AtRoute, Regime
from xcheck.arch.walkparams import ImpDef
from xcheck.machine import RAM_BASE, AtOp, MachineSetup, SecurityState

IMPDEF_VARIANTS = (
    ImpDef(fault_txsz_below_min=True, fault_txsz_above_max=True),
    ImpDef(granule=14),
    ImpDef(granule=16),
)
"""IMPLEMENTATION DEFINED choices other than the model's defaults (ImpDef())."""


def arch_states(setup: MachineSetup, features: Features, el: int, pan: bool) -> list[ArchState]:
    """The registers of ``setup`` with the model's default IMPLEMENTATION
    DEFINED choices, then with each other choice (the architecture permits
    every one). Each decodes a regime only when it is read, so a choice
    that changes nothing an AT reads costs nothing (ImpDefStates)."""
    return [ArchState.from_sysregs(setup.sysregs, features, el, pan, impdef=choice)
            for choice in (ImpDef(), *IMPDEF_VARIANTS)]


Decides = tuple[Regime, bool, str]
"""What one AT reads of the decoded registers: the regime (and whether its
Secure instance), and "lower", "upper" (the VA range's walk parameters), or
"s2" (the stage 2 parameters, Non-secure and Secure)."""
REGIMES = ((Regime.EL10, False), (Regime.EL10, True), (Regime.EL2, False), (Regime.EL2, True),
           (Regime.EL20, False), (Regime.EL20, True), (Regime.EL3, False))
PARTS: tuple[Decides, ...] = (
    *((regime, secure, half) for regime, secure in REGIMES for half in ("lower", "upper")),
    (Regime.EL10, False, "s2"))
"""Every part of the decode an AT can read."""


def _space(secure: bool) -> SecurityState:
    return SecurityState.SECURE if secure else SecurityState.NONSECURE


def part_differs(base: ArchState, other: ArchState, part: Decides) -> bool:
    """Whether ``other`` (an IMPLEMENTATION DEFINED choice) decodes ``part``
    differently from ``base``: one VA range's walk parameters, or a field the
    regime's ranges share, or any stage 2 (Non-secure and Secure)."""
    regime, secure, half = part
    if half == "s2":
        return (base.s2, base.ss2_nonsecure_ipa, base.ss2_secure_ipa) != \
            (other.s2, other.ss2_nonsecure_ipa, other.ss2_secure_ipa)
    mine, theirs = base.regime(regime, _space(secure)), other.regime(regime, _space(secure))
    return getattr(mine, half) != getattr(theirs, half) or any(
        getattr(mine, f.name) != getattr(theirs, f.name)
        for f in fields(mine) if f.name not in ("lower", "upper"))


def decides_a_choice(base: ArchState, part: Decides) -> bool:
    """Whether decoding ``part`` made an IMPLEMENTATION DEFINED choice: each
    leaves a note (walkparams: a reserved or unimplemented TGx, a TxSZ out of
    range), so without one every choice decodes the part alike and the other
    choices need not be decoded at all."""
    regime, secure, half = part
    if half == "s2":
        return bool(base.s2.notes or base.ss2_nonsecure_ipa.notes or base.ss2_secure_ipa.notes)
    params = getattr(base.regime(regime, _space(secure)), half)
    return params is not None and bool(params.notes)


def variant_differs(base: ArchState, other: ArchState) -> set[Decides]:
    """The parts of the decode where ``other`` (an IMPLEMENTATION DEFINED
    choice) differs from ``base``: an AT that reads none of them gives the
    same answer under both (AArch64.AT reads the regime it routes to, the
    VA range of its VA, and stage 2 for EL1&0)."""
    return {part for part in PARTS if part_differs(base, other, part)}


def regime_reads(state: ArchState, regime: Regime, space: SecurityState, va: int,
                 stage2: bool) -> set[Decides]:
    """The parts of the decode a walk of ``regime`` in Security state
    ``space`` on ``va`` reads (and stage 2, with ``stage2``)."""
    secure = space is SecurityState.SECURE and regime is not Regime.EL3
    rp = state.regime(regime, space)
    half = "upper" if rp.upper is not None and (va >> 55) & 1 else "lower"
    out = {(regime, secure, half)}
    if stage2:
        out.add((Regime.EL10, False, "s2"))
    return out


def reads(state: ArchState, op: AtOp, va: int) -> set[Decides]:
    """The parts of the decode an AT ``op`` on ``va`` can read (empty when
    it does not execute: routing does not depend on the choices)."""
    r, _ = state.route(op)
    if not isinstance(r, AtRoute):
        return set()
    return regime_reads(state, r.regime, r.space, va, r.regime is Regime.EL10 or r.stage12)


class ImpDefStates:
    """arch_states, and which choices differ from the default in the parts
    an AT reads (whether a part decides a choice, and whether a choice
    decodes it otherwise, worked out once per part, on first use)."""

    def __init__(self, setup: MachineSetup, features: Features, el: int, pan: bool) -> None:
        self.states = arch_states(setup, features, el, pan)
        self._differs: dict[tuple[int, Decides], bool] = {}
        self._decides: dict[Decides, bool] = {}
        self._pstates: dict[tuple[int, int, bool, SecurityState], ArchState] = {}

    def with_pstate(self, i: int, el: int, pan: bool, space: SecurityState) -> ArchState:
        """states[i] with a probe's PSTATE (EL, PAN) and Security state, made
        once per PSTATE: it keeps the AT setups worked out on it."""
        key = (i, el, pan, space)
        state = self._pstates.get(key)
        if state is None:
            state = self._pstates[key] = self.states[i].with_pstate(el, pan, space)
        return state

    def differing(self, parts: set[Decides]) -> list[int]:
        """Indexes in ``states`` of the other choices that decode one of
        ``parts`` differently from the default (states[0]): only under those
        can an AT reading ``parts`` answer otherwise."""
        decides = self._decides
        for part in parts.difference(decides):
            decides[part] = decides_a_choice(self.states[0], part)
        parts = {part for part in parts if decides[part]}
        if not parts:
            return []
        out = []
        for i in range(1, len(self.states)):
            for part in parts:
                differs = self._differs.get((i, part))
                if differs is None:
                    differs = self._differs[(i, part)] = part_differs(
                        self.states[0], self.states[i], part)
                if differs:
                    out.append(i)
                    break
        return out


def run_model(
    setup: MachineSetup, features: Features, ram_size: int,
    choices: ImpDefStates | None = None,
) -> list[AtResult]:
    """Translate every probe of ``setup`` in the model; the registers are
    decoded once, then re-used with each probe's PSTATE (EL, PAN) and Security state. Where an
    IMPLEMENTATION DEFINED choice (walkparams.ImpDef) changes the decoded
    registers, each result also carries the other choices' answers as
    alternatives the architecture permits. ``choices``: the registers of
    ``setup`` (with ``features``) decoded by the caller, who asks more of
    them (xcheck.needs); else decoded here."""
    mem = MemoryImage(setup.memory, RAM_BASE, ram_size)
    if not setup.probes:
        return []
    if choices is None:
        first = setup.probes[0]
        choices = ImpDefStates(setup, features, first.el, first.pan)
    # the other choices an AT may answer under: what it reads depends on its
    # VA only through bit 55, the VA range (regime_reads)
    others: dict[tuple[AtOp, int, bool, SecurityState, int], list[int]] = {}
    results: list[AtResult] = []
    for probe in setup.probes:
        op, va, el, pan, space = probe.op, probe.va, probe.el, probe.pan, probe.space
        state = choices.with_pstate(0, el, pan, space)
        res = translate(op, va, state, mem)
        key = (op, el, pan, space, (va >> 55) & 1)
        differing = others.get(key)
        if differing is None:
            differing = others[key] = choices.differing(reads(state, op, va))
        if differing:
            seen = {(a.kind, a.par & a.mask) for a in (res, *res.alternatives)}
            for i in differing:
                answer = translate(op, va, choices.with_pstate(i, el, pan, space), mem)
                for alt in (answer, *answer.alternatives):
                    if (alt.kind, alt.par & alt.mask) not in seen:
                        seen.add((alt.kind, alt.par & alt.mask))
                        res = res._replace(alternatives=(*res.alternatives, alt))
        results.append(res)
    return results
