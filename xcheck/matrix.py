"""Matrix runs: the same scenarios on several targets in one command.

``xcheck run --config A --config B`` (or ``--qemu BIN --qemu BIN2``, or
``--target NAME``) runs every selected probe on each target in turn and
prints one table, probe x target. Each outcome's ``target`` is the target's
label (its profile name, made unique), so JSON lines and JUnit tell the
targets apart.

Exit code, the worst over targets: 2 a scenario or usage error; 1 any
failing probe on any target, or a target that could not be used while
another could; 125 only when no target could be used at all; else 0. A
broken target in a comparison is a failure to look at, not a reason to
skip: for `git bisect run`, give the QEMU under test as the only target,
so that a build that does not boot is 125 (skip).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

from rich.console import Console

from xcheck.check import load_all, select
from xcheck.keyword import KeywordError, compile_keyword
from xcheck.outcome import ExitCode, Outcome, exit_code, target_version
from xcheck.report import sigint_deferred
from xcheck.report.html import write_html
from xcheck.report.jsonl import JsonLinesReport
from xcheck.report.junit import write_junit
from xcheck.report.matrix import matrix_table, summary_table
from xcheck.report.terminal import TerminalReport
from xcheck.target.errors import ProfileError, QemuLaunchError
from xcheck.target.profile import Profile, load_profile
from xcheck.target.qemu import cpu_models
from xcheck.workers import CannotTest, run_parallel


@dataclass(frozen=True)
class MatrixTarget:
    """One column of the matrix: a label unique in the run, and its profile."""

    label: str
    profile: Profile


@dataclass
class TargetRun:
    """What one target gave: its outcomes, or why it could not be used."""

    target: MatrixTarget
    outcomes: list[Outcome] = field(default_factory=list)
    cannot: str | None = None

    @property
    def version(self) -> str:
        return target_version(self.outcomes)

    @property
    def code(self) -> ExitCode:
        return exit_code(self.outcomes, could_not_test=self.cannot is not None)


def _distinct_names(paths: Sequence[str]) -> list[str]:
    """Short names telling binaries apart: the last path component left
    once the suffix all paths share is removed (``build-a`` and ``build-b``
    for ``build-a/qemu-system-aarch64`` and ``build-b/qemu-system-aarch64``);
    the whole path when nothing is left; the file name for a single path."""
    if len(paths) == 1:
        return [Path(paths[0]).name]
    parts = [Path(os.path.abspath(p)).parts for p in paths]
    k = 0
    while all(len(p) > k + 1 for p in parts) and len({p[-1 - k] for p in parts}) == 1:
        k += 1
    names = []
    for raw, p in zip(paths, parts, strict=True):
        rest = p[: len(p) - k]
        names.append(rest[-1] if len(rest) > 1 else raw)
    return names


def plan_targets(
    configs: Sequence[str], qemus: Sequence[str], cpus: Sequence[str] = ()
) -> list[MatrixTarget]:
    """One target per ``--config``/``--target`` value and one per ``--qemu``,
    each on every ``--cpu`` model given (``all``: every AArch64 model of
    that target's QEMU).

    A ``--qemu`` binary runs with the only ``--config`` given, or with the
    default profile when there are none or several. Labels are profile
    names; a ``--qemu`` target is labelled by what tells its path apart
    from the others' (prefixed ``PROFILE:`` when a ``--config`` was its
    base); a CPU model is added as ``/MODEL``; a label used twice gets
    ``#2``, ``#3``...
    Raises ProfileError for an unknown profile, QemuLaunchError when the
    models of a QEMU cannot be listed."""
    targets: list[MatrixTarget] = []
    base = configs[0] if len(configs) == 1 else None
    if not qemus or len(configs) > 1:
        profiles = [load_profile(c) for c in configs]
        targets += [MatrixTarget(p.name, p) for p in profiles]
    if qemus:
        base_prof = load_profile(base)
        prefix = f"{base_prof.name}:" if base else ""
        for q, name in zip(qemus, _distinct_names(qemus), strict=True):
            targets.append(MatrixTarget(prefix + name, load_profile(base, qemu=q)))
    if not targets:
        prof = load_profile(None)
        targets.append(MatrixTarget(prof.name, prof))
    if cpus:
        targets = [
            MatrixTarget(f"{t.label}/{cpu}", replace(t.profile, cpu=cpu,
                                                     name=f"{t.profile.name}/{cpu}"))
            for t in targets for cpu in expand_cpus(cpus, t.profile.executable)
        ]
    seen: dict[str, int] = {}
    unique = []
    for t in targets:
        seen[t.label] = seen.get(t.label, 0) + 1
        label = t.label if seen[t.label] == 1 else f"{t.label}#{seen[t.label]}"
        unique.append(replace(t, label=label))
    return unique


def expand_cpus(cpus: Sequence[str], binary: str) -> list[str]:
    """``--cpu`` values with ``all`` replaced by the AArch64 models of
    ``binary`` (each model once, in the order given)."""
    out: list[str] = []
    for cpu in cpus:
        for name in cpu_models(binary) if cpu == "all" else [cpu]:
            if name not in out:
                out.append(name)
    return out


def matrix_exit_code(runs: Sequence[TargetRun], invalid: Sequence[Outcome]) -> ExitCode:
    """The worst over targets (see the module docstring)."""
    if invalid or any(r.code == ExitCode.USAGE for r in runs):
        return ExitCode.USAGE
    if runs and all(r.cannot is not None for r in runs):
        return ExitCode.CANNOT_TEST
    if any(r.code != ExitCode.OK for r in runs):
        return ExitCode.FAILED
    return ExitCode.OK


def _junit_named(o: Outcome) -> Outcome:
    """The outcome with its target in its JUnit test case name."""
    return replace(o, label=f"{o.label or o.scenario} [{o.target}]")


def run_matrix(
    paths: Sequence[Path],
    *,
    configs: Sequence[str],
    qemus: Sequence[str],
    cpus: Sequence[str] = (),
    keyword: str | None,
    jobs: int,
    shard: tuple[int, int] | None,
    json_path: Path | None,
    junit_path: Path | None,
    html_path: Path | None,
    mode: str,
    verbose: bool,
    console: Console,
) -> int:
    """Run the selected scenarios on every target, one target after the
    other (``jobs`` workers each); report; return the exit code."""
    for p in paths:
        if not p.exists():
            console.print(f"[red]error:[/] no such file or folder: {p}")
            return ExitCode.USAGE
    try:
        targets = plan_targets(configs, qemus, cpus)
        keep = compile_keyword(keyword or "")
    except (ProfileError, KeywordError) as err:
        console.print(f"[red]error:[/] {err}")
        return ExitCode.USAGE
    except QemuLaunchError as err:
        console.print(f"[red]QEMU cannot be used:[/] {err}")
        return ExitCode.CANNOT_TEST
    scenarios, invalid = load_all(paths, shard=shard)
    scenarios = select(scenarios, keep)
    probes = sum(len(s.probes) for s in scenarios)
    runs = [TargetRun(t) for t in targets]
    with ExitStack() as stack:
        jsonl = None
        if json_path is not None:
            jsonl = JsonLinesReport(stack.enter_context(json_path.open("w")))
        term = stack.enter_context(
            TerminalReport(console, probes * len(targets) + len(invalid), verbose=verbose)
        )
        for o in invalid:
            term.add(o)
            if jsonl:
                jsonl.add(o)
        try:
            for run in runs:
                for event in run_parallel(scenarios, run.target.profile, mode, max(1, jobs)):
                    if isinstance(event, CannotTest):
                        run.cannot = event.reason
                        continue
                    with sigint_deferred():
                        for o in event:
                            o = replace(o, target=run.target.label)
                            run.outcomes.append(o)
                            term.add(o)
                            if jsonl:
                                jsonl.add(o)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]: results so far are kept")
            _write_reports(runs, invalid, junit_path, html_path)
            return 130
    _write_reports(runs, invalid, junit_path, html_path)
    console.print(matrix_table([(r.target.label, r.version, r.outcomes) for r in runs],
                               all_rows=verbose))
    console.print(summary_table([(r.target.label, r.version, r.outcomes, r.cannot) for r in runs]))
    for r in runs:
        if r.cannot:
            console.print(f"[red]could not test {r.target.label}:[/] {r.cannot}")
    if not scenarios and not invalid:
        console.print("[yellow]no probes selected[/]")
    code = matrix_exit_code(runs, invalid)
    console.print(f"exit {int(code)} ({code.name.lower().replace('_', ' ')})")
    return int(code)


def _write_reports(
    runs: Sequence[TargetRun],
    invalid: Sequence[Outcome],
    junit_path: Path | None,
    html_path: Path | None,
) -> None:
    """The report files of a finished (or interrupted) matrix run; a scenario
    that does not load is a row of the HTML page on every target."""
    if junit_path is not None:
        write_junit([*invalid, *(_junit_named(o) for r in runs for o in r.outcomes)], junit_path)
    if html_path is not None:
        labels = [r.target.label for r in runs]
        write_html(
            [(r.target.label, r.version, [*invalid, *r.outcomes], r.cannot) for r in runs],
            html_path, title="xcheck: " + " vs ".join(labels),
        )
