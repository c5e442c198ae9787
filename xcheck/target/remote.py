"""A target driven from a second process, so that a fuzz campaign draws
and checks its next case (Python work) while the target runs this one
(waiting on QEMU and gdb) on the other core.

The child process owns the target (QEMU, gdb) and answers requests sent
through a pipe: start, run a setup, close. Setups go one way and results
the other (a few kilobytes each); the target's errors come back as the
same TargetError subclasses. The child dies with its parent (like QEMU and
gdb, xcheck.target.process), and QEMU and gdb die with the child.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

from xcheck.machine import MachineSetup, ProbeResult, Readback
from xcheck.target import errors
from xcheck.target.factory import Target, make_target
from xcheck.target.process import die_with_parent
from xcheck.target.profile import Profile

ERRORS: dict[str, type[errors.TargetError]] = {
    cls.__name__: cls
    for cls in (errors.TargetError, errors.QemuLaunchError, errors.Unsupported,
                errors.HarnessError, errors.GdbTimeout)
}
"""The target errors that cross the pipe as themselves."""
CLOSE_GRACE_S = 10.0
"""How long a closing child may take to stop QEMU and gdb before it is killed."""


def _identity(target: Target) -> dict[str, Any]:
    return {"version": target.version, "id_regs": dict(target.id_regs),
            "ram_size": target.ram_size, "scr_el3": getattr(target, "scr_el3", None)}


class _Spare:
    """After a first restart, a second target started in the background, so
    that the next restart (a campaign that crashes QEMU once does again) is
    a switch, not a launch. Not for the nested-KVM target: its boot takes
    seconds of CPU and a gigabyte of RAM."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        # QEMU and gdb die with the thread that started them (PR_SET_PDEATHSIG):
        # the pool's one thread lives as long as this child process
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="xcheck-spare")
        self._next: Future[Target] | None = None

    def _started(self) -> Target:
        target = make_target(self.profile)
        target.start()
        return target

    def take(self) -> Target:
        """A started target: the spare when one is ready, else a new one; a
        new spare is then started in the background."""
        ahead, self._next = self._next, None
        target = None
        if ahead is not None:
            with contextlib.suppress(errors.TargetError):
                target = ahead.result()
        if target is None:
            target = self._pool.submit(self._started).result()
        if self.profile.kind != "kvm-nested":
            self._next = self._pool.submit(self._started)
        return target

    def close(self) -> None:
        ahead, self._next = self._next, None
        if ahead is not None:
            with contextlib.suppress(errors.TargetError):
                ahead.result().close()
        self._pool.shutdown()


def _serve(conn: Connection, profile: Profile) -> None:
    """The child: answer requests until "close" or the parent is gone."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us in order
    target = make_target(profile)
    spare = _Spare(profile)
    try:
        while True:
            try:
                request = conn.recv()
            except (EOFError, OSError):
                return
            verb = request[0]
            try:
                if verb == "close":
                    return
                if verb == "start":
                    target.start()
                    answer: Any = _identity(target)
                elif verb == "restart":
                    target.close()
                    target = spare.take()
                    answer = _identity(target)
                else:
                    _, setup, mode = request
                    answer = (target.run(setup, mode), list(target.readbacks))
                conn.send(("ok", answer))
            except errors.TargetError as err:
                name = type(err).__name__ if type(err).__name__ in ERRORS else "TargetError"
                conn.send(("error", name, err.args[0] if err.args else "", err.stderr))
            except Exception:  # a bug of xcheck's: shown with its traceback
                conn.send(("bug", traceback.format_exc()))
    finally:
        target.close()
        spare.close()
        conn.close()


class RemoteTarget:
    """A Target whose QEMU (or nested KVM) is driven by a child process.

    :meth:`submit` starts a run and returns at once; :meth:`collect` waits
    for its results. :meth:`run` does both. One run at a time."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.version = ""
        self.id_regs: dict[str, int] = {}
        self.ram_size = 0
        self.scr_el3: int | None = None
        self.readbacks: list[Readback] = []
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._busy = False

    def start(self) -> None:
        ctx = multiprocessing.get_context("fork")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, self.profile),
                                 name="xcheck-target", daemon=True)
        self._proc.start()
        child.close()
        self._conn = parent
        try:
            self._identify(self._call(("start",)))
        except BaseException:
            self.close()
            raise

    def restart(self) -> None:
        """QEMU (and gdb) started again by the same child."""
        self._identify(self._call(("restart",)))

    def _identify(self, ident: dict[str, Any]) -> None:
        self.version = ident["version"]
        self.id_regs = ident["id_regs"]
        self.ram_size = ident["ram_size"]
        self.scr_el3 = ident["scr_el3"]

    def close(self) -> None:
        conn, proc = self._conn, self._proc
        self._conn = self._proc = None
        self._busy = False
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.send(("close",))
        if proc is not None:
            proc.join(CLOSE_GRACE_S)
            if proc.is_alive():
                proc.kill()
                proc.join()
        if conn is not None:
            conn.close()

    def run(self, setup: MachineSetup, mode: str = "batch") -> list[ProbeResult]:
        self.submit(setup, mode)
        return self.collect()

    def submit(self, setup: MachineSetup, mode: str = "batch") -> None:
        """Start running ``setup``; :meth:`collect` gives its results."""
        if self._busy:
            raise RuntimeError("a run is already under way")
        self._send(("run", setup, mode))
        self._busy = True

    def collect(self) -> list[ProbeResult]:
        """The results of the run :meth:`submit` started (its TargetError raised here)."""
        if not self._busy:
            raise RuntimeError("no run under way")
        self._busy = False
        results, self.readbacks = self._receive()
        return list(results)

    def _call(self, request: tuple[Any, ...]) -> Any:
        self._send(request)
        return self._receive()

    def _send(self, request: tuple[Any, ...]) -> None:
        if self._conn is None:
            raise errors.TargetError("the target is not started")
        try:
            self._conn.send(request)
        except OSError as err:
            raise errors.TargetError(f"the target's process is gone: {err}") from None

    def _receive(self) -> Any:
        assert self._conn is not None
        try:
            answer = self._conn.recv()
        except (EOFError, OSError):
            code = self._proc.exitcode if self._proc is not None else None
            raise errors.TargetError(
                f"the target's process died (exit status {code})") from None
        if answer[0] == "ok":
            return answer[1]
        if answer[0] == "error":
            _, name, message, stderr = answer
            raise ERRORS[name](message, stderr)
        raise RuntimeError(f"the target's process failed:\n{answer[1]}")
