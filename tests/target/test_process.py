"""xcheck.target.process: a process's CPU time, read as the exception-loop
check reads QEMU's (no QEMU needed)."""

from __future__ import annotations

import subprocess
import sys
import time

from xcheck.target.process import cpu_seconds


def test_cpu_seconds_grows_while_a_process_runs_and_not_while_it_sleeps() -> None:
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.3)
        b0, i0 = cpu_seconds(busy.pid), cpu_seconds(idle.pid)
        time.sleep(0.5)
        assert cpu_seconds(busy.pid) - b0 >= 0.1  # shared with the other tests
        assert cpu_seconds(idle.pid) - i0 < 0.05
    finally:
        busy.kill()
        idle.kill()
        busy.wait()
        idle.wait()
    assert cpu_seconds(busy.pid) == 0.0  # gone: nothing to read
    assert cpu_seconds(None) == 0.0
