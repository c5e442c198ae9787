"""The QEMUs xcheck knows: the profiles in qemu_configs/, the version each
one's binary reports, and Debian's QEMU installed beside the system one
(`xcheck qemu list`, `xcheck qemu fetch`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from xcheck.debfetch import (
    CACHE_PREFIX,
    QEMU_BINARY,
    QEMU_RUNNER,
    DebFetchError,
    cache_root,
    install_qemu,
)
from xcheck.target.errors import ProfileError, QemuLaunchError
from xcheck.target.profile import CONFIG_DIR, load_profile
from xcheck.target.qemu import qemu_version


@dataclass(frozen=True)
class ProfileInfo:
    """One profile and what its binary says of itself."""

    name: str
    kind: str
    binary: str
    version: str
    """The version the binary reports, or empty when it cannot be run."""
    problem: str = ""


def profile_infos(config_dir: Path = CONFIG_DIR) -> list[ProfileInfo]:
    """Every profile of ``config_dir``, sorted by name, with its QEMU's version."""
    infos = []
    for path in sorted(config_dir.glob("*.yaml")):
        try:
            prof = load_profile(str(path))
        except ProfileError as err:
            infos.append(ProfileInfo(path.stem, "?", "", "", f"bad profile: {err}"))
            continue
        try:
            version, problem = qemu_version(prof.executable), ""
        except QemuLaunchError as err:
            version, problem = "", str(err).splitlines()[0]
        infos.append(ProfileInfo(prof.name, prof.kind, prof.executable, version, problem))
    return infos


def cached_qemus() -> list[Path]:
    """What runs each QEMU installed in the per-user cache (see `install_qemu`; the
    binary itself for a tree unpacked before runners existed)."""
    found = []
    for binary in sorted(cache_root().glob(f"qemu-*.*.*/{QEMU_BINARY}")):
        runner = binary.parents[2] / QEMU_RUNNER
        found.append(runner if runner.exists() else binary)
    return found


def list_command(console: Console) -> int:
    """`xcheck qemu list`: profiles, binaries and versions; 0 if all run."""
    infos = profile_infos()
    table = Table(title="QEMU profiles (qemu_configs/)")
    for col in ("profile", "kind", "QEMU version"):
        table.add_column(col)
    table.add_column("binary", overflow="fold")
    for i in infos:
        version = i.version or f"[red]{escape(i.problem)}[/]"
        table.add_row(i.name, i.kind, version, i.binary)
    console.print(table)
    named = {os.path.realpath(i.binary) for i in infos if i.binary}
    for binary in cached_qemus():
        if os.path.realpath(binary) not in named:
            console.print(f"also installed (no profile names it): {binary}")
    return 0 if all(i.version for i in infos) else 1


def profiles_naming(binary: Path) -> list[str]:
    """Names of the profiles whose binary is ``binary`` (after symlinks),
    those of kind "qemu" first."""
    real = os.path.realpath(binary)
    found = []
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        try:
            prof = load_profile(str(path))
        except ProfileError:
            continue
        if os.path.realpath(prof.executable) == real:
            found.append((prof.kind != "qemu", prof.name))
    return [name for _, name in sorted(found)]


def fetch_command(suite: str, console: Console) -> int:
    """`xcheck qemu fetch`: install Debian's QEMU from ``suite`` beside the
    system one; print the binary, its version and the profile naming it."""
    console.print(f"fetching qemu-system-arm from {suite} (private apt state, per-user cache)")
    try:
        binary = install_qemu(suite)
        version = qemu_version(str(binary))
    except (DebFetchError, QemuLaunchError) as err:
        console.print(f"[red]error:[/] {escape(str(err))}")
        return 1
    console.print(f"installed: {binary}")
    console.print(f"version:   {version}")
    names = profiles_naming(binary)
    if names:
        console.print(f"profile:   {', '.join(names)} (xcheck run --config {names[0]})")
    else:
        short = ".".join(version.split(".")[:2])
        console.print(
            "no profile names it yet; a profile in qemu_configs/ would say:\n"
            f'  binary: "{CACHE_PREFIX}qemu-{short}/{QEMU_RUNNER}"'
        )
    return 0
