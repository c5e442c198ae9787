"""The physical memory the walker reads (read-only).

A translation table walk reads 64-bit descriptors; the model never writes
(an AT instruction never updates dirty state, Arm ARM D8.5 R_ZYGHJ, and the
Access flag update it is permitted to make, R_XQSMX, does not change the
reported result; xcheck.arch.descupdate says what an AT may change).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from typing import Protocol

from xcheck.machine import chunks


class PhysMem(Protocol):
    def read64(self, pa: int) -> int | None:
        """The little-endian 64-bit word at ``pa``; None: no memory there."""
        ...


class MemoryImage:
    """A MachineSetup memory image over RAM [ram_base, ram_base + ram_size).

    RAM that no block covers reads as zero; an address outside RAM has no
    memory (a walk there is an External abort). The blocks are kept as they
    are (sorted); a word is read where it is asked for."""

    __slots__ = ("_blocks", "_cache", "_end", "_ram_base", "_starts")

    def __init__(self, memory: Mapping[int, bytes], ram_base: int, ram_size: int) -> None:
        self._ram_base = ram_base
        self._end = ram_base + ram_size
        blocks: list[tuple[int, bytes]] = []
        for addr, data in chunks(memory):
            if blocks and addr < blocks[-1][0] + len(blocks[-1][1]):
                # overlapping blocks: the later one wins where they overlap
                prev_addr, prev = blocks[-1]
                merged = bytearray(prev)
                end = addr + len(data) - prev_addr
                if end > len(merged):
                    merged.extend(bytes(end - len(merged)))
                merged[addr - prev_addr:end] = data
                blocks[-1] = (prev_addr, bytes(merged))
            else:
                blocks.append((addr, bytes(data)))
        self._blocks = blocks
        self._starts = [a for a, _ in blocks]
        self._cache: dict[int, int | None] = {}

    def _byte_range(self, pa: int, size: int) -> bytes:
        """``size`` bytes from ``pa``, zeros where no block covers them."""
        out = bytearray(size)
        i = max(bisect_right(self._starts, pa) - 1, 0)
        while i < len(self._blocks):
            addr, data = self._blocks[i]
            if addr >= pa + size:
                break
            lo, hi = max(addr, pa), min(addr + len(data), pa + size)
            if lo < hi:
                out[lo - pa:hi - pa] = data[lo - addr:hi - addr]
            i += 1
        return bytes(out)

    def read64(self, pa: int) -> int | None:
        try:
            return self._cache[pa]
        except KeyError:
            value = self._cache[pa] = self._read64(pa)
            return value

    def _read64(self, pa: int) -> int | None:
        if pa < self._ram_base or pa + 8 > self._end:
            return None
        i = bisect_right(self._starts, pa) - 1
        if i >= 0:
            addr, data = self._blocks[i]
            off = pa - addr
            if off + 8 <= len(data):
                return int.from_bytes(data[off:off + 8], "little")
        return int.from_bytes(self._byte_range(pa, 8), "little")
