"""pytest plugin: `pytest scenarios/` collects scenario files, one item per probe.

Ids read like ``scenarios/pan/pan2.yaml::pan2-user-pages::S1E1RP va=0x8000_0000 el=1 pan=1``
so that ``-k``, ``-x``, ``--lf``, ``-n`` (pytest-xdist) and ``--junitxml``
work as usual. Each worker process owns one QEMU, started on first use. A
scenario runs once (all its probes in one batch) when its first item runs;
its items then report their own probe's outcome. A failure shows the same
field-by-field PAR diff and model trace as `xcheck explain`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from xcheck.outcome import Kind, Outcome

_TARGETS = pytest.StashKey[dict[Any, Any]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("xcheck", "xcheck scenario files")
    group.addoption("--xcheck-config", metavar="PROFILE", help="QEMU profile for scenario files")
    group.addoption("--xcheck-qemu", metavar="BINARY", help="qemu-system-aarch64 to use")
    group.addoption("--xcheck-cpu", metavar="MODEL", help="CPU model instead of the profile's")
    group.addoption(
        "--xcheck-mode", choices=("batch", "step"), default="batch", help="how probes run"
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_TARGETS] = {}


def pytest_unconfigure(config: pytest.Config) -> None:
    for target in config.stash.get(_TARGETS, {}).values():
        target.close()


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> pytest.Collector | None:
    if file_path.suffix in (".yaml", ".yml") and "scenarios" in file_path.parts:
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


class ScenarioError(Exception):
    """A scenario file that does not load, reported as a collection error."""


class ScenarioFile(pytest.File):
    """A scenario YAML file; its items are its expanded probes."""

    def collect(self) -> Iterator[pytest.Item]:
        from xcheck.scenario.loader import ScenarioError as LoadError
        from xcheck.scenario.loader import load_scenario

        try:
            scenario = load_scenario(self.path)
        except LoadError as err:
            raise ScenarioError(str(err)) from None
        self.scenario = scenario
        self.outcomes: dict[str, Outcome] | None = None
        for probe in scenario.probes:
            name = f"{scenario.name}::{probe.label}"
            item = ProbeItem.from_parent(self, name=name, label=probe.label)
            # pytest's -k grammar has no "=": also match "el2", "pan1", "S1E1RP"
            item.extra_keyword_matches.update(
                {probe.op.value, f"el{probe.el}", f"pan{int(probe.pan)}"}
            )
            yield item

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException]) -> str:  # type: ignore[override]
        if isinstance(excinfo.value, ScenarioError):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def run_once(self) -> dict[str, Outcome]:
        """Run the whole scenario on this worker's QEMU, once."""
        if self.outcomes is None:
            self.outcomes = {o.label: o for o in _run(self.config, self.scenario)}
        return self.outcomes


def _run(config: pytest.Config, scenario: Any) -> list[Outcome]:
    from xcheck.arch.features import Features
    from xcheck.check import check_scenario, target_failed
    from xcheck.target.errors import QemuLaunchError, TargetError
    from xcheck.target.factory import make_target
    from xcheck.target.profile import load_profile, with_overrides

    base = load_profile(
        config.getoption("xcheck_config"),
        qemu=config.getoption("xcheck_qemu"),
        cpu=config.getoption("xcheck_cpu"),
    )
    profile = with_overrides(base, scenario.profile_overrides)
    targets = config.stash[_TARGETS]
    target = targets.get(profile)
    if target is None:
        target = make_target(profile)
        try:
            target.start()
        except QemuLaunchError as err:
            target.close()
            pytest.skip(f"QEMU could not be started: {err}")
        targets[profile] = target
    try:
        return check_scenario(
            target, scenario, mode=config.getoption("xcheck_mode"), target_name=profile.kind
        )
    except TargetError as err:
        target.close()
        del targets[profile]
        return target_failed(scenario, err, target=profile.kind, version=target.version,
                             features=Features.from_id_regs(target.id_regs))


class ProbeFailed(Exception):
    """A probe whose outcome is a failure; carries the outcome."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.kind.value)
        self.outcome = outcome


class ProbeItem(pytest.Item):
    """One probe of a scenario."""

    def __init__(self, *, label: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.label = label

    def runtest(self) -> None:
        assert isinstance(self.parent, ScenarioFile)
        outcome = self.parent.run_once()[self.label]
        if outcome.kind == Kind.SKIPPED:
            pytest.skip(outcome.detail)
        if outcome.kind in (Kind.MISMATCH, Kind.EXPECT_FAILED, Kind.TARGET_ERROR, Kind.INVALID):
            raise ProbeFailed(outcome)
        if outcome.kind == Kind.KNOWN:
            self.add_report_section("call", "known divergence", outcome.detail)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException]) -> str:  # type: ignore[override]
        from xcheck.report.text import outcome_text

        if isinstance(excinfo.value, ProbeFailed):
            return outcome_text(excinfo.value.outcome)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        assert isinstance(self.parent, ScenarioFile)
        return self.path, 0, f"{self.parent.scenario.name}: {self.label}"
