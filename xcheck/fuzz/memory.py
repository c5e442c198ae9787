"""The model's view of a setup's memory, read lazily.

xcheck.arch.memory.MemoryImage decodes every word of the image up front;
a fuzz case's image is mostly empty table pages read a few times, so this
reader decodes only the words a walk fetches (same semantics: RAM that no
block covers reads as zero, outside RAM there is no memory).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Mapping

from xcheck.machine import chunks

MASK64 = (1 << 64) - 1
_NONZERO = re.compile(rb"[^\x00]+")


class LazyMemory:
    """A PhysMem over a MachineSetup memory image and RAM [base, base + size)."""

    __slots__ = ("_blocks", "_end", "_ram_base", "_starts")

    def __init__(self, memory: Mapping[int, bytes], ram_base: int, ram_size: int) -> None:
        self._ram_base = ram_base
        self._end = ram_base + ram_size
        self._blocks = chunks(memory)
        self._starts = [a for a, _ in self._blocks]

    def _byte_range(self, pa: int, n: int) -> bytes:
        out = bytearray(n)
        i = bisect.bisect_right(self._starts, pa) - 1
        i = max(i, 0)
        while i < len(self._blocks):
            addr, data = self._blocks[i]
            if addr >= pa + n:
                break
            lo, hi = max(addr, pa), min(addr + len(data), pa + n)
            if lo < hi:
                out[lo - pa:hi - pa] = data[lo - addr:hi - addr]
            i += 1
        return bytes(out)

    def read64(self, pa: int) -> int | None:
        if pa < self._ram_base or pa + 8 > self._end:
            return None
        return int.from_bytes(self._byte_range(pa, 8), "little") & MASK64


def sparse(memory: Mapping[int, bytes], gap: int = 512) -> dict[int, bytes]:
    """The same image without its runs of zero bytes (what the builder
    writes is mostly empty table entries). By the MachineSetup contract RAM
    no block covers reads as zero, so the image means the same; the target
    has far fewer bytes to write and to clear. Zero runs shorter than
    ``gap`` stay, to keep the number of blocks low; blocks are whole
    aligned 64-bit words."""
    out: dict[int, bytes] = {}
    for addr, data in chunks(memory):
        runs: list[list[int]] = []
        for m in _NONZERO.finditer(data):
            lo = (addr + m.start()) & ~7
            hi = (addr + m.end() + 7) & ~7
            if runs and lo - runs[-1][1] < gap:
                runs[-1][1] = hi
            else:
                runs.append([lo, hi])
        for lo, hi in runs:
            lo, hi = max(lo, addr), min(hi, addr + len(data))
            out[lo] = bytes(data[lo - addr:hi - addr])
    return out
