"""Enumerate what a halted kernel's translation tables map.

The walk follows the model's own reading of the registers (S1TTWParams:
granule, start level, table base, VA size) and its descriptor decode
(AArch64.DecodeDescriptorType via block_supported, AArch64.NextTableBase /
S1LeafBase via output_address), visiting every valid table descriptor
instead of one VA's path. The result is the list of leaves (blocks and
pages), the table pages seen, and the leaves merged into ranges of equal
attributes with contiguous VA and PA.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from xcheck.arch.walk import block_supported, output_address
from xcheck.arch.walkparams import FINAL_LEVEL, S1TTWParams
from xcheck.live.physmem import RamReader

OA_BITS = ((1 << 48) - 1) & ~0xFFF
"""Descriptor bits [47:12]: where output addresses live (and bits [15:12] /
[9:8] of 52-bit formats are folded in by output_address)."""


@dataclass(frozen=True, slots=True)
class Leaf:
    """One block or page descriptor: it maps [va, va + size) to oa."""

    va: int
    size: int
    level: int
    desc: int
    oa: int
    desc_pa: int


@dataclass(frozen=True, slots=True)
class Range:
    """Consecutive leaves with contiguous VA and PA and equal attributes."""

    va: int
    size: int
    oa: int
    level: int
    desc: int
    """The first leaf's descriptor."""
    leaves: int

    @property
    def end(self) -> int:
        return self.va + self.size


@dataclass
class TableMap:
    """What one VA range (TTBR0 or TTBR1) of one regime maps."""

    params: S1TTWParams
    va_start: int
    va_end: int
    leaves: list[Leaf] = field(default_factory=list)
    tables: set[int] = field(default_factory=set)
    """Physical addresses of every table read (the start table included)."""
    unreadable: list[int] = field(default_factory=list)
    """Next-level table addresses outside RAM (a walk there aborts)."""

    @property
    def name(self) -> str:
        return "TTBR1" if self.params.varange == "upper" else "TTBR0"


def va_bounds(p: S1TTWParams) -> tuple[int, int]:
    """[start, end) of the VA range (AArch64.VAIsOutOfRange, without tags)."""
    if p.varange == "upper":
        return (1 << 64) - (1 << p.iasize), 1 << 64
    return 0, 1 << p.iasize


def _lsb(p: S1TTWParams, level: int) -> int:
    return (FINAL_LEVEL - level) * (p.granule_bits - 3) + p.granule_bits


def walk_tables(p: S1TTWParams, mem: RamReader) -> TableMap:
    """Every leaf reachable from the range's table base, in VA order."""
    start, end = va_bounds(p)
    out = TableMap(p, start, end)
    order: Literal["big", "little"] = "big" if p.ee else "little"
    stride = p.granule_bits - 3

    def visit(table: int, level: int, va_base: int, entries: int) -> None:
        nbytes = 8 * entries
        if table < mem.ram_base or table + nbytes > mem.ram_end:
            out.unreadable.append(table)
            return
        out.tables.add(table)
        data = mem.read(table, nbytes)
        lsb = _lsb(p, level)
        for i in range(entries):
            desc = int.from_bytes(data[8 * i : 8 * i + 8], order)
            if not desc & 1:
                continue
            va = va_base + (i << lsb)
            if desc & 2 and level < FINAL_LEVEL:
                nxt = output_address(desc, p.granule_bits, p.ds, p.pa52_64k)
                if nxt >> p.oasize == 0:
                    visit(nxt, level + 1, va, 1 << stride)
            elif desc & 2 or block_supported(p.granule_bits, p.ds, p.pa52_64k, level):
                oa = output_address(desc, lsb, p.ds, p.pa52_64k)
                out.leaves.append(Leaf(va, 1 << lsb, level, desc, oa, table + 8 * i))

    first = _lsb(p, p.start_level)
    visit(p.base, p.start_level, start, 1 << (p.iasize - first))
    return out


def attr_key(desc: int) -> int:
    """A descriptor without its output address (the bits ranges must share)."""
    return desc & ~OA_BITS


def ranges(leaves: list[Leaf]) -> list[Range]:
    """Merge leaves into ranges (VA order)."""
    out: list[Range] = []
    for lf in leaves:
        if out:
            r = out[-1]
            if (r.end == lf.va and r.oa + r.size == lf.oa and r.level == lf.level
                    and attr_key(r.desc) == attr_key(lf.desc)):
                out[-1] = Range(r.va, r.size + lf.size, r.oa, r.level, r.desc, r.leaves + 1)
                continue
        out.append(Range(lf.va, lf.size, lf.oa, lf.level, lf.desc, 1))
    return out


def holes(tmap: TableMap, rs: list[Range]) -> Iterator[tuple[int, int]]:
    """[start, end) of every unmapped gap of the VA range."""
    cur = tmap.va_start
    for r in rs:
        if r.va > cur:
            yield cur, r.va
        cur = max(cur, r.end)
    if cur < tmap.va_end:
        yield cur, tmap.va_end
