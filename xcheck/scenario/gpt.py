"""A scenario's ``gpt:`` section: granule protection as ranges, and the
Granule Protection Table the builder writes for it.

GPT formats and registers: Arm ARM DDI 0487, D9 (level 0 Block and Table
descriptors, level 1 Contiguous and Granules descriptors, GPI encodings)
and D24.2 GPCCR_EL3 / GPTBR_EL3 (xcheck.arch.gpc decodes the same words).
Every granule of the protected range gets the GPI of the last region that
covers it, else ``default``. A level 0 entry whose whole range has one GPI is
a Block descriptor; otherwise it points at a level 1 table, where each entry
is a Contiguous descriptor (512MB, 32MB or 2MB, the largest whose aligned
range has one GPI and fits the level 0 entry) or a Granules descriptor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from xcheck.arch.gpc import (
    CONTIG_BYTES,
    GPCCR_GPC,
    GPCCR_IRGN_SHIFT,
    GPCCR_L0GPTSZ_SHIFT,
    GPCCR_ORGN_SHIFT,
    GPCCR_PGS_SHIFT,
    GPCCR_SH_SHIFT,
    GPI_ALL,
    GPI_NO_ACCESS,
    GPI_NONSECURE,
    GPI_REALM,
    GPI_ROOT,
    GPI_SECURE,
    L0GPTSZ_BITS,
    PGS_BITS,
    PPS_BITS,
)
from xcheck.scenario.errors import Located
from xcheck.scenario.spec import BASE_REGS
from xcheck.scenario.values import as_choice, as_int, as_list, as_map, as_size, hex_
from xcheck.scenario.yamlsrc import YList, YMap

GPT_KEYS = ("pps", "pgs", "l0gptsz", "default", "regions")
REGION_KEYS = ("pa", "size", "table", "level", "va", "gpi")
GPI_VALUES = {"none": GPI_NO_ACCESS, "secure": GPI_SECURE, "nonsecure": GPI_NONSECURE,
              "root": GPI_ROOT, "realm": GPI_REALM, "all": GPI_ALL}
"""``gpi:`` names (D9 GPI encodings); a number 0..15 writes any value,
reserved ones included (a GPT walk fault)."""
PPS_VALUES = {f"{bits}bit": enc for enc, bits in PPS_BITS.items()}
PGS_VALUES = {f"{1 << (bits - 10)}K": enc for enc, bits in PGS_BITS.items()}
L0GPTSZ_VALUES = {f"{bits}bit": enc for enc, bits in L0GPTSZ_BITS.items()}
GPT_SH_OSH, GPT_WBWA = 0b10, 0b01


@dataclass(frozen=True)
class GptRegion:
    """One ``gpt.regions`` entry: a PA range, or the GPT granule holding the
    table that the walk of ``va`` in ``table`` reads at ``level``."""

    n: int
    line: int
    gpi: int
    pa: int | None = None
    size: int = 0
    table: str = ""
    level: int = 0
    va: int = 0

    @property
    def field(self) -> str:
        return f"gpt.regions[{self.n}]"


@dataclass(frozen=True)
class GptSpec:
    """``gpt:``: GPCCR_EL3's PPS, PGS and L0GPTSZ encodings and the regions."""

    line: int
    pps: int
    pgs: int
    l0gptsz: int
    default: int
    regions: tuple[GptRegion, ...]

    @property
    def pps_bits(self) -> int:
        return PPS_BITS[self.pps]

    @property
    def pgs_bits(self) -> int:
        return PGS_BITS[self.pgs]

    @property
    def l0_bits(self) -> int:
        return L0GPTSZ_BITS[self.l0gptsz]

    @property
    def gpccr(self) -> int:
        """GPCCR_EL3: GPC on, the GPT Outer Shareable Write-Back (GPCRegistersConsistent)."""
        return (GPCCR_GPC | self.pps | self.pgs << GPCCR_PGS_SHIFT
                | self.l0gptsz << GPCCR_L0GPTSZ_SHIFT | GPT_SH_OSH << GPCCR_SH_SHIFT
                | GPT_WBWA << GPCCR_IRGN_SHIFT | GPT_WBWA << GPCCR_ORGN_SHIFT)


def _gpi(value: object, field: str, line: int) -> int:
    if isinstance(value, str):
        return as_choice(value, GPI_VALUES, field, line)
    return as_int(value, field, line, 0, 15, "a GPI name (none, secure, nonsecure, root, "
                  "realm, all) or a 4-bit value")


def parse_gpt(node: object, line: int) -> GptSpec:
    """The ``gpt:`` mapping, validated (Located errors name the field)."""
    m = as_map(node, "gpt", line, GPT_KEYS)

    def choice(key: str, values: dict[str, int], default: str) -> int:
        return as_choice(m.get(key, default), values, f"gpt.{key}", m.at(key))

    pps, pgs = choice("pps", PPS_VALUES, "32bit"), choice("pgs", PGS_VALUES, "4K")
    l0 = choice("l0gptsz", L0GPTSZ_VALUES, "30bit")
    default = _gpi(m.get("default", "all"), "gpt.default", m.at("default"))
    regions = []
    entries = as_list(m["regions"] or YList(), "gpt.regions", m.at("regions")) \
        if "regions" in m else YList()
    for i, e in enumerate(entries):
        field = f"gpt.regions[{i}]"
        r = as_map(e, field, entries.at(i), REGION_KEYS)
        if "gpi" not in r:
            raise Located(r.line, f"{field}.gpi", "missing: expected the region's GPI")
        gpi = _gpi(r["gpi"], f"{field}.gpi", r.at("gpi"))
        regions.append(_region(r, i, field, gpi))
    return GptSpec(m.line, pps, pgs, l0, default, tuple(regions))


def _region(r: YMap, i: int, field: str, gpi: int) -> GptRegion:
    if "table" in r:
        extra = sorted(set(r) & {"pa", "size"})
        if extra:
            raise Located(r.at(extra[0]), f"{field}.{extra[0]}", "a table region is the GPT "
                          "granule of that table: give table, level and va, or pa and size")
        for key in ("level", "va"):
            if key not in r:
                raise Located(r.line, f"{field}.{key}", "missing: a table region names the "
                              "table the walk of va reads at level")
        table = as_choice(r["table"], {b: b for b in BASE_REGS}, f"{field}.table",
                          r.at("table"))
        return GptRegion(i, r.line, gpi, table=table,
                         level=as_int(r["level"], f"{field}.level", r.at("level"), -1, 3),
                         va=as_int(r["va"], f"{field}.va", r.at("va"), what="an address"))
    for key in ("pa", "size"):
        if key not in r:
            raise Located(r.line, f"{field}.{key}", "missing: expected {pa, size, gpi} or "
                          "{table, level, va, gpi}")
    return GptRegion(i, r.line, gpi,
                     pa=as_int(r["pa"], f"{field}.pa", r.at("pa"), what="a physical address"),
                     size=as_size(r["size"], f"{field}.size", r.at("size")))


@dataclass(frozen=True)
class GptImage:
    """The GPT as written: the level 0 table's address and every table's bytes."""

    l0: int
    tables: dict[int, bytes]


Alloc = Callable[[int], int]
"""Returns the address of ``n`` free bytes aligned to ``n`` (a power of two)."""


def build_gpt(spec: GptSpec, ranges: list[tuple[int, int, int]], alloc: Alloc) -> GptImage:
    """The GPT for (start, end, gpi) ranges, later ones winning where they
    overlap; ``alloc`` places the tables."""
    pps, pgs, l0 = spec.pps_bits, spec.pgs_bits, spec.l0_bits
    l0_entries = 1 << max(pps - l0, 0)
    l0_pa = alloc(max(8 * l0_entries, 4096))
    l0_words = []
    tables: dict[int, bytes] = {}
    for i in range(l0_entries):
        start, end = i << l0, (i + 1) << l0
        hits = [r for r in ranges if r[0] < end and start < r[1]]
        uniform = _uniform(hits, start, end, spec.default)
        if uniform is not None:
            l0_words.append(uniform << 4 | 0b0001)
            continue
        l1_bits = l0 - pgs - 4
        l1_pa = alloc(8 << l1_bits)
        l0_words.append(l1_pa | 0b0011)
        words = [0] * (1 << l1_bits)
        span = 1 << (pgs + 4)
        for j in range(1 << l1_bits):
            words[j] = _l1_word(hits, start + j * span, span, pgs, start, end, spec.default)
        tables[l1_pa] = b"".join(w.to_bytes(8, "little") for w in words)
    tables[l0_pa] = b"".join(w.to_bytes(8, "little") for w in l0_words).ljust(4096, b"\0")
    return GptImage(l0_pa, tables)


def _gpi_at(hits: list[tuple[int, int, int]], pa: int, default: int) -> int:
    gpi = default
    for s, e, g in hits:
        if s <= pa < e:
            gpi = g
    return gpi


def _uniform(hits: list[tuple[int, int, int]], start: int, end: int, default: int) -> int | None:
    """The one GPI of [start, end), or None when it has several."""
    inside = [r for r in hits if r[0] < end and start < r[1]]
    if not inside:
        return default
    # the GPI can change only at a region boundary: check each piece
    cuts = sorted({start, end} | {max(start, min(end, x)) for r in inside for x in r[:2]})
    gpis = {_gpi_at(inside, a, default) for a in cuts[:-1]}
    return gpis.pop() if len(gpis) == 1 else None


def _l1_word(hits: list[tuple[int, int, int]], start: int, span: int, pgs: int, l0_start: int,
             l0_end: int, default: int) -> int:
    for contig, size in sorted(CONTIG_BYTES.items(), key=lambda c: -c[1]):
        block = start & ~(size - 1)
        if block >= l0_start and block + size <= l0_end:
            gpi = _uniform(hits, block, block + size, default)
            if gpi is not None:
                return contig << 8 | gpi << 4 | 0b0001
    word = 0
    for k in range(16):
        word |= _gpi_at(hits, start + (k << pgs), default) << (4 * k)
    return word


def check_region(r: GptRegion, start: int, end: int, harness: tuple[int, int]) -> None:
    """A region must leave the harness's code and data to GPI ``all``."""
    if start < harness[1] and harness[0] < end and r.gpi != GPI_ALL:
        raise Located(r.line, r.field, f"{hex_(start)}..{hex_(end - 1)} covers the harness "
                      f"({hex_(harness[0])}..{hex_(harness[1] - 1)}), which runs in the "
                      "Non-secure and Root PA spaces: it must stay GPI all")
