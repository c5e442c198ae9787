"""Shared fixtures: a real QEMU target for integration tests (marker ``qemu``)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from xcheck.target.profile import Profile, load_profile


def _missing() -> str:
    prof = load_profile()
    lacking = [b for b in (prof.executable, prof.gdb) if shutil.which(b) is None]
    return ", ".join(lacking)


@pytest.fixture(scope="session")
def qemu_profile() -> Profile:
    """The default profile; integration tests skip, saying why, when its QEMU
    or gdb is not installed (`make test` installs both)."""
    lacking = _missing()
    if lacking:
        pytest.skip(f"not installed: {lacking} (run `make test`, which installs them)")
    return load_profile()


@pytest.fixture(scope="module")
def target(qemu_profile: Profile) -> Iterator[object]:
    from xcheck.target.guest import QemuTarget

    with QemuTarget(qemu_profile) as t:
        yield t
