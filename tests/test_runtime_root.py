"""The runtime closure of a Debian package and the wrapper that runs a binary through
its root's own dynamic loader (no network, no QEMU)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from xcheck.runtime_root import (
    Alternative,
    RootError,
    library_dirs,
    loader,
    not_needed,
    parse_depends,
    runtime_closure,
    write_wrapper,
)

# The shape of `apt-cache depends --recurse` with Depends and Pre-Depends only (sid,
# qemu-system-arm, cut down): " |" ORs a line with the next, <name> is a virtual
# package, lines indented by 4 name the packages that provide the one above.
DEPENDS = """\
qemu-system-arm
  Depends: libc6
  Depends: libibverbs1
  Depends: libgnutls30t64
  Depends: qemu-system-common
  Depends: ipxe-qemu
    ipxe-qemu-amd64
  Depends: seabios
qemu-system-common
  Depends: libc6
  Depends: libpam0g
libc6
  Depends: libgcc-s1
libgcc-s1
  PreDepends: libc6
libibverbs1
 |Depends: systemd
 |Depends: systemd-standalone-sysusers
  Depends: <systemd-sysusers>
    opensysusers
    systemd-standalone-sysusers
    systemd
  Depends: libc6
  Recommends: ibverbs-providers
libgnutls30t64
  Depends: libc6
 |Depends: libunistring5
  Depends: libunistring2
  Depends: <libcrypto-provider>
    libssl-provider-b
    libssl3t64
libpam0g
 |Depends: debconf
  Depends: <debconf-2.0>
    cdebconf
    debconf
  Depends: libssl3t64
libssl3t64
  Depends: libc6
libunistring5
  Depends: libc6
systemd
  Depends: libsystemd-shared
ipxe-qemu
seabios
<systemd-sysusers>
<debconf-2.0>
<libcrypto-provider>
"""


def test_parse_depends_reads_alternatives_virtuals_and_providers() -> None:
    graph = parse_depends(DEPENDS)
    assert graph["libibverbs1"] == [
        [
            Alternative("systemd"),
            Alternative("systemd-standalone-sysusers"),
            Alternative(
                "systemd-sysusers",
                ("opensysusers", "systemd-standalone-sysusers", "systemd"),
                virtual=True,
            ),
        ],
        [Alternative("libc6")],
    ]  # Recommends are not followed
    assert graph["libgcc-s1"] == [[Alternative("libc6")]]  # Pre-Depends count
    assert graph["qemu-system-arm"][4] == [Alternative("ipxe-qemu", ("ipxe-qemu-amd64",))]
    assert graph["seabios"] == [] and graph["systemd-sysusers"] == []


def test_the_closure_keeps_what_runs_and_drops_what_installs() -> None:
    graph = parse_depends(DEPENDS)
    closure = runtime_closure(graph, ["qemu-system-arm", "qemu-system-common"])
    # debconf, the sysusers providers (and so systemd's own dependencies) and the
    # firmware are left out; the first alternative of a group wins; a virtual package
    # is satisfied by a provider chosen anyway (libssl3t64) before its first provider.
    assert closure == [
        "libc6",
        "libgcc-s1",
        "libgnutls30t64",
        "libibverbs1",
        "libpam0g",
        "libssl3t64",
        "libunistring5",
    ]


def test_a_virtual_package_with_no_chosen_provider_takes_its_first_usable_one() -> None:
    graph = parse_depends(DEPENDS)
    assert runtime_closure(graph, ["libgnutls30t64"]) == [
        "libc6",
        "libgcc-s1",
        "libssl-provider-b",
        "libunistring5",
    ]


def test_not_needed_patterns() -> None:
    for name in ("debconf", "debconf-2.0", "perl-base", "ipxe-qemu-amd64", "qemu-efi-aarch64"):
        assert not_needed(name), name
    for name in ("libc6", "libsystemd0", "qemu-system-common", "libperl5.40"):
        assert not not_needed(name), name


def _root(tmp_path: Path, loader_dir: str, lib_dir: str) -> Path:
    """A root with copies of this system's loader and libc, and `env` and `cat`."""
    root = tmp_path / "qemu-9.9.9"
    system_loader = Path(os.path.realpath("/lib64/ld-linux-x86-64.so.2"))
    for rel, source in (
        (f"{loader_dir}/ld-linux-x86-64.so.2", system_loader),
        (f"{lib_dir}/libc.so.6", system_loader.parent / "libc.so.6"),
        ("usr/bin/env", Path("/usr/bin/env")),
        ("usr/bin/cat", Path("/usr/bin/cat")),
    ):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, root / rel)
    return root


needs_x86_64 = pytest.mark.skipif(
    not Path("/lib64/ld-linux-x86-64.so.2").exists(), reason="needs an x86-64 glibc system"
)


@needs_x86_64
@pytest.mark.parametrize(
    ("loader_dir", "lib_dir"),
    [
        ("usr/lib64", "usr/lib/x86_64-linux-gnu"),  # libc6 of Debian 13 on
        ("lib64", "lib/x86_64-linux-gnu"),  # Debian 12's libc6
    ],
)
def test_loader_and_library_dirs_of_a_root(tmp_path: Path, loader_dir: str, lib_dir: str) -> None:
    root = _root(tmp_path, loader_dir, lib_dir)
    assert loader(root) == Path(loader_dir, "ld-linux-x86-64.so.2")
    assert library_dirs(root) == [Path(lib_dir)]
    (root / "usr/lib/x86_64-linux-gnu").mkdir(parents=True, exist_ok=True)
    (root / "lib/x86_64-linux-gnu").mkdir(parents=True, exist_ok=True)
    assert library_dirs(root) == [Path("usr/lib/x86_64-linux-gnu"), Path("lib/x86_64-linux-gnu")]


@needs_x86_64
def test_the_wrapper_runs_the_binary_through_the_roots_loader_and_libraries(
    tmp_path: Path,
) -> None:
    root = _root(tmp_path, "usr/lib64", "usr/lib/x86_64-linux-gnu")
    wrapper = write_wrapper(root, "env", "usr/bin/env", "env from a test root\nsecond line")
    text = wrapper.read_text()
    assert text.startswith("#!/bin/sh\n# env from a test root\n# second line\n")
    assert str(tmp_path) not in text  # found from the script's own path at run time
    (tmp_path / "latest").symlink_to(root.name)  # as cache/qemu-X.Y -> qemu-X.Y.Z
    via_link = tmp_path / "latest" / "env"
    out = subprocess.run(
        [str(via_link), "sh", "-c", 'printf "%s|" "$@"', "sh", "a b", "", "$HOME"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout == "a b||$HOME|"  # arguments pass through unchanged
    env = subprocess.run([str(via_link)], capture_output=True, text=True, check=True).stdout
    # QEMU's loadable modules are looked for in the root, not the system's QEMU's
    assert f"QEMU_MODULE_DIR={root.resolve()}/usr/lib/x86_64-linux-gnu/qemu" in env
    write_wrapper(root, "cat", "usr/bin/cat", "cat from a test root")
    maps = subprocess.run(
        [str(tmp_path / "latest" / "cat"), "/proc/self/maps"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    mapped = {line.split()[-1] for line in maps.splitlines() if ".so" in line or "bin/" in line}
    assert mapped == {
        f"{root}/usr/bin/cat",
        f"{root}/usr/lib/x86_64-linux-gnu/libc.so.6",
        f"{root}/usr/lib64/ld-linux-x86-64.so.2",
    }


def test_a_root_without_loader_or_libc_is_a_typed_error(tmp_path: Path) -> None:
    (tmp_path / "usr/bin").mkdir(parents=True)
    with pytest.raises(RootError, match="no dynamic loader"):
        loader(tmp_path)
    with pytest.raises(RootError, match=r"no libc\.so\.6"):
        library_dirs(tmp_path)


@needs_x86_64
def test_the_wrapper_refuses_paths_that_would_need_quoting(tmp_path: Path) -> None:
    root = _root(tmp_path, "usr/lib64", "usr/lib/x86_64-linux-gnu")
    with pytest.raises(RootError, match="unexpected characters"):
        write_wrapper(root, "env", 'usr/bin/e"nv $(x)', "bad")
