"""Fetching Debian packages with a private apt state; QEMU and kernels in the user cache.

Tests marked `network` reach the Debian mirror named in the system's apt sources and skip
when it cannot be reached. Downloads land in the per-user cache, so reruns are quick.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from xcheck import debfetch
from xcheck.cli import main
from xcheck.debfetch import AptState, DebFetchError, Mirror
from xcheck.runtime_root import not_needed
from xcheck.scenario.versions import parse_range
from xcheck.target.profile import load_profile
from xcheck.target.qemu import QemuProcess, qemu_version

REPO = Path(__file__).resolve().parents[1]
SYSTEM_APT = (Path("/etc/apt"), Path("/var/lib/apt"), Path("/var/cache/apt"))


@pytest.fixture(scope="module")
def mirror() -> Mirror:
    m = debfetch.system_mirror()
    why = debfetch.mirror_reachable(m)
    if why:
        pytest.skip(why)
    return m


def _snapshot(roots: tuple[Path, ...]) -> dict[str, tuple[int, int]]:
    snap: dict[str, tuple[int, int]] = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in [*dirnames, *filenames]:
                p = os.path.join(dirpath, name)
                st = os.lstat(p)
                snap[p] = (st.st_mtime_ns, st.st_size)
            snap[dirpath] = (os.lstat(dirpath).st_mtime_ns, 0)
    return snap


# -- no network -----------------------------------------------------------------------


def test_resolve_binary_expands_cache_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", "/srv/c")
    assert (
        debfetch.resolve_binary("@cache/qemu-10.0/usr/bin/q") == "/srv/c/xcheck/qemu-10.0/usr/bin/q"
    )
    assert debfetch.resolve_binary("/usr/bin/qemu-system-aarch64") == "/usr/bin/qemu-system-aarch64"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert debfetch.cache_root() == Path.home() / ".cache" / "xcheck"


@pytest.mark.parametrize(
    ("debian", "upstream"),
    [
        ("1:10.0.2+ds-2+deb13u1~bpo12+1", "10.0.2"),
        ("1:7.2+dfsg-7+deb12u18+b3", "7.2"),
        ("6.1.176-1", "6.1.176"),
        ("7.3.4-1~bpo13+1", "7.3.4"),
        ("2.6.1", "2.6.1"),
    ],
)
def test_upstream_version(debian: str, upstream: str) -> None:
    assert debfetch.upstream_version(debian) == upstream


# Dependencies as Debian's arm64 kernel packages have them (apt-cache show): Debian 12's
# meta package leads to the image package; Debian 13's image package is itself a meta
# package of the linux-binary package that holds the image.
KERNEL_DEPENDS = {
    "linux-image-arm64": ["linux-image-6.1.0-50-arm64"],
    "linux-image-6.1.0-50-arm64": ["kmod", "linux-base", "initramfs-tools"],
    "linux-image-arm64-16k": [
        "linux-base-arm64-16k", "linux-image-7.3.4+deb13-arm64-16k", "linux-modules-arm64-16k"
    ],
    "linux-image-7.3.4+deb13-arm64-16k": [
        "dracut",
        "linux-base-7.3.4+deb13-arm64-16k",
        "linux-binary-7.3.4+deb13-arm64-16k",
        "linux-modules-7.3.4+deb13-arm64-16k",
    ],
    "linux-image-7.3.4+deb13-arm64": ["linux-binary-7.3.4+deb13-arm64"],
    "linux-binary-7.3.4+deb13-arm64-16k": ["linux-base-7.3.4+deb13-arm64-16k"],
}


@pytest.mark.parametrize(
    ("package", "holder"),
    [
        ("linux-image-arm64", "linux-image-6.1.0-50-arm64"),
        ("linux-image-6.1.0-50-arm64", "linux-image-6.1.0-50-arm64"),
        ("linux-image-arm64-16k", "linux-binary-7.3.4+deb13-arm64-16k"),
        ("linux-image-7.3.4+deb13-arm64-16k", "linux-binary-7.3.4+deb13-arm64-16k"),
        ("linux-image-7.3.4+deb13-arm64", "linux-binary-7.3.4+deb13-arm64"),
        ("linux-binary-7.3.4+deb13-arm64-16k", "linux-binary-7.3.4+deb13-arm64-16k"),
        ("my-kernel", "my-kernel"),
    ],
)
def test_image_package_follows_meta_packages_of_the_same_flavour(package: str, holder: str) -> None:
    assert debfetch.image_package(package, lambda p: KERNEL_DEPENDS.get(p, [])) == holder


def test_system_mirror_reads_deb822_and_skips_security(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n\n"
        "# a comment\nTypes: deb\nURIs: http://mirror.example/debian/\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
    m = debfetch.system_mirror(tmp_path)
    assert m == Mirror(
        "http://mirror.example/debian", "/usr/share/keyrings/debian-archive-keyring.gpg"
    )
    assert m.sources_line("trixie-backports") == (
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
        "http://mirror.example/debian trixie-backports main"
    )


def test_system_mirror_reads_one_line_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text(
        "deb http://security.example/debian-security bookworm-security main\n"
        "deb http://ftp.example/debian bookworm main contrib\n"
    )
    assert debfetch.system_mirror(tmp_path) == Mirror("http://ftp.example/debian")


def test_system_mirror_falls_back_to_the_default(tmp_path: Path) -> None:
    assert debfetch.system_mirror(tmp_path).uri == debfetch.DEFAULT_MIRROR


def test_a_failing_mirror_is_a_typed_error_with_apts_stderr(tmp_path: Path) -> None:
    gone = tmp_path / "no-mirror"
    apt = AptState(tmp_path / "state", f"deb file:{gone} bookworm main", "arm64")
    with pytest.raises(DebFetchError) as err:
        apt.update()
    assert "apt-get update failed" in str(err.value)
    assert str(gone) in err.value.stderr_tail
    assert list((tmp_path / "state" / "lists").glob("*Packages*")) == []


def _tiny_deb(tmp_path: Path) -> Path:
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        "Package: xcheck-tiny\nVersion: 1.0\nArchitecture: all\n"
        "Maintainer: x <x@example.org>\nDescription: test\n"
    )
    for rel in ("usr/bin/tool", "usr/lib/modules/1.0/kernel/big.ko"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    deb = tmp_path / "xcheck-tiny_1.0_all.deb"
    subprocess.run(
        ["dpkg-deb", "--build", "--root-owner-group", str(root), str(deb)],
        check=True,
        capture_output=True,
    )
    return deb


def test_unpack_whole_and_with_exclusions(tmp_path: Path) -> None:
    deb = _tiny_deb(tmp_path)
    debfetch.unpack([deb], tmp_path / "all")
    assert (tmp_path / "all/usr/bin/tool").read_text() == "usr/bin/tool"
    assert (tmp_path / "all/usr/lib/modules/1.0/kernel/big.ko").is_file()
    debfetch.unpack([deb], tmp_path / "some", exclude=["./usr/lib/modules/*/kernel"])
    assert (tmp_path / "some/usr/bin/tool").is_file()
    assert not (tmp_path / "some/usr/lib/modules/1.0/kernel").exists()


def test_unpack_of_a_broken_deb_is_a_typed_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.deb"
    bad.write_bytes(b"not an ar archive")
    with pytest.raises(DebFetchError, match=r"unpacking bad\.deb failed"):
        debfetch.unpack([bad], tmp_path / "out")


# -- network ---------------------------------------------------------------------------


@pytest.mark.network
def test_fetch_debs_leaves_the_system_apt_state_alone(mirror: Mirror, tmp_path: Path) -> None:
    before = _snapshot(SYSTEM_APT)
    debs = debfetch.fetch_debs(
        ["qemu-system-data"],
        suite_line=mirror.sources_line("bookworm-backports"),
        arch="arm64",
        dest=tmp_path,
    )
    assert _snapshot(SYSTEM_APT) == before
    assert [d.parent for d in debs] == [tmp_path]
    assert debs[0].name.startswith("qemu-system-data_") and debs[0].name.endswith("_all.deb")
    fields = subprocess.run(
        ["dpkg-deb", "-f", str(debs[0]), "Package", "Version"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "Package: qemu-system-data" in fields and "~bpo12" in fields
    assert list((tmp_path / ".apt" / "lists").glob("*bookworm-backports*arm64_Packages*"))


@pytest.mark.network
def test_a_package_that_does_not_exist_is_a_typed_error(mirror: Mirror, tmp_path: Path) -> None:
    with pytest.raises(DebFetchError) as err:
        debfetch.fetch_debs(
            ["xcheck-no-such-package"],
            suite_line=mirror.sources_line("bookworm-backports"),
            arch="amd64",
            dest=tmp_path,
        )
    assert "Unable to locate package xcheck-no-such-package" in str(err.value)
    assert list(tmp_path.glob("*.deb")) == []


@pytest.fixture(scope="module")
def qemu10(mirror: Mirror) -> Path:
    return debfetch.install_qemu()


@pytest.mark.network
def test_install_qemu_is_cached_and_reused(qemu10: Path) -> None:
    entry = qemu10.parent
    marker = entry / debfetch.MARKER
    stamps = (marker.stat().st_mtime_ns, qemu10.stat().st_mtime_ns, qemu10.stat().st_ino)
    again = debfetch.install_qemu()
    assert again == qemu10
    assert (marker.stat().st_mtime_ns, again.stat().st_mtime_ns, again.stat().st_ino) == stamps
    assert not entry.with_name(entry.name + ".partial").exists()
    profile = yaml.safe_load((REPO / "qemu_configs" / "qemu10.yaml").read_text())
    assert Path(debfetch.resolve_binary(profile["binary"])).samefile(qemu10)
    out = subprocess.run([str(qemu10), "--version"], check=True, capture_output=True, text=True)
    assert out.stdout.startswith("QEMU emulator version 10.0.")


def _at_reset(profile: str, binary: Path, exprs: list[str]) -> tuple[list[int], str]:
    """Boot `binary` halted (-S) with its GDB stub as `profile` does; the values gdb
    reads for `exprs` and the files QEMU's process maps."""
    vm = QemuProcess(load_profile(profile, qemu=str(binary)))
    try:
        vm.start()
        maps = Path(f"/proc/{vm.pid}/maps").read_text()
        cmds = ["set architecture aarch64", f"target remote {vm.socket}"]
        cmds += [f"p/x {e}" for e in exprs]
        gdb = subprocess.run(
            ["gdb-multiarch", "-q", "-nx", "-batch", *(a for c in cmds for a in ("-ex", c))],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        vm.close()
    values = [int(line.split("=")[1], 16) for line in gdb.stdout.splitlines() if "= 0x" in line]
    assert len(values) == len(exprs), gdb.stdout + gdb.stderr
    return values, maps


@pytest.mark.network
@pytest.mark.qemu
def test_qemu10_from_the_cache_has_feat_nv(qemu10: Path) -> None:
    (mmfr2, cpsr), _ = _at_reset("qemu10", qemu10, ["$ID_AA64MMFR2_EL1", "$cpsr"])
    assert (mmfr2 >> 24) & 0xF >= 1  # ID_AA64MMFR2_EL1.NV: FEAT_NV arrived in QEMU 9.0
    assert cpsr & 0xF == 0x9  # EL2h at reset with virtualization=on


QEMU11_SUITE = "trixie-backports"
"""Where `make qemu11` takes QEMU 11.1 from (built for Debian 13)."""


@pytest.fixture(scope="module")
def qemu11() -> Path:
    """QEMU 11.1 as `make qemu11` installs it: fetched when the mirror answers, else
    the one already in the per-user cache; skipped, saying why, when neither."""
    why = debfetch.mirror_reachable()
    if why is None:
        return debfetch.install_qemu(QEMU11_SUITE)
    installed = Path(load_profile("qemu11").executable)
    if not installed.exists():
        pytest.skip(f"QEMU 11.1 is not in the per-user cache and cannot be fetched: {why}")
    return installed


@pytest.mark.qemu
def test_qemu11_runs_on_this_system_and_says_its_version(qemu11: Path) -> None:
    assert Path(load_profile("qemu11").executable).samefile(qemu11)
    first = subprocess.run(
        [str(qemu11), "--version"], check=True, capture_output=True, text=True
    ).stdout.splitlines()[0]
    assert re.fullmatch(r"QEMU emulator version 11\.1\.\d+ \(Debian 1:11\.1\.[^)]*\)", first)
    version = qemu_version(str(qemu11))  # what `known:` ranges are compared against
    assert version.startswith("11.1.")
    assert parse_range(">=10.1,<12").contains(version)
    assert not parse_range("<=10.0.2").contains(version)


@pytest.mark.qemu
def test_qemu11_boots_to_its_gdb_stub_with_its_own_libraries(qemu11: Path) -> None:
    (pc, mmfr3), maps = _at_reset("qemu11", qemu11, ["$pc", "$ID_AA64MMFR3_EL1"])
    assert pc == 0  # halted at reset
    assert (mmfr3 >> 8) & 0xF >= 1  # ID_AA64MMFR3_EL1.S1PIE: -cpu max has it from 10.2
    root = os.path.realpath(qemu11.parent)
    libc = {line.split()[-1] for line in maps.splitlines() if "/libc.so" in line}
    assert libc == {f"{root}/usr/lib/x86_64-linux-gnu/libc.so.6"}  # not the system's


@pytest.mark.qemu
def test_doctor_on_qemu11_reads_its_id_registers(qemu11: Path) -> None:
    res = CliRunner().invoke(main, ["doctor", "--config", "qemu11"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "11.1." in res.output and "usable" in res.output
    mmfr3 = next(ln for ln in res.output.splitlines() if "ID_AA64MMFR3_EL1" in ln)
    assert int(mmfr3.split("0x")[1].split()[0], 16) >> 8 & 0xF >= 1  # S1PIE, as the stub says


@pytest.mark.qemu
def test_qemu_list_shows_qemu11_with_its_version(qemu11: Path) -> None:
    res = CliRunner().invoke(main, ["qemu", "list"], env={"COLUMNS": "200"})
    row = next(ln for ln in res.output.splitlines() if " qemu11 " in ln)
    assert re.search(r"\b11\.1\.\d+\b", row) and "qemu-11.1/qemu-system-aarch64" in row


@pytest.mark.network
def test_installing_qemu11_again_is_a_no_op_that_leaves_the_system_alone(
    mirror: Mirror, qemu11: Path
) -> None:
    entry = Path(os.path.realpath(qemu11.parent))
    marker = entry / debfetch.MARKER
    stamps = (marker.stat().st_mtime_ns, entry.stat().st_ino, qemu11.stat().st_mtime_ns)
    before = _snapshot(SYSTEM_APT)
    assert debfetch.install_qemu(QEMU11_SUITE) == qemu11
    assert _snapshot(SYSTEM_APT) == before
    assert (marker.stat().st_mtime_ns, entry.stat().st_ino, qemu11.stat().st_mtime_ns) == stamps
    packages = debfetch.cached_versions(entry) or {}
    assert "libc6" in packages and "qemu-system-arm" in packages  # the runtime closure
    assert not any(not_needed(p) for p in packages)


@pytest.mark.network
@pytest.mark.slow
def test_fetch_kernel_gives_an_arm64_image(mirror: Mirror) -> None:
    package = debfetch.kernel_package("bookworm")
    assert package.startswith("linux-image-6.1.0-") and package.endswith("-arm64")
    vmlinuz = debfetch.fetch_kernel(package, "bookworm")
    with vmlinuz.open("rb") as f:
        header = f.read(64)
    assert header[0x38:0x3C] == b"ARM\x64"  # arm64 Image header magic
    assert debfetch.fetch_kernel(package, "bookworm") == vmlinuz
    assert not list(vmlinuz.parents[1].glob("lib/modules/*/kernel"))


@pytest.mark.network
@pytest.mark.slow
def test_fetch_kernel_follows_an_image_meta_package_to_the_image(mirror: Mirror) -> None:
    """`xcheck live --kernel-deb linux-image-<abi>-arm64-16k --suite trixie-backports`:
    that package only depends on linux-binary-<abi>-arm64-16k, which holds the image."""
    binary = debfetch.kernel_package("trixie-backports", "arm64-16k")
    assert binary.startswith("linux-binary-") and binary.endswith("-arm64-16k")
    meta = "linux-image-" + binary.removeprefix("linux-binary-")
    vmlinuz = debfetch.fetch_kernel(meta, "trixie-backports")
    assert vmlinuz == debfetch.fetch_kernel(binary, "trixie-backports")
    with vmlinuz.open("rb") as f:
        header = f.read(64)
    assert header[0x38:0x3C] == b"ARM\x64"  # arm64 Image header magic
    flags = int.from_bytes(header[0x18:0x20], "little")
    assert flags >> 1 & 0b11 == 2  # Image header flags: kernel page size 16KB


@pytest.mark.network
def test_command_line_reports_errors_without_a_traceback(
    mirror: Mirror, capsys: pytest.CaptureFixture[str]
) -> None:
    assert debfetch.main(["kernel", "xcheck-no-such-kernel", "--suite", "bookworm-backports"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "xcheck-no-such-kernel" in err
    assert "Traceback" not in err


def test_an_entry_counts_only_once_its_marker_is_written(tmp_path: Path) -> None:
    entry = tmp_path / "qemu-10.0.2"
    (entry / "usr/bin").mkdir(parents=True)
    assert debfetch.cached_versions(entry) is None
    (entry / debfetch.MARKER).write_text("{not json")
    assert debfetch.cached_versions(entry) is None
    (entry / debfetch.MARKER).write_text('{"packages": {"qemu-system-arm": "1:10.0.2"}}')
    assert debfetch.cached_versions(entry) == {"qemu-system-arm": "1:10.0.2"}


def test_a_binary_that_does_not_run_is_a_typed_error(tmp_path: Path) -> None:
    fake = tmp_path / "qemu-system-aarch64"
    fake.write_text("#!/bin/sh\necho 'cannot run here' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(DebFetchError, match=r"failed \(exit 3\)") as err:
        debfetch.check_binary_runs(fake)
    assert "cannot run here" in err.value.stderr_tail


def test_the_minor_link_names_the_newest_complete_tree(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cache = debfetch.cache_root()
    for name, complete in (
        ("qemu-11.1.2", True),
        ("qemu-11.1.10", True),  # newest: compared as numbers, not text
        ("qemu-11.1.11", False),  # no marker: unpacking, or broken off
        ("qemu-11.1.12.partial", True),
        ("qemu-11.10.1", True),  # another minor release
    ):
        (cache / name).mkdir(parents=True)
        if complete:
            (cache / name / debfetch.MARKER).write_text('{"packages": {}}')
    debfetch._link_newest("11.1")
    assert os.readlink(cache / "qemu-11.1") == "qemu-11.1.10"
