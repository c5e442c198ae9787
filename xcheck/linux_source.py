"""A Linux source tree for building KVM selftests, from Debian's packages.

Debian ships the kernel source as ``linux-source-X.Y`` (one
/usr/src/linux-source-X.Y.tar.xz) and the UAPI headers of the same kernel as
``linux-libc-dev`` (what ``make headers_install`` writes, per architecture).
``fetch_linux_source`` gets both with the private apt state of
xcheck.debfetch and keeps only what tools/testing/selftests/kvm builds from:
tools/, the arm64 sysreg description its headers are generated from, and the
Makefiles' includes. ``build_selftest`` builds one test file the way
Makefile.kvm builds its own tests (the tree's flags, static, cross-compiled
for arm64), the selftest library objects first (kept in the tree for the
next build).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from xcheck.debfetch import (
    AptState,
    DebFetchError,
    apt_for,
    cache_root,
    cached_versions,
    fill_entry,
    upstream_version,
)

DEFAULT_SUITE = "trixie-backports"
KEEP = ("tools", "scripts", "arch/arm64/tools", "Makefile")
"""The parts of the tarball the KVM selftests build from."""
HEADERS = "usr/include"
"""Where linux-libc-dev's UAPI headers are, in the cache entry."""
CROSS_COMPILE = "aarch64-linux-gnu-"
KVM_SELFTESTS = "tools/testing/selftests/kvm"
LIB_PROBE = "arm64/hello_el2"
"""A small test of the tree whose build builds the selftest library objects."""
BUILD_TIMEOUT_S = 900


class SelftestBuildError(Exception):
    """The tree is not a Linux source tree, or the test does not build."""


def _source_package(apt: AptState) -> str:
    """linux-source-X.Y, the version the suite's linux-source meta package names."""
    _, deps = apt.candidate("linux-source")
    names = [d for d in deps if re.fullmatch(r"linux-source-\d+\.\d+", d)]
    if not names:
        raise DebFetchError("the linux-source meta package names no linux-source-X.Y")
    return names[0]


def _unpack_subset(scratch: Path) -> dict[str, str]:
    """Extract KEEP from the tarball the package unpacked, drop the tarball."""
    tarballs = sorted((scratch / "usr/src").glob("linux-source-*.tar.xz"))
    if not tarballs:
        raise DebFetchError("the linux-source package holds no usr/src/linux-source-*.tar.xz")
    top = tarballs[0].name.removesuffix(".tar.xz")
    members = [f"{top}/{k}" for k in KEEP]
    cmd = ["tar", "-xJf", str(tarballs[0]), "-C", str(scratch), *members]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise DebFetchError("unpacking the kernel source failed", command=cmd,
                            stderr=proc.stderr)
    (scratch / top).rename(scratch / "linux")
    shutil.rmtree(scratch / "usr/src")
    return {}


def fetch_linux_source(suite: str = DEFAULT_SUITE) -> Path:
    """The cached tree (tools/ and the rest of KEEP, beside the UAPI headers
    in usr/include) of the suite's newest kernel source; fetched when absent."""
    with apt_for(suite, "amd64") as apt:
        package = _source_package(apt)
        versions = apt.candidates([package, "linux-libc-dev"])
        entry = cache_root() / f"linux-source-{upstream_version(versions[package])}"
        if cached_versions(entry) != versions:
            fill_entry(entry, apt, versions, also=_unpack_subset)
    return entry


def cached_linux_source() -> Path | None:
    """The newest complete cache entry of fetch_linux_source, without fetching."""
    entries = [e for e in cache_root().glob("linux-source-*")
               if cached_versions(e) is not None]
    return max(entries, key=lambda e: _version(e.name), default=None)


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", name))


def tree_of(linux_src: Path) -> tuple[Path, Path]:
    """(the kernel tree, the UAPI include folder) of ``linux_src``: a cache
    entry of fetch_linux_source, or a kernel tree after ``make headers``."""
    headers = linux_src / HEADERS
    for tree in (linux_src / "linux", linux_src):
        makefile = tree / KVM_SELFTESTS / "Makefile.kvm"
        if makefile.is_file() and (headers / "linux/kvm.h").is_file():
            return tree, headers
    raise SelftestBuildError(
        f"{linux_src} is not a Linux source tree with its UAPI headers (want "
        f"{KVM_SELFTESTS}/Makefile.kvm and {HEADERS}/linux/kvm.h; run `make headers` in a "
        "kernel tree, or python -m xcheck.debfetch linux-source)")


def _make(tree: Path, headers: Path, out: Path, source_dir: Path | None,
          names: Sequence[str], targets: Sequence[str], cflags: str = "") -> None:
    """Run Makefile.kvm for ``targets``, with ``names`` (arm64/<name>, their
    .c under ``source_dir``) added to its tests and ``cflags`` to its flags."""
    wrapper = out / "Makefile.xcheck"
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"TEST_GEN_PROGS += {n}" for n in names]
    if source_dir is not None:
        lines.append(f"vpath %.c {source_dir}")
    lines.append("include Makefile")
    wrapper.write_text("\n".join(lines) + "\n")
    arch_headers = headers / "aarch64-linux-gnu"
    cmd = ["make", "-s", "-C", str(tree / KVM_SELFTESTS), "-f", str(wrapper),
           f"-j{os.cpu_count() or 1}", "ARCH=arm64", f"CROSS_COMPILE={CROSS_COMPILE}",
           f"KHDR_INCLUDES=-isystem {arch_headers} -isystem {headers}",
           f"OUTPUT={out}", f"EXTRA_CFLAGS=-static {cflags}".strip(), *targets]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                              timeout=BUILD_TIMEOUT_S)
    except FileNotFoundError as err:
        raise SelftestBuildError(f"{err.filename} is not installed") from err
    except subprocess.TimeoutExpired as err:
        raise SelftestBuildError(f"building took more than {BUILD_TIMEOUT_S} s") from err
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
        raise SelftestBuildError(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{tail}")


def build_selftests(linux_src: Path, folder: Path, names: Sequence[str]) -> list[Path]:
    """Build the arm64 tests ``folder/arm64/<name>.c`` with the tree's
    selftest Makefile and flags (warnings are errors for them), the library
    objects first (kept in the tree, built once); the static binaries
    ``folder/arm64/<name>``."""
    if shutil.which(CROSS_COMPILE + "gcc") is None:
        raise SelftestBuildError(f"{CROSS_COMPILE}gcc is not installed (Debian: apt-get "
                                 "install gcc-aarch64-linux-gnu libc6-dev-arm64-cross)")
    tree, headers = tree_of(linux_src)
    out = tree / KVM_SELFTESTS / "xcheck-build"
    tests = [f"arm64/{n}" for n in names]
    with (tree / KVM_SELFTESTS / ".xcheck-lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _make(tree, headers, out, None, [], [f"{out}/{LIB_PROBE}"])
        for t in tests:  # built from another folder before: its .d names that source
            for suffix in ("", ".o", ".d"):
                (out / f"{t}{suffix}").unlink(missing_ok=True)
        _make(tree, headers, out, folder.resolve(), tests, [f"{out}/{t}" for t in tests],
              "-Werror")
        for t in tests:
            shutil.copy2(out / t, folder / t)
    return [folder / t for t in tests]
