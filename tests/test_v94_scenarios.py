"""scenarios/ats1a and scenarios/s2pie on every QEMU the machine has: QEMU 11.1
has FEAT_ATS1A and FEAT_S2PIE (its AT S1E1A answers with a PAR), 7.2 and 10.0
lack them (AT S1E1A is UNDEFINED there, as the model says); every probe
matches the model or is a recorded known divergence."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from qemuprofiles import installed_profile

pytestmark = pytest.mark.qemu

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("profile", "has_ats1a"),
                         [("tcg-max", False), ("qemu10", False), ("qemu11", True)])
def test_ats1a_and_s2pie_folders(profile: str, has_ats1a: bool, tmp_path: Path) -> None:
    installed_profile(profile)
    out = tmp_path / "out.jsonl"
    r = subprocess.run([sys.executable, "-m", "xcheck.cli", "run", "--config", profile,
                        "scenarios/ats1a", "scenarios/s2pie", "--json", str(out)],
                       capture_output=True, text=True, cwd=ROOT, timeout=600, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) >= 300 + 100
    assert {o["outcome"] for o in rows} <= {"match", "known"}
    s1e1a = [o for o in rows if o["op"] == "S1E1A" and o["scenario"] == "ats1a-el10"]
    assert s1e1a and all((o["par_qemu"] is not None) == has_ats1a for o in s1e1a)
