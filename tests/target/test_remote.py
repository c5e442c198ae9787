"""A target driven from a second process (xcheck.target.remote): real QEMU
and gdb-multiarch (marker qemu).

With every stage of translation off, an AT's PA is its VA (Arm ARM D8.2.11,
"The effects of disabling address translation"), so the expected PARs need
no table; what is tested is the transport: results, errors and the
child's lifetime.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from xcheck.arch.par import decode_par
from xcheck.machine import RAM_BASE, AtOp, MachineSetup, Probe, ProbeResult, sysreg_defaults
from xcheck.target.errors import HarnessError, QemuLaunchError, TargetError
from xcheck.target.profile import Profile
from xcheck.target.remote import RemoteTarget

pytestmark = pytest.mark.qemu


def _off(vas: range) -> MachineSetup:
    return MachineSetup(sysreg_defaults(), {}, tuple(Probe(AtOp.S1E2R, va, 2) for va in vas))


def _pas(got: list[ProbeResult]) -> list[int]:
    """The PAs of the successful PARs in ``got`` (PA is in 4KB units)."""
    return [decode_par(p)["PA"] << 12 for p in got if isinstance(p, int)]


@contextmanager
def _started(profile: Profile) -> Iterator[RemoteTarget]:
    target = RemoteTarget(profile)
    target.start()
    try:
        yield target
    finally:
        target.close()


def test_runs_come_back_in_order_and_errors_as_themselves(qemu_profile: Profile) -> None:
    with _started(qemu_profile) as target:
        assert target.version and target.id_regs and target.ram_size == 128 << 20
        vas = range(RAM_BASE, RAM_BASE + 40 * 0x1000, 0x1000)
        target.submit(_off(vas))
        got = target.collect()
        assert _pas(got) == list(vas)
        # an EL1 probe with HCR_EL2.TGE = 1 cannot run: QemuTarget says so, and
        # the error crosses the pipe as the same class, its message intact
        tge = _off(range(RAM_BASE, RAM_BASE + 1))
        tge = replace(tge, sysregs={**tge.sysregs, "HCR_EL2": 1 << 27},
                      probes=(Probe(AtOp.S1E1R, RAM_BASE, 1),))
        with pytest.raises(TargetError, match=r"HCR_EL2\.TGE = 0") as err:
            target.run(tge)
        assert not isinstance(err.value, HarnessError)
        assert len(target.run(_off(vas))) == len(vas)  # still usable after an error
        with pytest.raises(RuntimeError, match="under way"):
            target.collect()


def test_a_dead_child_is_a_target_error_and_close_leaves_nothing(qemu_profile: Profile) -> None:
    target = RemoteTarget(qemu_profile)
    target.start()
    proc = target._proc
    assert proc is not None and proc.pid is not None
    os.kill(proc.pid, 9)
    with pytest.raises(TargetError, match=r"process (died|is gone)"):
        target.run(_off(range(RAM_BASE, RAM_BASE + 1)))
    target.close()
    assert not proc.is_alive()


def test_a_missing_qemu_fails_to_start_at_once(qemu_profile: Profile) -> None:
    target = RemoteTarget(replace(qemu_profile, binary="/nonexistent/qemu-system-aarch64"))
    t0 = time.monotonic()
    with pytest.raises(QemuLaunchError, match="not found"):
        target.start()
    assert time.monotonic() - t0 < 10
    assert target._proc is None


def _name(pid: int) -> str:
    """A process's command name, as /proc shortens it (15 characters)."""
    with open(f"/proc/{pid}/comm") as f:
        return f.read().strip()


def _children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.add(int(entry))
    return out


def test_restarts_switch_to_a_spare_started_in_the_background(qemu_profile: Profile) -> None:
    with _started(qemu_profile) as target:
        assert target._proc is not None and target._proc.pid is not None
        child = target._proc.pid
        vas = range(RAM_BASE, RAM_BASE + 4 * 0x1000, 0x1000)
        for _ in range(2):  # the spare started with the target, then the one behind it
            deadline = time.monotonic() + 30
            while len(before := _children(child)) < 4 and time.monotonic() < deadline:
                time.sleep(0.1)  # QEMU and gdb, twice
            time.sleep(1)
            names = {pid: _name(pid) for pid in before}
            target.restart()
            got = target.run(_off(vas))
            assert _pas(got) == list(vas)
            after = _children(child)
            # the spare's QEMU and gdb now serve; the QEMU before them is
            # gone, its gdb kept for the next spare's QEMU
            assert len(before) == 4 and len(before & after) == 3, (before, after)
            assert [names[pid] for pid in before - after] == ["qemu-system-aar"]


def test_queued_runs_answer_in_order_around_a_run(qemu_profile: Profile) -> None:
    with _started(qemu_profile) as target:
        first = range(RAM_BASE, RAM_BASE + 3 * 0x1000, 0x1000)
        second = range(RAM_BASE + 0x10_0000, RAM_BASE + 0x10_0000 + 5 * 0x1000, 0x1000)
        target.submit(_off(first))
        target.submit(_off(second))
        # a run sent behind them waits for them and keeps their results
        assert len(target.run(_off(range(RAM_BASE, RAM_BASE + 1)))) == 1
        for vas in (first, second):
            got = target.collect()
            assert _pas(got) == list(vas)
        with pytest.raises(RuntimeError, match="under way"):
            target.collect()


def test_a_crash_restarts_qemu_before_the_run_queued_behind(qemu_profile: Profile) -> None:
    with _started(qemu_profile) as target:
        assert target._proc is not None and target._proc.pid is not None
        qemu = [pid for pid in _children(target._proc.pid)
                if "qemu" in Path(f"/proc/{pid}/comm").read_text()]
        assert len(qemu) == 1
        os.kill(qemu[0], 9)
        vas = range(RAM_BASE, RAM_BASE + 4 * 0x1000, 0x1000)
        target.submit(_off(vas))
        target.submit(_off(vas))
        with pytest.raises(TargetError, match="QEMU") as err:
            target.collect()
        assert not isinstance(err.value, HarnessError)
        target.restart()  # done already, in the target's process
        got = target.collect()
        assert _pas(got) == list(vas)
        assert qemu[0] not in _children(target._proc.pid)
