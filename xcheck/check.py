"""Run scenarios on a target and on the model, compare, yield Outcomes.

The two sides meet only here: the target returns a PAR_EL1 (or an exception)
per probe, the model returns the PAR the Arm ARM requires with a mask of the
bits it determines, and :func:`compare` turns the pair into one Outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from xcheck.arch.at import ArchState, AtResult, translate
from xcheck.arch.features import Features
from xcheck.arch.memory import MemoryImage
from xcheck.arch.par import describe_par, diff_par
from xcheck.arch.walkparams import ImpDef
from xcheck.machine import RAM_BASE, MachineSetup, Probe, ProbeResult, TargetException
from xcheck.outcome import FieldDelta, Kind, Outcome
from xcheck.requires import missing_features
from xcheck.scenario.loader import Scenario, ScenarioError, discover, load_scenario
from xcheck.target.errors import TargetError, Unsupported
from xcheck.target.factory import Target

DEFAULT_RAM_SIZE = 128 << 20
"""RAM of the default profile, for the model when no target says otherwise."""

EC_UNKNOWN = 0x00
"""ESR_ELx.EC for an UNDEFINED instruction (Arm ARM D24.2.39, "Unknown reason")."""
EC_SYS_TRAP = 0x18
"""ESR_ELx.EC for a trapped MSR, MRS or System instruction."""


OTHER_IMPDEF = ImpDef(fault_txsz_below_min=True, fault_txsz_above_max=True)
"""The IMPLEMENTATION DEFINED choices opposite to the model's defaults."""


def run_model(
    setup: MachineSetup, features: Features, ram_size: int
) -> list[AtResult]:
    """Translate every probe of ``setup`` in the model; the registers are
    decoded once, then re-used with each probe's PSTATE (EL, PAN). Where an
    IMPLEMENTATION DEFINED choice (walkparams.ImpDef) changes the decoded
    registers, each result also carries the other choice's answer as an
    alternative the architecture permits."""
    mem = MemoryImage(setup.memory, RAM_BASE, ram_size)
    if not setup.probes:
        return []
    first = setup.probes[0]
    base = ArchState.from_sysregs(setup.sysregs, features, first.el, first.pan)
    flipped = ArchState.from_sysregs(setup.sysregs, features, first.el, first.pan,
                                     impdef=OTHER_IMPDEF)
    decoded = (flipped.el10, flipped.el2, flipped.el20, flipped.s2)
    other = None if decoded == (base.el10, base.el2, base.el20, base.s2) else flipped
    states: dict[tuple[int, bool], tuple[ArchState, ArchState | None]] = {}
    results: list[AtResult] = []
    for probe in setup.probes:
        key = (probe.el, probe.pan)
        pair = states.get(key)
        if pair is None:
            pair = (base.with_pstate(probe.el, probe.pan),
                    other.with_pstate(probe.el, probe.pan) if other is not None else None)
            states[key] = pair
        res = translate(probe.op, probe.va, pair[0], mem)
        if pair[1] is not None:
            alt = translate(probe.op, probe.va, pair[1], mem)
            if (alt.kind, alt.par & alt.mask) != (res.kind, res.par & res.mask):
                res = replace(res, alternatives=(alt,))
        results.append(res)
    return results


def _base(scenario: Scenario, probe: Probe, target: str, version: str,
          kind: Kind = Kind.MATCH, **more: Any) -> Outcome:
    """The outcome for ``probe`` (with ``more`` fields set)."""
    return Outcome(
        scenario=scenario.name,
        path=str(scenario.path),
        kind=kind,
        op=probe.op.value,
        va=probe.va,
        el=probe.el,
        pan=probe.pan,
        label=probe.label,
        line=scenario.probe_line(probe) or 0,
        target=target,
        target_version=version,
        **more,
    )


EC_DABT_LOWER = 0x24
EC_DABT_SAME = 0x25
"""ESR_ELx.EC for a Data Abort from a lower / the same Exception level."""


def _exception_agrees(model: AtResult, exc: TargetException) -> bool:
    """Does the exception the target took agree with the model's non-PAR
    answer? UNDEFINED: EC=0 (Unknown reason). Trapped: EC=0x18 at EL2.
    Aborted (AArch64.AT: an external abort on the walk, or a stage 2 fault
    on a stage 1 walk of an AT at EL1): a Data Abort whose ISS.DFSC is the
    model's fault status code and whose ISS.S1PTW (bit 7) its PTW flag."""
    ec = (exc.esr >> 26) & 0x3F
    if model.kind == "undefined":
        return ec == EC_UNKNOWN
    if model.kind == "trap":
        return ec == EC_SYS_TRAP and exc.el == 2
    if model.kind == "abort" and model.fault is not None:
        dfsc = exc.esr & 0x3F
        s1ptw = bool(exc.esr >> 7 & 1)
        return (
            ec in (EC_DABT_LOWER, EC_DABT_SAME)
            and dfsc == model.fault.fst
            and s1ptw == model.fault.s2fs1walk
        )
    return False


def compare(
    scenario: Scenario,
    probe: Probe,
    got: ProbeResult,
    model: AtResult,
    *,
    target: str,
    version: str,
) -> Outcome:
    """One probe's outcome from the target's result and the model's."""
    failed = _failed_expectation(scenario, probe, model)
    if isinstance(got, TargetException):
        if model.kind != "par" and _exception_agrees(model, got):
            out = _base(scenario, probe, target, version,
                        detail=f"both: {model.kind} ({got.describe()})")
        else:
            want = describe_par(model.par) if model.kind == "par" else model.kind
            out = _known(scenario, probe, version, _base(
                scenario, probe, target, version,
                kind=Kind.MISMATCH,
                par_model=model.par if model.kind == "par" else None,
                detail=f"target: {got.describe()}; model: {want}",
                trace=model.render(),
            ))
    elif model.kind != "par":
        out = _known(scenario, probe, version, _base(
            scenario, probe, target, version,
            kind=Kind.MISMATCH,
            par_target=got,
            detail=f"model: the AT is {model.kind} at EL{probe.el}; "
            f"target returned PAR {describe_par(got)}",
            trace=model.render(),
        ))
    else:
        deltas = tuple(FieldDelta(d.name, d.a, d.b) for d in diff_par(got, model.par, model.mask))
        out = _base(scenario, probe, target, version, par_target=got, par_model=model.par,
                    mask=model.mask, fields=deltas)
        permitted = [a for a in model.alternatives
                     if a.kind == "par" and not diff_par(got, a.par, a.mask)]
        if deltas and permitted:
            alt = permitted[0]
            why = "; ".join(n for note in alt.mask_notes if note not in model.mask_notes
                            for n in (note[1],))
            out = replace(out, par_model=alt.par, mask=alt.mask, fields=(),
                          detail=f"matches the other IMPLEMENTATION DEFINED choice: {why}"[:400])
        elif deltas:
            out = _known(scenario, probe, version,
                         replace(out, kind=Kind.MISMATCH, trace=model.render()))
    if failed and out.kind in (Kind.MATCH, Kind.KNOWN):
        out = replace(out, kind=Kind.EXPECT_FAILED, detail=failed, trace=model.render())
    elif failed:
        out = replace(out, detail=f"{out.detail}; also {failed}")
    return out


def _known(scenario: Scenario, probe: Probe, version: str, out: Outcome) -> Outcome:
    """A mismatch that a `known` entry records for this QEMU version is KNOWN
    (with the entry's reason; the mismatch detail stays in the trace)."""
    known = [k for k in scenario.known if k.applies(probe, version)]
    if not known:
        return out
    return replace(out, kind=Kind.KNOWN, detail=f"{known[0].why} ({out.detail})" if out.detail
                   else known[0].why)


def _failed_expectation(scenario: Scenario, probe: Probe, model: AtResult) -> str:
    """The first pinned expectation the model's answer breaks, described."""
    for exp in scenario.expect:
        if exp.matches(probe):
            problem = exp.check(model)
            if problem and not any(not exp.check(alt) for alt in model.alternatives):
                return f"expectation (line {exp.line}): {problem}"
    return ""


def check_scenario(
    target: Target,
    scenario: Scenario,
    *,
    mode: str = "batch",
    target_name: str = "qemu",
    traces: bool = False,
) -> list[Outcome]:
    """Cross-check every probe of one scenario (with ``traces``, attach the
    model's trace to every outcome, not only to failures). A target failure
    (a crash, a hang) propagates as TargetError: the caller records it with
    :func:`target_failed` and restarts the target."""
    features = Features.from_id_regs(target.id_regs)
    lacking = missing_features(scenario.requires, features)
    if lacking:
        why = "the CPU lacks " + ", ".join(lacking)
        return [
            replace(_base(scenario, p, target_name, target.version), kind=Kind.SKIPPED, detail=why)
            for p in scenario.probes
        ]
    try:
        setup = scenario.build()
    except ScenarioError as err:
        return [invalid(scenario.path, err)]
    model = run_model(setup, features, target.ram_size)
    try:
        got = target.run(setup, mode)
    except Unsupported as err:
        return [
            replace(_base(scenario, p, target_name, target.version),
                    kind=Kind.SKIPPED, detail=str(err))
            for p in scenario.probes
        ]
    outcomes = [
        compare(scenario, p, g, m, target=target_name, version=target.version)
        for p, g, m in zip(setup.probes, got, model, strict=True)
    ]
    if traces:
        outcomes = [
            o if o.trace else replace(o, trace=m.render())
            for o, m in zip(outcomes, model, strict=True)
        ]
    return outcomes


def target_failed(
    scenario: Scenario, err: TargetError, *, target: str, version: str
) -> list[Outcome]:
    """Every probe of a scenario whose run the target could not finish: a
    target error, or KNOWN where a `known` entry records that QEMU fails
    there (a QEMU abort is a QEMU bug like any other)."""
    detail = str(err)
    out = []
    for p in scenario.probes:
        o = replace(_base(scenario, p, target, version), kind=Kind.TARGET_ERROR, detail=detail)
        k = _known(scenario, p, version, replace(o, detail=f"target error: {detail}"))
        out.append(k if k.kind is Kind.KNOWN else o)
    return out


def invalid(path: Path, err: ScenarioError | str) -> Outcome:
    """A scenario that does not load or build."""
    return Outcome(scenario=Path(path).stem, path=str(path), kind=Kind.INVALID, detail=str(err))


def load_all(
    paths: Sequence[Path], *, shard: tuple[int, int] | None = None
) -> tuple[list[Scenario], list[Outcome]]:
    """Discover and load scenario files; a bad file is an INVALID outcome.

    ``shard=(k, n)`` keeps the k-th of n deterministic slices (1-based) of
    the sorted file list, so that n CI jobs cover the suite exactly once.
    """
    files = discover(paths)
    if shard is not None:
        k, n = shard
        files = [f for i, f in enumerate(files) if i % n == k - 1]
    scenarios: list[Scenario] = []
    bad: list[Outcome] = []
    for f in files:
        try:
            scenarios.append(load_scenario(f))
        except ScenarioError as err:
            bad.append(invalid(f, err))
    return scenarios, bad


def select(scenarios: Sequence[Scenario], keep: Callable[[str], bool]) -> list[Scenario]:
    """Keep the probes whose id (path, scenario name, probe label) ``keep``
    accepts; drop scenarios left with none."""
    out = []
    for s in scenarios:
        probes = tuple(p for p in s.probes if keep(f"{s.path}::{s.name}::{p.label}"))
        if probes:
            out.append(s if len(probes) == len(s.probes) else s.with_probes(probes))
    return out
