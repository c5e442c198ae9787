"""Drawing processes (xcheck.fuzz.drawers): a drawer sends the cases
make_case draws and judges answers as the judge does; a failing or dead
drawer is an error within seconds, and none outlives its run; a run's
findings and coverage do not depend on how many drawers drew its cases
(real QEMU)."""

from __future__ import annotations

import multiprocessing
import os
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fuzzcpu import knobs

from xcheck.fuzz.case import Case, make_case
from xcheck.fuzz.drawers import (
    MAX_DEFAULT_DRAWERS,
    Draw,
    DrawerError,
    Drawers,
    default_drawers,
    runnable,
)
from xcheck.fuzz.judge import Judge
from xcheck.fuzz.session import Fuzzer, FuzzOptions
from xcheck.target.profile import Profile

RAM = 128 << 20
SEED = 3


def _draw(count: int = 8) -> Draw:
    k = knobs()
    return Draw(SEED, k, RAM, "", Judge("qemu", "7.2.22", k.features, RAM),
                lambda: iter(range(count)))


def _drawers_alive() -> list[multiprocessing.process.BaseProcess]:
    return [p for p in multiprocessing.active_children() if p.name.startswith("xcheck-drawer")]


def test_drawers_send_the_cases_of_the_run_in_number_order() -> None:
    draw = _draw()
    with Drawers(draw, 3) as drawers:
        for index in range(8):
            got = drawers.drawn(index)
            case = make_case(SEED, index, draw.knobs, RAM)
            job = runnable(case.setup, draw.knobs.features, RAM, case.choices)
            assert (got.index, got.probes, got.keep) == (index, len(case.setup.probes), job.keep)
            assert got.skipped == job.skipped
            if job.skipped is None:
                assert got.setup == job.setup
            assert got.coverage.cases == 1 and got.coverage.probes == got.probes
            drawers.judge(index, None)
    assert not _drawers_alive()


def _wrong_answers(case: Case, keep: tuple[int, ...]) -> list[int]:
    """A PAR for each kept probe that differs from the model's in PA[47:12]
    (or a successful PAR where the model raises an exception)."""
    return [case.model[i].par ^ 0x0000_7FFF_FFFF_F000 if case.model[i].kind == "par" else 0
            for i in keep]


def test_a_drawer_reports_what_the_judge_finds() -> None:
    draw = _draw()
    judge = replace(draw.judge, rendered=set())  # the one drawer's, in this process
    with Drawers(draw, 1) as drawers:
        for index in range(4):
            got = drawers.drawn(index)
            if got.skipped is not None:
                drawers.judge(index, None)
                continue
            case = make_case(SEED, index, draw.knobs, RAM)
            answers = _wrong_answers(case, got.keep)
            drawers.judge(index, answers)
            here = judge.failures(
                case.scenario, got.setup, got.keep, case.model, answers, traces=False)
            report = drawers.report(index)
            assert report and report == here


class _Broken(Draw):
    def case(self, index: int) -> Case:
        raise ValueError(f"no case {index}")


def test_a_failing_drawer_is_an_error_with_its_traceback() -> None:
    d = _draw()
    broken = _Broken(d.seed, d.knobs, d.ram_size, d.origin, d.judge, d.numbers)
    with pytest.raises(DrawerError, match="ValueError: no case 0"), Drawers(broken, 1) as drawers:
        drawers.drawn(0)
    assert not _drawers_alive()


def test_a_dead_drawer_is_an_error_not_a_hang() -> None:
    with pytest.raises(DrawerError, match="died"), Drawers(_draw(100), 2) as drawers:
        (dead,) = [p for p in _drawers_alive() if p.name.endswith("-1")]
        assert dead.pid is not None
        os.kill(dead.pid, signal.SIGKILL)
        for index in range(100):  # what it drew before it died comes first
            drawers.drawn(index)
            drawers.judge(index, None)
    assert not _drawers_alive()


def _summary(profile: Profile, out: Path, drawers: int) -> dict[str, Any]:
    opts = FuzzOptions(seed=5, count=16, out=out, shrink=False, drawers=drawers)
    with Fuzzer(profile, opts) as fz:
        fz.run()
    return {"cases": fz.stats.cases, "probes": fz.stats.probes,
            "findings": {f.signature: (f.count, f.cases, f.first_case, f.known_file)
                         for f in fz.findings.values()},
            "coverage": fz.coverage.to_json()}


@pytest.mark.qemu
def test_a_run_finds_the_same_with_one_drawer_or_three(qemu_profile: Profile,
                                                       tmp_path: Path) -> None:
    one = _summary(qemu_profile, tmp_path / "one", 1)
    three = _summary(qemu_profile, tmp_path / "three", 3)
    assert one["cases"] == 16 and one["findings"]
    assert one == three


def test_the_default_is_one_drawer_more_than_the_cpus_this_process_may_use_at_most_four(
) -> None:
    cpus = len(os.sched_getaffinity(0))
    assert default_drawers() == min(cpus + 1, MAX_DEFAULT_DRAWERS) == min(cpus + 1, 4)
    mine = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(mine)})
        assert default_drawers() == 2
    finally:
        os.sched_setaffinity(0, mine)
