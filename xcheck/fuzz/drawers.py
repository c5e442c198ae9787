"""Drawing processes: a campaign's cases generated, loaded, run on the
model and judged in worker processes, one more than the cores, while the
fuzzer's process only passes runs to the target and counts what comes back.

Drawing a case (xcheck.fuzz.case.make_case) is most of a campaign's CPU
time and one process could draw about 100 cases a second, so the cases are
dealt out: the p-th case number of the run goes to drawer p mod n. A
drawer sends each case's run to the fuzzer's process ready to forward to
the target (pickled) with its coverage, keeps the case until the target's
answers come back, judges them (xcheck.fuzz.judge) and reports the
failures. It draws a few cases ahead (AHEAD) and judges before drawing
more. Cases depend on the seed and their number alone, so what the run
finds does not depend on how many drawers there are: the fuzzer's process
counts the cases in number order.

The drawers are forked from the fuzzer's process once its target is up,
die with it, and ignore Ctrl-C (the fuzzer stops them in order).
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import multiprocessing
import os
import pickle
import signal
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from multiprocessing.connection import Connection
from typing import Any

from xcheck.arch.features import Features
from xcheck.fuzz.case import Case, make_case
from xcheck.fuzz.coverage import Coverage
from xcheck.fuzz.judge import Failure, Judge
from xcheck.fuzz.knobs import Knobs
from xcheck.machine import MachineSetup, ProbeResult
from xcheck.model import ImpDefStates
from xcheck.needs import unrunnable
from xcheck.target.process import die_with_parent

AHEAD = 3
"""Cases a drawer keeps drawn and not yet judged: enough that the fuzzer's
process finds the next runs drawn while the target runs the last ones."""
RUN_MODE = "batch"
MAX_DEFAULT_DRAWERS = 4
"""Drawers by default at most: the target runs one case at a time, about
4 to 5 ms each (at most some 200 a second), and a drawer draws about 80
to 140 a second, so more would only wait."""


def default_drawers() -> int:
    """One drawer more than the CPUs this process may run on, at most
    MAX_DEFAULT_DRAWERS: a drawer waiting for its cases' answers leaves its
    core to the spare one (on 2 cores, 2 drawers kept the cores 86 to 90%
    of the run busy, 3 drawers 91 to 93%)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus + 1, MAX_DEFAULT_DRAWERS))


@dataclass(frozen=True)
class Job:
    """What a case runs on the target: its probes the harness can run
    (``keep``: their numbers in the case), or why none can (``skipped``)."""

    setup: MachineSetup
    keep: tuple[int, ...]
    skipped: str | None = None


def runnable(setup: MachineSetup, features: Features, ram_size: int,
             choices: ImpDefStates | None = None) -> Job:
    """The probes of ``setup`` the harness can run on this CPU. The others
    (xcheck.needs) are left out, as `xcheck run` skips them: their failures
    would be the harness's. ``choices``: the registers as the model decoded
    them for the probes (Case.choices)."""
    blocked = unrunnable(setup, features, ram_size, choices)
    keep = tuple(i for i, why in enumerate(blocked) if not why)
    if not keep:
        return Job(setup, keep, blocked[0])
    if len(keep) < len(blocked):
        setup = replace(setup, probes=tuple(setup.probes[i] for i in keep))
    return Job(setup, keep)


@dataclass(frozen=True)
class Drawn:
    """A case as the fuzzer's process gets it from a drawer."""

    index: int
    probes: int
    """The case's probes (those the harness cannot run too)."""
    keep: tuple[int, ...]
    skipped: str | None
    request: bytes
    """The target's run request for the probes kept, pickled
    (xcheck.target.remote); empty when the case is skipped."""
    coverage: Coverage

    @cached_property
    def setup(self) -> MachineSetup:
        """The setup the request runs (to run it again in parts)."""
        setup: MachineSetup = pickle.loads(self.request)[1]
        return setup


@dataclass
class Draw:
    """What a drawer needs: the campaign and the judge of its target."""

    seed: int
    knobs: Knobs
    ram_size: int
    origin: str
    judge: Judge
    numbers: Callable[[], Iterator[int]]
    """The case numbers of the run, in order (without a time limit)."""

    def case(self, index: int) -> Case:
        return make_case(self.seed, index, self.knobs, self.ram_size, self.origin)

    def drawn(self, case: Case) -> tuple[Drawn, Job]:
        job = runnable(case.setup, self.knobs.features, self.ram_size, case.choices)
        cov = Coverage()
        cov.add_case(case.tags)
        cov.add(case.setup.probes, case.model)
        request = b"" if job.skipped is not None else pickle.dumps(
            ("run", job.setup, RUN_MODE), protocol=pickle.HIGHEST_PROTOCOL)
        return Drawn(case.index, len(case.setup.probes), job.keep, job.skipped,
                     request, cov), job


def _serve(conn: Connection, draw: Draw, numbers: Iterator[int]) -> None:
    """A drawer: draw the ``numbers`` in order, AHEAD at most beyond those
    judged; judge each case when its answers come (before drawing more)."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # what the fuzzer's process had when it forked lives as long as this
    # process: the cyclic GC need not walk it at each collection
    gc.freeze()
    pending: dict[int, tuple[Case, Job]] = {}
    more = True
    try:
        while True:
            if more and len(pending) < AHEAD and not conn.poll():
                index = next(numbers, None)
                if index is None:
                    more = False
                    continue
                case = draw.case(index)
                drawn, job = draw.drawn(case)
                pending[index] = (case, job)
                conn.send(("drawn", index, drawn))
                continue
            message = conn.recv()
            if message[0] == "stop":
                return
            _, index, got = message
            case, job = pending.pop(index)
            if got is not None:
                fails = draw.judge.failures(case.scenario, job.setup, job.keep, case.model,
                                            got, traces=False)
                conn.send(("report", index, fails))
    except (EOFError, OSError, KeyboardInterrupt):
        return
    except Exception:  # a bug of xcheck's: shown with its traceback
        conn.send(("bug", -1, traceback.format_exc()))


class DrawerError(RuntimeError):
    """A drawer failed (its traceback is the message) or died."""


@dataclass
class _Drawer:
    proc: multiprocessing.process.BaseProcess
    conn: Connection
    inbox: dict[tuple[str, int], Any] = field(default_factory=dict)


class Drawers:
    """The drawing processes of one run; use as a context manager.
    :meth:`drawn` takes the cases in number order; :meth:`judge` sends a
    case's target answers (or None: nothing to judge) and :meth:`report`
    gives its failures."""

    def __init__(self, draw: Draw, count: int | None = None) -> None:
        self.draw = draw
        self.count = count if count is not None else default_drawers()
        self._drawers: list[_Drawer] = []
        self._owner: dict[int, _Drawer] = {}
        self._order = itertools.count()

    def __enter__(self) -> Drawers:
        ctx = multiprocessing.get_context("fork")
        for k in range(self.count):
            numbers = itertools.islice(self.draw.numbers(), k, None, self.count)
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(theirs, self.draw, numbers),
                               name=f"xcheck-drawer-{k}", daemon=True)
            proc.start()
            theirs.close()
            self._drawers.append(_Drawer(proc, mine))
        return self

    def __exit__(self, *exc: object) -> None:
        for d in self._drawers:
            with contextlib.suppress(OSError):
                d.conn.send(("stop",))
        for d in self._drawers:
            d.proc.join(5)
            if d.proc.is_alive():
                d.proc.kill()
                d.proc.join()
            d.conn.close()
        self._drawers.clear()

    def drawn(self, index: int) -> Drawn:
        """Case ``index``, the next number of the run (as drawn)."""
        d = self._drawers[next(self._order) % self.count]
        self._owner[index] = d
        drawn: Drawn = self._take(d, "drawn", index)
        return drawn

    def judge(self, index: int, got: Sequence[ProbeResult] | None) -> None:
        """Send the target's answers for case ``index`` (None: nothing to
        judge, the case is done) to its drawer."""
        d = self._owner[index] if got is not None else self._owner.pop(index)
        d.conn.send(("judge", index, None if got is None else list(got)))

    def report(self, index: int) -> list[Failure]:
        """The failures of case ``index``, whose answers :meth:`judge` sent."""
        fails: list[Failure] = self._take(self._owner.pop(index), "report", index)
        return fails

    def reported(self, index: int) -> bool:
        """Has case ``index``'s report come (without waiting)?"""
        d = self._owner[index]
        while ("report", index) not in d.inbox and d.conn.poll():
            self._read(d)
        return ("report", index) in d.inbox

    def _take(self, d: _Drawer, kind: str, index: int) -> Any:
        while (kind, index) not in d.inbox:
            self._read(d)
        return d.inbox.pop((kind, index))

    def _read(self, d: _Drawer) -> None:
        try:
            kind, index, payload = d.conn.recv()
        except (EOFError, OSError):
            raise DrawerError(f"{d.proc.name} died (exit status {d.proc.exitcode})") from None
        if kind == "bug":
            raise DrawerError(f"{d.proc.name} failed:\n{payload}")
        d.inbox[kind, index] = payload

