"""What `xcheck run` and `xcheck explain` do, apart from argument parsing."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from xcheck.arch.features import Features
from xcheck.arch.par import describe_par
from xcheck.check import DEFAULT_RAM_SIZE, check_scenario, load_all, select
from xcheck.keyword import KeywordError, compile_keyword
from xcheck.model import run_model
from xcheck.outcome import ExitCode, Outcome, exit_code, target_version
from xcheck.report import sigint_deferred
from xcheck.report.html import write_html
from xcheck.report.jsonl import JsonLinesReport
from xcheck.report.junit import write_junit
from xcheck.report.terminal import TerminalReport
from xcheck.report.text import outcome_text
from xcheck.scenario.loader import Scenario, ScenarioError, load_scenario
from xcheck.target.errors import ProfileError, QemuLaunchError, TargetError
from xcheck.target.factory import make_target
from xcheck.target.profile import Profile, load_profile, with_overrides
from xcheck.workers import CannotTest, run_parallel


def _profile(
    console: Console, config: str | None, qemu: str | None, cpu: str | None = None
) -> Profile | None:
    try:
        return load_profile(config, qemu=qemu, cpu=cpu)
    except ProfileError as err:
        console.print(f"[red]error:[/] {err}")
        return None


def run_command(
    paths: Sequence[Path],
    *,
    config: str | None,
    qemu: str | None,
    cpu: str | None = None,
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
    """Load, select, run in workers, report; return the exit code."""
    for p in paths:
        if not p.exists():
            console.print(f"[red]error:[/] no such file or folder: {p}")
            return ExitCode.USAGE
    profile = _profile(console, config, qemu, cpu)
    if profile is None:
        return ExitCode.USAGE
    try:
        keep = compile_keyword(keyword or "")
    except KeywordError as err:
        console.print(f"[red]error:[/] {err}")
        return ExitCode.USAGE
    scenarios, outcomes = load_all(paths, shard=shard)
    scenarios = select(scenarios, keep)
    total = sum(len(s.probes) for s in scenarios) + len(outcomes)
    cannot: str | None = None
    with ExitStack() as stack:
        jsonl = None
        if json_path is not None:
            jsonl = JsonLinesReport(stack.enter_context(json_path.open("w")))
        term = stack.enter_context(TerminalReport(console, total, verbose=verbose))
        for o in outcomes:
            term.add(o)
            if jsonl:
                jsonl.add(o)
        try:
            for event in run_parallel(scenarios, profile, mode, max(1, jobs)):
                if isinstance(event, CannotTest):
                    cannot = event.reason
                    continue
                with sigint_deferred():
                    for o in event:
                        outcomes.append(o)
                        term.add(o)
                        if jsonl:
                            jsonl.add(o)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]: results so far are kept")
            _write_reports(outcomes, profile.name, cannot, junit_path, html_path)
            return 130
    _write_reports(outcomes, profile.name, cannot, junit_path, html_path)
    term.summary(outcomes, title=f"xcheck: {profile.name}")
    if cannot:
        console.print(f"[red]could not test:[/] {cannot}")
    if not scenarios and not outcomes:
        console.print("[yellow]no probes selected[/]")
    code = exit_code(outcomes, could_not_test=cannot is not None)
    console.print(f"exit {int(code)} ({code.name.lower().replace('_', ' ')})")
    return int(code)


def _write_reports(
    outcomes: list[Outcome],
    label: str,
    cannot: str | None,
    junit_path: Path | None,
    html_path: Path | None,
) -> None:
    """The report files of a finished (or interrupted) run."""
    if junit_path is not None:
        write_junit(outcomes, junit_path)
    if html_path is not None:
        write_html([(label, target_version(outcomes), outcomes, cannot)], html_path,
                   title=f"xcheck: {label}")


def explain_command(
    path: Path,
    *,
    selector: str | None,
    config: str | None,
    qemu: str | None,
    cpu: str | None = None,
    model_only: bool,
    console: Console,
) -> int:
    """Each selected probe: QEMU's PAR and the model's, decoded, with the
    model's full trace (also for matches)."""
    try:
        scenario = load_scenario(path)
        keep = compile_keyword(selector or "")
    except (ScenarioError, KeywordError) as err:
        console.print(f"[red]error:[/] {err}")
        return ExitCode.USAGE
    picked = select([scenario], keep)
    if not picked:
        console.print(f"[yellow]no probe of {path} matches {selector!r}[/]")
        return ExitCode.USAGE
    scenario = picked[0]
    if model_only:
        try:
            return _explain_model_only(scenario, console)
        except ScenarioError as err:
            console.print(f"[red]error:[/] {err}")
            return ExitCode.USAGE
    profile = _profile(console, config, qemu, cpu)
    if profile is None:
        return ExitCode.USAGE
    try:
        wanted = with_overrides(profile, scenario.profile_overrides)
        target = make_target(wanted)
        try:
            target.start()
            mode = "step" if wanted.kind == "qemu" else "batch"
            outcomes = check_scenario(
                target, scenario, mode=mode, traces=True, target_name=wanted.kind
            )
        finally:
            target.close()
    except QemuLaunchError as err:
        console.print(f"[red]could not test:[/] {err}")
        return ExitCode.CANNOT_TEST
    except TargetError as err:
        console.print(f"[red]target error:[/] {err}")
        return ExitCode.FAILED
    for o in outcomes:
        console.print(outcome_text(o), markup=False, highlight=False)
        console.print()
    return int(exit_code(outcomes))


def _explain_model_only(scenario: Scenario, console: Console) -> int:
    """The model's answers on a CPU with every feature the model knows (and
    FEAT_RME when the scenario requires it: with RME, EL3 is the Root state)."""
    setup = scenario.build()
    features = Features.everything()
    if "RME" in scenario.requires:
        features = replace(features, rme=1)
    results = run_model(setup, features, DEFAULT_RAM_SIZE)
    for probe, res in zip(setup.probes, results, strict=True):
        answer = describe_par(res.par) if res.kind == "par" else res.kind
        console.print(f"{probe.label}: {answer}", markup=False, highlight=False)
        console.print(res.render(), markup=False, highlight=False)
        console.print()
    return ExitCode.OK
