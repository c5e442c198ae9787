"""Property tests of the stage 1 walker (Arm ARM DDI 0487, D8.2)."""

from __future__ import annotations

from archtables import MAIR, SCTLR_ON, TCR_4K_48, Tables, at, regs
from hypothesis import given, settings
from hypothesis import strategies as st

from xcheck.arch.par import decode_par
from xcheck.machine import RAM_BASE, AtOp

pages = st.dictionaries(
    keys=st.integers(0, (1 << 36) - 1).map(lambda p: p << 12),
    values=st.integers(0, 0x7FFF).map(lambda p: RAM_BASE + (p << 12)),
    min_size=1, max_size=12)


@settings(max_examples=40, deadline=None)
@given(mapping=pages, upper=st.booleans())
def test_translation_agrees_with_the_mapping_and_never_writes(mapping: dict[int, int],
                                                              upper: bool) -> None:
    """Every mapped page translates to the PA the tables give it; the walker
    never changes memory; TTBR1 serves VA[55] == 1 with the same tables."""
    t = Tables()
    for va, pa in mapping.items():
        t.map(va, pa)
    mem = t.image()
    before = {a: mem.read64(a) for a in t.words}
    sysregs = regs(SCTLR_EL1=SCTLR_ON, TCR_EL1=TCR_4K_48, TTBR0_EL1=t.root,
                   TTBR1_EL1=t.root, MAIR_EL1=MAIR)
    top = 0xFFFF_0000_0000_0000 if upper else 0
    for va, pa in mapping.items():
        r = at(AtOp.S1E1W, top | va | 0x7F8, sysregs, mem)
        assert decode_par(r.par)["PA"] << 12 == pa, r.render()
    assert {a: mem.read64(a) for a in t.words} == before


@settings(max_examples=60, deadline=None)
@given(va=st.integers(0, (1 << 64) - 1))
def test_ttbr_ranges_and_hole(va: int) -> None:
    """AArch64.VAIsOutOfRange with T0SZ = T1SZ = 16: VA[63:48] all zeros (TTBR0)
    or all ones (TTBR1) is walked; anything else is a level 0 Translation fault."""
    t = Tables()
    sysregs = regs(SCTLR_EL1=SCTLR_ON, TCR_EL1=TCR_4K_48, TTBR0_EL1=t.root,
                   TTBR1_EL1=t.root, MAIR_EL1=MAIR)
    r = at(AtOp.S1E1R, va, sysregs, t.image())
    fst = decode_par(r.par)["FST"]
    walked = [s for s in r.trace if s.addr is not None]
    if va >> 48 in (0, 0xFFFF):
        assert walked and walked[0].addr == t.root + 8 * ((va >> 39) & 0x1FF)
    else:
        assert not walked and fst == 0b000100
