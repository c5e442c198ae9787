"""QEMU profiles: loading, validation, overrides (no QEMU needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from xcheck.target.errors import ProfileError
from xcheck.target.profile import Profile, load_profile, parse_size, with_overrides
from xcheck.target.qemu import qemu_argv


def test_default_profile_is_tcg_max() -> None:
    p = load_profile()
    assert p.name == "tcg-max"
    assert p.machine == "virt,virtualization=on"
    assert p.cpu == "max"
    assert p.ram_size() == 128 << 20


def test_qemu_option_replaces_the_binary() -> None:
    p = load_profile(None, qemu="/opt/q/bin/qemu-system-aarch64")
    assert p.binary == "/opt/q/bin/qemu-system-aarch64"
    assert p.cpu == "max"


def test_argv_halts_and_hides_everything(tmp_path: Path) -> None:
    argv = qemu_argv(load_profile(), tmp_path / "s")
    assert argv[1:3] == ["-nodefaults", "-S"]
    assert "virt,virtualization=on" in argv and "max" in argv
    assert f"socket,path={tmp_path / 's'},server=on,wait=off,id=xcheck-gdb" in argv


@pytest.mark.parametrize(
    ("text", "size"), [("128M", 128 << 20), ("1G", 1 << 30), ("512", 512 << 20), ("64k", 64 << 10)]
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_bad_size() -> None:
    with pytest.raises(ProfileError, match="not a size"):
        parse_size("lots")


def test_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(ProfileError, match="tcg-max"):
        load_profile("no-such-profile")


def test_unknown_key(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("binary: q\ncpus: max\n")
    with pytest.raises(ProfileError, match=r"unknown key.*cpus"):
        load_profile(str(f))


def test_bad_timeouts(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("timeouts: {launch: soon}\n")
    with pytest.raises(ProfileError, match="timeouts"):
        load_profile(str(f))


def test_overrides() -> None:
    p = load_profile()
    q = with_overrides(p, {"cpu": "cortex-a76", "memory": "256M"})
    assert (q.cpu, q.memory, q.binary) == ("cortex-a76", "256M", p.binary)
    assert with_overrides(p, {}) is p
    with pytest.raises(ProfileError, match="cannot override binary"):
        with_overrides(p, {"binary": "x"})


def test_profiles_are_hashable_values() -> None:
    a = Profile(name="a", extra_args=("-d", "guest_errors"))
    assert a == Profile(name="a", extra_args=("-d", "guest_errors"))
    assert len({a, Profile(name="a", extra_args=("-d", "guest_errors"))}) == 1


def test_shipped_profiles_load() -> None:
    for name in ("tcg-max", "qemu10"):
        assert load_profile(name).name == name


def test_target_name_qemu_is_the_default_profile() -> None:
    assert load_profile("qemu").name == "tcg-max"
