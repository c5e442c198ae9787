"""Shadow: only the bytes that change are written (no QEMU needed)."""

from __future__ import annotations

from xcheck.target.shadow import BLOCK, PAGE, Shadow, pages


def apply(ram: dict[int, int], runs: list[tuple[int, bytes]]) -> None:
    for addr, data in runs:
        for i, b in enumerate(data):
            ram[addr + i] = b


def test_runs_make_the_guest_hold_exactly_the_image() -> None:
    ram: dict[int, int] = {}
    s = Shadow()
    exact = range(0x4040_0000, 0x4040_3000)
    first = [(0x4040_0000, b"\x01" * 8), (0x4040_1FF8, b"\x02" * 16)]
    apply(ram, s.update(first, exact))
    second = [(0x4040_0008, b"\x03" * 8), (0x4050_0000, b"\x04")]
    runs = s.update(second, exact)
    apply(ram, runs)
    want = {a + i: b for a, d in second for i, b in enumerate(d)}
    assert {a: b for a, b in ram.items() if b} == want
    # in ``exact``, only the blocks that changed were written (3 blocks over
    # 3 pages); elsewhere a changed page is written whole
    assert sorted((a, len(d)) for a, d in runs) == [
        (0x4040_0000, BLOCK), (0x4040_1FC0, 2 * BLOCK), (0x4050_0000, PAGE)]
    assert s.update(second, exact) == []


def test_no_run_crosses_the_edge_of_exact() -> None:
    """A changed page just below ``exact`` and a change at its start are
    two runs, though adjacent (one is copied, the other written through the
    stub)."""
    s = Shadow()
    exact = range(0x4040_1000, 0x4040_2000)
    runs = s.update([(0x4040_0FF8, b"\x07" * 16)], exact)
    assert [(a, len(d)) for a, d in runs] == [(0x4040_0000, PAGE), (0x4040_1000, BLOCK)]


def test_pages_split_across_boundaries() -> None:
    p = pages([(PAGE - 4, b"\xaa" * 8)])
    assert set(p) == {0, PAGE}
    assert p[0][-4:] == b"\xaa" * 4 and p[PAGE][:4] == b"\xaa" * 4


def test_distrust_rewrites_every_page_once() -> None:
    s = Shadow()
    img = [(0x4040_0000, b"\x05" * 8)]
    s.update(img)
    s.distrust()
    runs = s.update(img, exact=range(0x4040_0000, 0x4040_1000))
    assert sum(len(d) for _, d in runs) == PAGE
    assert s.update(img) == []


def test_distrust_keeps_the_pages_it_is_told_to() -> None:
    s = Shadow()
    img = [(0x4040_0000, b"\x05" * 8), (0x4050_0000, b"\x06" * 8)]
    s.update(img)
    s.distrust(keep=range(0x4050_0000, 0x4060_0000))
    assert [a for a, _ in s.update(img)] == [0x4040_0000]


def test_forget_starts_from_a_fresh_ram() -> None:
    s = Shadow()
    s.update([(0x4040_0000, b"\x05" * 8)])
    s.forget({0x4020_0000: b"\x09"})
    runs = s.update([(0x4020_0000, b"\x09")])
    assert runs == []


def test_runs_cover_exactly_the_differing_blocks() -> None:
    """Scattered changes in a page (first, last, neighbouring and lone
    blocks): every run starts and ends on a block that differs, and the
    blocks written are exactly those that differ."""
    base = 0x4040_0000
    old = bytearray(PAGE)
    for off in range(0, PAGE, 7):
        old[off] = off & 0xFF or 1
    new = bytearray(old)
    changed = [0, 1, 2, 9, 31, 32, 40, 62, 63]
    for blk in changed:
        new[blk * BLOCK + (blk % BLOCK)] ^= 0x5A
    s = Shadow()
    exact = range(base, base + PAGE)
    s.update([(base, bytes(old))], exact)
    runs = s.update([(base, bytes(new))], exact)
    written = [(a - base) // BLOCK + k for a, d in runs for k in range(len(d) // BLOCK)]
    assert written == changed
    assert all(d == bytes(new[a - base : a - base + len(d)]) for a, d in runs)
    assert [a - base for a, _ in runs] == [0, 9 * BLOCK, 31 * BLOCK, 40 * BLOCK, 62 * BLOCK]
