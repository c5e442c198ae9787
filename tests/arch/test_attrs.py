"""Memory attributes and Shareability (Arm ARM DDI 0487 M.a, D8.2 R_WFZPW,
D8.6, D8.7.4, D24.2 MAIR_ELx and PAR_EL1). Expectations come from the
encoding tables and rules cited, written out here."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xcheck.arch.attrs import (
    ISH,
    NSH,
    OSH,
    MemAttrs,
    decode_attr,
    encode_attr,
    par_attr_mask,
    par_attrs,
    s1_attrs,
    s1_disabled_attrs,
    s2_combine,
)

ATTR_BITS = 0xFF << 56
SH_BITS = 0b11 << 7

DEVICE = {0x00: 0, 0x04: 1, 0x08: 2, 0x0C: 3}  # 0b0000dd00: nGnRnE, nGnRE, nGRE, GRE


def s1(attr: int, sh: int = ISH) -> MemAttrs:
    return s1_attrs(attr, 0, sh)


# --- MAIR decode (D24.2 MAIR_ELx.Attr<n>) -----------------------------------

@pytest.mark.parametrize(("attr", "device"), sorted(DEVICE.items()))
def test_mair_device(attr: int, device: int) -> None:
    """MAIR Attr<n> = 0b0000dd00: Device memory, dd the type."""
    d = decode_attr(attr)
    assert d is not None and d.device == device


# attr -> (outer, inner) as (kind, RA, WA, transient), from the MAIR table:
# 0b00RW transient WT, 0b0100 NC, 0b01RW transient WB, 0b10RW WT, 0b11RW WB.
NORMAL = {
    0x44: (("NC", False, False, False), ("NC", False, False, False)),
    0xFF: (("WB", True, True, False), ("WB", True, True, False)),
    0xAA: (("WT", True, False, False), ("WT", True, False, False)),
    0xBB: (("WT", True, True, False), ("WT", True, True, False)),
    0x77: (("WB", True, True, True), ("WB", True, True, True)),
    0x13: (("WT", False, True, True), ("WT", True, True, True)),
    0x4F: (("NC", False, False, False), ("WB", True, True, False)),
    0xF4: (("WB", True, True, False), ("NC", False, False, False)),
    0xC8: (("WB", False, False, False), ("WT", False, False, False)),
}


@pytest.mark.parametrize(("attr", "expect"), sorted(NORMAL.items()))
def test_mair_normal(attr: int, expect: tuple[tuple[str, bool, bool, bool], ...]) -> None:
    d = decode_attr(attr)
    assert d is not None and d.device is None
    got = tuple((c.kind, c.ra, c.wa, c.transient) for c in (d.outer, d.inner))
    assert got == expect


@pytest.mark.parametrize("attr", [0x01, 0x02, 0x03, 0x06, 0x0D, 0x10, 0x40, 0xA0, 0xF0, 0xE0])
def test_mair_reserved(attr: int) -> None:
    """S1ConstrainUnpredictableRESMAIR: 0b0000dd1x, 0bxxxx0000, and without
    FEAT_XS 0b0000dd01, 0x40, 0xA0, without FEAT_MTE2 0xF0."""
    assert decode_attr(attr) is None


@pytest.mark.parametrize("attr", [0x01, 0x05, 0x09, 0x0D, 0x40, 0xA0])
def test_mair_xs_encodings(attr: int) -> None:
    """D8.7.4: with FEAT_XS these encodings are allocated with XS == 0."""
    d = decode_attr(attr, feat_xs=True)
    assert d is not None and not d.xs


def test_mair_tagged() -> None:
    d = decode_attr(0xF0, feat_mte2=True)
    assert d is not None and d.tagged


@pytest.mark.parametrize("feat", list(itertools.product([False, True], repeat=2)))
def test_encode_inverts_decode(feat: tuple[bool, bool]) -> None:
    """EncodePARAttrs gives back every allocated MAIR encoding: PAR.ATTR "uses
    the same encoding as the Attr<n> fields in MAIR_ELx" (D24.2 PAR_EL1)."""
    xs, mte2 = feat
    for attr in range(256):
        d = decode_attr(attr, feat_xs=xs, feat_mte2=mte2)
        if d is not None:
            assert encode_attr(d, feat_xs=xs) == attr, hex(attr)


@pytest.mark.parametrize("index", range(8))
def test_attr_index_selects_byte(index: int) -> None:
    """R_HHGNL: AttrIndx[2:0] selects MAIR_ELx.Attr<n>, bits [8n+7:8n]."""
    mair = 0x0C08_0400_FFAA_4477
    a = s1_attrs(mair, index, ISH)
    assert (a.attr, a.sh, a.others) == ((mair >> (8 * index)) & 0xFF, ISH, frozenset())


def test_reserved_attr_is_masked() -> None:
    """A reserved Attr<n> is CONSTRAINED UNPREDICTABLE: no ATTR bit is fixed."""
    mask, notes = par_attr_mask(par_attrs(s1(0x03)))
    assert mask & ATTR_BITS == 0
    assert any("reserved" in n for n in notes)


def test_reserved_sh_is_masked_for_cacheable_memory() -> None:
    """D8.6.2 R_ZWYSH: SH == 0b01 is reserved, CONSTRAINED UNPREDICTABLE."""
    mask, _ = par_attr_mask(par_attrs(s1(0xFF, 0b01)))
    assert mask & SH_BITS == 0 and mask & ATTR_BITS == ATTR_BITS


@pytest.mark.parametrize("attr", [0x00, 0x04, 0x44])
def test_reserved_sh_is_fixed_for_device_and_nc(attr: int) -> None:
    """PAR_EL1.SH is 0b10 for Device and Normal iNCoNC whatever SH says."""
    p = par_attrs(s1(attr, 0b01))
    mask, _ = par_attr_mask(p)
    assert p.sh == OSH and mask & SH_BITS == SH_BITS


# --- Stage 1 disabled (D8.2.12 R_WFZPW) --------------------------------------

@pytest.mark.parametrize("c", [False, True])
def test_s1_disabled(c: bool) -> None:
    """R_WFZPW: data accesses are Device-nGnRnE (Outer Shareable,
    AArch64.S1DisabledOutput); with HCR_EL2.DC == 1 Normal Inner/Outer WB
    RA WA Non-transient, Non-shareable. SCTLR_ELx.C does not enter."""
    assert (s1_disabled_attrs(c, False).attr, s1_disabled_attrs(c, False).sh) == (0x00, OSH)
    assert (s1_disabled_attrs(c, True).attr, s1_disabled_attrs(c, True).sh) == (0xFF, NSH)


# --- Stage 1 + stage 2, FWB == 0 (D8.6.5) ------------------------------------

S2_DEVICE = {0b0000: 0, 0b0001: 1, 0b0010: 2, 0b0011: 3}


@pytest.mark.parametrize(("a1", "a2"), list(itertools.product(DEVICE, S2_DEVICE)))
def test_device_combination(a1: int, a2: int) -> None:
    """Table D8-97: the more restrictive Device type (nG over G, nR over R,
    nE over E): the smaller dd."""
    got = s2_combine(s1(a1), a2, ISH, False)
    assert got.attr == min(DEVICE[a1], S2_DEVICE[a2]) << 2 and got.sh == OSH


@pytest.mark.parametrize("a2", sorted(S2_DEVICE))
def test_stage2_device_wins_over_normal(a2: int) -> None:
    """Table D8-97: Device has precedence over Normal."""
    for a1 in (0x44, 0xAA, 0x4F):
        assert s2_combine(s1(a1), a2, ISH, False).attr == S2_DEVICE[a2] << 2


@pytest.mark.parametrize("a1", sorted(DEVICE))
def test_stage1_device_wins_over_normal(a1: int) -> None:
    for a2 in (0b0101, 0b1010, 0b1111):
        assert s2_combine(s1(a1), a2, ISH, False).attr == a1


S2_KIND = {0b01: "NC", 0b10: "WT", 0b11: "WB"}
S1_NIBBLE = {"NC": 0x4, "WT": 0xA, "WB": 0xF}  # WT RA / WB RWA, Non-transient
# Table D8-98, written out.
TABLE_D8_98 = {
    ("NC", "NC"): "NC", ("NC", "WT"): "NC", ("NC", "WB"): "NC",
    ("WT", "NC"): "NC", ("WB", "NC"): "NC",
    ("WT", "WT"): "WT", ("WT", "WB"): "WT", ("WB", "WT"): "WT", ("WB", "WB"): "WB",
}


@pytest.mark.parametrize(("o1", "i1", "o2", "i2"),
                         list(itertools.product(S1_NIBBLE, S1_NIBBLE, S2_KIND, S2_KIND)))
def test_cacheability_combination(o1: str, i1: str, o2: int, i2: int) -> None:
    """Table D8-98 for the inner and outer halves independently; a cacheable
    result keeps the stage 1 allocation hints (R_KTSYP)."""
    attr1 = (S1_NIBBLE[o1] << 4) | S1_NIBBLE[i1]
    got = s2_combine(s1(attr1), (o2 << 2) | i2, ISH, False)
    expect = [S1_NIBBLE[TABLE_D8_98[(h1, S2_KIND[h2])]] for h1, h2 in ((o1, o2), (i1, i2))]
    # A WT result keeps stage 1's hints: from a WB RWA stage 1 that is WT RWA (0xB).
    for n, h1 in enumerate((o1, i1)):
        if expect[n] == S1_NIBBLE["WT"] and h1 == "WB":
            expect[n] = 0xB
    assert got.attr == (expect[0] << 4) | expect[1]


def test_hints_and_transient_from_stage1() -> None:
    """R_KTSYP: final hints are stage 1's. WB Transient RWA through WT/WT is
    WT Transient RWA (0b0011)."""
    assert s2_combine(s1(0x77), 0b1111, ISH, False).attr == 0x77
    assert s2_combine(s1(0x77), 0b1010, ISH, False).attr == 0x33


@given(attr=st.integers(0, 255), sh=st.sampled_from([NSH, OSH, ISH]))
def test_s2_1111_keeps_stage1(attr: int, sh: int) -> None:
    """I_MCQKW: stage 2 MemAttr 0b1111 (FWB == 0) gives the stage 1 type
    and cacheability."""
    a = s1(attr, sh)
    if decode_attr(attr) is None:
        return
    got = s2_combine(a, 0b1111, NSH, False)
    assert got.attr == attr


@pytest.mark.parametrize(("sh1", "sh2", "expect"), [
    (NSH, NSH, NSH), (NSH, ISH, ISH), (ISH, NSH, ISH), (ISH, ISH, ISH),
    (OSH, NSH, OSH), (NSH, OSH, OSH), (ISH, OSH, OSH), (OSH, ISH, OSH),
])
def test_shareability_combination(sh1: int, sh2: int, expect: int) -> None:
    """D8.6.7.1 (S2CombineS1Shareability): Outer over Inner over Non-shareable."""
    got = s2_combine(s1(0xFF, sh1), 0b1111, sh2, False)
    assert got.sh == expect and not got.others


@pytest.mark.parametrize("a2", [0b0101, 0b0110, 0b1001, 0b0000])
def test_nc_and_device_results_are_outer_shareable(a2: int) -> None:
    """R_PYFVQ / R_YHCTP: Device or Normal iNCoNC after all stages is Outer
    Shareable. (0b0110: outer NC, inner WT: stays as combined.)"""
    got = s2_combine(s1(0xFF, NSH), a2, NSH, False)
    inner_nc_outer_nc = a2 == 0b0101
    device = a2 >> 2 == 0
    assert (got.sh == OSH) == (inner_nc_outer_nc or device)


@pytest.mark.parametrize("a2", [0b0100, 0b1000, 0b1100])
def test_reserved_stage2_memattr(a2: int) -> None:
    """Table D8-96 / S2ResMemAttr: CONSTRAINED UNPREDICTABLE, ATTR not fixed."""
    got = s2_combine(s1(0xFF), a2, ISH, False)
    mask, notes = par_attr_mask(par_attrs(got))
    assert mask & ATTR_BITS != ATTR_BITS and any("reserved" in n for n in notes)


# --- FWB == 1 (D8.6.6, Table D8-101) ------------------------------------------

@pytest.mark.parametrize(("a1", "a2", "expect"), [
    (0x04, 0b0001, 0x04),   # Device + Device: the stronger
    (0x0C, 0b0001, 0x04),
    (0xFF, 0b0010, 0x08),   # Normal + Device: stage 2 Device
    (0x04, 0b0101, 0x04),   # 01/01: Device<attr> stays
    (0x44, 0b0101, 0x44),   # Normal -> Non-cacheable
    (0xAA, 0b0101, 0x44),
    (0xFF, 0b0101, 0x44),
    (0x04, 0b0110, 0xFF),   # 10: Write-Back; from Device/NC hints RWA (R_TBQKG)
    (0x44, 0b0110, 0xFF),
    (0xAA, 0b0110, 0xEE),   # from WT RA: WB with stage 1 hints RA (R_THYXB)
    (0x77, 0b0110, 0x77),   # WB Transient RWA stays
    (0x4F, 0b0110, 0xFF),   # outer NC: RWA; inner WB RWA
    (0x04, 0b0111, 0x04),   # 11: stage 1 attributes
    (0x44, 0b0111, 0x44),
    (0xAA, 0b0111, 0xAA),
    (0x13, 0b0111, 0x13),
])
def test_fwb(a1: int, a2: int, expect: int) -> None:
    """Table D8-101 (AArch64.S2ApplyFWBMemAttrs)."""
    assert s2_combine(s1(a1, OSH), a2, OSH, True).attr == expect


def test_fwb_reserved() -> None:
    """Table D8-101: MemAttr[2:0] == 0b100 with FWB is Reserved."""
    got = s2_combine(s1(0xFF), 0b0100, ISH, True)
    assert got.others and any("Reserved" in n for n in got.notes)


def test_fwb_shareability_of_device_input_is_implementation_defined() -> None:
    """D8.6.2 R_NSCNC: for stage 1 Device/NC, stage 1's SH or Outer Shareable
    enters stage 2: forced WB with stage 2 NSH is NSH or OSH."""
    got = s2_combine(s1(0x04, NSH), 0b0110, NSH, True)
    assert got.candidates() == {(0xFF, NSH), (0xFF, OSH)}
    mask, _ = par_attr_mask(par_attrs(got))
    assert (mask & SH_BITS) >> 7 == 0b01  # SH[1] varies (NSH 0b00, OSH 0b10), SH[0] is 0
    fixed = s2_combine(s1(0x04, NSH), 0b0110, OSH, True)
    assert fixed.candidates() == {(0xFF, OSH)}


# --- XS (D8.7.4) ---------------------------------------------------------------

def test_xs_with_feat_xs() -> None:
    """With FEAT_XS, stage 1 Normal iWBoWB has XS 0 and stage 2 Device keeps
    XS = stage 1 AND stage 2: PAR.ATTR = 0b0000dd01 (EncodePARAttrs)."""
    a = s1_attrs(0xFF, 0, ISH, feat_xs=True)
    assert s2_combine(a, 0b0001, ISH, False, feat_xs=True).attr == 0x05
    assert s2_combine(a, 0b0001, ISH, False, feat_xs=True, s2_fnxs=False).others == frozenset()


def test_xs_without_feat_xs_both_accepted() -> None:
    """R_DNHCL: without FEAT_XS there is no XS attribute (0x04), but the ASL
    would encode 0x05: both are permitted, the differing bit is masked."""
    got = s2_combine(s1(0xFF), 0b0001, ISH, False)
    assert got.attr == 0x04 and got.candidates() == {(0x04, OSH), (0x05, OSH)}
    mask, _ = par_attr_mask(par_attrs(got))
    assert (mask >> 56) & 0xFF == 0xFE


# --- PAR_EL1 reporting (D24.2 PAR_EL1.{ATTR, SH}) ------------------------------

@pytest.mark.parametrize(("attr", "sh", "par_sh"), [
    (0x00, NSH, OSH), (0x04, ISH, OSH), (0x0C, NSH, OSH),  # any Device: 0b10
    (0x44, NSH, OSH), (0x44, ISH, OSH),                    # Normal iNCoNC: 0b10
    (0x4F, NSH, NSH), (0xF4, ISH, ISH),                    # only one half NC: as is
    (0xFF, NSH, NSH), (0xFF, ISH, ISH), (0xAA, OSH, OSH),
])
def test_par_sh(attr: int, sh: int, par_sh: int) -> None:
    """PAR_EL1.SH "returns the value 0b10 for any type of Device memory and
    Normal memory with both Inner Non-cacheable and Outer Non-cacheable
    attributes" (PAREncodeShareability)."""
    p = par_attrs(s1(attr, sh))
    assert (p.attr, p.sh) == (attr, par_sh)


@pytest.mark.parametrize(("attr", "masked"), [
    (0x77, 0x88), (0x13, 0x88), (0x7F, 0x80), (0xF7, 0x08),
    (0xFF, 0x00), (0x44, 0x00), (0xAA, 0x00), (0x00, 0x00), (0x88, 0x00),
])
def test_transient_bit_mask(attr: int, masked: int) -> None:
    """B2.10: Transient support is IMPLEMENTATION DEFINED and PAR.ATTR may
    report the attribute actually implemented: a Transient half may read as
    Non-transient (its bit [3] is masked); Non-transient halves are fixed."""
    mask, _ = par_attr_mask(par_attrs(s1(attr)))
    assert (~mask >> 56) & 0xFF == masked
    strict, _ = par_attr_mask(par_attrs(s1(attr)), transient=False)
    assert strict == (1 << 64) - 1


def test_plain_construction_is_fixed() -> None:
    """MemAttrs(attr, sh) with no alternatives: every PAR bit is fixed."""
    assert par_attr_mask(MemAttrs(0x44, OSH))[0] == (1 << 64) - 1
