"""One QEMU running the guest Linux whose /init is the agent, and the
conversation with the agent over the serial console.

Bulk data (a job's memory, the ranges read back) goes through shared memory
instead: a file in the private directory, mapped here and offered to the
guest as an ivshmem-plain PCI device whose BAR the agent maps.

The console is a unix socket in a private temporary directory (QEMU waits
for the connection before it starts the guest, so no output is lost); pexpect
reads it. QEMU's stderr goes to a file kept for error reports. QEMU runs as a
child that dies with xcheck (xcheck.target.process).
"""

from __future__ import annotations

import mmap
import os
import select
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pexpect
import pexpect.fdpexpect

from xcheck.target.errors import QemuLaunchError, TargetError
from xcheck.target.kvm.protocol import (
    Answer,
    Job,
    ProtocolError,
    group_lines,
    parse_answer,
)
from xcheck.target.process import spawn, stop

PROTOCOL_VERSION = 3
SHARED_SIZE = 16 << 20
"""Bytes of shared memory (a power of two, as ivshmem wants)."""
PANIC = "Kernel panic"
CONSOLE_TAIL = 1500
"""Characters of console output quoted when the guest goes astray."""


@dataclass(frozen=True)
class Banner:
    """What the agent says when it is ready."""

    protocol: int
    kernel: str
    """The guest kernel's release (uname -r)."""
    caps: dict[str, int] = field(default_factory=dict)
    """KVM capabilities: el2 (nested virtualization), e2h0, ipa."""
    kvm: tuple[str, ...] = ()
    """The kernel's own "kvm [1]: ... initialized" lines."""
    nokvm: str = ""
    """Why /dev/kvm could not be opened, if it could not."""
    shared: int = 0
    """Bytes of shared memory the agent mapped (0: none, hex on the console)."""
    cpus: int = 1
    """CPUs online in the guest: the jobs of a group run on CPU 0, 1, ..."""


def parse_banner(text: str) -> Banner:
    """The lines from HELLO up to READY."""
    protocol, kernel, nokvm, shared, cpus = 0, "", "", 0, 1
    caps: dict[str, int] = {}
    kvm: list[str] = []
    for raw in text.splitlines():
        words = raw.strip().split()
        if words[:2] == ["HELLO", "xcheck-agent"] and len(words) == 3 and words[2].isdigit():
            protocol = int(words[2])
        elif words[:2] == ["INFO", "kernel"] and len(words) == 3:
            kernel = words[2]
        elif words[:2] == ["INFO", "cap"]:
            for kv in words[2:]:
                k, _, v = kv.partition("=")
                caps[k] = int(v) if v.lstrip("-").isdigit() else -1
        elif words[:2] == ["INFO", "kvm"]:
            kvm.append(" ".join(words[2:]))
        elif words[:2] == ["INFO", "nokvm"]:
            nokvm = " ".join(words[2:])
        elif words[:2] == ["INFO", "shm"] and len(words) == 3 and words[2].isdigit():
            shared = int(words[2])
        elif words[:2] == ["INFO", "cpus"] and len(words) == 3 and words[2].isdigit():
            cpus = int(words[2])
    return Banner(protocol, kernel, caps, tuple(kvm), nokvm, shared, cpus)


def qemu_kvm_argv(
    executable: str,
    *,
    machine: str,
    cpu: str,
    memory: str,
    kernel: Path,
    initramfs: Path,
    append: str,
    console: Path,
    cpus: int = 1,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The QEMU command line: ``cpus`` CPUs (TCG gives each its own host
    thread), the serial console on ``console``."""
    return [
        executable,
        "-nodefaults",
        "-machine", machine,
        "-cpu", cpu,
        "-smp", str(cpus),
        "-m", memory,
        "-display", "none",
        "-monitor", "none",
        "-chardev", f"socket,path={console},server=on,wait=on,id=xcheck-console",
        "-serial", "chardev:xcheck-console",
        "-kernel", str(kernel),
        "-initrd", str(initramfs),
        "-append", append,
        *extra_args,
    ]  # fmt: skip


def shared_memory_args(path: Path, size: int = SHARED_SIZE) -> list[str]:
    """QEMU options that offer the file ``path`` (``size`` bytes) to the guest
    as an ivshmem-plain PCI device; QEMU and xcheck both map the file."""
    return [
        "-object", f"memory-backend-file,id=xcheck-shm,mem-path={path},size={size},share=on",
        "-device", "ivshmem-plain,memdev=xcheck-shm",
    ]  # fmt: skip


class AgentSession:
    """QEMU + guest Linux + agent. ``start`` boots and waits for READY;
    ``run`` sends one job and returns the agent's answer."""

    def __init__(self, argv_for: Callable[[Path], list[str]], boot_timeout: float) -> None:
        self._argv_for = argv_for
        self.boot_timeout = boot_timeout
        self._dir = Path(tempfile.mkdtemp(prefix="xcheck-kvm-"))
        self.console = self._dir / "console.sock"
        self._stderr_path = self._dir / "qemu.stderr"
        self._shared_path = self._dir / "shared"
        self._shared: mmap.mmap | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._io: pexpect.fdpexpect.fdspawn[str] | None = None
        self.argv: list[str] = []
        self.banner = Banner(0, "")
        self.boot_s = 0.0

    # --- lifecycle -------------------------------------------------------
    def start(self) -> Banner:
        """Launch QEMU, connect the console, wait for the agent's READY.
        Raises QemuLaunchError (with QEMU's stderr) when that fails."""
        t0 = time.monotonic()
        with open(self._shared_path, "wb") as f:
            f.truncate(SHARED_SIZE)
        self.argv = self._argv_for(self.console) + shared_memory_args(self._shared_path)
        with open(self._stderr_path, "wb") as err:
            try:
                self._proc = spawn(self.argv, stderr=err)
            except OSError as e:
                raise QemuLaunchError(f"cannot start {self.argv[0]}: {e}") from None
        deadline = t0 + self.boot_timeout
        self._sock = self._connect(deadline)
        self._sock.setblocking(False)
        self._io = pexpect.fdpexpect.fdspawn(
            self._sock.fileno(), timeout=self.boot_timeout, encoding="latin-1"
        )
        idx = self._expect(["HELLO xcheck-agent", PANIC], deadline)
        if idx != 0:
            raise self._launch_error("the guest kernel panicked before the agent started")
        self._expect(["READY\r?\n"], deadline)
        self.banner = parse_banner("HELLO xcheck-agent" + self._before())
        if self.banner.protocol != PROTOCOL_VERSION:
            raise self._launch_error(
                f"the agent speaks protocol {self.banner.protocol}, not {PROTOCOL_VERSION} "
                "(rebuild it: python -m xcheck.target.kvm setup)"
            )
        if self.banner.shared:
            with open(self._shared_path, "r+b") as f:
                self._shared = mmap.mmap(f.fileno(), min(self.banner.shared, SHARED_SIZE))
        self.boot_s = time.monotonic() - t0
        return self.banner

    def _connect(self, deadline: float) -> socket.socket:
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise self._launch_error(f"QEMU exited with status {self._proc.returncode}")
            if self.console.exists():
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(str(self.console))
                    return s
                except OSError:
                    s.close()
            if time.monotonic() > deadline:
                raise self._launch_error("QEMU did not open its console socket")
            time.sleep(0.005)

    def close(self) -> None:
        """Stop QEMU and forget the console (idempotent)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._io = None
        if self._shared is not None:
            self._shared.close()
            self._shared = None
        stop(self._proc)
        self._proc = None
        shutil.rmtree(self._dir, ignore_errors=True)

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stderr(self) -> str:
        try:
            return self._stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    @property
    def io(self) -> pexpect.fdpexpect.fdspawn[str]:
        if self._io is None:
            raise TargetError("the nested-KVM guest is not running")
        return self._io

    # --- talking ---------------------------------------------------------
    def _before(self) -> str:
        before = self.io.before
        return before if isinstance(before, str) else ""

    def _tail(self) -> str:
        io = self._io
        seen = (io.before or "") if io is not None else ""
        seen = seen if isinstance(seen, str) else ""
        return seen[-CONSOLE_TAIL:].replace("\r", "")

    def _launch_error(self, what: str) -> QemuLaunchError:
        tail = self._tail()
        msg = what + (f"; console output:\n{tail}" if tail.strip() else "")
        return QemuLaunchError(msg, self.stderr())

    def _expect(self, patterns: list[str], deadline: float) -> int:
        """Index of the pattern seen first; TargetError on EOF or timeout."""
        remaining = max(deadline - time.monotonic(), 0.01)
        pats: list[Any] = list(patterns)
        try:
            return int(self.io.expect(pats, timeout=remaining))
        except pexpect.EOF:
            status = self._proc.wait(timeout=5) if self._proc is not None else None
            raise TargetError(
                f"the guest's console closed (QEMU exit status {status}); console output:\n"
                + self._tail(),
                self.stderr(),
            ) from None
        except pexpect.TIMEOUT:
            raise TargetError(
                f"no answer from the agent in time (waiting for {patterns[0]!r}); "
                f"console output:\n{self._tail()}",
                self.stderr(),
            ) from None

    def _send(self, text: str, deadline: float) -> None:
        """Write everything, waiting for the guest to take it (never forever)."""
        if self._sock is None:
            raise TargetError("the nested-KVM guest is not running")
        data = memoryview(text.encode("ascii"))
        fd = self._sock.fileno()
        while data:
            remaining = deadline - time.monotonic()
            _, writable, _ = select.select([], [fd], [], max(remaining, 0))
            if not writable:
                raise TargetError(
                    "the guest stopped reading its console (a hang or a panic); console "
                    f"output:\n{self._tail()}",
                    self.stderr(),
                )
            try:
                n = os.write(fd, data[:65536])
            except BlockingIOError:
                continue
            except OSError as err:
                raise TargetError(f"the guest's console is gone: {err}", self.stderr()) from None
            data = data[n:]

    def ping(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        self._send("PING\n", deadline)
        self._expect(["PONG\r?\n"], deadline)

    def send_raw(self, text: str, timeout: float = 10.0) -> None:
        """Send arbitrary text (protocol tests)."""
        self._send(text, time.monotonic() + timeout)

    def expect_line(self, pattern: str, timeout: float = 10.0) -> str:
        """Wait for a line matching ``pattern`` (a regex); the line."""
        self._expect([pattern + r"[^\n]*\n"], time.monotonic() + timeout)
        after = self.io.after
        return after.strip() if isinstance(after, str) else ""

    def run(self, job: Job, answer_timeout: float) -> Answer:
        """Send ``job``; its answer (:meth:`run_group` of one job)."""
        return self.run_group([job], answer_timeout)[0]

    def run_group(self, jobs: Sequence[Job], answer_timeout: float) -> list[Answer]:
        """Send ``jobs`` to run at once (the last one's timeout applies to
        all); their answers, in order. ``answer_timeout`` counts from the RUN
        line and should exceed the jobs' own timeout (the agent answers a
        hung program with a timeout error, then goes on serving)."""
        try:
            if self._shared is not None:
                lines, blob = group_lines(jobs, len(self._shared))
                self._shared[: len(blob)] = blob
            else:
                lines, _ = group_lines(jobs)
            text = "\n".join(lines) + "\n"
        except ProtocolError as err:
            raise TargetError(f"cannot send the job: {err}") from None
        self._send(text, time.monotonic() + answer_timeout + len(text) / 20_000)
        deadline = time.monotonic() + answer_timeout
        return [self._answer(job, deadline) for job in jobs]

    def _answer(self, job: Job, deadline: float) -> Answer:
        """Read the agent's answer to ``job``, RESULT to END."""
        idx = self._expect([rf"RESULT {job.id} ", PANIC], deadline)
        if idx == 1:
            self._expect(["\n"], time.monotonic() + 2)
            raise TargetError(
                f"the guest kernel panicked during job {job.id}; console output:\n" + self._tail(),
                self.stderr(),
            )
        self._expect([rf"\nEND {job.id}\r?\n"], deadline)
        body = "RESULT " + job.id + " " + self._before()
        try:
            return parse_answer(job.id, body.splitlines(), job.reads, self._shared)
        except ProtocolError as err:
            raise TargetError(f"garbled answer from the agent: {err}") from None
