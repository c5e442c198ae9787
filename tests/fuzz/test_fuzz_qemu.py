"""A short fuzz run on the real QEMU (marker qemu), and the command line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from xcheck.cli import main
from xcheck.fuzz.knobs import KNOBS
from xcheck.fuzz.session import Fuzzer, FuzzOptions
from xcheck.scenario.loader import load_scenario
from xcheck.target.profile import Profile


@pytest.mark.qemu
def test_a_short_run_cross_checks_and_writes_loadable_findings(
        qemu_profile: Profile, tmp_path: Path) -> None:
    opts = FuzzOptions(seed=5, count=12, allowed=frozenset(KNOBS), out=tmp_path,
                       shrink_runs=40, shrink_seconds=10, max_shrinks=2)
    with Fuzzer(qemu_profile, opts) as fz:
        fz.run()
    assert fz.stats.cases == 12 and fz.stats.probes > 12 * 50
    assert fz.stats.fuzz_seconds + fz.stats.shrink_seconds < 30
    assert fz.coverage.probes == fz.stats.probes
    assert fz.coverage.results["success"] > 0
    assert fz.shrunk == min(2, len(fz.findings))
    for f in fz.findings.values():
        assert f.count >= 1 and f.ops
        if f.file is not None:
            s = load_scenario(f.file)  # a finding is a scenario file as is
            assert s.probes and f.file.read_text().startswith("# xcheck fuzz --seed 5")


@pytest.mark.qemu
def test_the_command_reports_and_writes_json(qemu_profile: Profile, tmp_path: Path) -> None:
    out = tmp_path / "found"
    res = CliRunner().invoke(main, ["fuzz", "--seed", "2", "--count", "4", "--no-shrink",
                                    "--out", str(out), "--json", str(tmp_path / "f.jsonl"),
                                    "--known", str(tmp_path)])
    assert res.exit_code in (0, 1), res.output
    assert "coverage" in res.output and "4 cases" in res.output
    lines = [json.loads(x) for x in (tmp_path / "f.jsonl").read_text().splitlines()]
    summary = lines[-1]
    assert summary["type"] == "summary" and summary["cases"] == 4
    assert summary["coverage"]["probes"] == summary["probes"]
    assert len(summary["findings"]) == len([x for x in lines if x["type"] == "finding"])
    assert (res.exit_code == 1) == any(x["type"] == "finding" for x in lines)


@pytest.mark.parametrize("args, message", [
    (["--count", "1", "--time", "1m"], "give --count or --time"),
    (["--features", "stage3"], "unknown feature 'stage3'"),
    (["--time", "soon"], "not a duration"),
    (["--config", "no-such-profile"], "no-such-profile"),
])
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    res = CliRunner().invoke(main, ["fuzz", *args])
    assert res.exit_code == 2
    assert message in res.output


@pytest.mark.qemu
def test_a_target_that_cannot_start_again_ends_the_run_with_125(
        qemu_profile: Profile, tmp_path: Path) -> None:
    """QEMU killed in the middle of a campaign, and every QEMU started after
    it failing at once: the run stops with "could not test", its summary
    written, exit 125 (no traceback, nothing left running)."""
    real = shutil.which(qemu_profile.binary)
    assert real is not None
    wrapper = tmp_path / "qemu-once"
    marker = tmp_path / "started"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'case "$1" in --version|-version) exec {real} "$@";; esac\n'
        f"[ -e {marker} ] && exit 1\n"
        f"touch {marker}\n"
        f'exec timeout -s KILL 4 {real} "$@"\n')
    wrapper.chmod(0o755)
    out = tmp_path / "found"
    res = CliRunner().invoke(main, ["fuzz", "--seed", "4", "--time", "60s", "--no-shrink",
                                    "--qemu", str(wrapper), "--out", str(out),
                                    "--known", str(tmp_path)])
    assert res.exit_code == 125, res.output
    assert "could not test" in res.output and isinstance(res.exception, SystemExit)
    summary = json.loads((out / "fuzz-summary.json").read_text())
    assert summary["cases"] > 0 and summary["qemu"]
