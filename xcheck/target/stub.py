"""One QEMU halted at reset with gdb attached to its stub in physical-memory
mode: what the QEMU target and live mode both start from."""

from __future__ import annotations

import contextlib
import shutil

from xcheck.target.errors import QemuLaunchError, TargetError
from xcheck.target.gdb import Gdb, GdbError
from xcheck.target.profile import Profile
from xcheck.target.qemu import QemuProcess, SharedRam, qemu_version

REUSE_TIMEOUT = 2.0
"""Seconds a gdb kept from a dead QEMU has to show it still answers."""
DYING_S = 1.0
"""How long a QEMU whose gdb connection broke may take to be seen dead."""
LOST_CONNECTION = ("Remote communication error", "Remote connection closed",
                   "Target disconnected")
"""What gdb says when the stub's end of its connection went away."""


def _reusable(gdb: Gdb) -> bool:
    """Whether ``gdb``, kept from a QEMU that is gone, can attach to another:
    it still runs and answers, now unconnected and without breakpoints
    (those of the old QEMU would be inserted into the new one). Closed
    when it cannot."""
    try:
        if gdb.alive():
            with contextlib.suppress(GdbError):  # already unconnected
                gdb.command("-target-disconnect", REUSE_TIMEOUT)
            gdb.command("-break-delete", REUSE_TIMEOUT)
            return True
    except TargetError:
        pass
    gdb.close()
    return False


class AttachedQemu:
    """QEMU (``-S``) plus one gdb-multiarch on its stub. :meth:`start` raises
    QemuLaunchError, with QEMU's stderr, when either cannot be used."""

    def __init__(self, profile: Profile, *, serial: str = "none", shared_ram: bool = False,
                 ram_base: int = 0) -> None:
        self.profile = profile
        self.serial = serial
        self.shared_ram = shared_ram
        self.ram_base = ram_base
        self.version = ""
        self.gdb_version = ""
        self.qemu: QemuProcess | None = None
        self._gdb: Gdb | None = None

    def start(self, gdb: Gdb | None = None) -> None:
        """Launch QEMU and attach gdb: ``gdb`` when given (one kept from a
        QEMU that crashed, see :meth:`release_gdb`; starting gdb-multiarch
        costs about 0.12 s of CPU, more than QEMU) and still usable, else a
        new one."""
        try:
            self._launch(gdb)
        except BaseException:
            if gdb is not None:  # closed already if it was used
                gdb.close()
            raise

    def _launch(self, gdb: Gdb | None) -> None:
        if shutil.which(self.profile.gdb) is None:
            raise QemuLaunchError(
                f"{self.profile.gdb} not found (install it: apt-get install gdb-multiarch)"
            )
        self.version = qemu_version(self.profile.executable, self.profile.timeouts.launch)
        try:
            self.qemu = QemuProcess(self.profile, serial=self.serial,
                                    shared_ram=self.shared_ram, ram_base=self.ram_base)
            self.qemu.start()
            if gdb is not None and _reusable(gdb):
                self._gdb = gdb
            else:
                self._gdb = Gdb(self.profile.gdb, self.profile.timeouts.command)
                self._gdb.start()
            self.gdb_version = self._gdb.version
            self._gdb.watch = self.gone
            self._gdb.connect(self.qemu.socket)
            if self._gdb.packet("Qqemu.PhyMemMode:1") != "OK":
                raise QemuLaunchError(
                    "QEMU's GDB stub does not support physical-memory mode (Qqemu.PhyMemMode)"
                )
            if self.qemu.ram is not None:
                # QEMU has built the machine (its stub answers): both map the
                # file now, so it can go, and nothing is left if xcheck is killed
                self.qemu.ram.path.unlink()
        except QemuLaunchError as err:
            if not err.stderr:
                err.stderr = self.stderr()
            self.close()
            raise
        except TargetError as err:
            stderr = self.stderr()
            self.close()
            raise QemuLaunchError(f"could not attach gdb to QEMU: {err}", stderr) from None

    def release_gdb(self) -> Gdb | None:
        """Stop QEMU and hand over gdb (for :meth:`start` of another QEMU)."""
        gdb, self._gdb = self._gdb, None
        if gdb is not None:
            gdb.watch = None
        self.close()
        return gdb

    def close(self) -> None:
        """Stop gdb and QEMU (idempotent; no process is left behind)."""
        if self._gdb is not None:
            self._gdb.close()
            self._gdb = None
        if self.qemu is not None:
            self.qemu.close()
            self.qemu = None

    @property
    def gdb(self) -> Gdb:
        if self._gdb is None:
            raise TargetError("QEMU is not started")
        return self._gdb

    def alive(self) -> bool:
        return self.qemu is not None and self.qemu.alive()

    @property
    def ram(self) -> SharedRam:
        """The guest's RAM mapped here (started with ``shared_ram``)."""
        if self.qemu is None or self.qemu.ram is None:
            raise TargetError("QEMU's RAM is not shared with xcheck")
        return self.qemu.ram

    def stderr(self) -> str:
        return self.qemu.stderr() if self.qemu is not None else ""

    def gone(self, dying: bool = False) -> str:
        """Why QEMU is no longer there ("" while it runs). ``dying``: gdb lost
        its connection, so QEMU is given DYING_S to be seen dead."""
        q = self.qemu
        if q is not None and dying and q.alive():
            q.await_exit(DYING_S)
        if q is None or q.alive():
            return ""
        status = q.exit_status()
        if status is not None and status < 0:
            return f"QEMU died (signal {-status})"
        return f"QEMU exited with status {status}"
