"""Run scenarios on one QEMU per worker, in-process or in worker processes.

A worker keeps its QEMU across scenarios (the target resets the machine
between setups) and starts a fresh one after a crash or a hang it could not
stop (xcheck.target.errors.needs_restart), or when a scenario overrides the
profile. Outcomes stream back as each scenario ends,
so an interrupted run loses nothing that finished.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

from xcheck.arch.features import Features
from xcheck.check import check_scenario, target_failed
from xcheck.outcome import Kind, Outcome
from xcheck.scenario.loader import Scenario
from xcheck.target.errors import QemuLaunchError, TargetError, needs_restart
from xcheck.target.factory import Target, make_target
from xcheck.target.profile import Profile, with_overrides


@dataclass(frozen=True)
class CannotTest:
    """The target could not be started: nothing can be tested (exit 125)."""

    reason: str


Event = list[Outcome] | CannotTest


class _Targets:
    """A worker's one target: kept across scenarios, started again for
    another profile or after an error it could not stop
    (xcheck.target.errors.needs_restart)."""

    def __init__(self) -> None:
        self.target: Target | None = None
        self.profile: Profile | None = None

    def get(self, profile: Profile) -> Target:
        """A started target for ``profile`` (QemuLaunchError when it cannot start)."""
        if self.target is not None and profile != self.profile:
            self.close()
        if self.target is None:
            target = make_target(profile)
            try:
                target.start()
            except QemuLaunchError:
                target.close()
                raise
            self.target, self.profile = target, profile
        return self.target

    def failed(self, err: TargetError) -> None:
        if needs_restart(err):
            self.close()

    def close(self) -> None:
        if self.target is not None:
            self.target.close()
            self.target = None


def run_worker(scenarios: Sequence[Scenario], profile: Profile, mode: str) -> Iterator[Event]:
    """Check scenarios in order on one QEMU at a time; yield per scenario."""
    targets = _Targets()
    try:
        for s in scenarios:
            wanted = with_overrides(profile, s.profile_overrides)
            try:
                target = targets.get(wanted)
            except QemuLaunchError as err:
                yield CannotTest(str(err))
                return
            try:
                yield check_scenario(target, s, mode=mode, target_name=wanted.kind)
            except TargetError as err:
                failed = target_failed(s, err, target=wanted.kind, version=target.version,
                                       features=Features.from_id_regs(target.id_regs))
                targets.failed(err)
                yield _retry_unexplained(s, failed, wanted, mode, targets)
    finally:
        targets.close()


def _retry_unexplained(
    s: Scenario, failed: list[Outcome], profile: Profile, mode: str, targets: _Targets
) -> list[Outcome]:
    """After a target error that `known` entries explain for some probes (a
    recorded QEMU abort), run the other probes once more, so that probes
    which merely shared the crashed batch are still tested: on the same
    target when the error left it usable, else on a fresh one, which the
    worker keeps for the next scenarios."""
    known = {o.label for o in failed if o.kind is Kind.KNOWN}
    rest = tuple(p for p in s.probes if p.label not in known)
    if not known or not rest:
        return failed
    try:
        again = {o.label: o for o in check_scenario(targets.get(profile), s.with_probes(rest),
                                                    mode=mode, target_name=profile.kind)}
    except TargetError as err:
        targets.failed(err)
        return failed
    return [again.get(o.label, o) for o in failed]


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _worker_main(
    scenarios: Sequence[Scenario], profile: Profile, mode: str, out: Any
) -> None:
    """Entry point of a worker process: SIGTERM unwinds (so QEMU is stopped)
    while it works; once its QEMU is stopped, SIGTERM just ends the process, so
    that one landing in the interpreter's shutdown prints nothing."""
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for event in run_worker(scenarios, profile, mode):
            out.put(event)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        out.put(None)


def split(scenarios: Sequence[Scenario], jobs: int) -> list[list[Scenario]]:
    """Deal scenarios to ``jobs`` workers, largest first, to balance probes."""
    bins: list[list[Scenario]] = [[] for _ in range(jobs)]
    load = [0] * jobs
    for s in sorted(scenarios, key=lambda s: -len(s.probes)):
        i = load.index(min(load))
        bins[i].append(s)
        load[i] += len(s.probes) + 20  # a scenario's fixed cost, in probes
    return [b for b in bins if b]


def run_parallel(
    scenarios: Sequence[Scenario], profile: Profile, mode: str, jobs: int
) -> Iterator[Event]:
    """Events from ``jobs`` worker processes as they arrive. Interrupting the
    iteration (Ctrl-C) terminates the workers, which stop their QEMUs."""
    if jobs <= 1 or len(scenarios) <= 1:
        yield from run_worker(scenarios, profile, mode)
        return
    ctx = mp.get_context("spawn")
    out: Any = ctx.Queue()
    procs = [
        ctx.Process(target=_worker_main, args=(part, profile, mode, out), daemon=True)
        for part in split(scenarios, jobs)
    ]
    for p in procs:
        p.start()
    running = len(procs)
    finished = False
    try:
        while running:
            try:
                event = out.get(timeout=1.0)
            except queue.Empty:
                if not any(p.is_alive() for p in procs):
                    break
                continue
            if event is None:
                running -= 1
            else:
                yield event
        finished = True
    finally:
        _stop(procs, patient=finished)


def _stop(procs: Sequence[BaseProcess], patient: bool) -> None:
    """End the worker processes. Workers that sent their last event are left to
    exit by themselves (``patient``); the others are terminated, which makes
    them stop their QEMUs; what still runs 10 s later is killed."""
    for p in procs:
        if patient:
            p.join(timeout=10)
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=10)
        if p.is_alive():
            p.kill()
