"""Launch and stop qemu-system-aarch64 for a profile.

QEMU starts halted (-S) with -nodefaults and no display; its GDB stub listens
on a unix socket in a private temporary directory, so parallel instances
never clash on ports; its stderr is kept in a file for reports.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import replace
from functools import cache
from pathlib import Path

from xcheck.target.errors import QemuLaunchError, TargetError
from xcheck.target.process import spawn, stop
from xcheck.target.profile import Profile


def qemu_argv(profile: Profile, gdb_socket: Path, serial: str = "none") -> list[str]:
    """The QEMU command line for ``profile`` with its stub on ``gdb_socket``
    and the first UART on ``serial`` (a QEMU -serial spec, e.g. file:PATH)."""
    return [
        profile.executable,
        "-nodefaults",
        "-S",
        "-machine",
        profile.machine,
        "-cpu",
        profile.cpu,
        "-m",
        profile.memory,
        "-display",
        "none",
        "-serial",
        serial,
        "-monitor",
        "none",
        "-chardev",
        f"socket,path={gdb_socket},server=on,wait=off,id=xcheck-gdb",
        "-gdb",
        "chardev:xcheck-gdb",
        *profile.extra_args,
    ]


AARCH32_ONLY = ("arm", "sa1", "ti9", "pxa", "cortex-m", "cortex-r", "host")
"""Name prefixes of QEMU's CPU models that have no AArch64 state (or need
KVM), left out of ``--cpu all``."""
AARCH32_CORES = ("cortex-a7", "cortex-a8", "cortex-a9", "cortex-a15", "cortex-a17")
"""Cortex-A models without AArch64 (ARMv7-A)."""


def cpu_models(binary: str, timeout: float = 10.0) -> list[str]:
    """The AArch64 CPU models ``binary`` offers on the virt machine: its
    ``-cpu help`` without the AArch32-only ones, each checked by building the
    machine once (``dumpdtb`` makes QEMU exit right after; the virt machine
    refuses models it does not support, e.g. 11.1's cortex-a78ae)."""
    exe = shutil.which(binary) or binary
    try:
        out = subprocess.run(
            [exe, "-machine", "virt", "-cpu", "help"],
            capture_output=True, text=True, timeout=timeout, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise QemuLaunchError(f"cannot list the CPU models of {binary!r}: {err}") from None
    names = [line.split()[0] for line in out.stdout.splitlines()[1:] if line.strip()]
    return [n for n in names if not n.startswith(AARCH32_ONLY) and n not in AARCH32_CORES
            and _virt_accepts(exe, n, timeout)]


def _virt_accepts(exe: str, cpu: str, timeout: float) -> bool:
    """The device tree goes to a file in a private folder, never /dev/null:
    QEMU writes it by renaming a new file over the path (GLib's
    g_file_set_contents), which, run as root, replaces /dev/null by a
    regular file."""
    with tempfile.TemporaryDirectory(prefix="xcheck-dtb-") as folder:
        try:
            return subprocess.run(
                [exe, "-machine", f"virt,dumpdtb={folder}/virt.dtb", "-cpu", cpu,
                 "-nodefaults", "-display", "none"],
                capture_output=True, timeout=timeout, check=False,
            ).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False


@cache
def qemu_version(binary: str, timeout: float = 10.0) -> str:
    """The version QEMU reports (``QEMU emulator version 7.2.22 (...)`` -> 7.2.22);
    asked once per binary (a QEMU started again after a crash does not ask)."""
    exe = shutil.which(binary) or binary
    try:
        out = subprocess.run(
            [exe, "--version"], capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise QemuLaunchError(
            f"QEMU binary {binary!r} not found (install qemu-system-arm, or pass --qemu PATH)"
        ) from None
    except (PermissionError, OSError) as err:
        raise QemuLaunchError(f"cannot run QEMU binary {binary!r}: {err}") from None
    except subprocess.TimeoutExpired:
        raise QemuLaunchError(f"{binary} --version did not answer within {timeout:g}s") from None
    first = out.stdout.splitlines()[0] if out.stdout else ""
    words = first.split()
    if out.returncode != 0 or "version" not in words:
        raise QemuLaunchError(
            f"{binary} --version failed: {(out.stderr or out.stdout).strip()[:400]}"
        )
    return words[words.index("version") + 1].rstrip(",")


SHARED_RAM_ID = "xcheck-ram"


class SharedRam:
    """The guest's RAM as a file QEMU maps shared (-object memory-backend-file,
    share=on) and xcheck maps too: bulk data moves by memory copy instead of
    through the GDB stub (about a microsecond a byte there). What QEMU may
    have translated into code must still be written through the stub, which
    invalidates QEMU's translations; data written here is seen by the guest's
    next load (page-table walks included, after its TLB maintenance)."""

    def __init__(self, base: int, size: int) -> None:
        self.base = base
        self.size = size
        shm = Path("/dev/shm")
        where = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
        fd, name = tempfile.mkstemp(prefix="xcheck-ram-", dir=where)
        self.path = Path(name)
        os.ftruncate(fd, size)
        self._map: mmap.mmap | None = mmap.mmap(fd, size)
        os.close(fd)

    def qemu_args(self) -> list[str]:
        return ["-object",
                f"memory-backend-file,id={SHARED_RAM_ID},size={self.size},"
                f"mem-path={self.path},share=on"]

    def holds(self, addr: int, n: int) -> bool:
        """Whether [addr, addr + n) is guest RAM."""
        return self.base <= addr and addr + n <= self.base + self.size

    def _span(self, addr: int, n: int) -> slice:
        if not self.holds(addr, n) or self._map is None:
            raise TargetError(f"0x{addr:x}+{n} is outside the guest's RAM")
        return slice(addr - self.base, addr - self.base + n)

    def read(self, addr: int, n: int) -> bytes:
        assert self._map is not None
        return self._map[self._span(addr, n)]

    def write(self, addr: int, data: bytes) -> None:
        assert self._map is not None
        self._map[self._span(addr, len(data))] = data

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        self.path.unlink(missing_ok=True)


class QemuProcess:
    """One running QEMU, halted at reset, its GDB stub on a unix socket;
    with ``shared_ram``, its RAM also mapped into xcheck (:class:`SharedRam`)."""

    def __init__(self, profile: Profile, serial: str = "none", *, shared_ram: bool = False,
                 ram_base: int = 0) -> None:
        self.profile = profile
        self.serial = serial
        self._dir = Path(tempfile.mkdtemp(prefix="xcheck-"))
        self.socket = self._dir / "gdb.sock"
        self._stderr_path = self._dir / "qemu.stderr"
        self._proc: subprocess.Popen[bytes] | None = None
        self.ram = SharedRam(ram_base, profile.ram_size()) if shared_ram else None

    def start(self) -> None:
        prof = self.profile
        if self.ram is not None:
            prof = replace(prof, machine=f"{prof.machine},memory-backend={SHARED_RAM_ID}",
                           extra_args=(*self.ram.qemu_args(), *prof.extra_args))
        argv = qemu_argv(prof, self.socket, self.serial)
        with open(self._stderr_path, "wb") as err:
            try:
                self._proc = spawn(argv, stderr=err)
            except FileNotFoundError:
                raise QemuLaunchError(
                    f"QEMU binary {self.profile.binary!r} not found "
                    "(install qemu-system-arm, or pass --qemu PATH)"
                ) from None
            except OSError as e:
                raise QemuLaunchError(f"cannot start {argv[0]}: {e}") from None
        deadline = time.monotonic() + self.profile.timeouts.launch
        while not self.socket.exists():
            if self._proc.poll() is not None:
                raise QemuLaunchError(
                    f"QEMU exited with status {self._proc.returncode} at start "
                    f"(-machine {self.profile.machine} -cpu {self.profile.cpu} "
                    f"-m {self.profile.memory})",
                    self.stderr(),
                )
            if time.monotonic() > deadline:
                raise QemuLaunchError(
                    f"QEMU did not open its GDB stub within {self.profile.timeouts.launch:g}s",
                    self.stderr(),
                )
            time.sleep(0.005)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def exit_status(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def await_exit(self, seconds: float) -> None:
        """Give a dying QEMU up to ``seconds`` to be seen dead (its socket
        closes before its exit status can be read)."""
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(seconds)

    def stderr(self) -> str:
        try:
            return self._stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        stop(self._proc)
        self._proc = None
        if self.ram is not None:
            self.ram.close()
        shutil.rmtree(self._dir, ignore_errors=True)
