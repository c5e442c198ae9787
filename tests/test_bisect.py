"""Bisection with real processes: `git bisect run xcheck run` over a generated
repository whose commits switch a profile between QEMU 10.0 and 7.2, and
`xcheck bisect` over a generated stand-in for a QEMU source tree (its
configure writes a build.ninja whose qemu-system-aarch64 is a wrapper around
one of the real binaries). The scenario, tests/bisect/sh-mmu-off.yaml,
matches on QEMU 10.0.2 and mismatches (PAR_EL1.SH) on 7.2.22.

Also, without QEMU: how outcomes map to good / bad / skip, and the checks
`xcheck bisect` makes before it starts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from xcheck.bisect import BAD, GOOD, SKIP, BisectError, check_plan, verdict
from xcheck.outcome import FieldDelta, Kind, Outcome
from xcheck.target.profile import Profile, load_profile

HERE = Path(__file__).resolve().parent
SCENARIO = HERE / "bisect" / "sh-mmu-off.yaml"
ABORT_SCENARIO = HERE / "bisect" / "s2-permission-abort.yaml"
PROBE = "sh-mmu-off::S1E1R va=0x4000_1000 el=2 pan=0"


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-c", "user.name=xcheck test", "-c", "user.email=test@xcheck.invalid",
         "-c", "init.defaultBranch=main", "-c", "advice.detachedHead=false",
         "-C", str(repo), *args],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, f"git {args}: {proc.stderr}"
    return proc.stdout.strip()


def make_repo(repo: Path, commits: Sequence[dict[str, str]]) -> list[str]:
    """A git repo with one commit per mapping of file name -> content
    (files not named keep their content); the commit ids, oldest first."""
    repo.mkdir()
    git(repo, "init", "-q")
    shas = []
    for i, files in enumerate(commits):
        for name, text in files.items():
            path = repo / name
            path.write_text(text)
            if text.startswith("#!"):
                path.chmod(0o755)
            git(repo, "add", name)
        git(repo, "commit", "-q", "--allow-empty", "-m", f"commit {i}")
        shas.append(git(repo, "rev-parse", "HEAD"))
    return shas


@pytest.fixture(scope="module")
def binaries(qemu_profile: Profile) -> tuple[str, str]:
    """(QEMU 10.0, QEMU 7.2) as absolute paths."""
    q10 = load_profile("qemu10").executable
    if not Path(q10).is_file():
        pytest.skip(f"QEMU 10.0 is not installed at {q10} (run `make qemu10` or "
                    "`xcheck qemu fetch`)")
    q72 = shutil.which(qemu_profile.executable)
    assert q72 is not None
    return q10, q72


BROKEN = "#!/bin/sh\necho 'qemu-system-aarch64: this build is broken' >&2\nexit 1\n"


def profile_yaml(binary: str) -> str:
    return f"binary: {binary}\nmachine: virt,virtualization=on\ncpu: max\nmemory: 128M\n"


@pytest.mark.qemu
def test_git_bisect_run_xcheck_run_names_the_commit_that_switched_to_qemu_72(
    binaries: tuple[str, str], tmp_path: Path
) -> None:
    q10, q72 = binaries
    repo = tmp_path / "profiles"
    broken = str(repo / "broken-qemu")
    shas = make_repo(repo, [
        {"profile.yaml": profile_yaml(q10), "broken-qemu": BROKEN},
        {"notes": "1"},
        {"profile.yaml": profile_yaml(broken)},  # a QEMU that does not start: skip
        {"profile.yaml": profile_yaml(q10)},
        {"profile.yaml": profile_yaml(q72)},  # the first bad commit
        {"notes": "2"},
    ])
    git(repo, "bisect", "start", shas[-1], shas[0])
    try:
        run = subprocess.run(
            ["git", "bisect", "run", sys.executable, "-m", "xcheck.cli", "run",
             "--config", "profile.yaml", str(SCENARIO)],
            cwd=repo, capture_output=True, text=True, check=False, timeout=300,
        )
        log = git(repo, "bisect", "log")
    finally:
        git(repo, "bisect", "reset")
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{shas[4]} is the first bad commit" in run.stdout
    assert f"# skip: [{shas[2]}]" in log, log
    assert f"# good: [{shas[3]}]" in log, log


def fake_qemu_tree(
    src: Path, which: dict[int, str], fail_configure: int | None = None
) -> list[str]:
    """A stand-in for a QEMU source tree: `configure --target-list=
    aarch64-softmmu` writes a build.ninja (which re-runs configure when
    configure changes, as meson's does) whose qemu-system-aarch64 is a
    script exec'ing the binary named in `which-qemu`."""
    configure = """#!/bin/sh
src=$(cd "$(dirname "$0")" && pwd)
case " $* " in
  *" --target-list=aarch64-softmmu "*) ;;
  *) echo "configure: this test wants --target-list=aarch64-softmmu" >&2; exit 1;;
esac
echo "configure $*" >> configure-runs
cat > build.ninja <<EOF
src = $src
rule wrap
  command = sh \\$src/mkwrapper.sh \\$src \\$out
build qemu-system-aarch64: wrap \\$src/which-qemu \\$src/mkwrapper.sh
rule configure
  command = \\$src/configure --target-list=aarch64-softmmu
  generator = 1
build build.ninja: configure \\$src/configure
EOF
"""
    failing = "#!/bin/sh\necho 'ERROR: this commit does not configure' >&2\nexit 1\n"
    mkwrapper = "printf '#!/bin/sh\\nexec %s \"$@\"\\n' \"$(cat \"$1/which-qemu\")\" > \"$2\"\n" \
        "chmod +x \"$2\"\n"
    commits: list[dict[str, str]] = []
    for i in range(max(which) + 1):
        files = {"which-qemu": which[i] + "\n"} if i in which else {}
        if i == 0:
            files |= {"configure": configure, "mkwrapper.sh": mkwrapper}
        if fail_configure is not None and i == fail_configure:
            files["configure"] = failing
        elif fail_configure is not None and i == fail_configure + 1:
            files["configure"] = configure
        commits.append(files or {"notes": str(i)})
    return make_repo(src, commits)


@pytest.mark.qemu
def test_xcheck_bisect_builds_each_step_and_names_the_first_bad_commit(
    binaries: tuple[str, str], tmp_path: Path
) -> None:
    q10, q72 = binaries
    src = tmp_path / "qemu"
    build = tmp_path / "build"
    shas = fake_qemu_tree(src, {0: q10, 4: q72, 5: q72}, fail_configure=2)
    branch = git(src, "symbolic-ref", "HEAD")
    run = subprocess.run(
        [sys.executable, "-m", "xcheck.cli", "bisect", "--good", shas[0], "--bad", shas[-1],
         "--qemu-src", str(src), "--build-dir", str(build), str(SCENARIO)],
        capture_output=True, text=True, check=False, timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    out = run.stdout
    assert run.returncode == 0, out + run.stderr
    assert f"first bad commit: {shas[4]}" in out
    assert f"{PROBE}: mismatch SH=0x0 (model 0x2)" in out
    assert f"xcheck bisect: {shas[2][:12]} is skip: configure failed" in out
    assert f"xcheck bisect: {shas[3][:12]} is good (QEMU 10.0.2)" in out
    # the bisection is over and HEAD is back on the branch
    assert git(src, "symbolic-ref", "HEAD") == branch
    assert subprocess.run(["git", "-C", str(src), "bisect", "log"], capture_output=True,
                          check=False).returncode != 0
    # one build directory, configured once and re-configured only where needed
    # (git tests commits 2, 3, 4: 2 does not configure, 3 configures, 4 only rebuilds)
    runs = (build / "configure-runs").read_text().splitlines()
    assert len(runs) == 1 and "--target-list=aarch64-softmmu" in runs[0]
    assert (build / "build.ninja").is_file() and (build / "xcheck-bisect.log").is_file()


@pytest.mark.qemu
def test_a_qemu_crash_on_a_probe_is_bad_or_skipped_with_crash_is_skip(
    binaries: tuple[str, str], tmp_path: Path
) -> None:
    """QEMU 10.0.2 aborts on the probe of s2-permission-abort.yaml, 7.2.22 answers it."""
    q10, q72 = binaries
    src = tmp_path / "qemu"
    shas = fake_qemu_tree(src, {0: q72, 2: q10, 4: q10})
    # QEMU's abort is noticed when the batch times out: keep that short here
    profile = tmp_path / "short.yaml"
    profile.write_text("binary: qemu-system-aarch64\ntimeouts: {command: 3, batch: 3}\n")

    def bisect(crash_is: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "xcheck.cli", "bisect", "--good", shas[0], "--bad",
             shas[-1], "--qemu-src", str(src), "--crash-is", crash_is,
             "--config", str(profile), str(ABORT_SCENARIO)],
            capture_output=True, text=True, check=False, timeout=300,
            env={**os.environ, "COLUMNS": "200"},
        )

    bad = bisect("bad")
    assert bad.returncode == 0, bad.stdout + bad.stderr
    assert f"first bad commit: {shas[2]}" in bad.stdout
    assert "s2-permission-abort::S12E1W va=0x8020_0abc el=2 pan=0: target-error QEMU died " \
        "(signal 6)" in bad.stdout
    skip = bisect("skip")
    assert skip.returncode == 1, skip.stdout + skip.stderr
    assert "is skip (QEMU 10.0.2): QEMU crashed on 1 probe(s)" in skip.stdout
    assert "inconclusive" in skip.stdout


# -- no QEMU -------------------------------------------------------------------------------


def _o(kind: Kind, detail: str = "", fields: tuple[FieldDelta, ...] = ()) -> Outcome:
    return Outcome(scenario="s", path="s.yaml", kind=kind, label="p", detail=detail,
                   fields=fields, target_version="9.9.9")


@pytest.mark.parametrize(
    ("kinds", "crash_is", "code"),
    [
        ([Kind.MATCH, Kind.KNOWN], "bad", GOOD),
        ([Kind.MATCH, Kind.MISMATCH], "bad", BAD),
        ([Kind.EXPECT_FAILED], "skip", BAD),
        ([Kind.SKIPPED, Kind.SKIPPED], "bad", SKIP),
        ([Kind.SKIPPED, Kind.MATCH], "bad", GOOD),
    ],
)
def test_verdict_of_outcomes(kinds: list[Kind], crash_is: str, code: int) -> None:
    assert verdict([_o(k) for k in kinds], None, crash_is).code == code


def test_a_crash_is_bad_or_skipped_as_asked_but_a_mismatch_stays_bad() -> None:
    crash = _o(Kind.TARGET_ERROR, "QEMU died (signal 6): the program did not finish")
    hang = _o(Kind.TARGET_ERROR, "the guest stopped at 0x0 (unknown)")
    mismatch = _o(Kind.MISMATCH, fields=(FieldDelta("SH", 0, 2),))
    assert verdict([crash], None, "bad").code == BAD
    assert verdict([crash], None, "skip").code == SKIP
    assert verdict([hang], None, "skip").code == BAD
    v = verdict([crash, mismatch], None, "skip")
    assert v.code == BAD
    assert "s::p: mismatch SH=0x0 (model 0x2)" in v.failing
    assert v.version == "9.9.9"


def test_a_qemu_that_cannot_start_is_a_skip_and_a_bad_scenario_aborts() -> None:
    v = verdict([], "QEMU exited with status 1 at start\nmore", "bad")
    assert v.code == SKIP
    assert v.reason == "QEMU could not be used: QEMU exited with status 1 at start"
    assert verdict([_o(Kind.INVALID, "s.yaml:3: probes: bad")], None, "bad").code == 128


def _plan(src: Path, good: str = "HEAD~1", bad: str = "HEAD",
          paths: Sequence[Path] = (SCENARIO,)) -> None:
    check_plan(good, bad, src, None, paths, config=None, keyword=None, jobs=1, crash_is="bad")


def test_check_plan_refuses_what_cannot_be_bisected(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_repo(src, [{"configure": "#!/bin/sh\n"}, {"notes": "1"}])
    _plan(src)  # fine as it is
    with pytest.raises(BisectError, match="--good nope: no such commit"):
        _plan(src, good="nope")
    with pytest.raises(BisectError, match="no such scenario file"):
        _plan(src, paths=[tmp_path / "missing.yaml"])
    inside = src / "s.yaml"
    inside.write_text(SCENARIO.read_text())
    with pytest.raises(BisectError, match="outside --qemu-src"):
        _plan(src, paths=[inside])
    (src / "notes").write_text("changed")
    with pytest.raises(BisectError, match="uncommitted changes"):
        _plan(src)
    git(src, "checkout", "-q", "notes")
    git(src, "bisect", "start")
    with pytest.raises(BisectError, match="already under way"):
        _plan(src)
    git(src, "bisect", "reset")
    (src / "configure").unlink()
    git(src, "commit", "-qam", "no configure")
    with pytest.raises(BisectError, match="no configure script"):
        _plan(src)
    with pytest.raises(BisectError, match="no such directory"):
        _plan(tmp_path / "nowhere")
