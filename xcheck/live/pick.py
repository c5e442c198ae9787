"""Choose the VAs a live sweep checks.

First the addresses where translation changes: the first and last page of
every range (tables.ranges) and of every block, the first, middle and last page of every hole,
the first VA past each end of a VA range, and, for a few mapped pages, the
same VA with a tag in bits [63:56] (TBI decides whether it translates:
AArch64.AddrTop) and with one bit of [55:VA size] flipped (a non-canonical
address: Translation fault, level 0, AArch64.VAIsOutOfRange). Then pages
chosen at random (seeded) among all leaves, at a random 8-byte offset,
until the budget is reached. If the structural picks alone exceed the
budget, a seeded sample of them is kept.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from xcheck.arch.walkparams import FINAL_LEVEL
from xcheck.live.tables import TableMap, holes, ranges

MASK64 = (1 << 64) - 1
TAGS = (0x5A, 0xF0)
SPECIALS_PER_MAP = 8
"""How many mapped pages of each VA range get tagged and non-canonical twins."""


@dataclass(frozen=True)
class Pick:
    """One VA to check and why it was chosen (a report group)."""

    va: int
    why: str
    where: str
    """The VA range it belongs to (TTBR0 or TTBR1)."""


def _structural(tmap: TableMap) -> tuple[list[Pick], list[Pick]]:
    """(edges: range and hole boundaries, specials: out of range, tagged,
    non-canonical) of one VA range."""
    p = tmap.params
    page = 1 << p.granule_bits
    where = tmap.name
    edges: list[Pick] = []
    rs = ranges(tmap.leaves)
    for r in rs:
        kind = "block" if r.level < FINAL_LEVEL else "pages"
        edges.append(Pick(r.va, f"{kind}-first", where))
        if r.size > page:
            edges.append(Pick(r.end - page, f"{kind}-last", where))
    for lf in tmap.leaves:
        if lf.level < FINAL_LEVEL:
            edges += [Pick(lf.va, "block-first", where),
                      Pick(lf.va + lf.size - page, "block-last", where)]
    for start, end in holes(tmap, rs):
        edges.append(Pick(start, "hole-first", where))
        if end - start > page:
            edges.append(Pick(end - page, "hole-last", where))
        if end - start > 2 * page:
            edges.append(Pick((start + (end - start) // 2) & ~(page - 1), "hole-middle", where))
    specials: list[Pick] = []
    if p.varange == "upper":
        specials.append(Pick(tmap.va_start - page, "out-of-range", where))
    else:
        specials.append(Pick(tmap.va_end, "out-of-range", where))
    step = max(1, len(rs) // SPECIALS_PER_MAP)
    for r in rs[::step][:SPECIALS_PER_MAP]:
        for tag in TAGS:
            specials.append(Pick((r.va & ~(0xFF << 56)) | tag << 56, "tagged", where))
        for flip in sorted({p.iasize, 54}):
            if flip < 55:
                specials.append(Pick(r.va ^ (1 << flip), "non-canonical", where))
    return edges, specials


def pick_vas(maps: list[TableMap], budget: int, seed: int = 0) -> list[Pick]:
    """Up to ``budget`` distinct VAs over ``maps`` (see the module doc)."""
    rng = random.Random(seed)
    edges: list[Pick] = []
    specials: list[Pick] = []
    for tmap in maps:
        e, s = _structural(tmap)
        edges += e
        specials += s
    chosen: dict[int, Pick] = {}
    for pk in specials[:budget]:
        chosen.setdefault(pk.va & MASK64, pk)
    room = budget - len(chosen)
    if len(edges) > room:
        edges = rng.sample(edges, max(room, 0))
    for pk in edges:
        chosen.setdefault(pk.va & MASK64, pk)
    leaves = [(tmap, lf) for tmap in maps for lf in tmap.leaves]
    tries = 0
    while leaves and len(chosen) < budget and tries < 4 * budget:
        tries += 1
        tmap, lf = leaves[rng.randrange(len(leaves))]
        page = 1 << tmap.params.granule_bits
        va = lf.va + rng.randrange(lf.size // page) * page + rng.randrange(page // 8) * 8
        chosen.setdefault(va, Pick(va, "sample", tmap.name))
    return sorted(chosen.values(), key=lambda pk: pk.va)
