"""The page-table builder: a scenario's mappings become translation tables
in the arena, plus the mappings the harness needs to keep running.

Descriptor encodings follow Arm ARM DDI 0487, D8.3 "Translation table
descriptor formats": table descriptors (bits[1:0] = 0b11 above the last
level; next-level table address; APTable [62:61], UXNTable/XNTable [60],
PXNTable [59], NSTable [63]), block descriptors (0b01) and page descriptors
(0b11 at level 3) with AttrIndx [4:2] / MemAttr [5:2], AP or S2AP [7:6],
SH [9:8], AF [10], nG [11], DBM [51], Contiguous [52], PXN [53], UXN/XN
[54] (stage 2: XN[1:0] at [54:53]); output addresses above 48 bits use
bits [15:12] (64KB granule) or bits [9:8] and [49:48] (TCR.DS == 1).

Placement rules (docs/scenario-format.md, "How tables are placed"):
tables are granule-sized and granule-aligned in the arena (ARENA_PA), the
concatenated stage 2 start tables contiguous and aligned to their total
size; stage 1 table addresses are IPAs written at the equal PA, so a stage 2
that covers the arena must map it identically.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from xcheck.arch.walk import block_supported
from xcheck.machine import (
    ARENA_PA,
    ARENA_SIZE,
    HARNESS_CODE_SIZE,
    HARNESS_PA,
    HARNESS_SIZE,
    RAM_BASE,
    RESERVED_LOW,
    TRANSLATION_SYSREGS,
    MachineSetup,
    Probe,
)
from xcheck.scenario.errors import Located, ScenarioError
from xcheck.scenario.geometry import Geometry, GeometryError, geometry
from xcheck.scenario.gpt import build_gpt, check_region
from xcheck.scenario.spec import BASE_REGS, S2_CONTROL, Layout, MapEntry, Override
from xcheck.scenario.values import hex_

ADDR48 = (1 << 48) - 1
BADDR_MASK = 0x0000_FFFF_FFFF_FFFE
"""TTBRn_ELx / VTTBR_EL2 BADDR, bits [47:1]."""
AF = 1 << 10
SH_INNER = 0b11 << 8
PXN = 1 << 53
UXN = 1 << 54
PXN_TABLE = 1 << 59
XN_TABLE = 1 << 60
AP_TABLE_RO = 1 << 62
HARNESS = "the harness"
NSE = 1 << 11
"""NSE in an EL3 regime leaf (FEAT_RME): with NS, the output PA space."""


@dataclass
class Leaf:
    """A block or page descriptor (or a raw word) written by ``owner``."""

    word: int
    owner: str
    line: int
    va: int
    size: int


@dataclass
class Table:
    level: int
    nbytes: int
    entries: dict[int, Leaf | Child] = field(default_factory=dict)
    pa: int = -1
    overrides: dict[int, int] = field(default_factory=dict)


@dataclass
class Child:
    """A table descriptor: the next-level table and its attribute bits."""

    table: Table
    bits: int = 0
    bits_owner: str = ""
    bits_line: int = 0


@dataclass
class Tree:
    geo: Geometry
    root: Table
    extents: list[Leaf] = field(default_factory=list)

    def tables(self) -> Iterator[Table]:
        """Every table, breadth first (the root first)."""
        todo = [self.root]
        while todo:
            t = todo.pop(0)
            yield t
            children = sorted((i, e.table) for i, e in t.entries.items() if isinstance(e, Child))
            todo.extend(table for _, table in children)

    def path(self, va: int, level: int) -> list[tuple[Table, int]]:
        """The (table, index) pairs a walk of ``va`` reads down to ``level``,
        as far as the tree goes."""
        out = []
        t = self.root
        for lv in range(self.geo.start_level, level + 1):
            idx = self.geo.index(va, lv)
            out.append((t, idx))
            e = t.entries.get(idx)
            if lv == level or not isinstance(e, Child):
                break
            t = e.table
        return out


class _Build:
    """One build: the trees, the arena allocator, the errors."""

    def __init__(self, layout: Layout, probes: Sequence[Probe]) -> None:
        self.lay = layout
        self.probes = probes
        self.regs = dict(layout.sysregs)
        self.trees: dict[str, Tree] = {}
        self.code_va: dict[str, int] = {}
        self.next_free = ARENA_PA
        self.gpt_tables: dict[int, bytes] = {}

    def fail(self, line: int, fld: str, message: str) -> ScenarioError:
        return ScenarioError(self.lay.path, line, fld, message)

    # --- trees -------------------------------------------------------------

    def tree(self, base: str, why: str = "") -> Tree:
        """The tree under ``base``, made on first use (``why``: for what)."""
        t = self.trees.get(base)
        if t is None:
            try:
                geo = geometry(self.regs, base)
            except GeometryError as err:
                line, fld = self.lay.table_line(base), f"tables.{base}"
                if base not in dict(self.lay.table_lines):
                    ctl = S2_CONTROL.get(base, f"TCR_{base[-3:]}")
                    line, fld = self.lay.reg_line(ctl), f"regs.{ctl}"
                raise self.fail(line, fld, f"{why}, but {err}" if why else str(err)) from None
            t = self.trees[base] = Tree(geo, Table(geo.start_level,
                                                   geo.table_bytes(geo.start_level)))
        return t

    def level_of(self, m: MapEntry, geo: Geometry) -> int:
        lo = geo.start_level
        if m.size is not None:
            match = [lv for lv in range(lo, 4) if geo.size(lv) == m.size]
            if not match:
                sizes = ", ".join(f"{_size_name(geo.size(lv))} (level {lv})"
                                  for lv in range(lo, 4))
                raise self.fail(m.line_of("size"), f"{m.field}.size",
                                f"{_size_name(m.size)} is not an entry size of this table "
                                f"({geo.describe()}): expected one of {sizes}")
            if m.level is not None and m.level != match[0]:
                raise self.fail(m.line_of("level"), f"{m.field}.level",
                                f"level {m.level} does not map {_size_name(m.size)}: that "
                                f"size is level {match[0]} ({geo.describe()})")
            return match[0]
        assert m.level is not None
        if not lo <= m.level <= 3:
            raise self.fail(m.line_of("level"), f"{m.field}.level",
                            f"level {m.level} is not in this table ({geo.describe()}): "
                            f"expected {lo}..3")
        return m.level

    def leaf_word(self, m: MapEntry, geo: Geometry, level: int) -> int:
        if m.raw is not None:
            return m.raw
        assert m.pa is not None
        if level < 3 and not m.force and not block_supported(
                geo.granule_bits, geo.ds, "LPA" in self.lay.requires
                or "PA52" in self.lay.requires, level):
            raise self.fail(m.line_of("size"), f"{m.field}.size",
                            f"a block at level {level} is not allowed with the "
                            f"{1 << (geo.granule_bits - 10)}KB granule (Arm ARM D8.3, "
                            "AArch64.BlockDescSupported): map smaller pieces, or add "
                            "force: true (or raw:) to build that invalid block on purpose")
        if geo.ds and m.sh is not None:
            raise self.fail(m.line_of("sh"), f"{m.field}.sh", "with DS == 1 the "
                            "shareability comes from the TCR (descriptor bits [9:8] hold "
                            "OA[51:50]): remove sh")
        oa = self.encode_oa(m.pa, geo, m.line_of("pa"), f"{m.field}.pa")
        sh = 0 if geo.ds else (SH_INNER >> 8 if m.sh is None else m.sh) << 8
        return m.bits | oa | sh | (0b11 if level == 3 else 0b01)

    def encode_oa(self, pa: int, geo: Geometry, line: int, fld: str) -> int:
        """The output address bits of a descriptor (D8.3, 52-bit formats)."""
        if pa <= ADDR48:
            return pa
        if geo.granule_bits == 16:
            return (pa & ADDR48) | (((pa >> 48) & 0xF) << 12)
        if geo.ds:
            return (pa & ADDR48) | (((pa >> 50) & 3) << 8) | (((pa >> 48) & 3) << 48)
        raise self.fail(line, fld, f"{hex_(pa)} is above 48 bits: that needs the 64KB granule "
                        "or DS == 1 (52-bit output addresses)")

    def insert(self, tree: Tree, va: int, level: int, leaf: Leaf,
               attrs: tuple[int | None, int, int, str] | None = None) -> None:
        """Put ``leaf`` at ``level`` on the walk of ``va``; ``attrs`` =
        (level or None, table bits, line, field) marks a table descriptor."""
        t = self.table_on_walk(tree, va, level, leaf, attrs)
        self.place(t, tree.geo.index(va, level), leaf, level)

    def table_on_walk(self, tree: Tree, va: int, level: int, leaf: Leaf,
                      attrs: tuple[int | None, int, int, str] | None = None) -> Table:
        """The table at ``level`` on the walk of ``va``, with the tables
        above it made as needed (for :meth:`insert`, which puts ``leaf`` in it)."""
        geo = tree.geo
        t = tree.root
        want = None
        if attrs is not None:
            want = level - 1 if attrs[0] is None else attrs[0]
            if not geo.start_level <= want < level:
                raise self.fail(attrs[2], attrs[3], f"no table descriptor at level {want} "
                                f"leads to this level {level} entry: expected a level from "
                                f"{geo.start_level} to {level - 1}")
        for lv in range(geo.start_level, level):
            idx = geo.index(va, lv)
            e = t.entries.get(idx)
            if isinstance(e, Leaf):
                raise self._clash(leaf, e)
            if e is None:
                e = t.entries[idx] = Child(Table(lv + 1, geo.table_bytes(lv + 1)))
            if attrs is not None and lv == want:
                if e.bits_owner and e.bits != attrs[1]:
                    raise self.fail(attrs[2], attrs[3], f"the level {lv} table descriptor is "
                                    f"shared with {e.bits_owner} (line {e.bits_line}), which "
                                    "gives it other table attributes")
                e.bits, e.bits_owner, e.bits_line = attrs[1], leaf.owner, leaf.line
            t = e.table
        return t

    def place(self, t: Table, idx: int, leaf: Leaf, level: int) -> None:
        """Put ``leaf`` in entry ``idx`` of ``t`` (at ``level``), which must be free."""
        old = t.entries.get(idx)
        if old is not None:
            if isinstance(old, Leaf):
                raise self._clash(leaf, old)
            raise self.fail(leaf.line, leaf.owner, f"level {level} entry for {hex_(leaf.va)} "
                            "already holds a table for smaller mappings")
        t.entries[idx] = leaf

    def _clash(self, new: Leaf, old: Leaf) -> ScenarioError:
        return self.fail(new.line, new.owner, f"{hex_(new.va)}..{hex_(new.va + new.size - 1)} "
                         f"overlaps {old.owner} (line {old.line}): "
                         f"{hex_(old.va)}..{hex_(old.va + old.size - 1)}")

    def author_tables(self) -> None:
        for base in BASE_REGS:
            if base not in dict(self.lay.table_lines):
                continue
            tree = self.tree(base)
            geo = tree.geo
            mappings = [m for m in self.lay.mappings if m.base == base]
            placed: list[tuple[MapEntry, Leaf, int]] = []
            for m in mappings:
                level = self.level_of(m, geo)
                size = geo.size(level)
                addr = "ipa" if geo.stage == 2 else "va"
                if m.va % size:
                    raise self.fail(m.line_of(addr), f"{m.field}.{addr}", f"{hex_(m.va)} is "
                                    f"not aligned to the level {level} entry size {hex_(size)}")
                if not (geo.range_start <= m.va and m.va + size <= geo.range_end):
                    raise self.fail(m.line_of(addr), f"{m.field}.{addr}", f"{hex_(m.va)} is "
                                    f"outside the range of {base} ({hex_(geo.range_start)}.."
                                    f"{hex_(geo.range_end - 1)}; {geo.describe()})")
                leaf = Leaf(0, m.field, m.line, m.va, size)
                placed.append((m, leaf, level))
            ordered = sorted(placed, key=lambda p: (p[1].va, p[0].n))
            for (_, a, _), (_, b, _) in itertools.pairwise(ordered):
                if b.va < a.va + a.size:
                    first, second = sorted((a, b), key=lambda x: x.line)
                    raise self._clash(second, first)
            for m, leaf, level in placed:
                leaf.word = self.leaf_word(m, geo, level)
                attrs = None
                if m.table is not None:
                    attrs = (m.table.level, m.table.bits, m.table.line, f"{m.field}.table")
                self.insert(tree, m.va, level, leaf, attrs)
                tree.extents.append(leaf)

    # --- the harness -------------------------------------------------------

    def harness_stage1(self, base: str, regime: str, why: str, mair: int) -> None:
        """Map the harness (code read-only executable, data read/write) in
        last-level pages under ``base``; record its VA in code_va."""
        tree = self.tree(base, why)
        geo = tree.geo
        if geo.epd:
            raise self.fail(self.lay.reg_line(f"TCR_{base[-3:]}"), f"regs.TCR_{base[-3:]}",
                            f"{why}, but TCR_{base[-3:]}.EPD0 == 1 disables TTBR0 walks"
                            + _el2_hint(regime))
        va = self.harness_slot(tree, regime, why)
        if regime == "EL3" and va != HARNESS_PA:
            raise self.fail(self.lay.table_line(base), f"tables.{base}",
                            f"{why}, at VA = PA, but {hex_(HARNESS_PA)}.."
                            f"{hex_(HARNESS_PA + HARNESS_SIZE - 1)} is taken or not allowed "
                            "there: leave that range free")
        attr = _normal_index(mair) << 2
        if geo.one_range:
            code = AF | attr | (0b11 << 6)  # AP[2:1] = RO; AP[1] is RES1; XN = 0
            data = AF | attr | (0b01 << 6) | UXN
        else:
            code = AF | attr | (0b10 << 6) | UXN  # RO at EL1/EL2, no EL0, PXN = 0
            data = AF | attr | PXN | UXN
        if regime == "EL3" and self.lay.gpt is not None:
            # with granule protection (FEAT_RME) EL3 is the Root state, which
            # executes only from the Root PA space: {NSE, NS} = {1, 0}
            code, data = code | NSE, data | NSE
        if not geo.ds:
            code |= SH_INNER
            data |= SH_INNER
        self.map_pages(tree, va, HARNESS_PA, HARNESS_CODE_SIZE, code)
        self.map_pages(tree, va + HARNESS_CODE_SIZE, HARNESS_PA + HARNESS_CODE_SIZE,
                       HARNESS_SIZE - HARNESS_CODE_SIZE, data)
        self.code_va[regime] = va

    def map_pages(self, tree: Tree, va: int, pa: int, size: int, bits: int) -> None:
        """Pages for [va, va + size) at pa, in order: the walk down to each
        last-level table is taken once, for its first page."""
        geo = tree.geo
        g, span = geo.granule, geo.size(2)
        off = 0
        while off < size:
            page = Leaf(bits | (pa + off) | 0b11, HARNESS, 0, va + off, g)
            t = self.table_on_walk(tree, va + off, 3, page)
            first = geo.index(va + off, 3)
            end = min(size, off + span - (va + off) % span)
            for i, o in enumerate(range(off, end, g)):
                if i:
                    page = Leaf(bits | (pa + o) | 0b11, HARNESS, 0, va + o, g)
                self.place(t, first + i, page, 3)
            off = end

    def harness_slot(self, tree: Tree, regime: str, why: str) -> int:
        """HARNESS_PA when free in the TTBR0 range, else the highest free
        2 MiB-aligned slot whose table descriptors allow the harness."""
        geo = tree.geo
        end = geo.range_end
        # XNTable (EL2) or PXNTable (two ranges) forbid the code; APTable[1] the data.
        bad = (XN_TABLE if geo.one_range else PXN_TABLE) | AP_TABLE_RO

        def busy(va: int) -> int | None:
            """The start of an author mapping in [va, va + 2 MiB), or None."""
            hits = [e.va for e in tree.extents if e.va < va + HARNESS_SIZE and va < e.va + e.size]
            return min(hits) if hits else None

        def allowed(va: int) -> bool:
            return all(not (isinstance(c := t.entries.get(i), Child) and c.bits & bad)
                       for t, i in tree.path(va, 3))

        if end >= HARNESS_PA + HARNESS_SIZE and busy(HARNESS_PA) is None and allowed(HARNESS_PA):
            return HARNESS_PA
        va = end - HARNESS_SIZE
        for _ in range(4096):
            if va < 0:
                break
            start = busy(va)
            if start is not None:
                va = (start - HARNESS_SIZE) & ~(HARNESS_SIZE - 1) if start >= HARNESS_SIZE else -1
                continue
            if allowed(va):
                return va
            va -= HARNESS_SIZE
        raise self.fail(self.lay.table_line(tree.geo.base), f"tables.{tree.geo.base}",
                        f"{why}, but no free 2 MiB slot of the TTBR0 range is left for it: "
                        "free some of the range" + _el2_hint(regime))

    def harness(self) -> None:
        hcr, regs = self.regs["HCR_EL2"], self.regs
        e2h, tge, dc = (bool(hcr >> b & 1) for b in (34, 27, 12))
        if regs["SCTLR_EL2"] & 1:
            regime = "EL20" if e2h else "EL2"
            self.harness_stage1("TTBR0_EL2", regime, "SCTLR_EL2.M == 1 and the harness runs "
                                "at EL2, so it must be mapped under TTBR0_EL2", regs["MAIR_EL2"])
        if regs["SCTLR_EL3"] & 1:
            self.harness_stage1("TTBR0_EL3", "EL3", "SCTLR_EL3.M == 1 and on a CPU with EL3 "
                                "the harness starts and ends there, so it must be mapped under "
                                "TTBR0_EL3", regs["MAIR_EL3"])
        el1 = any(p.el == 1 for p in self.probes)
        if el1 and not tge and not dc and regs["SCTLR_EL1"] & 1:
            self.harness_stage1("TTBR0_EL1", "EL10", "SCTLR_EL1.M == 1 and probes run at EL1, "
                                "so the harness must be mapped under TTBR0_EL1",
                                regs["MAIR_EL1"])

    def harness_stage2(self) -> None:
        """With stage 2 on for EL1&0 and probes at EL1: the harness IPA range
        and the stage 1 table pages of the harness walk, mapped identically
        (unless an author mapping covers them: the author's wins)."""
        hcr = self.regs["HCR_EL2"]
        e2h, tge, vm, dc = (bool(hcr >> b & 1) for b in (34, 27, 0, 12))
        if not (vm or dc) or (e2h and tge) or not any(p.el == 1 for p in self.probes):
            return
        why = ("stage 2 is on (HCR_EL2.VM or DC) and probes run at EL1, so the harness "
               "must be mapped in stage 2")
        tree = self.tree("VTTBR_EL2", why)
        geo = tree.geo
        ranges = [(HARNESS_PA, HARNESS_SIZE)]
        s1 = self.trees.get("TTBR0_EL1")
        if "EL10" in self.code_va and s1 is not None:
            ranges += [(t.pa, t.nbytes) for t, _ in s1.path(self.code_va["EL10"], 3)]
        g = geo.granule
        if geo.range_end < HARNESS_PA + HARNESS_SIZE:
            raise self.fail(self.lay.table_line("VTTBR_EL2"), "tables.VTTBR_EL2",
                            f"{why}, but its IPA {hex_(HARNESS_PA)} is outside the "
                            f"{geo.iasize}-bit IPA space: run the probes at EL2 instead")
        done: set[int] = set()
        for start, size in ranges:
            for page in range(start & ~(g - 1), start + size, g):
                if page in done or any(e.va < page + g and page < e.va + e.size
                                       for e in tree.extents):
                    continue
                done.add(page)
                bits = AF | (0b11 << 6) | (0xF << 2) | (0 if geo.ds else SH_INNER)
                self.insert(tree, page, 3, Leaf(bits | page | 0b11, HARNESS, 0, page, g))

    # --- placing and writing -------------------------------------------------

    def reserved(self) -> list[tuple[int, int]]:
        return [(b.addr, b.end) for b in self.lay.memory]

    def allocate(self, bases: Sequence[str]) -> None:
        taken = self.reserved()
        for base in bases:
            tree = self.trees.get(base)
            if tree is None:
                continue
            for t in tree.tables():
                if t.pa >= 0:
                    continue
                pa = _align(self.next_free, t.nbytes)
                while True:
                    clash = [e for s, e in taken if s < pa + t.nbytes and pa < e]
                    if not clash:
                        break
                    pa = _align(max(clash), t.nbytes)
                if pa + t.nbytes > ARENA_PA + ARENA_SIZE:
                    raise self.fail(self.lay.table_line(base), f"tables.{base}",
                                    f"the tables do not fit in the {ARENA_SIZE >> 20} MiB "
                                    f"arena at {hex_(ARENA_PA)}: map larger blocks or fewer "
                                    "pages")
                t.pa = pa
                self.next_free = pa + t.nbytes

    def gpt(self) -> None:
        """``gpt:``: the GPT in the arena after the translation tables, and
        GPCCR_EL3/GPTBR_EL3 (xcheck.scenario.gpt)."""
        spec = self.lay.gpt
        if spec is None:
            return
        ranges = []
        for r in spec.regions:
            if r.table:
                start = self.table_pa(r.table, r.level, r.va, r.line, r.field)
                start &= ~((1 << spec.pgs_bits) - 1)
                end = start + (1 << spec.pgs_bits)
            else:
                assert r.pa is not None
                start, end = r.pa, r.pa + r.size
            try:
                check_region(r, start, end, (HARNESS_PA, HARNESS_PA + HARNESS_SIZE))
            except Located as err:
                raise err.at(self.lay.path) from None
            ranges.append((start, end, r.gpi))
        image = build_gpt(spec, ranges, lambda n: self.alloc_bytes(n, spec.line))
        self.gpt_tables = image.tables
        self.regs["GPTBR_EL3"] = image.l0 >> 12
        self.regs["GPCCR_EL3"] = spec.gpccr

    def table_pa(self, base: str, level: int, va: int, line: int, fld: str) -> int:
        """The address of the table the walk of ``va`` under ``base`` reads at ``level``."""
        tree = self.trees.get(base)
        path = tree.path(va, level) if tree is not None else []
        if not path or path[-1][0].level != level:
            raise self.fail(line, fld, f"the walk of {hex_(va)} under {base} does not reach "
                            f"a level {level} table")
        return path[-1][0].pa

    def alloc_bytes(self, n: int, line: int) -> int:
        """``n`` free arena bytes aligned to ``n``, after the tables."""
        taken = self.reserved()
        pa = _align(self.next_free, n)
        while clash := [e for s, e in taken if s < pa + n and pa < e]:
            pa = _align(max(clash), n)
        if pa + n > ARENA_PA + ARENA_SIZE:
            raise self.fail(line, "gpt", f"the GPT does not fit in the {ARENA_SIZE >> 20} MiB "
                            f"arena at {hex_(ARENA_PA)}: use a larger pgs")
        self.next_free = pa + n
        return pa

    def check_memory(self) -> None:
        ram_end = RAM_BASE + self.lay.ram_size
        keep_out = [(RAM_BASE, RAM_BASE + RESERVED_LOW, "the device tree"),
                    (HARNESS_PA, HARNESS_PA + HARNESS_SIZE, "the harness")]
        blocks = sorted(self.lay.memory, key=lambda b: b.addr)
        for b in self.lay.memory:
            fld = f"memory[{b.n}]"
            if b.addr < RAM_BASE or b.end > ram_end:
                raise self.fail(b.line, f"{fld}.addr", f"{hex_(b.addr)}..{hex_(b.end - 1)} is "
                                f"outside RAM ({hex_(RAM_BASE)}..{hex_(ram_end - 1)})")
            for lo, hi, what in keep_out:
                if b.addr < hi and lo < b.end:
                    raise self.fail(b.line, f"{fld}.addr", f"{hex_(b.addr)}..{hex_(b.end - 1)}"
                                    f" overlaps {what} ({hex_(lo)}..{hex_(hi - 1)}): expected"
                                    f" an address from {hex_(ARENA_PA)}")
        for a, b in itertools.pairwise(blocks):
            if b.addr < a.end:
                first, second = sorted((a, b), key=lambda x: x.line)
                raise self.fail(second.line, f"memory[{second.n}].addr", f"overlaps memory["
                                f"{first.n}] (line {first.line})")

    def apply_overrides(self) -> None:
        for o in self.lay.overrides:
            self.override(o)

    def override(self, o: Override) -> None:
        fld = f"descriptors[{o.n}]"
        tree = self.trees.get(o.base)
        if tree is None:
            raise self.fail(o.line, f"{fld}.table", f"no tables were built under {o.base}: "
                            f"expected one of {', '.join(self.trees) or '(none)'}")
        geo = tree.geo
        if not geo.start_level <= o.level <= 3:
            raise self.fail(o.line, f"{fld}.level", f"{o.base} has levels "
                            f"{geo.start_level}..3 ({geo.describe()})")
        if o.va is not None:
            path = tree.path(o.va, o.level)
            table, index = path[-1]
            if table.level != o.level:
                raise self.fail(o.line, f"{fld}.va", f"the walk of {hex_(o.va)} ends at level "
                                f"{table.level}: no level {o.level} table to write into")
        else:
            assert o.index is not None
            at_level = [t for t in tree.tables() if t.level == o.level]
            if len(at_level) != 1:
                raise self.fail(o.line, f"{fld}.index", f"{len(at_level)} tables at level "
                                f"{o.level}: give va: to choose the one a walk reads")
            table, index = at_level[0], o.index
            if index >= table.nbytes // 8:
                raise self.fail(o.line, f"{fld}.index", f"index {index} is beyond the "
                                f"{table.nbytes // 8} entries of the level {o.level} table")
        table.overrides[index] = o.value

    def image(self) -> dict[int, bytes]:
        mem: dict[int, bytes] = {}
        for tree in self.trees.values():
            put = struct.Struct(">Q" if tree.geo.ee else "<Q").pack_into
            for t in tree.tables():
                buf = bytearray(t.nbytes)
                for idx, e in t.entries.items():
                    put(buf, idx * 8, e.word if isinstance(e, Leaf)
                        else e.bits | (e.table.pa & ADDR48) | 0b11)
                for idx, word in t.overrides.items():
                    put(buf, idx * 8, word)
                mem[t.pa] = bytes(buf)
        for b in self.lay.memory:
            mem[b.addr] = b"".join(w.to_bytes(8, "little") for w in b.words)
        mem.update(self.gpt_tables)
        return mem

    def run(self) -> MachineSetup:
        self.check_memory()
        self.author_tables()
        self.harness()
        self.allocate(BASE_REGS[:4])
        self.harness_stage2()
        self.allocate(BASE_REGS)
        self.apply_overrides()
        self.gpt()
        for base, tree in self.trees.items():
            self.regs[base] = (self.regs[base] & ~BADDR_MASK) | tree.root.pa
        sysregs = {name: self.regs[name] for name in TRANSLATION_SYSREGS}
        return MachineSetup(sysregs=sysregs, memory=self.image(), probes=tuple(self.probes),
                            code_va=dict(self.code_va))


def _align(n: int, a: int) -> int:
    return (n + a - 1) & ~(a - 1)


def _size_name(n: int) -> str:
    for shift, unit in ((40, "T"), (30, "G"), (20, "M"), (10, "K")):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)


def _el2_hint(regime: str) -> str:
    return ": run the probes at EL2 instead" if regime == "EL10" else ""


def _normal_index(mair: int) -> int:
    """A MAIR index holding Normal Write-Back memory (0xff first), else any
    Normal memory, else 0 (D24.2 MAIR_ELx.Attr<n>)."""
    attrs = [(mair >> (8 * i)) & 0xFF for i in range(8)]

    def wb(nibble: int) -> bool:
        return nibble >> 2 == 0b11 or (nibble >> 2 == 0b01 and nibble & 3 != 0)

    for test in (lambda a: a == 0xFF, lambda a: wb(a >> 4) and wb(a & 0xF),
                 lambda a: a >> 4 != 0 and a & 0xF != 0):
        for i, a in enumerate(attrs):
            if test(a):
                return i
    return 0


def build_setup(layout: Layout, probes: Sequence[Probe]) -> MachineSetup:
    """Lay out the tables of ``layout`` for ``probes`` (ScenarioError when
    they cannot be placed)."""
    return _Build(layout, probes).run()

