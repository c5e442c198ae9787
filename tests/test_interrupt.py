"""Ctrl-C during `xcheck run`: what finished is kept, no QEMU or gdb is left."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.qemu

ROOT = Path(__file__).resolve().parent.parent
XCHECK = ROOT / ".venv" / "bin" / "xcheck"


def _children_of(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(d.name)] = int(fields[1])
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        out += kids
        todo += kids
    return out


def _names(pids: list[int]) -> list[str]:
    names = []
    for p in pids:
        with contextlib.suppress(OSError):
            names.append(Path(f"/proc/{p}/comm").read_text().strip())
    return names


@pytest.mark.skipif(not XCHECK.exists(), reason="needs the virtualenv's xcheck (make test)")
def test_ctrl_c_keeps_results_and_leaves_no_process(qemu_profile: object, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    page = tmp_path / "out.html"
    proc = subprocess.Popen(
        [str(XCHECK), "run", "scenarios", "--jobs", "2", "--mode", "step", "--json", str(out),
         "--html", str(page)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until QEMUs run and results stream
        if (
            out.exists()
            and out.stat().st_size > 0
            and "qemu-system-aar" in _names(_children_of(proc.pid))
        ):
            break
        time.sleep(0.1)
    spawned = _children_of(proc.pid)
    assert "qemu-system-aar" in _names(spawned) and "gdb-multiarch" in _names(spawned)
    os.kill(proc.pid, signal.SIGINT)
    text, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, text[-2000:]
    assert "interrupted" in text
    time.sleep(0.5)
    left = [
        p
        for p in spawned
        if Path(f"/proc/{p}").exists()
        and (Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z")
    ]
    assert not left, _names(left)
    lines = out.read_text().splitlines()
    assert lines and all(json.loads(line)["outcome"] for line in lines)
    data = re.search(r'id="xcheck-data">(.*?)</script>', page.read_text(), re.S)
    assert data and len(json.loads(data[1])["rows"]) == len(lines)  # the page: what finished
