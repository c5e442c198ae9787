"""gdb's memory writes on the real QEMU: small blocks as MI hex, large ones
restored from a private file that goes with gdb."""

from __future__ import annotations

import random

import pytest

from xcheck.machine import RAM_BASE
from xcheck.target.gdb import RESTORE_MIN
from xcheck.target.guest import QemuTarget
from xcheck.target.profile import Profile


@pytest.mark.qemu
def test_blocks_of_every_size_read_back(qemu_profile: Profile) -> None:
    rng = random.Random(1)
    with QemuTarget(qemu_profile) as t:
        g = t.gdb
        addr = RAM_BASE + (16 << 20)
        for size in (8, RESTORE_MIN - 1, RESTORE_MIN, 70_000):
            data = rng.randbytes(size)
            g.write_memory(addr, data)
            assert g.read_memory(addr, size) == data, size
        files = g._files
        assert files is not None and files.is_dir()
    assert not files.exists()
