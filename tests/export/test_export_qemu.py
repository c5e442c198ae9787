"""Proof on real bugs (issue 15, item 3): scenarios of QEMU findings fixed
between the QEMUs we have, exported as standalone tests, built with the
cross compiler and run on each QEMU with no gdb and no Python. Each test
fails on the buggy QEMU, on exactly the probes `xcheck run` reports there,
and passes on the fixed one. A further QEMU is one more entry in VERDICTS.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from xcheck.check import check_scenario
from xcheck.cli import main
from xcheck.outcome import Kind
from xcheck.scenario.loader import load_scenario
from xcheck.target.guest import QemuTarget
from xcheck.target.profile import Profile, load_profile

ROOT = Path(__file__).resolve().parents[2]
FINDINGS = {
    # scenario: the test's name; each fixed in QEMU 8.2 (docs/findings.md)
    "tests/bisect/sh-mmu-off.yaml": "sh-mmu-off",  # PAR.SH of Device memory
    "scenarios/granules/4k-start-level-0.yaml": "granule-4k-level-0",  # block at level 0
    "scenarios/stage2/s2-fault-on-s1-walk.yaml": "s2-fault-on-s1-walk",  # stage 2 level
    # the same at EL1: a Data Abort to EL2 whose DFSC gives the level
    "scenarios/stage2/s2-fault-on-s1-walk-el1.yaml": "s2-fault-on-s1-walk-el1",
}
VERDICTS = {"tcg-max": "FAIL", "qemu10": "PASS", "qemu11": "PASS"}
"""Profile: what every exported test must say on its QEMU."""
ABORT = "scenarios/mmu-off/stage2-permission.yaml"
"""AT S12E* with a stage 2 Permission fault: QEMU 10.0.2 aborts in
do_ats_write, 11.1.3 reports the fault in PAR_EL1 (docs/findings.md)."""

pytestmark = [pytest.mark.qemu, pytest.mark.slow]


def _installed(names: list[str]) -> None:
    """Skip, saying why, unless each profile's QEMU and the cross compiler are there."""
    for name in names:
        binary = load_profile(name).executable
        if shutil.which(binary) is None:
            pytest.skip(f"{name}: {binary} is not installed (run `make test`)")
    if shutil.which("aarch64-linux-gnu-gcc") is None:
        pytest.skip("aarch64-linux-gnu-gcc is not installed (run `make test`)")


def _export(scenarios: list[str], configs: list[str], out: Path) -> Path:
    args = ["export", *(str(ROOT / f) for f in scenarios), "--out", str(out)]
    for name in configs:
        args += ["--config", name]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _installed(list(VERDICTS))
    return _export(list(FINDINGS), list(VERDICTS), tmp_path_factory.mktemp("export"))


def _run(folder: Path, profile: Profile) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "-s", "-C", str(folder), f"QEMU={profile.executable}"],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("config", sorted(VERDICTS))
@pytest.mark.parametrize("scenario", sorted(FINDINGS))
def test_standalone_test_says_what_xcheck_run_says(
    exported: Path, scenario: str, config: str
) -> None:
    profile = load_profile(config)
    done = _run(exported / FINDINGS[scenario], profile)
    verdict = VERDICTS[config]
    assert f"RESULT: {verdict}" in done.stdout, done.stdout + done.stderr
    assert done.returncode == (0 if verdict == "PASS" else 2)  # make's status for a failure
    failed = set(re.findall(r"^FAIL \d+ (.*):$", done.stdout, re.M))
    s = load_scenario(ROOT / scenario)
    with QemuTarget(profile) as target:
        outcomes = check_scenario(target, s)
    wrong = {o.label for o in outcomes if o.kind in (Kind.MISMATCH, Kind.KNOWN)}
    assert failed == wrong
    assert (not failed) == (verdict == "PASS")


def test_the_10_0_abort_crashes_there_and_passes_on_11_1(tmp_path: Path) -> None:
    """QEMU 10.0.2 asserts in do_ats_write on AT S12E* whose final access
    takes a stage 2 Permission fault; the architecture reports that fault in
    PAR_EL1 (F = 1, S = 1, PTW = 0, FST a Permission fault at the leaf
    level; AArch64.S2Translate, D24.2 PAR_EL1). 11.1.3 does."""
    _installed(["qemu10", "qemu11"])
    folder = _export([ABORT], ["qemu10", "qemu11"], tmp_path) / "mmu-off-stage2-permission"
    crashed = _run(folder, load_profile("qemu10"))
    assert crashed.returncode != 0 and "RESULT:" not in crashed.stdout
    assert "do_ats_write: Assertion" in crashed.stderr, crashed.stdout + crashed.stderr
    passed = _run(folder, load_profile("qemu11"))
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "RESULT: PASS 12/12 probes passed" in passed.stdout


def test_probes_whose_answer_depends_on_the_cpu_are_refused(
    exported: Path, tmp_path: Path
) -> None:
    """AT S12E1R at EL1 is UNDEFINED without FEAT_NV (7.2's max CPU) and
    trapped to EL2 with it (10.0's; Arm ARM C5.5, D8.12): one test cannot
    hold both, so the export names the probes, exits 2 and writes nothing."""
    args = ["export", str(ROOT / "scenarios/el2/nv-trap.yaml"), "--out", str(tmp_path / "out")]
    for name in ("tcg-max", "qemu10"):
        args += ["--config", name]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2, res.output
    assert "refused:" in res.output and "the answer depends on the CPU" in res.output
    assert "Traceback" not in res.output and not (tmp_path / "out").exists()
