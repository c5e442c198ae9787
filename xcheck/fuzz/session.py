"""A fuzz run: generate cases, cross-check each on the target and the
model, group failures by signature, shrink each new one to a file.

The target is started once and restarted after a crash or a hang (which
is itself a finding). It runs in a second process (xcheck.target.remote)
with the next case queued (IN_FLIGHT). The cases are drawn, run on the
model and judged in drawing processes (xcheck.fuzz.drawers); this process
passes their runs to the target and their answers back, and counts each
case's failures in case number order. Findings whose signature a file in
the output folder (or in a folder of earlier findings) already records are
counted, not shrunk again.
"""

from __future__ import annotations

import gc
import json
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from xcheck.arch.at import AtResult
from xcheck.arch.features import Features
from xcheck.arch.gpc import GpcParams
from xcheck.fuzz.case import (
    Case,
    built,
    load_doc,
    make_case,
    model_results,
    needed_requires,
    scenario_of,
)
from xcheck.fuzz.coverage import Coverage
from xcheck.fuzz.drawers import Draw, Drawers, Drawn, runnable
from xcheck.fuzz.judge import Behaviour, Failure, Judge
from xcheck.fuzz.knobs import Knobs
from xcheck.fuzz.shrink import shrink
from xcheck.fuzz.signature import Signature, target_error_signature
from xcheck.fuzz.yamlout import Doc
from xcheck.machine import MachineSetup, ProbeResult
from xcheck.outcome import Outcome
from xcheck.scenario.loader import Scenario, ScenarioError, parse_scenario
from xcheck.target.errors import TargetError, Unsupported, needs_restart
from xcheck.target.profile import Profile
from xcheck.target.remote import RemoteTarget

SIGNATURE_COMMENT = "signature: "
GAVE_UP = "gave up after"
"""In the target's error when the harness stopped after too many exceptions."""
SMALL_BATCH = 16
IN_FLIGHT = 2
"""Cases sent to the target ahead of the one collected: the running one and
one queued behind it, so that the target starts the next case while this
process passes the last one's answers on."""
JUDGING = 4
"""Cases whose answers went to their drawers before this process waits for
the oldest one's report (it counts reports as they come, in order)."""
GC_YOUNG = 10_000
"""Allocations between two collections of the youngest GC generation while
fuzzing (Python's default: 700). A case makes tens of thousands of short-lived
objects, which reference counting frees; at 700 each collection walked the
case being drawn again and again, about half a millisecond a case."""


@dataclass(frozen=True)
class FuzzOptions:
    seed: int = 0
    count: int | None = None
    seconds: float | None = None
    allowed: frozenset[str] = frozenset()
    out: Path = Path("fuzz-findings")
    known_dirs: tuple[Path, ...] = ()
    shrink: bool = True
    shrink_runs: int = 300
    shrink_seconds: float = 180.0
    max_shrinks: int | None = None
    """Shrink at most this many findings (the others are reported unshrunk)."""
    shard: tuple[int, int] | None = None
    """``(k, n)``: run only the cases whose number is k - 1 modulo n (1-based
    k), so that n jobs with the same seed run the campaign's cases once."""
    drawers: int | None = None
    """Drawing processes (xcheck.fuzz.drawers; default: one more than the
    cores, at most drawers.MAX_DEFAULT_DRAWERS)."""


def shard_indices(shard: tuple[int, int] | None) -> Iterator[int]:
    """The case numbers of a shard ``(k, n)``, in order: k - 1, k - 1 + n, ...
    (every number without a shard). Case numbers and the seed alone decide a
    case, so the shards of a campaign run exactly its cases."""
    k, n = shard or (1, 1)
    index = k - 1
    while True:
        yield index
        index += n


@dataclass
class Finding:
    """One signature family (a signature without its op): how often it was
    seen, with which ops, where first, its shrunk file."""

    signature: Signature
    first_case: int
    example: Outcome | None
    count: int = 0
    ops: Counter[str] = field(default_factory=Counter)
    cases: list[int] = field(default_factory=list)
    file: Path | None = None
    known_file: Path | None = None
    shrink_note: str = ""
    shrunk_outcome: Outcome | None = None

    def to_json(self) -> dict[str, Any]:
        ex = self.shrunk_outcome or self.example
        return {
            "type": "finding", "signature": self.signature.to_json(),
            "describe": self.signature.describe(), "count": self.count,
            "ops": dict(sorted(self.ops.items())),
            "cases": self.cases[:20], "first_case": self.first_case,
            "file": str(self.file) if self.file else None,
            "known_file": str(self.known_file) if self.known_file else None,
            "shrink": self.shrink_note, "example": ex.to_json() if ex else None,
        }


@dataclass
class CheckResult:
    failures: list[Failure]
    target_error: str | None = None
    skipped: str | None = None


@dataclass
class Stats:
    cases: int = 0
    probes: int = 0
    fuzz_seconds: float = 0.0
    shrink_seconds: float = 0.0
    target_errors: int = 0
    skipped: int = 0

    @property
    def probes_per_s(self) -> float:
        return self.probes / self.fuzz_seconds if self.fuzz_seconds else 0.0


class CannotFuzz(Exception):
    """The target could not be started."""


def known_signatures(dirs: tuple[Path, ...], version: str | None = None,
                     features: Features | None = None) -> dict[Signature, Path]:
    """Signatures recorded in ``# signature: {...}`` comments of earlier
    findings' files. With the target's ``version`` (and CPU ``features``), a
    scenario whose ``known:`` entries all name other versions or CPUs does
    not count: its signatures are its bug on those targets, and the same
    signature here is another disagreement to explain. A file without
    ``known:`` entries (a finding not recorded yet) counts everywhere."""
    out: dict[Signature, Path] = {}
    for f, text in _scenario_texts(dirs):
        sigs = _signature_lines(text)
        if sigs and (version is None or _recorded_for(f, text, version, features)):
            for sig in sigs:
                out.setdefault(sig.family, f)
    return out


def _scenario_texts(dirs: tuple[Path, ...]) -> Iterator[tuple[Path, str]]:
    """Every readable ``*.yaml`` file under ``dirs`` (subfolders too), with
    its text, in path order per folder."""
    for d in dirs:
        if not d.is_dir():
            continue
        for f in sorted(d.rglob("*.yaml")):
            try:
                yield f, f.read_text(encoding="utf-8")
            except OSError:
                continue


def known_behaviours(dirs: tuple[Path, ...], version: str,
                     features: Features | None = None) -> list[Behaviour]:
    """The `known:` entries with ``acts_as`` under ``dirs`` that cover this
    target's version and CPU, in file order."""
    out: list[Behaviour] = []
    for f, text in _scenario_texts(dirs):
        if "acts_as" not in text:
            continue
        try:
            scenario = parse_scenario(text, f)
        except ScenarioError:
            continue
        out += [Behaviour(f, scenario.name, k) for k in scenario.known
                if k.acts_as and k.covers(version, features)]
    return out


def _signature_lines(text: str) -> list[Signature]:
    sigs = []
    for line in text.splitlines():
        if line.startswith("# " + SIGNATURE_COMMENT):
            try:
                sigs.append(Signature.from_json(json.loads(line[2 + len(SIGNATURE_COMMENT):])))
            except (ValueError, KeyError, TypeError):
                continue
    return sigs


def _recorded_for(path: Path, text: str, version: str, features: Features | None) -> bool:
    """Does the scenario at ``path`` record its divergence for this target:
    no ``known:`` entry, or one whose version range and CPU cover it?"""
    try:
        known = parse_scenario(text, path).known
    except ScenarioError:
        return True
    return not known or any(k.covers(version, features) for k in known)


class Fuzzer:
    """Owns the target; use as a context manager."""

    def __init__(self, profile: Profile, options: FuzzOptions,
                 on_event: Callable[[str, Any], None] | None = None) -> None:
        self.profile = profile
        self.opt = options
        self.on_event = on_event or (lambda kind, data: None)
        self.target: RemoteTarget | None = None
        self.features = Features()
        self.knobs = Knobs(self.features)
        self.findings: dict[Signature, Finding] = {}
        self.coverage = Coverage()
        self.stats = Stats()
        self.shrunk = 0
        self.judge = Judge(profile.kind, "", self.features, self.ram_size)
        """Compares this process's own runs (shrinking); the drawers have
        copies. Its recorded signatures and ``acts_as`` bugs are read at the
        first start (they depend on the target's version and CPU)."""
        self._read_known = False

    # --- the target ---------------------------------------------------------

    def __enter__(self) -> Fuzzer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        from xcheck.target.errors import QemuLaunchError

        try:
            self.target = RemoteTarget(self.profile)
            self.target.start()
        except QemuLaunchError as err:
            self.target = None
            raise CannotFuzz(str(err)) from None
        self.features = Features.from_id_regs(self.target.id_regs)
        gpccr = self.target.id_regs.get("GPCCR_EL3", 0)
        self.knobs = Knobs(self.features, self.opt.allowed,
                           starts_el3=getattr(self.target, "scr_el3", None) is not None,
                           l0gptsz=GpcParams.decode(gpccr, 0, 52).l0gptsz)
        self.judge = replace(self.judge, version=self.version, features=self.features,
                             ram_size=self.ram_size)
        if not self._read_known:
            self._read_known = True
            dirs = (self.opt.out, *self.opt.known_dirs)
            self.judge.known = known_signatures(dirs, self.version, self.features)
            self.judge.behaviours = known_behaviours(dirs, self.version, self.features)

    def close(self) -> None:
        if self.target is not None:
            self.target.close()
            self.target = None

    @property
    def version(self) -> str:
        return self.target.version if self.target else ""

    def restart(self) -> None:
        """QEMU (and gdb) started again, after a crash or a hang."""
        from xcheck.target.errors import QemuLaunchError

        if self.target is None:
            self.start()
            return
        try:
            self.target.restart()
        except QemuLaunchError as err:
            self.close()
            raise CannotFuzz(str(err)) from None

    # --- one run on both sides --------------------------------------------------

    def check(self, scenario: Scenario, setup: MachineSetup,
              model: list[AtResult] | tuple[AtResult, ...]) -> CheckResult:
        """Run ``setup`` on the target and compare each probe with ``model``."""
        job = runnable(setup, self.features, self.ram_size)
        if job.skipped is not None:
            return CheckResult([], skipped=job.skipped)
        got = self.answers(lambda: self.run_target(job.setup))
        if isinstance(got, CheckResult):
            return got
        return CheckResult(self.judge.failures(scenario, job.setup, job.keep, model, got))

    def answers(self, results: Callable[[], list[ProbeResult]]
                ) -> list[ProbeResult] | CheckResult:
        """The target's ``results``; or, when the target failed, the case's
        result: skipped (the CPU lacks something), or a target error (after
        a crash or a hang, QEMU is started again)."""
        try:
            return results()
        except Unsupported as err:
            return CheckResult([], skipped=str(err))
        except TargetError as err:
            if needs_restart(err):
                self.restart()
            return CheckResult([], target_error=str(err))

    def run_target(self, setup: MachineSetup) -> list[ProbeResult]:
        """The target's results for ``setup``; in small batches when the
        harness gave up (:meth:`small_batches`)."""
        target = self.target
        assert target is not None
        return self.or_small_batches(lambda: target.run(setup, "batch"), len(setup.probes),
                                     lambda: setup)

    def or_small_batches(self, results: Callable[[], list[ProbeResult]], probes: int,
                         setup: Callable[[], MachineSetup]) -> list[ProbeResult]:
        """``results()``, the target's answers for ``probes`` probes; when the
        harness gave up on them, the probes of ``setup()`` (asked for only
        then) in small batches (:meth:`small_batches`)."""
        try:
            return results()
        except TargetError as err:
            if not _gave_up(err, probes):
                raise
        return self.small_batches(setup())

    def small_batches(self, setup: MachineSetup) -> list[ProbeResult]:
        """The probes of ``setup`` run again in small batches, after the
        harness gave up on them after too many unexpected exceptions (each
        program has its own exception budget), so that each probe gets its
        own answer."""
        assert self.target is not None
        out: list[ProbeResult] = []
        for i in range(0, len(setup.probes), SMALL_BATCH):
            part = replace(setup, probes=setup.probes[i:i + SMALL_BATCH])
            out += self.target.run(part, "batch")
        return out

    def fails_with(self, sig: Signature, name: str) -> Callable[[Doc], bool]:
        """The shrinker's predicate: does this document still fail with a
        signature of the family ``sig``?"""
        def fails(doc: Doc) -> bool:
            try:
                scenario = scenario_of(doc, name)
                setup = built(scenario)
            except ScenarioError:
                return False
            model = model_results(setup, self.features, self.ram_size)
            res = self.check(scenario, setup, model)
            if sig.kind == "target-error":
                return res.target_error is not None and \
                    target_error_signature(res.target_error) == sig
            return any(f.signature.family == sig for f in res.failures)
        return fails

    @property
    def ram_size(self) -> int:
        return self.target.ram_size if self.target else 128 << 20

    # --- the loop ---------------------------------------------------------------

    def numbers(self) -> Iterator[int]:
        """The run's case numbers, of this shard only, below ``count``."""
        for index in shard_indices(self.opt.shard):
            if self.opt.count is not None and index >= self.opt.count:
                return
            yield index

    def case_numbers(self) -> Iterator[int]:
        """:meth:`numbers` until ``seconds`` have passed (shrinking aside)."""
        start = time.monotonic()
        for index in self.numbers():
            if self.opt.seconds is not None and \
                    time.monotonic() - start - self.stats.shrink_seconds >= self.opt.seconds:
                return
            yield index

    @property
    def origin(self) -> str:
        """Where the cases ran, for their files' comments."""
        return f"{self.profile.name}, QEMU {self.version}".strip()

    def case(self, index: int) -> Case:
        """Case ``index`` of the run, drawn here (as its drawer drew it)."""
        return make_case(self.opt.seed, index, self.knobs, self.ram_size, self.origin)

    def run(self) -> None:
        """Every case: drawn and judged by the drawers while the target runs
        the cases before it."""
        draw = Draw(self.opt.seed, self.knobs, self.ram_size, self.origin, self.judge,
                    self.numbers)
        with _young_collections(GC_YOUNG), Drawers(draw, self.opt.drawers) as drawers:
            self._run(drawers)

    def _run(self, drawers: Drawers) -> None:
        t0 = time.monotonic()
        numbers = self.case_numbers()
        more = True
        ahead: deque[tuple[Drawn, TargetError | None]] = deque()
        judging: deque[tuple[Drawn, CheckResult | None]] = deque()
        """Cases collected and not counted yet; None: their drawer judges them."""
        while True:
            while more and len(ahead) < IN_FLIGHT:
                index = next(numbers, None)
                if index is None:
                    more = False
                else:
                    ahead.append(self.submit(drawers.drawn(index)))
            if ahead:
                drawn, error = ahead.popleft()
                got = self.collected(drawn, error)
                if isinstance(got, CheckResult):
                    drawers.judge(drawn.index, None)
                    judging.append((drawn, got))
                else:
                    drawers.judge(drawn.index, got)
                    judging.append((drawn, None))
            elif not judging:
                break
            while judging and (judging[0][1] is not None or len(judging) > JUDGING
                               or not ahead or drawers.reported(judging[0][0].index)):
                drawn, res = judging.popleft()
                self.finish(drawn, res or CheckResult(drawers.report(drawn.index)), t0)
        self.stats.fuzz_seconds = time.monotonic() - t0 - self.stats.shrink_seconds

    def submit(self, drawn: Drawn) -> tuple[Drawn, TargetError | None]:
        """Start ``drawn``'s run on the target (unless it is skipped); the
        target's error if it failed at once (raised when collected)."""
        if drawn.skipped is None:
            assert self.target is not None
            try:
                self.target.submit_request(drawn.request)
            except TargetError as err:
                return drawn, err
        return drawn, None

    def collected(self, drawn: Drawn, error: TargetError | None
                  ) -> list[ProbeResult] | CheckResult:
        """The target's answers for ``drawn``, whose run :meth:`submit`
        started; or the case's result when there are none (:meth:`answers`)."""
        if drawn.skipped is not None:
            return CheckResult([], skipped=drawn.skipped)
        assert self.target is not None
        target = self.target

        def results() -> list[ProbeResult]:
            if error is not None:
                raise error
            return self.or_small_batches(target.collect, len(drawn.keep), lambda: drawn.setup)
        return self.answers(results)

    def finish(self, drawn: Drawn, res: CheckResult, t0: float) -> None:
        """Count case ``drawn`` (the next in number order) with its result,
        and shrink the findings new in the run."""
        self.stats.cases += 1
        self.stats.probes += drawn.probes
        if res.skipped:
            self.stats.skipped += 1
        new = self.count(drawn.index, res)
        shrinking = [sig for sig in new
                     if self.findings[sig].known_file is None and self.may_shrink()]
        self.coverage.merge(drawn.coverage)
        self.stats.fuzz_seconds = time.monotonic() - t0 - self.stats.shrink_seconds
        self.on_event("case", drawn)
        for sig, hint in new.items():
            f = self.findings[sig]
            if sig in shrinking and self.may_shrink():
                self.shrunk += 1
                s0 = time.monotonic()
                self.shrink_finding(f, self.case(drawn.index), hint)
                self.stats.shrink_seconds += time.monotonic() - s0
            self.on_event("finding", f)

    def may_shrink(self) -> bool:
        """Is shrinking on, with findings left in its budget (--max-shrinks)?"""
        return self.opt.shrink and (self.opt.max_shrinks is None
                                    or self.shrunk < self.opt.max_shrinks)

    def count(self, index: int, res: CheckResult) -> dict[Signature, list[int]]:
        """Record the failures of case ``index``; the families new in this
        run, each with the probes that showed it (the shrinker's hint)."""
        new: dict[Signature, list[int]] = {}
        if res.target_error is not None:
            self.stats.target_errors += 1
            sig = target_error_signature(res.target_error)
            if self.record(sig, index, None, self.judge.known.get(sig)):
                new[sig] = []
        for f in res.failures:
            fam = f.signature.family
            if self.record(f.signature, index, f.outcome, f.known):
                new[fam] = [f.probe]
            elif fam in new:
                new[fam].append(f.probe)
        return new

    def record(self, sig: Signature, index: int, example: Outcome | None,
               known: Path | None) -> bool:
        """Count one failure (``known``: the file recording its family);
        True when its signature family is new in this run."""
        fam = sig.family
        f = self.findings.get(fam)
        fresh = f is None
        if f is None:
            f = self.findings[fam] = Finding(fam, index, example, known_file=known)
        f.count += 1
        f.ops[sig.op] += 1
        if not f.cases or f.cases[-1] != index:
            f.cases.append(index)
        return fresh

    # --- shrinking ----------------------------------------------------------------

    def shrink_finding(self, f: Finding, case: Case, hint: list[int]) -> None:
        sig = f.signature
        deadline = time.monotonic() + self.opt.shrink_seconds
        result = shrink(case.doc, self.fails_with(sig, case.name), hint=hint,
                        max_runs=self.opt.shrink_runs, deadline=deadline)
        doc = result.doc
        # the original's requires: may name what the shrunk case no longer uses
        requires = needed_requires(doc, case.name, self.features, self.ram_size)
        doc = {k: v for k, v in doc.items() if k != "requires"}
        if requires:
            doc["requires"] = requires  # yamlout puts it in its place
        before = _size(case.doc)
        after = _size(doc)
        f.shrink_note = (f"{before} -> {after} in {result.runs} runs"
                         + ("" if result.complete else " (budget ended)"))
        self.write(f, case, doc, before)

    def write(self, f: Finding, case: Case, doc: Doc, before: str) -> None:
        sig = f.signature
        name = f"fuzz-{sig.slug}"
        about = (f"Found by xcheck fuzz (seed {case.seed}, case {case.index}) on "
                 f"{self.profile.name} (QEMU {self.version}): {sig.describe()}.")
        doc = {"name": name, "about": about, **{k: v for k, v in doc.items()
                                                 if k not in ("name", "about")}}
        comments = (
            f"xcheck fuzz --seed {case.seed} --config {self.profile.name}: case {case.index}, "
            f"shrunk from {before}",
            SIGNATURE_COMMENT + json.dumps(sig.to_json(), sort_keys=True),
        )
        try:
            text, scenario = load_doc(doc, name, comments)
        except ScenarioError as err:  # the shrinker only keeps loadable documents
            f.shrink_note += f"; the shrunk file does not load: {err}"
            return
        self.opt.out.mkdir(parents=True, exist_ok=True)
        path = self.opt.out / f"{sig.slug}.yaml"
        path.write_text(text, encoding="utf-8")
        f.file = path
        setup = built(scenario)
        res = self.check(scenario, setup, model_results(setup, self.features, self.ram_size))
        same = [f.outcome for f in res.failures if f.signature.family == sig]
        if same:
            f.shrunk_outcome = same[0]
        elif sig.kind != "target-error":
            f.shrink_note += "; the written file did not fail again on its own run"


def _gave_up(err: TargetError, probes: int) -> bool:
    """Did the harness give up on a batch of ``probes`` after too many
    unexpected exceptions, one that smaller batches would run?"""
    return GAVE_UP in str(err) and probes > SMALL_BATCH


@contextmanager
def _young_collections(threshold: int) -> Iterator[None]:
    """Python's cyclic GC with ``threshold`` for its youngest generation
    (the older ones as they were), set back afterwards."""
    old = gc.get_threshold()
    gc.set_threshold(threshold, *old[1:])
    try:
        yield
    finally:
        gc.set_threshold(*old)


def _size(doc: Doc) -> str:
    maps = sum(len(v) for v in doc.get("tables", {}).values())
    return (f"{len(doc['probes'])} probes, {maps} mappings, "
            f"{sum(len(v) if isinstance(v, dict) else 1 for v in doc.get('regs', {}).values())}"
            " register fields")

