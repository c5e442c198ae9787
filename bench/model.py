"""Model throughput: 4-level 4KB stage 1 walks per second in one process."""

from __future__ import annotations

import time

from xcheck.arch.at import ArchState, translate
from xcheck.arch.features import Features
from xcheck.arch.memory import MemoryImage
from xcheck.machine import ARENA_PA, RAM_BASE, AtOp, sysreg_defaults

PAGES = 512
RAM_SIZE = 128 << 20


def _setup() -> tuple[ArchState, MemoryImage, list[int]]:
    """512 pages under one level 0/1/2 path, T0SZ = 16 (start level 0)."""
    l0, l1, l2, l3 = (ARENA_PA + i * 0x1000 for i in range(4))
    words = {l0: l1 | 3, l1: l2 | 3, l2: l3 | 3}
    vas = []
    for i in range(PAGES):
        words[l3 + 8 * i] = (RAM_BASE + 0x0100_0000 + i * 0x1000) | (1 << 10) | (3 << 8) | 3
        vas.append(i * 0x1000 + 8 * i)
    sysregs = sysreg_defaults()
    sysregs.update(SCTLR_EL1=0x30D0_0805, TCR_EL1=16 | (0b101 << 32), TTBR0_EL1=l0,
                   MAIR_EL1=0xFF)
    mem = MemoryImage({a: v.to_bytes(8, "little") for a, v in words.items()}, RAM_BASE,
                      RAM_SIZE)
    return ArchState.from_sysregs(sysregs, Features(), 1, False), mem, vas


def bench_walks(seconds: float = 1.0) -> dict[str, float]:
    state, mem, vas = _setup()
    ops = (AtOp.S1E1R, AtOp.S1E1W)
    n = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        op = ops[n // len(vas) & 1]  # reads and writes, a pass each
        for va in vas:
            translate(op, va, state, mem)
        n += len(vas)
    return {"walks_per_s": round(n / elapsed)}
