"""The shape of a translation table tree, derived from the registers.

Which granule, input address size, start level (and, for stage 2, how many
concatenated start tables) the walk of one base register uses: Arm ARM DDI
0487, D8.2 (granule sizes, TnSZ, AArch64.S1StartLevel, VTCR_EL2.SL0 with
AArch64.S2StartLevel, S2InconsistentSL, D8.2.7 concatenation) and D8.3
(descriptor formats). The builder only needs the tree's shape; the model
reads the same registers in xcheck.arch.walkparams.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

from xcheck.arch.regs import SCTLR, TCR, TCR_EL2, VTCR, bit, field
from xcheck.arch.walkparams import FINAL_LEVEL, TG0_BITS, TG1_BITS, start_level
from xcheck.scenario.spec import S2_CONTROL

_S2_SL0_4K = {0b000: 2, 0b001: 1, 0b010: 0, 0b011: 3, 0b100: -1}
_S2_SL0_16K_64K = {0b00: 3, 0b01: 2, 0b10: 1, 0b11: 0}
"""VTCR_EL2.{SL2,SL0} to start level (D24.2 VTCR_EL2.SL0; AArch64.S2StartLevel)."""


class GeometryError(ValueError):
    """The registers do not describe a tree the builder can lay out."""


@dataclass(frozen=True)
class Geometry:
    """One base register's translation tables."""

    base: str
    stage: int
    regime: str
    """"EL10", "EL2", "EL20" (stage 1) or "S2"."""
    granule_bits: int
    iasize: int
    start_level: int
    upper: bool
    """The TTBR1 (upper) VA range of a two-range regime."""
    ds: bool
    """TCR_ELx.DS / VTCR_EL2.DS: 52-bit descriptor format for 4KB/16KB."""
    ee: bool
    """SCTLR_ELx.EE: table walks read big-endian descriptors."""
    epd: bool
    """TCR_ELx.EPDn: walks of this range are disabled."""
    hpd: bool
    """TCR_ELx.HPDn: hierarchical permissions are disabled."""

    @property
    def one_range(self) -> bool:
        return self.regime in ("EL2", "EL3")

    @property
    def stride(self) -> int:
        return self.granule_bits - 3

    @property
    def granule(self) -> int:
        return 1 << self.granule_bits

    def lsb(self, level: int) -> int:
        """The lowest input address bit a level resolves."""
        return (FINAL_LEVEL - level) * self.stride + self.granule_bits

    def size(self, level: int) -> int:
        """The bytes one entry at ``level`` maps."""
        return 1 << self.lsb(level)

    def entries(self, level: int) -> int:
        """Entries in one table at ``level`` (the start level's tables, all
        concatenated tables together)."""
        if level == self.start_level:
            return 1 << (self.iasize - self.lsb(level))
        return 1 << self.stride

    def table_bytes(self, level: int) -> int:
        """Bytes allocated for a table at ``level``: a granule, or for
        concatenated stage 2 start tables all of them (D8.2.7)."""
        return max(self.granule, self.entries(level) * 8)

    def index(self, va: int, level: int) -> int:
        if level < self.start_level:
            return (va >> self.lsb(level)) & (self.entries(level) - 1)
        shift, mask = self._fields[level - self.start_level]
        return (va >> shift) & mask

    @cached_property
    def _fields(self) -> tuple[tuple[int, int], ...]:
        """Per level from the start level: where its index lies in an input
        address (:meth:`lsb`, :meth:`entries`), worked out once."""
        return tuple((self.lsb(lv), self.entries(lv) - 1)
                     for lv in range(self.start_level, FINAL_LEVEL + 1))

    @property
    def range_start(self) -> int:
        return ((1 << 64) - (1 << self.iasize)) if self.upper else 0

    @property
    def range_end(self) -> int:
        return (1 << 64) if self.upper else (1 << self.iasize)

    def describe(self) -> str:
        return (f"{1 << (self.granule_bits - 10)}KB granule, {self.iasize}-bit "
                f"{'IPA' if self.stage == 2 else 'VA'} range, start level {self.start_level}")


def _txsz_range(txsz: int, g: int, ds: bool, reg: str, name: str) -> None:
    lo = 12 if g == 16 or ds else 16
    hi = 47 if g == 16 else 48
    if not lo <= txsz <= hi:
        raise GeometryError(f"{reg}.{name} = {txsz} is out of range for a "
                            f"{1 << (g - 10)}KB granule: expected {lo}..{hi} "
                            "(16..39 without FEAT_LVA/LPA2/TTST)")


def _granule(tg: int, encoding: Mapping[int, int], reg: str, name: str) -> int:
    g = encoding.get(tg)
    if g is None:
        raise GeometryError(f"{reg}.{name} = 0b{tg:02b} is a reserved granule encoding: "
                            "expected 4K, 16K or 64K")
    return g


def stage1(sysregs: Mapping[str, int], base: str) -> Geometry:
    """TTBR0_EL1, TTBR1_EL1, TTBR0_EL2, TTBR1_EL2 or TTBR0_EL3 (HCR_EL2.E2H
    decides the layout of TCR_EL2 and whether TTBR1_EL2 is used; TCR_EL3 has
    TCR_EL2's E2H == 0 layout)."""
    e2h = bit(sysregs["HCR_EL2"], 34)
    el = base[-3:]
    upper = base.startswith("TTBR1")
    tcr_name = f"TCR_{el}"
    tcr = sysregs[tcr_name]
    ee = bit(sysregs[f"SCTLR_{el}"], SCTLR.EE)
    if el == "EL3" or (el == "EL2" and not e2h):
        if upper:
            raise GeometryError("TTBR1_EL2 is used only when HCR_EL2.E2H == 1 (the EL2&0 "
                                "regime): set HCR_EL2.E2H or remove these tables")
        g = _granule(field(tcr, TCR_EL2.TG0), TG0_BITS, tcr_name, "TG0")
        ds = g != 16 and bit(tcr, TCR_EL2.DS[0])
        txsz = field(tcr, TCR_EL2.T0SZ)
        _txsz_range(txsz, g, ds, tcr_name, "T0SZ")
        return Geometry(base, 1, el, g, 64 - txsz, start_level(64 - txsz, g), False, ds,
                        ee, False, bit(tcr, TCR_EL2.HPD[0]))
    regime = "EL20" if el == "EL2" else "EL10"
    tg_name, tsz_name = ("TG1", "T1SZ") if upper else ("TG0", "T0SZ")
    g = _granule(field(tcr, TCR.TG1 if upper else TCR.TG0), TG1_BITS if upper else TG0_BITS,
                 tcr_name, tg_name)
    ds = g != 16 and bit(tcr, TCR.DS[0])
    txsz = field(tcr, TCR.T1SZ if upper else TCR.T0SZ)
    _txsz_range(txsz, g, ds, tcr_name, tsz_name)
    epd = bit(tcr, (TCR.EPD1 if upper else TCR.EPD0)[0])
    hpd = bit(tcr, (TCR.HPD1 if upper else TCR.HPD0)[0])
    return Geometry(base, 1, regime, g, 64 - txsz, start_level(64 - txsz, g), upper, ds, ee,
                    epd, hpd)


def stage2(sysregs: Mapping[str, int], base: str = "VTTBR_EL2") -> Geometry:
    """VTTBR_EL2 from VTCR_EL2: TG0, T0SZ, SL0 (and SL2 with DS, 4KB); VSTTBR_EL2
    the same from VSTCR_EL2, with DS from VTCR_EL2 (AArch64.SS2TTWParams)."""
    ctl = S2_CONTROL[base]
    sized, vtcr = sysregs[ctl], sysregs["VTCR_EL2"]
    g = _granule(field(sized, VTCR.TG0), TG0_BITS, ctl, "TG0")
    ds = g != 16 and bit(vtcr, VTCR.DS[0])
    txsz = field(sized, VTCR.T0SZ)
    _txsz_range(txsz, g, ds, ctl, "T0SZ")
    iasize = 64 - txsz
    sl0 = field(sized, VTCR.SL0)
    if g == 12:
        sl2 = int(ds and bit(sized, VTCR.SL2[0]))
        level = _S2_SL0_4K.get((sl2 << 2) | sl0)
    else:
        level = _S2_SL0_16K_64K[sl0]
    stride = g - 3
    if level is None:
        raise GeometryError(f"{ctl}.SL0 = 0b{sl0:02b} is reserved for the 4KB granule")
    sl_min = (FINAL_LEVEL - level) * stride + g + 1
    sl_max = sl_min + stride - 1 + 4
    if not sl_min <= iasize <= sl_max:
        raise GeometryError(
            f"{ctl}.SL0 = 0b{sl0:02b} (start level {level}) does not fit a {iasize}-bit "
            f"IPA space (T0SZ = {txsz}): it needs T0SZ {64 - sl_max}..{64 - sl_min} "
            "(AArch64.S2InconsistentSL; up to 16 concatenated start tables)")
    ee = bit(sysregs["SCTLR_EL2"], SCTLR.EE)
    return Geometry(base, 2, "S2", g, iasize, level, False, ds, ee, False, False)


def geometry(sysregs: Mapping[str, int], base: str) -> Geometry:
    return stage2(sysregs, base) if base in S2_CONTROL else stage1(sysregs, base)
