"""What xcheck last wrote into guest RAM, to write only what changes.

A setup's tables are mostly zeros that the previous setup's tables also
were: the shadow keeps, per 4 KiB page, the bytes the guest holds (RAM
xcheck never wrote reads as zero: QEMU's RAM starts zeroed), and
:meth:`Shadow.update` returns the pages that differ from a new image, and
in code written through the GDB stub (about a microsecond a byte) only the
64-byte blocks that differ.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

PAGE = 0x1000
BLOCK = 64
"""Comparison granule: a run is written whole from its first to its last
differing 64-byte block."""
ZERO = bytes(PAGE)


def pages(memory: Iterable[tuple[int, bytes]]) -> dict[int, bytes]:
    """A memory image as full pages (zero where nothing is given)."""
    out: dict[int, bytearray] = {}
    for addr, data in memory:
        pos, end = addr, addr + len(data)
        while pos < end:
            page = pos & ~(PAGE - 1)
            n = min(page + PAGE, end) - pos
            buf = out.setdefault(page, bytearray(PAGE))
            buf[pos - page : pos - page + n] = data[pos - addr : pos - addr + n]
            pos += n
    return {p: bytes(b) for p, b in out.items()}


def _differing_blocks(new: bytes, old: bytes) -> list[int]:
    """The offsets of the BLOCKs where two different pages differ, in
    order, by halving each span whose halves differ (a page usually differs
    in one or two blocks of its 64: a dozen comparisons, not 64)."""
    out: list[int] = []
    spans = [(0, PAGE)]
    while spans:
        lo, hi = spans.pop()
        if hi - lo == BLOCK:
            out.append(lo)
            continue
        mid = (lo + hi) >> 1
        if new[mid:hi] != old[mid:hi]:
            spans.append((mid, hi))
        if new[lo:mid] != old[lo:mid]:
            spans.append((lo, mid))
    return out


class Shadow:
    """The guest's RAM as xcheck last wrote it, page by page."""

    def __init__(self) -> None:
        self._pages: dict[int, bytes] = {}

    def forget(self, memory: Mapping[int, bytes] | None = None) -> None:
        """After a restart: RAM is zero but for ``memory``."""
        self._pages = {p: b for p, b in pages((memory or {}).items()).items() if b != ZERO}

    def distrust(self, keep: range = range(0)) -> None:
        """The guest may have changed what we wrote (e.g. an emulator that
        updates descriptors during AT): next time rewrite every page we
        wrote, but for those in ``keep`` (memory nothing but xcheck writes)."""
        self._pages = {p: b if p in keep else b"\xff" * PAGE for p, b in self._pages.items()}

    def update(self, memory: Iterable[tuple[int, bytes]],
               exact: range = range(0)) -> list[tuple[int, bytes]]:
        """Make ``memory`` the guest's content (other pages we wrote become
        zero); return the (address, bytes) runs to write, merged: in the
        pages within ``exact`` (what is written through the stub, about a
        microsecond a byte) the blocks that differ, every other page that
        differs whole (RAM shared with QEMU: a page costs less to copy than
        to compare block by block). No run crosses the edge of ``exact``."""
        want = pages(memory)
        runs: list[tuple[int, bytes]] = []
        for page in sorted(set(want) | set(self._pages)):
            new = want.get(page, ZERO)
            old = self._pages.get(page, ZERO)
            if new == old:
                continue
            parts = ((page + off, new[off : off + BLOCK]) for off in _differing_blocks(new, old)) \
                if page in exact else ((page, new),)
            for addr, data in parts:
                if runs and runs[-1][0] + len(runs[-1][1]) == addr \
                        and (runs[-1][0] in exact) == (addr in exact):
                    runs[-1] = (runs[-1][0], runs[-1][1] + data)
                else:
                    runs.append((addr, data))
        self._pages = {p: b for p, b in want.items() if b != ZERO}
        return runs
