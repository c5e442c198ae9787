"""A fuzz run: generate cases, cross-check each on the target and the
model, group failures by signature, shrink each new one to a file.

The target is started once and restarted after a crash or a hang (which
is itself a finding). It runs in a second process (xcheck.target.remote)
with the next case queued (IN_FLIGHT): while it runs them, this process
compares the case before and draws the one after. Findings whose
signature a file in the output folder (or in a folder of earlier findings)
already records are counted, not shrunk again.
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
from xcheck.check import acts_as_explains, agrees, compare
from xcheck.fuzz.case import Case, built, load_doc, make_case, model_results, scenario_of
from xcheck.fuzz.coverage import Coverage
from xcheck.fuzz.knobs import Knobs
from xcheck.fuzz.shrink import shrink
from xcheck.fuzz.signature import Signature, signature, target_error_signature
from xcheck.fuzz.yamlout import Doc
from xcheck.machine import MachineSetup, Probe, ProbeResult
from xcheck.model import ImpDefStates
from xcheck.needs import unrunnable
from xcheck.outcome import Outcome
from xcheck.scenario.expect import KnownDivergence
from xcheck.scenario.loader import Scenario, ScenarioError, parse_scenario
from xcheck.target.errors import HarnessError, TargetError, Unsupported
from xcheck.target.profile import Profile
from xcheck.target.remote import RemoteTarget

SIGNATURE_COMMENT = "signature: "
GAVE_UP = "gave up after"
"""In the target's error when the harness stopped after too many exceptions."""
SMALL_BATCH = 16
IN_FLIGHT = 2
"""Cases sent to the target ahead of the one compared: the running one and
one queued behind it, so that the target starts the next case while this
process compares the last and draws the one after."""
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


@dataclass(frozen=True)
class Job:
    """What a case runs on the target: its probes the harness can run
    (``keep``: their numbers in the case), or why none can (``skipped``)."""

    setup: MachineSetup
    keep: tuple[int, ...]
    skipped: str | None = None
    error: TargetError | None = None
    """The target failed when the run was sent (raised when it is collected)."""


@dataclass
class CheckResult:
    failures: list[tuple[Signature, int, Outcome]]
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


@dataclass(frozen=True)
class Behaviour:
    """A recorded bug known by what the target does: a `known:` entry with
    ``acts_as`` register values, from the scenario ``name`` at ``path``."""

    path: Path
    name: str
    entry: KnownDivergence

    @property
    def label(self) -> str:
        return f"{self.name} ({self.entry.describe_acts()})"


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
        self.known: dict[Signature, Path] | None = None
        """Recorded signatures, read at the first start (they depend on the
        target's version and CPU)."""
        self.behaviours: list[Behaviour] = []
        """Recorded bugs known by their ``acts_as``, read with ``known``."""

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
        if self.known is None:
            dirs = (self.opt.out, *self.opt.known_dirs)
            self.known = known_signatures(dirs, self.version, self.features)
            self.behaviours = known_behaviours(dirs, self.version, self.features)

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
        job = self.job(setup)
        if job.skipped is not None:
            return CheckResult([], skipped=job.skipped)
        return self.judge(scenario, job, model, lambda: self.run_target(job.setup))

    def job(self, setup: MachineSetup, choices: ImpDefStates | None = None) -> Job:
        """The probes of ``setup`` the harness can run on this CPU. The others
        (xcheck.needs) are left out, as `xcheck run` skips them: their
        failures would be the harness's. ``choices``: the registers as the
        model decoded them for the probes (Case.choices)."""
        blocked = unrunnable(setup, self.features, self.ram_size, choices)
        keep = tuple(i for i, why in enumerate(blocked) if not why)
        if not keep:
            return Job(setup, keep, blocked[0])
        if len(keep) < len(blocked):
            setup = replace(setup, probes=tuple(setup.probes[i] for i in keep))
        return Job(setup, keep)

    def judge(self, scenario: Scenario, job: Job,
              model: list[AtResult] | tuple[AtResult, ...],
              results: Callable[[], list[ProbeResult]], counted: bool = False) -> CheckResult:
        """The failures of ``job``, whose target ``results`` are asked for here
        (a target error ends the case; a crash or a hang restarts QEMU).
        ``counted``: the failures go to :meth:`count`, which keeps an outcome
        only as the example of a family new in the run, so only those carry
        the model's rendered trace."""
        try:
            got = results()
        except Unsupported as err:
            return CheckResult([], skipped=str(err))
        except HarnessError as err:  # QEMU is fine: no restart
            return CheckResult([], target_error=str(err))
        except TargetError as err:
            self.restart()
            return CheckResult([], target_error=str(err))
        fails = []
        plain = not scenario.expect
        for i, p, g in zip(job.keep, job.setup.probes, got, strict=True):
            m = model[i]
            if plain and agrees(m, g):
                continue  # a match (compare would say so; no expectation to judge)
            o = compare(scenario, p, g, m, target=self.profile.kind, version=self.version,
                        trace=not counted)
            sig = signature(o, g, m)
            if sig is not None:
                sig = self.explained(sig, job.setup, p, g)
                if counted and sig.family not in self.findings:
                    o = replace(o, trace=m.render())
                fails.append((sig, i, o))
        return CheckResult(fails)

    def explained(self, sig: Signature, setup: MachineSetup, probe: Probe,
                  got: ProbeResult) -> Signature:
        """``sig``; or, when no file records its family and a recorded bug's
        ``acts_as`` explains the probe (xcheck.check.acts_as_explains), the
        signature with that bug named, which the bug's file then records."""
        known = self.known if self.known is not None else {}
        if sig.family in known:
            return sig
        for b in self.behaviours:
            if acts_as_explains(b.entry, setup, probe, got, self.features, self.ram_size):
                out = replace(sig, acts_as=b.label)
                known.setdefault(out.family, b.path)
                return out
        return sig

    def run_target(self, setup: MachineSetup,
                   first: Callable[[], list[ProbeResult]] | None = None) -> list[ProbeResult]:
        """The target's results (``first``: the run already submitted); when
        the harness gave up after too many unexpected exceptions, the probes
        again in small batches (each program has its own exception budget),
        so that each probe gets its own answer."""
        assert self.target is not None
        try:
            return first() if first else self.target.run(setup, "batch")
        except TargetError as err:
            if GAVE_UP not in str(err) or len(setup.probes) <= SMALL_BATCH:
                raise
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
            return any(s.family == sig for s, _, _ in res.failures)
        return fails

    @property
    def ram_size(self) -> int:
        return self.target.ram_size if self.target else 128 << 20

    # --- the loop ---------------------------------------------------------------

    def cases(self) -> Iterator[Case]:
        """The run's cases: numbers below ``count`` (or until ``seconds`` have
        passed), of this shard only."""
        origin = f"{self.profile.name}, QEMU {self.version}".strip()
        start = time.monotonic()
        for index in shard_indices(self.opt.shard):
            if self.opt.count is not None and index >= self.opt.count:
                return
            if self.opt.seconds is not None and \
                    time.monotonic() - start - self.stats.shrink_seconds >= self.opt.seconds:
                return
            yield make_case(self.opt.seed, index, self.knobs, self.ram_size, origin)

    def run(self) -> None:
        """Every case: drawn (generated, loaded, run on the model) here while
        the target's process runs the case before it."""
        with _young_collections(GC_YOUNG):
            self._run()

    def _run(self) -> None:
        t0 = time.monotonic()
        cases = self.cases()
        ahead: deque[tuple[Case, Job]] = deque()
        while True:
            while len(ahead) < IN_FLIGHT and (sent := self.submit(next(cases, None))):
                ahead.append(sent)
            if not ahead:
                break
            case, job = ahead.popleft()
            res = self.collect(case, job)
            self.stats.cases += 1
            self.stats.probes += len(case.setup.probes)
            if res.skipped:
                self.stats.skipped += 1
            new = self.count(case, res)
            shrinking = [sig for sig in new
                         if self.findings[sig].known_file is None and self.may_shrink()]
            self.coverage.add_case(case.tags)
            self.coverage.add(case.setup.probes, case.model)
            self.stats.fuzz_seconds = time.monotonic() - t0 - self.stats.shrink_seconds
            self.on_event("case", case)
            for sig, hint in new.items():
                f = self.findings[sig]
                if sig in shrinking and self.may_shrink():
                    self.shrunk += 1
                    s0 = time.monotonic()
                    self.shrink_finding(f, case, hint)
                    self.stats.shrink_seconds += time.monotonic() - s0
                self.on_event("finding", f)
        self.stats.fuzz_seconds = time.monotonic() - t0 - self.stats.shrink_seconds

    def may_shrink(self) -> bool:
        """Is shrinking on, with findings left in its budget (--max-shrinks)?"""
        return self.opt.shrink and (self.opt.max_shrinks is None
                                    or self.shrunk < self.opt.max_shrinks)

    def submit(self, case: Case | None) -> tuple[Case, Job] | None:
        """Start ``case``'s run on the target (if the harness can run any of
        its probes); None when there is no case."""
        if case is None:
            return None
        job = self.job(case.setup, case.choices)
        if job.skipped is None:
            assert self.target is not None
            try:
                self.target.submit(job.setup)
            except TargetError as err:
                job = replace(job, error=err)
        return case, job

    def collect(self, case: Case, job: Job) -> CheckResult:
        """The failures of ``case``, whose run :meth:`submit` started."""
        if job.skipped is not None:
            return CheckResult([], skipped=job.skipped)
        assert self.target is not None
        target = self.target

        def results() -> list[ProbeResult]:
            if job.error is not None:
                raise job.error
            return self.run_target(job.setup, target.collect)
        return self.judge(case.scenario, job, case.model, results, counted=True)

    def count(self, case: Case, res: CheckResult) -> dict[Signature, list[int]]:
        """Record ``res``'s failures; the families new in this run, each with
        the probes that showed it (the shrinker's hint)."""
        new: dict[Signature, list[int]] = {}
        if res.target_error is not None:
            self.stats.target_errors += 1
            sig = target_error_signature(res.target_error)
            if self.record(sig, case.index, None):
                new[sig] = []
        for sig, i, o in res.failures:
            if self.record(sig, case.index, o):
                new[sig.family] = [i]
            elif sig.family in new:
                new[sig.family].append(i)
        return new

    def record(self, sig: Signature, index: int, example: Outcome | None) -> bool:
        """Count one failure; True when its signature family is new in this run."""
        fam = sig.family
        f = self.findings.get(fam)
        fresh = f is None
        if f is None:
            known = (self.known or {}).get(fam)
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
        same = [o for s, _, o in res.failures if s.family == sig]
        if same:
            f.shrunk_outcome = same[0]
        elif sig.kind != "target-error":
            f.shrink_note += "; the written file did not fail again on its own run"


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

