"""The shape of a generated translation table tree: granule, input size,
start level, output size, and which levels may hold blocks.

The fuzzer chooses these before it writes the registers that encode them,
so that mappings, probes and overrides can be placed where a walk goes.
Rules: Arm ARM DDI 0487 D8.2 (AArch64.S1StartLevel, VTCR_EL2.SL0 with
AArch64.S2InvalidSL / S2InconsistentSL, D8.2.7 concatenation), D8.3
(AArch64.BlockDescSupported), AArch64.PhysicalAddressSize.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from xcheck.arch.walk import block_supported

GRANULE_NAMES = {12: "4K", 14: "16K", 16: "64K"}
FINAL_LEVEL = 3


@dataclass(frozen=True)
class Shape:
    """One base register's tree as the fuzzer plans it (the derived sizes
    are worked out once: the generator reads them per mapping and probe)."""

    base: str
    granule_bits: int
    iasize: int
    start_level: int
    oasize: int
    """Output addresses at or above 2**oasize give an Address size fault."""
    ds: bool = False
    lpa: bool = False
    """64KB level 1 blocks are legal (52-bit PAs, the scenario requires LPA)."""
    upper: bool = False

    @cached_property
    def stage(self) -> int:
        return 2 if self.base in ("VTTBR_EL2", "VSTTBR_EL2") else 1

    @cached_property
    def granule(self) -> int:
        return 1 << self.granule_bits

    @cached_property
    def stride(self) -> int:
        return self.granule_bits - 3

    def lsb(self, level: int) -> int:
        return (FINAL_LEVEL - level) * self.stride + self.granule_bits

    def size(self, level: int) -> int:
        return 1 << self.lsb(level)

    @cached_property
    def encodable_bits(self) -> int:
        """The widest output address a descriptor can hold (D8.3)."""
        return 52 if self.granule_bits == 16 or self.ds else 48

    @cached_property
    def range_start(self) -> int:
        return (1 << 64) - (1 << self.iasize) if self.upper else 0

    @cached_property
    def range_end(self) -> int:
        return (1 << 64) if self.upper else (1 << self.iasize)

    def block_ok(self, level: int) -> bool:
        return level == FINAL_LEVEL or block_supported(self.granule_bits, self.ds, self.lpa,
                                                       level)

    def levels(self) -> range:
        return range(self.start_level, FINAL_LEVEL + 1)

    def entry_range(self, addr: int, level: int) -> tuple[int, int]:
        """The input range one entry at ``level`` on the walk of ``addr`` maps."""
        lo = addr & ~(self.size(level) - 1)
        return lo, lo + self.size(level)


def s1_start_level(iasize: int, granule_bits: int) -> int:
    """AArch64.S1StartLevel."""
    return FINAL_LEVEL - ((iasize - 1 - granule_bits) // (granule_bits - 3))


S2_SL0 = {
    12: {2: 0b00, 1: 0b01, 0: 0b10, 3: 0b11},
    14: {3: 0b00, 2: 0b01, 1: 0b10, 0: 0b11},
    16: {3: 0b00, 2: 0b01, 1: 0b10},
}
"""VTCR_EL2.SL0 encoding of each stage 2 start level, per granule (D24.2)."""


def s2_levels(granule_bits: int, iasize: int, pamax: int, ds: bool, ttst: bool) -> list[int]:
    """Stage 2 start levels that are valid and consistent for ``iasize``
    (AArch64.S2InvalidSL, AArch64.S2InconsistentSL: up to 16 concatenated
    start tables)."""
    out = []
    stride = granule_bits - 3
    for level in S2_SL0[granule_bits]:
        if granule_bits == 12 and ((level == 0 and pamax < 44) or (level == 3 and not ttst)):
            continue
        if granule_bits == 14 and ((level == 1 and pamax < 42)
                                   or (level == 0 and (not ds or pamax < 52))):
            continue
        if granule_bits == 16 and level == 1 and pamax < 44:
            continue
        lo = (FINAL_LEVEL - level) * stride + granule_bits + 1
        if lo <= iasize <= lo + stride - 1 + 4:
            out.append(level)
    return sorted(out)


def size_bytes(size: str | int) -> int:
    """A mapping's ``size`` (``4K``, ``2M``, ``1G``... or a byte count) in bytes."""
    if isinstance(size, int):
        return size
    units = {"K": 10, "M": 20, "G": 30, "T": 40}
    return int(size[:-1]) << units[size[-1]] if size[-1] in units else int(size)
