"""`xcheck run` end to end on the real QEMU: the shipped suite, reports,
exit codes for git bisect run, and the pytest plugin."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from xcheck.check import load_all

pytestmark = pytest.mark.qemu

ROOT = Path(__file__).resolve().parent.parent
XCHECK = (
    [sys.executable, "-m", "xcheck.cli"]
    if not (ROOT / ".venv/bin/xcheck").exists()
    else [str(ROOT / ".venv/bin/xcheck")]
)
SUITE = ROOT / "scenarios"

GOOD = """
name: mmu-off-el2
about: with every stage off the PA is the VA (D8.2.11)
probes:
  - {op: [S1E1R, S1E2R, S12E1W], va: [0x4000_1000, 0x4123_4000], el: 2}
expect:
  - {op: S1E2R, va: 0x4123_4000, pa: 0x4123_4000}
known:
  - op: [S1E1R, S1E2R, S12E1W]
    qemu: "<8.2"
    why: QEMU before 8.2 reports SH 0b00 for Device memory
"""


def run(*args: str, cwd: Path = ROOT, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*XCHECK, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, check=False
    )


def test_shipped_suite_passes_with_reports(qemu_profile: object, tmp_path: Path) -> None:
    """Every shipped probe matches the model or is a recorded known divergence."""
    jsonl, junit, page = tmp_path / "out.jsonl", tmp_path / "out.xml", tmp_path / "out.html"
    r = run("run", "scenarios", "--jobs", "2", "--json", str(jsonl), "--junit", str(junit),
            "--html", str(page))
    scenarios, bad = load_all([SUITE])
    assert not bad
    objs = [json.loads(line) for line in jsonl.read_text().splitlines()]
    failing = [o for o in objs if o["outcome"] not in ("match", "known", "skipped")]
    assert r.returncode == 0, (
        "\n".join(f"{o['path']}: {o['probe']}: {o['outcome']} {o['fields']}" for o in failing[:20])
        + r.stdout[-3000:]
    )
    assert len(objs) == sum(len(s.probes) for s in scenarios)
    assert {"scenario", "op", "va", "el", "outcome", "par_qemu", "par_model", "fields"} <= set(
        objs[0]
    )
    cases = ET.parse(junit).getroot().iter("testcase")
    assert sum(1 for _ in cases) == len(objs)
    data = re.search(r'id="xcheck-data">(.*?)</script>', page.read_text(), re.S)
    assert data and len(json.loads(data[1])["rows"]) == len(objs)


def test_exit_codes(qemu_profile: object, tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    assert run("run", str(good)).returncode == 0
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(GOOD.replace("pa: 0x4123_4000", "pa: 0x4123_5000"))
    r = run("run", str(wrong))
    assert r.returncode == 1 and "expect" in r.stdout
    broken = tmp_path / "broken.yaml"
    broken.write_text(GOOD.replace("op: [S1E1R", "op: [S1E9R"))
    r = run("run", str(broken))
    assert r.returncode == 2 and "broken.yaml:" in r.stdout
    r = run("run", str(good), "--qemu", "/nonexistent/qemu-system-aarch64")
    assert r.returncode == 125 and "not found" in r.stdout
    assert run("run", str(tmp_path / "missing.yaml")).returncode == 2
    r = run("run", str(good), "--html", str(tmp_path / "no" / "report.html"))
    assert r.returncode == 2 and "no such folder" in r.stderr  # before any QEMU starts


def test_shards_cover_the_suite_once(qemu_profile: object) -> None:
    files = [str(p) for p in load_all([SUITE])[0]]
    parts = [load_all([SUITE], shard=(k, 3))[0] for k in (1, 2, 3)]
    names = sorted(str(s.path) for part in parts for s in part)
    assert len(names) == len(set(names)) == len(files)


def test_pytest_plugin_collects_probes(qemu_profile: object, tmp_path: Path) -> None:
    folder = tmp_path / "scenarios"
    folder.mkdir()
    (folder / "good.yaml").write_text(GOOD)
    junit = tmp_path / "j.xml"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(folder),
            "-q",
            "-n",
            "2",
            "-p",
            "no:randomly",
            "--junitxml",
            str(junit),
            "-k",
            "S1E2R and el2",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 passed" in r.stdout
    names = [c.get("name") for c in ET.parse(junit).getroot().iter("testcase")]
    assert all("S1E2R" in n for n in names) and len(names) == 2
