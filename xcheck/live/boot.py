"""Boot a Linux kernel under QEMU with its console captured, and halt it.

QEMU runs the profile's machine and CPU with ``-kernel`` (and optionally
``-initrd``) and the first UART written to a file. The CPU starts halted at
reset on the GDB stub; :meth:`LiveVm.boot` lets it run until the console
shows the kernel's panic (there are no symbols to break on) or for a given
time, then interrupts it. :meth:`LiveVm.resume` lets it run on.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from types import TracebackType

from xcheck.target.errors import GdbTimeout, QemuLaunchError, TargetError
from xcheck.target.gdb import Gdb
from xcheck.target.profile import Profile
from xcheck.target.stub import AttachedQemu

PANIC = "Kernel panic"
"""The console line every Linux panic starts with (kernel/panic.c)."""
PANIC_END = "---[ end Kernel panic"
"""The line Linux prints once the panic is complete and it only waits."""
REBOOTING = "Rebooting in "
"""What Linux prints instead, before waiting, when booted with panic=N (N > 0)."""
POLL = 0.02


class LiveVm:
    """One QEMU booting ``kernel``, its console, one gdb on its stub."""

    def __init__(
        self,
        profile: Profile,
        kernel: Path,
        *,
        append: str = "",
        initrd: Path | None = None,
        memory: str | None = None,
    ) -> None:
        args = ["-kernel", str(kernel), "-append", f"console=ttyAMA0 {append}".strip()]
        if initrd is not None:
            args += ["-initrd", str(initrd)]
        self.profile = replace(
            profile,
            memory=memory or profile.memory,
            extra_args=(*profile.extra_args, *args),
        )
        self.kernel = kernel
        self.version = ""
        self._dir = Path(tempfile.mkdtemp(prefix="xcheck-live-"))
        self.console_path = self._dir / "console.txt"
        self._stub: AttachedQemu | None = None
        self.booted_s = 0.0
        self.running = False

    # --- lifecycle -----------------------------------------------------------
    def __enter__(self) -> LiveVm:
        self.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> None:
        """Launch QEMU halted at reset and attach gdb in physical-memory mode."""
        if not self.kernel.is_file():
            raise QemuLaunchError(f"kernel image {self.kernel} does not exist")
        self._stub = AttachedQemu(self.profile, serial=f"file:{self.console_path}")
        self._stub.start()
        self.version = self._stub.version

    def close(self) -> None:
        """Stop gdb and QEMU (idempotent)."""
        if self._stub is not None:
            self._stub.close()
            self._stub = None
        shutil.rmtree(self._dir, ignore_errors=True)

    @property
    def gdb(self) -> Gdb:
        if self._stub is None:
            raise TargetError("the live machine is not started")
        return self._stub.gdb

    def stderr(self) -> str:
        return self._stub.stderr() if self._stub is not None else ""

    def alive(self) -> bool:
        return self._stub is not None and self._stub.alive()

    # --- console and running -----------------------------------------------------
    def console(self) -> str:
        """Everything the kernel printed on its console so far."""
        try:
            return self.console_path.read_text(errors="replace")
        except OSError:
            return ""

    def resume(self) -> None:
        """Let the guest run (returns at once)."""
        self.gdb.command("-exec-continue")
        self.running = True

    def halt(self) -> None:
        """Stop a running guest."""
        if self.running:
            self.gdb.interrupt()
            self.running = False

    def wait_for(self, *texts: str, timeout: float, after: int = 0) -> bool:
        """Wait (running) until one of ``texts`` appears on the console at or
        after offset ``after``; False on timeout. Raises TargetError if QEMU dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.console()[after:]
            if any(t in out for t in texts):
                return True
            if not self.alive():
                raise TargetError("QEMU exited while the kernel was running", self.stderr())
            time.sleep(POLL)
        return False

    def boot(self, *, at_panic: bool = True, after: float = 0.0, timeout: float = 120.0) -> None:
        """Start the kernel and halt it at its panic (or ``after`` seconds).

        At a panic, waits for the end-of-panic line (or, with panic=N, the
        announcement of the restart) too, so that the kernel is waiting, not
        printing, when it is halted."""
        t0 = time.monotonic()
        self.resume()
        if at_panic:
            if not self.wait_for(PANIC, timeout=timeout):
                tail = "\n".join(self.console().splitlines()[-5:])
                self.halt()
                raise TargetError(
                    f"the kernel did not panic within {timeout:g}s; console ends with:\n{tail}"
                )
            self.wait_for(PANIC_END, REBOOTING, timeout=5.0, after=self.console().find(PANIC))
        else:
            end = t0 + after
            while time.monotonic() < end:
                if not self.alive():
                    raise TargetError("QEMU exited while the kernel was running", self.stderr())
                time.sleep(POLL)
        try:
            self.halt()
        except GdbTimeout as err:
            raise TargetError(f"could not halt the kernel: {err}", self.stderr()) from None
        self.booted_s = time.monotonic() - t0
