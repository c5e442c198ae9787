"""The QEMU profiles integration tests run on, each skipped (saying why) when
its QEMU or gdb is not installed."""

from __future__ import annotations

import shutil

import pytest

from xcheck.target.errors import ProfileError
from xcheck.target.profile import Profile, load_profile

PROFILES = ("tcg-max", "qemu10", "qemu11")
"""QEMU 7.2 (the system's), 10.0 and 11.1 (the per-user cache, `make test`)."""


def installed_profile(name: str) -> Profile:
    """Profile ``name``, or skip the test when it or its binaries are missing."""
    try:
        prof = load_profile(name)
    except ProfileError as err:
        pytest.skip(f"profile {name}: {err}")
    lacking = [b for b in (prof.executable, prof.gdb) if shutil.which(b) is None]
    if lacking:
        pytest.skip(f"profile {name}: not installed: {', '.join(lacking)} (make test)")
    return prof
