"""gdb's memory writes on the real QEMU: a small block as MI hex, a large one
or several restored from an ELF file in a private folder that goes with gdb."""

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


@pytest.mark.qemu
def test_many_blocks_in_one_restore_read_back(qemu_profile: Profile) -> None:
    rng = random.Random(2)
    blocks = [(RAM_BASE + (16 << 20) + i * 0x3000 + rng.randrange(64) * 8,
               rng.randbytes(rng.choice([8, 64, 900, 5000]))) for i in range(40)]
    with QemuTarget(qemu_profile) as t:
        t.gdb.write_blocks(blocks)
        for addr, data in blocks:
            assert t.gdb.read_memory(addr, len(data)) == data, hex(addr)
