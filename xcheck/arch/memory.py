"""The physical memory the walker reads (read-only).

A translation table walk reads 64-bit descriptors; the model never writes
(an AT instruction never updates dirty state, Arm ARM D8.5 R_ZYGHJ, and the
Access flag update it is permitted to make, R_XQSMX, does not change the
reported result).
"""

from __future__ import annotations

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
    memory (a walk there is an External abort)."""

    __slots__ = ("_end", "_ram_base", "_words")

    def __init__(self, memory: Mapping[int, bytes], ram_base: int, ram_size: int) -> None:
        self._ram_base = ram_base
        self._end = ram_base + ram_size
        words: dict[int, int] = {}
        for addr, data in chunks(memory):
            first = addr & ~7
            last = (addr + len(data) + 7) & ~7
            for w in range(first, last, 8):
                cur = bytearray(words.get(w, 0).to_bytes(8, "little"))
                lo = max(w, addr)
                hi = min(w + 8, addr + len(data))
                cur[lo - w:hi - w] = data[lo - addr:hi - addr]
                words[w] = int.from_bytes(cur, "little")
        self._words = words

    def read64(self, pa: int) -> int | None:
        if pa < self._ram_base or pa + 8 > self._end:
            return None
        if pa & 7:
            lo = self._words.get(pa & ~7, 0) >> ((pa & 7) * 8)
            hi = self._words.get((pa & ~7) + 8, 0) << ((8 - (pa & 7)) * 8)
            return (lo | hi) & 0xFFFF_FFFF_FFFF_FFFF
        return self._words.get(pa, 0)
