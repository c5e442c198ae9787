"""Enumerating a kernel's tables and choosing VAs (no QEMU)."""

from __future__ import annotations

from collections import Counter

from livetables import EMPTY, L0, L2, L3, VA_L1, FakeRam, state, words

from xcheck.arch.at import translate
from xcheck.live.pick import pick_vas
from xcheck.live.sweep import par_pa
from xcheck.live.tables import holes, ranges, walk_tables
from xcheck.machine import AtOp

MB2, GB = 2 << 20, 1 << 30


def _maps() -> list:
    st = state()
    rp = st.arch_state().regime(st.regime)
    assert rp.upper is not None
    mem = FakeRam(words())
    return [walk_tables(rp.lower, mem), walk_tables(rp.upper, mem)]


def test_leaves_are_every_block_and_page_in_va_order() -> None:
    low, high = _maps()
    assert low.leaves == [] and low.tables == {EMPTY}
    got = [(lf.va - VA_L1, lf.size, lf.level, lf.oa) for lf in high.leaves]
    assert got == [
        (0, MB2, 2, 0x4020_0000),
        (MB2, MB2, 2, 0x4040_0000),
        *((3 * MB2 + 0x1000 * i, 0x1000, 3, 0x4300_0000 + 0x1000 * i) for i in range(4)),
        (3 * MB2 + 0x5000, 0x1000, 3, 0x4300_5000),
        (3 * MB2 + 0x7000, 0x1000, 3, 0x0900_0000),
        (GB, GB, 1, 0x8000_0000),
    ]
    assert high.tables == {L0, L0 + 0x1000, L2, L3}
    assert high.leaves[0].desc_pa == L2


def test_the_model_walks_each_leaf_to_its_output_address() -> None:
    st = state()
    arch = st.arch_state()
    mem = FakeRam(words())
    for lf in _maps()[1].leaves:
        for off in (0, lf.size - 8):
            res = translate(AtOp.S1E2R, lf.va + off, arch, mem)
            assert par_pa(res.par) == (lf.oa + off) & ~0xFFF


def test_ranges_merge_contiguous_leaves_with_equal_attributes() -> None:
    rs = ranges(_maps()[1].leaves)
    assert [(r.va - VA_L1, r.size, r.leaves) for r in rs] == [
        (0, 2 * MB2, 2), (3 * MB2, 0x4000, 4), (3 * MB2 + 0x5000, 0x1000, 1),
        (3 * MB2 + 0x7000, 0x1000, 1), (GB, GB, 1)]


def test_holes_cover_the_rest_of_the_va_range() -> None:
    tmap = _maps()[1]
    rs = ranges(tmap.leaves)
    hs = list(holes(tmap, rs))
    assert hs[0] == (tmap.va_start, VA_L1)
    assert (VA_L1 + 2 * MB2, VA_L1 + 3 * MB2) in hs
    assert (VA_L1 + 3 * MB2 + 0x4000, VA_L1 + 3 * MB2 + 0x5000) in hs
    assert hs[-1] == (VA_L1 + 2 * GB, 1 << 64)
    covered = sum(r.size for r in rs) + sum(e - s for s, e in hs)
    assert covered == tmap.va_end - tmap.va_start


def test_picks_include_every_edge_then_samples_up_to_the_budget() -> None:
    maps = _maps()
    picks = pick_vas(maps, 200, seed=3)
    assert len(picks) == 200 == len({p.va for p in picks})
    vas = {p.va for p in picks}
    assert {VA_L1, VA_L1 + 2 * MB2 - 0x1000, VA_L1 + GB, VA_L1 + 2 * GB - 0x1000} <= vas
    assert {VA_L1 + MB2 - 0x1000, VA_L1 + MB2} <= vas  # each block of a merged range
    assert VA_L1 + 3 * MB2 + 0x4000 in vas  # first page of a hole
    why = Counter(p.why for p in picks)
    assert why["tagged"] and why["non-canonical"] and why["out-of-range"] == 2
    assert why["sample"] == 200 - sum(n for w, n in why.items() if w != "sample")
    tagged = [p.va for p in picks if p.why == "tagged"]
    assert all(v >> 56 in (0x5A, 0xF0) for v in tagged)
    assert pick_vas(maps, 200, seed=3) == picks
    assert pick_vas(maps, 200, seed=4) != picks


def test_a_small_budget_keeps_the_special_picks_and_samples_the_edges() -> None:
    picks = pick_vas(_maps(), 12, seed=0)
    assert len(picks) == 12
    assert sum(p.why == "out-of-range" for p in picks) == 2
    assert not any(p.why == "sample" for p in picks)


def test_non_canonical_and_tagged_picks_get_the_answer_tbi_gives() -> None:
    """TBI is 0 here: a tag makes the VA fault at level 0 (AArch64.VAIsOutOfRange)."""
    st = state()
    arch = st.arch_state()
    mem = FakeRam(words())
    for p in pick_vas(_maps(), 200, seed=1):
        if p.why in ("tagged", "non-canonical", "out-of-range"):
            res = translate(AtOp.S1E2R, p.va, arch, mem)
            assert res.par & 1 and res.fault is not None and res.fault.level == 0, hex(p.va)
