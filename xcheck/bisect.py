"""Find the QEMU commit that changed a probe's outcome: ``git bisect run``
over a QEMU source tree, building aarch64-softmmu at each step.

`xcheck bisect` starts the bisection in the source tree and hands git a run
step (`xcheck bisect-step`, run with the same Python) that

1. builds: ``configure --target-list=aarch64-softmmu --disable-werror``
   (with ``--cc="ccache cc"`` when ccache is installed) into a build
   directory kept across steps, then ``ninja qemu-system-aarch64``; when
   ninja fails, configure once more and retry, as a tree several hundred
   commits away may need;
2. runs the scenarios with the binary built (``--qemu``);
3. exits 0 (good: no failing probe), 1 (bad: a mismatch, a failed
   expectation, a target error), 125 (skip: the build failed, QEMU did not
   boot, or no probe could be tested) or 128 (abort: a scenario or profile
   error, which no commit can fix). A QEMU crash on a probe is bad, or a
   skip with ``--crash-is skip``.

Each step records its verdict per commit; at the end `xcheck bisect` names
the first bad commit and the probes failing there (they fail on no good
commit: good means that nothing failed), then resets the bisection.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from xcheck.check import load_all, select
from xcheck.keyword import KeywordError, compile_keyword
from xcheck.outcome import FAILING, ExitCode, Kind, Outcome
from xcheck.target.errors import ProfileError
from xcheck.target.profile import load_profile
from xcheck.workers import CannotTest, run_parallel

GOOD, BAD, SKIP, ABORT = 0, 1, 125, 128
"""Exit codes of a step as `git bisect run` reads them (128 aborts it)."""

WORDS = {GOOD: "good", BAD: "bad", SKIP: "skip", ABORT: "abort"}
CRASH_PREFIXES = ("QEMU died", "QEMU exited")
"""How a target error reads when the QEMU process ended during a probe
(QemuTarget adds its exit status or signal to the error)."""

BINARY = "qemu-system-aarch64"
BUILD_LOG = "xcheck-build.log"
BISECT_LOG = "xcheck-bisect.log"


class BisectError(Exception):
    """A problem with the arguments or the source tree: nothing was bisected."""


@dataclass(frozen=True)
class Verdict:
    """What one commit is for the bisection, and why."""

    code: int
    reason: str
    failing: tuple[str, ...] = ()
    version: str = ""

    def to_json(self, commit: str) -> dict[str, object]:
        return {
            "commit": commit,
            "code": self.code,
            "verdict": WORDS[self.code],
            "reason": self.reason,
            "failing": list(self.failing),
            "version": self.version,
        }


def is_crash(o: Outcome) -> bool:
    """A target error because the QEMU process ended (an abort, a signal)."""
    return o.kind == Kind.TARGET_ERROR and o.detail.startswith(CRASH_PREFIXES)


def describe_failure(o: Outcome) -> str:
    """``scenario::probe: mismatch SH=0x0 (model 0x2)``, on one line."""
    why = ", ".join(f"{f.name}=0x{f.target:x} (model 0x{f.model:x})" for f in o.fields)
    if not why and o.detail:
        why = o.detail.splitlines()[0][:120]
    return f"{o.probe_id}: {o.kind.value}" + (f" {why}" if why else "")


def verdict(outcomes: Sequence[Outcome], cannot: str | None, crash_is: str) -> Verdict:
    """Map one run's outcomes to good / bad / skip / abort."""
    version = next((o.target_version for o in outcomes if o.target_version), "")
    invalid = [o for o in outcomes if o.kind == Kind.INVALID]
    if invalid:
        return Verdict(ABORT, f"scenario error: {invalid[0].detail.splitlines()[0]}")
    if cannot is not None:
        return Verdict(SKIP, f"QEMU could not be used: {cannot.splitlines()[0]}", (), version)
    failing = [o for o in outcomes if o.kind in FAILING]
    crashes = [o for o in failing if is_crash(o)]
    others = [o for o in failing if not is_crash(o)]
    described = tuple(describe_failure(o) for o in failing)
    if others:
        return Verdict(BAD, f"{len(failing)} failing probe(s)", described, version)
    if crashes:
        code = SKIP if crash_is == "skip" else BAD
        return Verdict(code, f"QEMU crashed on {len(crashes)} probe(s)", described, version)
    if not any(o.kind != Kind.SKIPPED for o in outcomes):
        return Verdict(SKIP, "no probe could be tested here (all skipped)", (), version)
    return Verdict(GOOD, f"{len(outcomes)} probe(s) pass", (), version)


# --- building ------------------------------------------------------------------


def configure_argv(src: Path) -> list[str]:
    """QEMU's configure for aarch64-softmmu only; ccache in front of the
    compiler when it is installed."""
    argv = [str(src / "configure"), "--target-list=aarch64-softmmu", "--disable-werror"]
    if shutil.which("ccache"):
        argv.append(f"--cc=ccache {os.environ.get('CC', 'cc')}")
    return argv


def build_qemu(src: Path, build: Path) -> tuple[Path | None, str]:
    """Configure (when the build dir has no build.ninja yet) and build
    qemu-system-aarch64 in ``build``; (binary, "") or (None, why). The
    output goes to ``build/xcheck-build.log``."""
    build.mkdir(parents=True, exist_ok=True)
    log = build / BUILD_LOG
    with log.open("w") as out:

        def run(argv: list[str]) -> bool:
            out.write(f"$ {' '.join(argv)}\n")
            out.flush()
            try:
                return subprocess.run(argv, cwd=build, stdout=out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, check=False).returncode == 0
            except OSError as err:
                out.write(f"cannot run {argv[0]}: {err}\n")
                return False

        configure = configure_argv(src)
        ninja = ["ninja", "-C", str(build), BINARY]
        if not (build / "build.ninja").exists() and not run(configure):
            return None, "configure failed"
        if not run(ninja):
            if not run(configure):
                return None, "configure failed"
            if not run(ninja):
                return None, "build failed"
    binary = build / BINARY
    if not binary.is_file():
        return None, f"the build produced no {BINARY}"
    return binary, ""


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --- one step ------------------------------------------------------------------


def _git(src: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(src), *args], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise BisectError(f"git {' '.join(args)} in {src}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def run_step(
    src: Path,
    build: Path,
    paths: Sequence[Path],
    *,
    config: str | None,
    keyword: str | None,
    jobs: int,
    crash_is: str,
) -> Verdict:
    """Build the checked-out commit and run the scenarios with it."""
    binary, why = build_qemu(src, build)
    if binary is None:
        return Verdict(SKIP, f"{why} (see {build / BUILD_LOG})")
    try:
        profile = load_profile(config, qemu=str(binary))
        keep = compile_keyword(keyword or "")
    except (ProfileError, KeywordError) as err:
        return Verdict(ABORT, str(err))
    scenarios, outcomes = load_all(paths)
    scenarios = select(scenarios, keep)
    cannot = None
    for event in run_parallel(scenarios, profile, "batch", max(1, jobs)):
        if isinstance(event, CannotTest):
            cannot = event.reason
        else:
            outcomes.extend(event)
    return verdict(outcomes, cannot, crash_is)


def step_command(
    src: Path,
    build: Path,
    paths: Sequence[Path],
    *,
    config: str | None,
    keyword: str | None,
    jobs: int,
    crash_is: str,
    record_dir: Path | None,
    console: Console,
) -> int:
    """`xcheck bisect-step`: what `git bisect run` executes at each commit."""
    try:
        commit = _git(src, "rev-parse", "HEAD")
    except BisectError as err:
        console.print(f"error: {err}", markup=False)
        return ABORT
    v = run_step(src, build, paths, config=config, keyword=keyword, jobs=jobs,
                 crash_is=crash_is)
    version = f" (QEMU {v.version})" if v.version else ""
    console.print(f"xcheck bisect: {commit[:12]} is {WORDS[v.code]}{version}: {v.reason}",
                  markup=False, highlight=False)
    for line in v.failing[:10]:
        console.print(f"  {line}", markup=False, highlight=False)
    if v.code == SKIP and "see " in v.reason:
        console.print(_tail(build / BUILD_LOG), markup=False, highlight=False)
    if record_dir is not None:
        (record_dir / f"{commit}.json").write_text(json.dumps(v.to_json(commit)) + "\n")
    return v.code


# --- the bisection -------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What `xcheck bisect` was asked, checked."""

    src: Path
    build: Path
    good: str
    bad: str
    paths: tuple[Path, ...]
    config: str | None
    keyword: str | None
    jobs: int
    crash_is: str

    def step_argv(self, record_dir: Path) -> list[str]:
        argv = [sys.executable, "-m", "xcheck.cli", "bisect-step",
                "--qemu-src", str(self.src), "--build-dir", str(self.build),
                "--crash-is", self.crash_is, "--record-dir", str(record_dir),
                "--jobs", str(self.jobs)]
        if self.config:
            argv += ["--config", self.config]
        if self.keyword:
            argv += ["-k", self.keyword]
        return [*argv, "--", *map(str, self.paths)]


def check_plan(
    good: str, bad: str, src: Path, build: Path | None, paths: Sequence[Path], *,
    config: str | None, keyword: str | None, jobs: int, crash_is: str,
) -> Plan:
    """Validate everything a bisection needs before it starts."""
    for tool in ("git", "ninja"):
        if shutil.which(tool) is None:
            raise BisectError(f"{tool} is not installed (Debian: apt-get install "
                              f"{'ninja-build' if tool == 'ninja' else tool})")
    if not src.is_dir():
        raise BisectError(f"--qemu-src {src}: no such directory")
    src = Path(_git(src, "rev-parse", "--show-toplevel"))
    if not (src / "configure").is_file():
        raise BisectError(f"--qemu-src {src}: no configure script; is it a QEMU source tree?")
    if subprocess.run(["git", "-C", str(src), "bisect", "log"], capture_output=True,
                      check=False).returncode == 0:
        raise BisectError(f"a bisection is already under way in {src} "
                          "(finish it, or run `git bisect reset` there)")
    if _git(src, "status", "--porcelain", "--untracked-files=no"):
        raise BisectError(f"{src} has uncommitted changes; commit or stash them first")
    for name, rev in (("--good", good), ("--bad", bad)):
        try:
            _git(src, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
        except BisectError:
            raise BisectError(f"{name} {rev}: no such commit in {src}") from None
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise BisectError(f"no such scenario file or folder: {', '.join(missing)}")
    abs_paths = tuple(p.resolve() for p in paths)
    if any(p.is_relative_to(src) for p in abs_paths):
        raise BisectError("the scenarios must live outside --qemu-src: "
                          "checking out commits would change them")
    try:
        load_profile(config)
        keep = compile_keyword(keyword or "")
    except (ProfileError, KeywordError) as err:
        raise BisectError(str(err)) from None
    scenarios, invalid = load_all(abs_paths)
    if invalid:
        raise BisectError(invalid[0].detail)
    if not select(scenarios, keep):
        raise BisectError("no probe selected")
    build = (build or src / "build-xcheck").resolve()
    return Plan(src, build, good, bad, abs_paths, config, keyword, jobs, crash_is)


FIRST_BAD = re.compile(r"^([0-9a-f]{40}) is the first bad commit", re.M)
CANDIDATES = re.compile(r"could be any of:\n((?:[0-9a-f]{40}\n)+)")


def _stream(argv: list[str], cwd: Path, console: Console) -> tuple[int, str]:
    """Run ``argv``, echoing its output as it comes; (status, output)."""
    lines = []
    with subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            console.print(line.rstrip("\n"), markup=False, highlight=False)
    return proc.returncode, "".join(lines)


def _record(record_dir: Path, commit: str) -> dict[str, object] | None:
    try:
        data = json.loads((record_dir / f"{commit}.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def bisect(plan: Plan, console: Console) -> int:
    """Run the bisection; name the first bad commit and the probes that
    flipped; always reset. 0 when a first bad commit was found, 1 when the
    bisection could not tell (skipped commits around it, or it aborted)."""
    record_dir = Path(tempfile.mkdtemp(prefix="xcheck-bisect-"))
    src = plan.src
    try:
        _git(src, "bisect", "start", plan.bad, plan.good)
        status, out = _stream(["git", "bisect", "run", *plan.step_argv(record_dir)], src, console)
        m = FIRST_BAD.search(out)
        with contextlib.suppress(BisectError, OSError):
            (plan.build / BISECT_LOG).write_text(_git(src, "bisect", "log") + "\n")
        if m is None:
            cand = CANDIDATES.search(out)
            if cand:
                shas = cand.group(1).split()
                console.print("[yellow]inconclusive:[/] the first bad commit is one of "
                              "these (the others were skipped):")
                for sha in shas:
                    console.print(f"  {_git(src, 'log', '-1', '--format=%h %s', sha)}",
                                  markup=False)
            else:
                console.print(f"[red]the bisection did not finish[/] (git bisect run "
                              f"exit {status})")
            return 1
        first = m.group(1)
        rec = _record(record_dir, first)
        if rec is None:  # git never ran it: it was the --bad revision
            _git(src, "checkout", "-q", first)
            subprocess.run(plan.step_argv(record_dir), cwd=src, capture_output=True, check=False)
            rec = _record(record_dir, first) or {}
        _report(plan, first, rec, record_dir, console)
        if rec.get("code") == SKIP:
            console.print(f"[yellow]inconclusive:[/] {first[:12]} (--bad) cannot be tested "
                          f"({rec.get('reason')}); the change is after the last good commit "
                          "and no later than it")
            return 1
        if rec.get("code") != BAD:
            console.print(f"[yellow]warning:[/] {first[:12]} did not fail when run again "
                          f"({rec.get('reason', 'no result')}): is --bad really bad?")
            return 1
        return 0
    except BisectError as err:
        console.print(f"error: {err}", markup=False)
        return ExitCode.USAGE
    finally:
        subprocess.run(["git", "-C", str(src), "bisect", "reset"],
                       capture_output=True, check=False)
        shutil.rmtree(record_dir, ignore_errors=True)


def _report(
    plan: Plan, first: str, rec: dict[str, object], record_dir: Path, console: Console
) -> None:
    subject = _git(plan.src, "log", "-1", "--format=%h %s", first)
    console.print()
    console.print(f"[bold]first bad commit:[/] {first}", highlight=False)
    console.print(f"  {subject}", markup=False, highlight=False)
    version = rec.get("version") or "?"
    failing = rec.get("failing") or []
    assert isinstance(failing, list)
    if failing:
        console.print(f"probes that flipped (pass before it, fail from it on; QEMU {version}):")
        for line in failing:
            console.print(f"  {line}", markup=False, highlight=False)
    else:
        console.print(f"at that commit: {rec.get('reason', 'not recorded')}", markup=False)
    tested = sorted(record_dir.glob("*.json"))
    console.print(f"{len(tested)} commit(s) tested; git's log is in {plan.build / BISECT_LOG}",
                  highlight=False)
