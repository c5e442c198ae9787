"""Run scenarios on a target and on the model, compare, yield Outcomes.

The two sides meet only here: the target returns a PAR_EL1 (or an exception)
per probe, the model returns the PAR the Arm ARM requires with a mask of the
bits it determines, and :func:`compare` turns the pair into one Outcome.
The descriptors the model's walks read are read back by the target after
each batch (and each step); :func:`memory_fields` compares them with what
the model permits the ATs to have changed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from xcheck.arch.at import AtResult
from xcheck.arch.descupdate import permitted_together
from xcheck.arch.features import Features
from xcheck.arch.par import describe_par, diff_par
from xcheck.machine import (
    RAM_BASE,
    RESERVED_LOW,
    MachineSetup,
    Probe,
    ProbeResult,
    Readback,
    TargetException,
)
from xcheck.model import run_model
from xcheck.needs import unrunnable
from xcheck.outcome import FieldDelta, Kind, Outcome
from xcheck.requires import missing_features
from xcheck.scenario.expect import KnownDivergence
from xcheck.scenario.loader import Scenario, ScenarioError, discover, load_scenario
from xcheck.target.errors import TargetError, Unsupported
from xcheck.target.factory import Target

DEFAULT_RAM_SIZE = 128 << 20
"""RAM of the default profile, for the model when no target says otherwise."""

EC_UNKNOWN = 0x00
"""ESR_ELx.EC for an UNDEFINED instruction (Arm ARM D24.2.39, "Unknown reason")."""
EC_SYS_TRAP = 0x18
"""ESR_ELx.EC for a trapped MSR, MRS or System instruction."""


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
        space=probe.space.value,
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
    model's fault status code, whose ISS.S1PTW (bit 7) its PTW flag, and
    whose ISS.CM (bit 8) is 1: the abort came from an address translation
    instruction (D24.2 ESR_EL2, ISS encoding for a Data Abort, CM;
    AArch64.FaultSyndrome for AccessType_AT)."""
    ec = (exc.esr >> 26) & 0x3F
    if model.kind == "undefined":
        return ec == EC_UNKNOWN
    if model.kind == "trap":
        return ec == EC_SYS_TRAP and exc.el == 2
    if model.kind == "abort" and model.fault is not None:
        dfsc = exc.esr & 0x3F
        s1ptw = bool(exc.esr >> 7 & 1)
        cm = bool(exc.esr >> 8 & 1)
        return (
            ec in (EC_DABT_LOWER, EC_DABT_SAME)
            and dfsc == model.fault.fst
            and s1ptw == model.fault.s2fs1walk
            and cm
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
    unjudged: str = "",
    features: Features | None = None,
    memory: tuple[FieldDelta, ...] = (),
    acts: Acts | None = None,
    trace: bool = True,
) -> Outcome:
    """One probe's outcome from the target's result and the model's.
    ``unjudged`` names the lacking features the probe's pinned expectation
    depends on: the expectation is then noted, not judged. ``memory``: the
    descriptor words this probe left as the model does not permit
    (:func:`memory_fields`), a mismatch like a PAR field. ``acts``: whether
    a `known` entry's ``acts_as`` explains the target's answer (without it,
    such entries apply by their selection alone). ``trace``: False leaves
    the model's trace out of a failure (for a caller that shows only some
    failures and renders theirs: rendering costs more than comparing)."""
    render = model.render if trace else str
    failed = "" if unjudged else _failed_expectation(scenario, probe, model)
    if isinstance(got, TargetException):
        if model.kind != "par" and _exception_agrees(model, got):
            out = _base(scenario, probe, target, version,
                        detail=f"both: {model.kind} ({got.describe()})")
        else:
            want = describe_par(model.par) if model.kind == "par" else model.kind
            out = _known(scenario, probe, version, features, acts, _base(
                scenario, probe, target, version,
                kind=Kind.MISMATCH,
                par_model=model.par if model.kind == "par" else None,
                detail=f"target: {got.describe()}; model: {want}",
                trace=render(),
            ))
    elif model.kind != "par":
        out = _known(scenario, probe, version, features, acts, _base(
            scenario, probe, target, version,
            kind=Kind.MISMATCH,
            par_target=got,
            detail=f"model: the AT is {model.kind} at EL{probe.el}; "
            f"target returned PAR {describe_par(got)}",
            trace=render(),
        ))
    else:
        deltas = _deltas(got, model.par, model.mask)
        permitted = [a for a in model.alternatives
                     if a.kind == "par" and not diff_par(got, a.par, a.mask)]
        if deltas and permitted:
            alt = permitted[0]
            why = "; ".join(n for note in alt.mask_notes if note not in model.mask_notes
                            for n in (note[1],))
            out = _base(scenario, probe, target, version, par_target=got, par_model=alt.par,
                        mask=alt.mask, detail=f"matches the other IMPLEMENTATION DEFINED "
                        f"choice: {why}"[:400])
        elif deltas:
            out = _known(scenario, probe, version, features, acts, _closest(_base(
                scenario, probe, target, version, kind=Kind.MISMATCH, par_target=got,
                par_model=model.par, mask=model.mask, fields=deltas, trace=render()),
                got, model))
        else:
            out = _base(scenario, probe, target, version, par_target=got, par_model=model.par,
                        mask=model.mask)
    if memory:
        out = _memory_mismatch(scenario, probe, version, features, render, out, memory)
    if unjudged:
        note = f"expectation not judged: it depends on {unjudged}, which this CPU lacks"
        out = replace(out, detail=f"{out.detail}; {note}" if out.detail else note)
    if failed and out.kind in (Kind.MATCH, Kind.KNOWN):
        out = replace(out, kind=Kind.EXPECT_FAILED, detail=failed, trace=render())
    elif failed:
        out = replace(out, detail=f"{out.detail}; also {failed}")
    return out


def _memory_mismatch(scenario: Scenario, probe: Probe, version: str, features: Features | None,
                     render: Callable[[], str], out: Outcome,
                     memory: tuple[FieldDelta, ...]) -> Outcome:
    """``out`` with the descriptor words the AT changed against the rules
    (D8.5: only AF may be set, and the dirty state is never updated by an
    AT, R_ZYGHJ) added to its fields; a match becomes a mismatch."""
    why = ("the AT changed a descriptor in memory where the Arm ARM permits no change but "
           "setting AF (D8.5; an AT never updates the dirty state, R_ZYGHJ)")
    out = replace(out, fields=(*out.fields, *memory), trace=out.trace or render(),
                  detail=f"{out.detail}; {why}" if out.detail else why)
    if out.kind is Kind.MATCH:
        out = _known(scenario, probe, version, features, None, replace(out, kind=Kind.MISMATCH))
    return out


def memory_fields(model: Sequence[AtResult],
                  readbacks: Sequence[Readback]) -> list[tuple[FieldDelta, ...]]:
    """Per probe of ``model`` (the probes the target ran, in setup order),
    the watched words it left with a value none of the ATs that had run
    permits, each a FieldDelta ``memory@0x<PA>`` (the target's value, the
    nearest permitted one). A word is reported once per memory load, at the
    first read back that shows it, against the probes that ran since the
    previous read back and read it (all of them when none did)."""
    out: list[list[FieldDelta]] = [[] for _ in model]
    prev: tuple[int, ...] = ()
    reported: set[int] = set()
    for rb in readbacks:
        fresh = rb.ran[:len(prev)] != prev or not prev
        if fresh:
            reported = set()
        new = rb.ran if fresh else rb.ran[len(prev):]
        prev = rb.ran
        allowed = permitted_together(w for i in rb.ran for w in model[i].memory)
        for pa, got in sorted(rb.words.items()):
            word = allowed.get(pa)
            if word is None or word.permits(got) or pa in reported:
                continue
            reported.add(pa)
            readers = [i for i in new if any(w.pa == pa for w in model[i].memory)]
            for i in readers or new[-1:]:
                out[i].append(FieldDelta(f"memory@0x{pa:x}", got, word.nearest(got)))
    return [tuple(f) for f in out]


def _known(scenario: Scenario, probe: Probe, version: str, features: Features | None,
           acts: Acts | None, out: Outcome) -> Outcome:
    """A mismatch that a `known` entry records for this QEMU version is KNOWN
    (with the entry's reason; the mismatch detail stays in the trace). An
    entry with ``acts_as`` covers it only when ``acts`` says the target
    answered as the model does under those register values."""
    known = [k for k in scenario.known if k.applies(probe, version, features)
             and (not k.acts_as or acts is None or acts(k))]
    if not known:
        return out
    k = known[0]
    why = (f"answers as the model does with {k.describe_acts()}: {k.why}"
           if k.acts_as and acts is not None else k.why)
    return replace(out, kind=Kind.KNOWN, detail=f"{why} ({out.detail})" if out.detail else why)


Acts = Callable[[KnownDivergence], bool]
"""Does a `known` entry's ``acts_as`` explain one probe's answer?"""


def acts_as_explains(known: KnownDivergence, setup: MachineSetup, probe: Probe,
                     got: ProbeResult, features: Features, ram_size: int) -> bool:
    """Is ``got`` the model's answer for ``probe`` with the entry's
    ``acts_as`` register values written into ``setup`` (an answer the
    architecture permits under them: a PAR within the mask or one of the
    IMPLEMENTATION DEFINED alternatives, or the same exception)? Then the
    target behaves as the recorded bug does. False when the values change
    nothing, so a probe the model already answers differently is never
    explained by an entry that does not concern it."""
    sysregs = known.acting(setup.sysregs)
    if sysregs == dict(setup.sysregs):
        return False
    (model,) = run_model(replace(setup, sysregs=sysregs, probes=(probe,)), features, ram_size)
    return agrees(model, got)


def agrees(model: AtResult, got: ProbeResult) -> bool:
    """Is ``got`` an answer the architecture permits for the AT the model
    answered with ``model``: a PAR that differs in no field within the mask
    of the model's PAR or of one of its IMPLEMENTATION DEFINED alternatives,
    or the exception the model's non-PAR answer means? (What :func:`compare`
    calls a match when no expectation or memory is judged.)"""
    if isinstance(got, TargetException):
        return model.kind != "par" and _exception_agrees(model, got)
    if model.kind != "par":
        return False
    if not (got ^ model.par) & model.mask:
        return True  # equal within the mask: no field differs
    return any(a.kind == "par" and not diff_par(got, a.par, a.mask)
               for a in (model, *model.alternatives))


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
    blocked = unrunnable(setup, features, target.ram_size)
    ran_model = [m for m, why in zip(model, blocked, strict=True) if not why]
    runnable = replace(setup, probes=tuple(p for p, why in zip(setup.probes, blocked,
                                                                strict=True) if not why),
                       watch=tuple(sorted({w.pa for m in ran_model for w in m.memory
                                           if not _not_ours(w.pa)})))
    try:
        ran = iter(target.run(runnable, mode) if runnable.probes else [])
        memory = iter(_memory_per_probe(target, runnable, ran_model, mode))
    except Unsupported as err:
        return [
            replace(_base(scenario, p, target_name, target.version),
                    kind=Kind.SKIPPED, detail=str(err))
            for p in scenario.probes
        ]
    unjudged = _unjudged(scenario, setup, features, model, target.ram_size)
    outcomes = []
    for p, why, m, depends in zip(setup.probes, blocked, model, unjudged, strict=True):
        if why:
            outcomes.append(replace(_base(scenario, p, target_name, target.version),
                                    kind=Kind.SKIPPED, detail=why))
        else:
            got = next(ran)
            outcomes.append(compare(
                scenario, p, got, m, target=target_name, version=target.version,
                unjudged=depends, features=features, memory=next(memory),
                acts=partial(acts_as_explains, setup=setup, probe=p, got=got,
                             features=features, ram_size=target.ram_size)))
    if traces:
        outcomes = [
            o if o.trace else replace(o, trace=m.render())
            for o, m in zip(outcomes, model, strict=True)
        ]
    return outcomes


def _memory_per_probe(target: Target, runnable: MachineSetup, model: Sequence[AtResult],
                      mode: str) -> list[tuple[FieldDelta, ...]]:
    """memory_fields of the run just made. When a batch's read back cannot
    tell which probe changed a word, the setup is run again in step mode (a
    read back after each probe), where the target has one."""
    if not runnable.probes:
        return []
    fields = memory_fields(model, target.readbacks)
    if mode == "batch" and sum(1 for f in fields if f) > 1:
        try:
            target.run(runnable, "step")
        except Unsupported:
            return fields
        fields = memory_fields(model, target.readbacks)
    return fields


def _not_ours(pa: int) -> bool:
    """Memory xcheck never writes and the model cannot know: the bottom of
    RAM, where QEMU puts the device tree (machine.RESERVED_LOW). A walk the
    model makes there (a clamped TxSZ, a table address of 0) reads zeros,
    the target the device tree; what an AT leaves there is not compared."""
    return RAM_BASE <= pa < RAM_BASE + RESERVED_LOW


def answers(results: Sequence[AtResult]) -> list[tuple[object, ...]]:
    """What an expectation can pin of each result: the PAR within its mask,
    or the exception with its fault (an abort's status, level, stage, PTW)."""
    return [(r.kind, r.par & r.mask) if r.kind == "par" or r.fault is None else
            (r.kind, r.fault.statuscode, r.fault.level, r.fault.stage, r.fault.s2fs1walk)
            for r in results]


def _unjudged(scenario: Scenario, setup: MachineSetup, features: Features,
              model: Sequence[AtResult], ram_size: int) -> list[str]:
    """Per probe, the features this CPU lacks on which the answer to a pinned
    expectation depends ("" when it depends on none, or there is none).

    Expectations are written for a CPU that has what the scenario uses; on a
    CPU without it the Arm ARM may require another answer (an Address size
    fault with a smaller PA, a granule treated as another, a RES0 control
    ignored). The model's answer with each lacking feature added one at a
    time tells which ones matter; those expectations are not judged on this
    CPU, while the probe is still cross-checked."""
    none = [""] * len(setup.probes)
    pinned = [any(e.matches(p) for e in scenario.expect) for p in setup.probes]
    if not any(pinned):
        return none
    full = features.upgraded()
    if full == features:
        return none

    mine = answers(model)
    if answers(run_model(setup, full, ram_size)) == mine:
        return none
    depends: list[dict[str, str]] = [{} for _ in setup.probes]
    for field_name, name, more in features.lacking(full):
        for i, other in enumerate(answers(run_model(setup, more, ram_size))):
            if other != mine[i] and pinned[i]:
                depends[i].setdefault(field_name, name)  # the lowest level that matters
    return [", ".join(d.values()) for d in depends]


def target_failed(
    scenario: Scenario, err: TargetError, *, target: str, version: str,
    features: Features | None = None,
) -> list[Outcome]:
    """Every probe of a scenario whose run the target could not finish: a
    target error, or KNOWN where a `known` entry records that QEMU fails
    there (a QEMU abort is a QEMU bug like any other). ``features``: the
    CPU's, for entries that apply only where a feature is lacking."""
    detail = str(err)
    out = []
    for p in scenario.probes:
        o = replace(_base(scenario, p, target, version), kind=Kind.TARGET_ERROR, detail=detail)
        k = _known(scenario, p, version, features, None,
                   replace(o, detail=f"target error: {detail}"))
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


def _deltas(got: int, par: int, mask: int) -> tuple[FieldDelta, ...]:
    """The PAR fields where ``got`` and ``par`` differ outside ``mask``."""
    return tuple(FieldDelta(d.name, d.a, d.b) for d in diff_par(got, par, mask))


def _closest(out: Outcome, got: int, model: AtResult) -> Outcome:
    """``out`` diffed against the permitted answer (the model's or one of its
    IMPLEMENTATION DEFINED alternatives) closest to ``got``: the same PAR
    format (F) first, then the fewest differing fields, so a mismatch names
    only what no permitted choice explains (e.g. D24.2 PAR_EL1.ATTR/SH may
    report the descriptor's attributes)."""
    def distance(fields: tuple[FieldDelta, ...]) -> tuple[bool, int]:
        return any(f.name == "F" for f in fields), len(fields)

    best = out
    for alt in model.alternatives:
        if alt.kind != "par":
            continue
        deltas = _deltas(got, alt.par, alt.mask)
        if distance(deltas) < distance(best.fields):
            best = replace(out, par_model=alt.par, mask=alt.mask, fields=deltas)
    return best
