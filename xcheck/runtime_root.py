"""A runtime root: a Debian binary built for a newer suite, run on this system with the
libraries of its own suite.

A binary from a suite newer than the system (Debian 13 and later on Debian 12) needs a
newer C library and renamed libraries (the 64-bit time_t ``t64`` transition), so it cannot
start against the system's. Its runtime dependency closure (Depends and Pre-Depends,
without what only installs or configures packages) is unpacked into one root, and a small
wrapper runs the binary through that root's own dynamic loader with the root's library
directories first. Nothing outside the root is changed.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

DEPENDS_OPTIONS = (
    "--recurse",
    "--no-recommends",
    "--no-suggests",
    "--no-conflicts",
    "--no-breaks",
    "--no-replaces",
    "--no-enhances",
)
"""`apt-cache depends` options that list Depends and Pre-Depends only, recursively."""

NOT_NEEDED_TO_RUN = (
    # package configuration and maintainer scripts, run when a package is installed
    "debconf",
    "cdebconf",
    "debconf-2.0",
    "dpkg",
    "perl",
    "perl-base",
    "adduser",
    # creating system users at install time (libibverbs1 depends on one of these)
    "systemd",
    "systemd-standalone-sysusers",
    "systemd-sysusers",
    "opensysusers",
    # guest firmware: xcheck starts QEMU with -nodefaults and no -bios
    "ipxe-qemu",
    "ipxe-qemu-*",
    "seabios",
    "qemu-efi-*",
    "ovmf",
)
"""Packages (fnmatch patterns) a closure leaves out: not needed to run the binary."""

DEP_LINE = re.compile(r"^ (?P<alt>[ |])(?P<kind>[A-Za-z-]+): (?P<name>\S+)$")
RUN_KINDS = ("Depends", "PreDepends")
PLAIN_PATH = re.compile(r"[\w./+-]+")


@dataclass(frozen=True)
class Alternative:
    """One alternative of a dependency: a package, or a virtual one with its providers."""

    name: str
    providers: tuple[str, ...] = ()
    virtual: bool = False


DependsGraph = Mapping[str, Sequence[Sequence[Alternative]]]
"""Package -> its dependency groups (each group: alternatives, the first preferred)."""


def parse_depends(text: str) -> dict[str, list[list[Alternative]]]:
    """Parse `apt-cache depends --recurse` output: package lines at column 0, dependency
    lines (`` |`` marks an alternative ORed with the next line), providers indented by 4."""
    graph: dict[str, list[list[Alternative]]] = {}
    groups: list[list[Alternative]] = []
    open_group = False
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():
            groups = graph.setdefault(line.strip().strip("<>"), [])
            open_group = False
            continue
        if line.startswith("    "):
            if groups and groups[-1]:
                last = groups[-1][-1]
                groups[-1][-1] = Alternative(
                    last.name, (*last.providers, line.strip()), last.virtual
                )
            continue
        m = DEP_LINE.match(line)
        if not m or m["kind"] not in RUN_KINDS:
            open_group = False
            continue
        name = m["name"]
        virtual = name.startswith("<") and name.endswith(">")
        alt = Alternative(name.strip("<>"), (), virtual)
        if open_group:
            groups[-1].append(alt)
        else:
            groups.append([alt])
        open_group = m["alt"] == "|"
    return graph


def not_needed(package: str, drop: Iterable[str] = NOT_NEEDED_TO_RUN) -> bool:
    """True when `package` matches one of the `drop` patterns."""
    return any(fnmatch.fnmatchcase(package, pattern) for pattern in drop)


def _choose(group: Sequence[Alternative], chosen: set[str], drop: Sequence[str]) -> str | None:
    """The package that satisfies `group`: the first alternative not dropped (for a
    virtual one, a provider already chosen, else its first provider not dropped)."""
    for alt in group:
        if not_needed(alt.name, drop):
            continue
        if not alt.virtual:
            return alt.name
        usable = [p for p in alt.providers if not not_needed(p, drop)]
        for p in usable:
            if p in chosen:
                return p
        if usable:
            return usable[0]
    return None


def runtime_closure(
    graph: DependsGraph,
    roots: Sequence[str],
    drop: Sequence[str] = NOT_NEEDED_TO_RUN,
) -> list[str]:
    """Packages needed to run what `roots` install, `roots` excluded, sorted: Depends and
    Pre-Depends followed from the roots, one alternative per group, `drop` left out."""
    chosen = set(roots)
    todo = list(roots)
    while todo:
        for group in graph.get(todo.pop(), ()):
            pick = _choose(group, chosen, drop)
            if pick is not None and pick not in chosen:
                chosen.add(pick)
                todo.append(pick)
    return sorted(chosen - set(roots))


class RootError(Exception):
    """The root lacks its dynamic loader or its C library."""


LOADER_GLOBS = (
    "usr/lib64/ld-linux*.so.*",
    "lib64/ld-linux*.so.*",
    "usr/lib/ld-linux*.so.*",
    "lib/ld-linux*.so.*",
)


def loader(root: Path) -> Path:
    """The root's dynamic loader, relative to `root` (libc6 ships it under ``usr/lib64``
    on amd64 from Debian 13, ``lib64`` before; ``lib`` on arm64)."""
    for pattern in LOADER_GLOBS:
        found = sorted(root.glob(pattern))
        if found:
            return found[0].relative_to(root)
    raise RootError(f"no dynamic loader (ld-linux*.so.*) in {root}: is libc6 unpacked there?")


def library_dirs(root: Path) -> list[Path]:
    """The root's multiarch library directories, relative to `root`: where its libc.so.6
    is (``usr/lib/<triplet>``), and the non-merged ``lib/<triplet>`` when present."""
    libcs = sorted(root.glob("usr/lib/*/libc.so.6")) + sorted(root.glob("lib/*/libc.so.6"))
    if not libcs:
        raise RootError(f"no libc.so.6 under {root}/usr/lib or {root}/lib")
    triplet = libcs[0].parent.name
    return [d for d in (Path("usr/lib", triplet), Path("lib", triplet)) if (root / d).is_dir()]


def wrapper_script(root: Path, binary: str, about: str) -> str:
    """A shell script, kept at the top of `root`, that runs ``root/binary`` through the
    root's loader with the root's library directories (found from the script's own path,
    so the root may be renamed or reached through a symlink). QEMU looks for its loadable
    modules in the root first (QEMU_MODULE_DIR): the system's, of another QEMU build, are
    refused ("Only modules from the same build can be loaded")."""
    dirs = library_dirs(root)
    libs = ":".join(f"$root/{_plain(d)}" for d in dirs)
    modules = f"export QEMU_MODULE_DIR=\"$root/{_plain(dirs[0])}/qemu\"\n"
    return (
        "#!/bin/sh\n"
        + "".join(f"# {line}\n" for line in about.splitlines())
        + 'root=$(dirname "$(readlink -f "$0")")\n'
        + modules
        + f'exec "$root/{_plain(loader(root))}" --library-path "{libs}" '
        + f'"$root/{_plain(binary)}" "$@"\n'
    )


def _plain(path: Path | str) -> str:
    """`path` as it goes into the script; only names that need no shell quoting."""
    if not PLAIN_PATH.fullmatch(str(path)):
        raise RootError(f"unexpected characters in a path of the root: {path}")
    return str(path)


def write_wrapper(root: Path, name: str, binary: str, about: str) -> Path:
    """Write the wrapper ``root/name`` for ``root/binary`` (see `wrapper_script`)."""
    path = root / name
    path.write_text(wrapper_script(root, binary, about))
    path.chmod(0o755)
    return path


def refresh_wrapper(root: Path, name: str, binary: str) -> None:
    """Rewrite the wrapper ``root/name`` as this xcheck writes it, keeping its comment."""
    path = root / name
    text = path.read_text()
    about = "\n".join(line[2:] for line in text.splitlines()[1:] if line.startswith("# "))
    if text != wrapper_script(root, binary, about):
        write_wrapper(root, name, binary, about)
