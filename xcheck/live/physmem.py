"""Guest RAM as the model's PhysMem, read through the GDB stub.

The stub is in physical-memory mode; memory is fetched a page at a time and
cached, since the kernel is halted and its tables do not change while the
model walks them. :class:`RecordingMem` remembers every word a walk reads,
which is what a mismatch's exported scenario needs.
"""

from __future__ import annotations

from typing import Protocol

from xcheck.arch.memory import PhysMem
from xcheck.target.gdb import Gdb

PAGE = 4096


class RamReader(PhysMem, Protocol):
    """What the table enumeration reads: RAM bounds and byte ranges."""

    ram_base: int
    ram_end: int

    def read(self, pa: int, size: int) -> bytes: ...


class GdbPhysMem:
    """RAM [ram_base, ram_base + ram_size) of a halted guest; None elsewhere
    (a walk there would be an External abort, as in the model's MemoryImage)."""

    def __init__(self, gdb: Gdb, ram_base: int, ram_size: int) -> None:
        self.gdb = gdb
        self.ram_base = ram_base
        self.ram_end = ram_base + ram_size
        self._pages: dict[int, bytes] = {}
        self.fetches = 0

    def page(self, pa: int) -> bytes:
        base = pa & ~(PAGE - 1)
        data = self._pages.get(base)
        if data is None:
            data = self._pages[base] = self.gdb.read_memory(base, PAGE)
            self.fetches += 1
        return data

    def read(self, pa: int, size: int) -> bytes:
        """``size`` bytes from ``pa`` (within RAM)."""
        out = bytearray()
        while size > 0:
            off = pa & (PAGE - 1)
            n = min(size, PAGE - off)
            out += self.page(pa)[off : off + n]
            pa += n
            size -= n
        return bytes(out)

    def read64(self, pa: int) -> int | None:
        if pa < self.ram_base or pa + 8 > self.ram_end:
            return None
        if pa & 7:
            return int.from_bytes(self.read(pa, 8), "little")
        off = pa & (PAGE - 1)
        return int.from_bytes(self.page(pa)[off : off + 8], "little")

    def forget(self) -> None:
        """Drop the cache (after the guest ran)."""
        self._pages.clear()


class RecordingMem:
    """A PhysMem that remembers each word read (address -> value)."""

    def __init__(self, mem: PhysMem) -> None:
        self.mem = mem
        self.words: dict[int, int] = {}

    def read64(self, pa: int) -> int | None:
        value = self.mem.read64(pa)
        if value is not None:
            self.words[pa] = value
        return value
