"""Build the guest side of the nested-KVM target: the agent and its initramfs.

The agent (agent/xcheck-agent.c) is cross-compiled as a static arm64 program with
Debian's ``gcc-aarch64-linux-gnu`` and ``libc6-dev-arm64-cross``, and packed as
``/init`` of a newc cpio archive written here in Python (no cpio binary needed).
Both land in the per-user cache under ``kvm-agent-<key>/``, the key hashing the
source and the flags, so a changed agent is rebuilt and an unchanged one never
is (and is found without a compiler); BUILD-INFO records the compiler used.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from xcheck.debfetch import cache_root

AGENT_SOURCE = Path(__file__).resolve().parents[3] / "agent" / "xcheck-agent.c"
CROSS_GCC = "aarch64-linux-gnu-gcc"
CROSS_LIBC = Path("/usr/aarch64-linux-gnu/lib/libc.a")
CROSS_PACKAGES = ("gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross")
CFLAGS = ("-static", "-pthread", "-s", "-O2", "-Wall", "-Wextra", "-Werror", "-std=gnu11")
AGENT_NAME = "xcheck-agent"
INITRAMFS_NAME = "initramfs.cpio"
BUILD_INFO = "BUILD-INFO"


class BuildError(Exception):
    """The cross compiler is missing, or the agent does not build."""


@dataclass(frozen=True)
class AgentBuild:
    """A built agent and the initramfs that runs it as /init."""

    agent: Path
    initramfs: Path
    key: str
    built: bool
    """False when both came from the cache."""


def cross_compiler_missing() -> list[str]:
    """Debian packages of the cross toolchain that are not installed."""
    missing = []
    if shutil.which(CROSS_GCC) is None:
        missing.append(CROSS_PACKAGES[0])
    if not CROSS_LIBC.is_file():
        missing.append(CROSS_PACKAGES[1])
    return missing


def ensure_cross_compiler(log: list[str]) -> None:
    """Install the cross toolchain with apt-get when root; else say what to run."""
    missing = cross_compiler_missing()
    if not missing:
        return
    command = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    if os.geteuid() != 0:
        raise BuildError(
            "the in-guest agent needs a cross compiler; run:\n"
            f"  sudo apt-get install --no-install-recommends {' '.join(missing)}"
        )
    log.append(f"installing {' '.join(missing)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0 or cross_compiler_missing():
        tail = "\n  ".join(proc.stderr.strip().splitlines()[-8:])
        raise BuildError(f"{' '.join(command)} failed (exit {proc.returncode})\n  {tail}")


def _compiler_version() -> str:
    proc = subprocess.run([CROSS_GCC, "--version"], capture_output=True, text=True, check=False)
    return proc.stdout.splitlines()[0] if proc.stdout else ""


def build_key(source: bytes) -> str:
    """Cache key of an agent build: its source and the compiler flags (the
    compiler's version is recorded beside the build, in BUILD_INFO)."""
    h = hashlib.sha256()
    for part in (source, " ".join(CFLAGS).encode()):
        h.update(len(part).to_bytes(8, "little") + part)
    return h.hexdigest()[:16]


def _entry(source: Path) -> tuple[Path, str]:
    try:
        text = source.read_bytes()
    except OSError as err:
        raise BuildError(f"agent source not found: {err}") from err
    key = build_key(text)
    return cache_root() / f"kvm-agent-{key}", key


def find_agent(source: Path = AGENT_SOURCE) -> AgentBuild | None:
    """The cached build of the current agent source, without building."""
    entry, key = _entry(source)
    agent, initramfs = entry / AGENT_NAME, entry / INITRAMFS_NAME
    if agent.is_file() and initramfs.is_file():
        return AgentBuild(agent, initramfs, key, built=False)
    return None


# --- newc cpio ----------------------------------------------------------------

S_IFDIR, S_IFREG, S_IFCHR = 0o040000, 0o100000, 0o020000


@dataclass(frozen=True)
class CpioEntry:
    """One member of a newc archive: name without a leading slash."""

    name: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def _pad4(n: int) -> bytes:
    return b"\0" * (-n % 4)


def newc_archive(entries: Sequence[CpioEntry]) -> bytes:
    """The "new ASCII" (070701) cpio format that the Linux initramfs unpacker reads:
    a 110-byte header of hex fields, the name with its NUL, data, each 4-aligned."""
    out = bytearray()
    trailer = CpioEntry("TRAILER!!!", 0)
    for ino, e in enumerate([*entries, trailer], start=1):
        name = e.name.encode() + b"\0"
        nlink = 2 if e.mode & S_IFDIR == S_IFDIR else 1
        fields = (
            ino if e is not trailer else 0,
            e.mode,
            0,
            0,
            nlink if e is not trailer else 1,
            0,
            len(e.data),
            0,
            0,
            e.rdev[0],
            e.rdev[1],
            len(name),
            0,
        )
        header = b"070701" + b"".join(f"{f:08x}".encode() for f in fields)
        out += header + name + _pad4(len(header) + len(name))
        out += e.data + _pad4(len(e.data))
    return bytes(out)


def initramfs_entries(agent: bytes) -> list[CpioEntry]:
    """/init = the agent; /dev/console so the kernel can hand init a console."""
    return [
        CpioEntry("dev", S_IFDIR | 0o755),
        CpioEntry("dev/console", S_IFCHR | 0o600, rdev=(5, 1)),
        CpioEntry("proc", S_IFDIR | 0o555),
        CpioEntry("init", S_IFREG | 0o755, agent),
    ]


# --- the build ----------------------------------------------------------------


def build_agent(log: list[str], source: Path = AGENT_SOURCE) -> AgentBuild:
    """Cross-compile the agent and pack the initramfs, or reuse the cached pair."""
    cached = find_agent(source)
    if cached is not None:
        return cached
    ensure_cross_compiler(log)
    entry, key = _entry(source)
    agent, initramfs = entry / AGENT_NAME, entry / INITRAMFS_NAME
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=".kvm-agent-"))
    try:
        out = tmp / AGENT_NAME
        cmd = [CROSS_GCC, *CFLAGS, "-o", str(out), str(source)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise BuildError(f"{' '.join(cmd)} failed:\n{proc.stderr.strip()}")
        (tmp / INITRAMFS_NAME).write_bytes(newc_archive(initramfs_entries(out.read_bytes())))
        (tmp / BUILD_INFO).write_text(f"{' '.join(cmd)}\n{_compiler_version()}\n")
        tmp.chmod(0o755)
        try:
            tmp.rename(entry)
        except OSError:
            if not (agent.is_file() and initramfs.is_file()):  # not a parallel build's
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.append(f"built the agent and {initramfs}")
    return AgentBuild(agent, initramfs, key, built=True)
