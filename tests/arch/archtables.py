"""A small translation-table builder for the model's unit tests.

Descriptor layouts: Arm ARM DDI 0487, D8.3 (VMSAv8-64 translation table
descriptor formats). Not the scenario builder: just enough to lay out
tables in a memory image for the walker.
"""

from __future__ import annotations

from collections.abc import Mapping

from xcheck.arch.at import ArchState, AtResult, translate
from xcheck.arch.features import Features
from xcheck.arch.memory import MemoryImage, PhysMem
from xcheck.machine import ARENA_PA, RAM_BASE, AtOp, SecurityState, sysreg_defaults

RAM_SIZE = 128 << 20
AF = 1 << 10
VALID = 1
TABLE = 3
PAGE = 3
BLOCK = 1
SH_IS = 0b11 << 8
LEAF = AF | SH_IS  # AttrIndx 0, AP 0b00 (EL1 read/write), Inner Shareable


class Tables:
    """Tables for one stage: ``granule_bits`` 12/14/16, input size
    ``iasize`` bits, first lookup at ``start_level``. Tables are allocated
    from ``arena`` upwards; the root may be larger (concatenated)."""

    def __init__(self, granule_bits: int = 12, iasize: int = 48, start_level: int = 0,
                 arena: int = ARENA_PA, words: dict[int, int] | None = None) -> None:
        self.g = granule_bits
        self.stride = granule_bits - 3
        self.iasize = iasize
        self.start = start_level
        self.words: dict[int, int] = {} if words is None else words
        self._next = arena
        lsb = self._lsb(start_level)
        self.root = self.alloc(max(8 << (iasize - lsb), 1 << granule_bits))

    def _lsb(self, level: int) -> int:
        return (3 - level) * self.stride + self.g

    def alloc(self, size: int | None = None) -> int:
        size = size or (1 << self.g)
        addr = (self._next + size - 1) & ~(size - 1)
        self._next = addr + size
        return addr

    def index(self, va: int, level: int) -> int:
        lsb = self._lsb(level)
        width = self.iasize - lsb if level == self.start else self.stride
        return (va >> lsb) & ((1 << width) - 1)

    def entry(self, va: int, level: int) -> int:
        """Address of the descriptor for ``va`` at ``level`` (tables must exist)."""
        table = self.root
        for lvl in range(self.start, level):
            desc = self.words[table + 8 * self.index(va, lvl)]
            table = desc & 0x0000_FFFF_FFFF_F000 & ~((1 << self.g) - 1)
        return table + 8 * self.index(va, level)

    def map(self, va: int, oa: int, level: int = 3, flags: int = LEAF,
            table_flags: int = 0, kind: int | None = None) -> int:
        """Map ``va`` to ``oa`` with a block/page at ``level``; returns the
        leaf descriptor's address."""
        table = self.root
        for lvl in range(self.start, level):
            addr = table + 8 * self.index(va, lvl)
            desc = self.words.get(addr)
            if desc is None:
                nxt = self.alloc()
                self.words[addr] = nxt | TABLE | table_flags
                table = nxt
            else:
                table = desc & 0x0000_FFFF_FFFF_F000 & ~((1 << self.g) - 1)
        addr = table + 8 * self.index(va, level)
        leaf_kind = kind if kind is not None else (PAGE if level == 3 else BLOCK)
        self.words[addr] = oa | flags | leaf_kind
        return addr

    def set(self, addr: int, value: int) -> None:
        self.words[addr] = value

    def image(self) -> MemoryImage:
        return MemoryImage({a: v.to_bytes(8, "little") for a, v in self.words.items()},
                           RAM_BASE, RAM_SIZE)

# A CPU like QEMU's "max": every granule, PAN3, HAFDBS, VHE, NV, E0PD, 48-bit PA.
MAX = Features(pa_range_bits=48, pan=3, hafdbs=2, hpds=2, e0pd=True, nv=2, xnx=True,
               ttst=False, s2fwb=True)

TCR_4K_48 = 16 | (16 << 16) | (0b10 << 30) | (0b101 << 32)  # T0SZ=T1SZ=16, TG1=4K, IPS=48
MAIR = 0x44_04_FF  # Attr0 Normal WB, Attr1 Device-nGnRE, Attr2 Normal NC
SCTLR_ON = 0x30D0_0800 | 1 | (1 << 2)  # M, C


def regs(**over: int) -> dict[str, int]:
    r = sysreg_defaults()
    r.update(over)
    return r


def at(op: AtOp, va: int, sysregs: Mapping[str, int], mem: PhysMem, el: int = 1,
       pan: bool = False, features: Features = MAX,
       space: SecurityState = SecurityState.NONSECURE) -> AtResult:
    state = ArchState.from_sysregs(sysregs, features, el, pan).with_pstate(el, pan, space)
    return translate(op, va, state, mem)
