"""Granule protection as the fuzzer draws it (FEAT_RME): GPCCR_EL3's PPS and
PGS, the CPU's L0GPTSZ, and ``gpt:`` regions of every GPI over the tables a
case's walks read, over its outputs and over its hand-made tables.

Rules: Arm ARM DDI 0487, D9 (the GPT formats, GPI encodings, reserved ones
a GPT walk fault), D24.2 GPCCR_EL3 (PPS, PGS, L0GPTSZ read-only);
AArch64.FetchDescriptor (a table read is granule-protection checked, an AT
reports the fault in PAR_EL1), AArch64.AT (no check of the output address).

The harness's code and data keep GPI all (the builder requires it), and no
PA region touches the table arena, where the harness's own tables are; a
table region on a table the harness's walk shares is dropped after the case
is built (xcheck.fuzz.case), since only the built case knows those tables.
"""

from __future__ import annotations

import random
from typing import Any

from xcheck.arch.features import Features
from xcheck.arch.gpc import PPS_BITS
from xcheck.fuzz.shape import Shape, size_bytes
from xcheck.machine import ARENA_PA, ARENA_SIZE, RAM_BASE

GPIS: tuple[str | int, ...] = ("none", "secure", "nonsecure", "root", "realm", "all",
                               0b0001, 0b0111, 0b1100)
"""Every GPI name, and a few reserved encodings (a GPT walk fault, D9)."""
GPI_WEIGHTS = (3, 3, 3, 3, 3, 2, 0.4, 0.4, 0.4)
PPS_MAX = 44
"""Above it the level 0 GPT (2**(PPS - L0GPTSZ) entries) outgrows the arena."""
KEEP_OFF = (RAM_BASE, ARENA_PA + ARENA_SIZE)
"""The harness and the table arena: no PA region here."""



def _level(shape: Shape, m: dict[str, Any]) -> int:
    """The level of a mapping's entry (``level`` of a raw word, else by size)."""
    if "level" in m:
        level: int = m["level"]
        return level
    size = size_bytes(m["size"])
    return next(lv for lv in shape.levels() if shape.size(lv) == size)


def table_regions(r: random.Random, tables: dict[str, list[dict[str, Any]]],
                  shapes: dict[str, Shape], n: int) -> list[dict[str, Any]]:
    """Up to ``n`` regions naming the table a mapping's walk reads at a level
    between the start level and the mapping's (mostly below the start level,
    whose table the harness's walk shares)."""
    cands = [(base, m) for base, maps in tables.items() for m in maps]
    out: list[dict[str, Any]] = []
    for base, m in r.sample(cands, min(n, len(cands))):
        shape = shapes[base]
        last = _level(shape, m)
        levels = list(range(shape.start_level, last + 1))
        level = r.choices(levels, [0.3 if lv == shape.start_level else 1.0 for lv in levels])[0]
        out.append({"table": base, "level": level, "va": m["ipa" if shape.stage == 2 else "va"],
                    "gpi": r.choices(GPIS, GPI_WEIGHTS)[0]})
    return out


def pa_regions(r: random.Random, tables: dict[str, list[dict[str, Any]]],
               memory: list[dict[str, Any]], granule: int, n: int) -> list[dict[str, Any]]:
    """Up to ``n`` PA regions over outputs (which an AT does not check) and
    hand-made tables (which its walks read), off the harness and the arena."""
    starts = [m["pa"] for maps in tables.values() for m in maps if "pa" in m]
    starts += [b["addr"] for b in memory]
    out: list[dict[str, Any]] = []
    for pa in r.sample(starts, min(n, len(starts))):
        lo = pa & ~(granule - 1)
        size = granule * r.choice((1, 1, 4, 16))
        if lo < KEEP_OFF[1] and KEEP_OFF[0] < lo + size:
            continue
        out.append({"pa": lo, "size": size, "gpi": r.choices(GPIS, GPI_WEIGHTS)[0]})
    return out


def gpt(r: random.Random, tables: dict[str, list[dict[str, Any]]], shapes: dict[str, Shape],
        memory: list[dict[str, Any]], f: Features, l0gptsz: int) -> dict[str, Any]:
    """A ``gpt:`` section: PPS up to the CPU's PA size, a PGS of a granule the
    CPU implements, its L0GPTSZ, default GPI all, and regions of every GPI."""
    pps = r.choice([b for b in PPS_BITS.values() if b <= min(f.pa_range_bits, PPS_MAX)])
    pgs = r.choice([g for g, ok in ((12, f.tgran4), (14, f.tgran16), (16, f.tgran64)) if ok]
                   or [12])
    regions = table_regions(r, tables, shapes, r.randint(0, 4))
    regions += pa_regions(r, tables, memory, 1 << pgs, r.randint(0, 3))
    r.shuffle(regions)
    return {"pps": f"{pps}bit", "pgs": f"{1 << (pgs - 10)}K", "l0gptsz": f"{l0gptsz}bit",
            "regions": regions}
