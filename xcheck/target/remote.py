"""A target driven from a second process, so that a fuzz campaign draws
and checks its next case (Python work) while the target runs this one
(waiting on QEMU and gdb) on the other core.

The child process owns the target (QEMU, gdb) and answers requests sent
through a pipe, in order: start, run a setup, restart, close. Setups go
one way and results the other (a few kilobytes each); the target's errors
come back as the same TargetError subclasses. Runs may be queued: the
child starts the next as soon as one ends, without waiting for the parent
to read its results. A run that crashes or hangs the target (a
TargetError for which errors.needs_restart holds) is followed by a restart in
the child, before the runs queued behind it. The child dies with its
parent (like QEMU and gdb, xcheck.target.process), and QEMU and gdb die
with the child.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import traceback
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

from xcheck.machine import MachineSetup, ProbeResult, Readback
from xcheck.target import errors
from xcheck.target.factory import Target, make_target
from xcheck.target.gdb import Gdb
from xcheck.target.guest import QemuTarget
from xcheck.target.process import die_with_parent
from xcheck.target.profile import Profile

ERRORS: dict[str, type[errors.TargetError]] = {
    cls.__name__: cls
    for cls in (errors.TargetError, errors.QemuLaunchError, errors.Unsupported,
                errors.HarnessError, errors.GdbTimeout, errors.ProgramTimeout)
}
"""The target errors that cross the pipe as themselves."""
CLOSE_GRACE_S = 10.0
"""How long a closing child may take to stop QEMU and gdb before it is killed."""


def _identity(target: Target) -> dict[str, Any]:
    return {"version": target.version, "id_regs": dict(target.id_regs),
            "ram_size": target.ram_size, "scr_el3": getattr(target, "scr_el3", None)}


class _Spare:
    """A second target started in the background once the first is up, so
    that a restart (a fuzz campaign crashes QEMU now and then) is a switch,
    not a launch, and a new spare is started behind it. Not for the
    nested-KVM target: its boot takes seconds of CPU and a gigabyte of RAM."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        # QEMU and gdb die with the thread that started them (PR_SET_PDEATHSIG):
        # the pool's one thread lives as long as this child process
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="xcheck-spare")
        self._next: Future[Target] | None = None

    def _started(self, gdb: Gdb | None = None) -> Target:
        target = make_target(self.profile)
        if isinstance(target, QemuTarget):
            target.start(gdb)
        else:
            target.start()
        return target

    def take(self, gdb: Gdb | None = None) -> Target:
        """A started target: the spare when one is ready, else a new one; a
        new spare is then started in the background, with ``gdb`` (kept
        from the target this one replaces) when given."""
        ahead, self._next = self._next, None
        target = None
        if ahead is not None:
            with contextlib.suppress(errors.TargetError):
                target = ahead.result()
        if target is None:
            target, gdb = self._pool.submit(self._started, gdb).result(), None
        self.prepare(gdb)
        return target

    def prepare(self, gdb: Gdb | None = None) -> None:
        """Start a spare in the background (attaching ``gdb`` when given),
        unless one is under way."""
        if self._next is None and self.profile.kind != "kvm-nested":
            self._next = self._pool.submit(self._started, gdb)
        elif gdb is not None:
            gdb.close()

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
                    spare.prepare()
                    answer: Any = _identity(target)
                elif verb == "restart":
                    target = spare.take(_release(target))
                    answer = _identity(target)
                else:
                    _, setup, mode = request
                    answer = (target.run(setup, mode), list(target.readbacks))
                conn.send(("ok", answer))
            except errors.TargetError as err:
                restarted: Any = None
                if verb == "run" and errors.needs_restart(err):
                    target, restarted = _restarted(target, spare)
                conn.send(("error", *_error(err), restarted))
            except Exception:  # a bug of xcheck's: shown with its traceback
                conn.send(("bug", traceback.format_exc()))
    finally:
        target.close()
        spare.close()
        conn.close()


def _release(target: Target) -> Gdb | None:
    """Close ``target``, keeping its gdb when it has one (QemuTarget)."""
    if isinstance(target, QemuTarget):
        return target.release_gdb()
    target.close()
    return None


def _error(err: errors.TargetError) -> tuple[str, str, str]:
    """``err`` as it crosses the pipe: its class name, message and stderr."""
    name = type(err).__name__ if type(err).__name__ in ERRORS else "TargetError"
    return name, err.args[0] if err.args else "", err.stderr


def _restarted(target: Target, spare: _Spare) -> tuple[Target, Any]:
    """The target started again after a crash or a hang: the new target,
    and "ok" or why it could not start (the _error triple). The old
    target's gdb goes on with the next spare's QEMU."""
    gdb = _release(target)
    try:
        return spare.take(gdb), "ok"
    except errors.TargetError as err:
        return target, _error(err)


class RemoteTarget:
    """A Target whose QEMU (or nested KVM) is driven by a child process.

    :meth:`submit` queues a run and returns at once; :meth:`collect` waits
    for the results of the oldest run queued and not collected. :meth:`run`
    runs one setup and waits for it (after the runs queued before it, whose
    results are kept for :meth:`collect`)."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.version = ""
        self.id_regs: dict[str, int] = {}
        self.ram_size = 0
        self.scr_el3: int | None = None
        self.readbacks: list[Readback] = []
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._sent = 0
        """Requests sent so far; a request's number is its place in the pipe."""
        self._received: dict[int, Any] = {}
        """Answers read, by request number, not yet taken."""
        self._read = 0
        self._queued: deque[int] = deque()
        """The numbers of the runs submitted and not collected, oldest first."""
        self._restarted: Any = None
        """After a failed run: how the child's restart went ("ok", or the error)."""

    def start(self) -> None:
        ctx = multiprocessing.get_context("fork")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, self.profile),
                                 name="xcheck-target", daemon=True)
        self._proc.start()
        child.close()
        self._conn = parent
        self._sent = self._read = 0
        try:
            self._identify(self._call(("start",)))
        except BaseException:
            self.close()
            raise

    def restart(self) -> None:
        """QEMU (and gdb) started again: already done by the child when the
        last failed run crashed or hung the target, else asked for now."""
        restarted, self._restarted = self._restarted, None
        if restarted == "ok":
            return
        if restarted is not None:
            name, message, stderr = restarted
            raise ERRORS[name](message, stderr)
        self._identify(self._call(("restart",)))

    def _identify(self, ident: dict[str, Any]) -> None:
        self.version = ident["version"]
        self.id_regs = ident["id_regs"]
        self.ram_size = ident["ram_size"]
        self.scr_el3 = ident["scr_el3"]

    def close(self) -> None:
        conn, proc = self._conn, self._proc
        self._conn = self._proc = None
        self._queued.clear()
        self._received.clear()
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
        return self._results(self._send(("run", setup, mode)))

    def submit(self, setup: MachineSetup, mode: str = "batch") -> None:
        """Queue a run of ``setup``; :meth:`collect` gives its results."""
        self._queued.append(self._send(("run", setup, mode)))

    def submit_request(self, request: bytes) -> None:
        """Queue a run whose request ``("run", setup, mode)`` is already
        pickled (by a process that has the setup, xcheck.fuzz.drawers)."""
        self._queued.append(self._send(request))

    def collect(self) -> list[ProbeResult]:
        """The results of the oldest run :meth:`submit` queued (its
        TargetError raised here)."""
        if not self._queued:
            raise RuntimeError("no run under way")
        return self._results(self._queued.popleft())

    def _results(self, number: int) -> list[ProbeResult]:
        results, self.readbacks = self._receive(number)
        return list(results)

    def _call(self, request: tuple[Any, ...]) -> Any:
        return self._receive(self._send(request))

    def _send(self, request: tuple[Any, ...] | bytes) -> int:
        """Send ``request`` (or its pickle); its number."""
        if self._conn is None:
            raise errors.TargetError("the target is not started")
        try:
            if isinstance(request, bytes):
                self._conn.send_bytes(request)
            else:
                self._conn.send(request)
        except OSError as err:
            raise errors.TargetError(f"the target's process is gone: {err}") from None
        self._sent += 1
        return self._sent - 1

    def _receive(self, number: int) -> Any:
        """The answer to request ``number`` (those before it kept for later)."""
        while number not in self._received:
            if self._conn is None:
                raise errors.TargetError("the target is not started")
            try:
                self._received[self._read] = self._conn.recv()
            except (EOFError, OSError):
                code = self._proc.exitcode if self._proc is not None else None
                raise errors.TargetError(
                    f"the target's process died (exit status {code})") from None
            self._read += 1
        answer = self._received.pop(number)
        if answer[0] == "ok":
            return answer[1]
        if answer[0] == "error":
            _, name, message, stderr, self._restarted = answer
            raise ERRORS[name](message, stderr)
        raise RuntimeError(f"the target's process failed:\n{answer[1]}")
