"""Memory attributes and Shareability: MAIR decode, stage 1 disabled
defaults, stage 1 + stage 2 combination (with and without FWB), PAR_EL1
ATTR/SH reporting.

Arm ARM DDI 0487 (M.a): D8.2 R_WFZPW, D8.6 "Memory region attributes",
D8.7.4 (XS), D24.2 PAR_EL1, and the ASL of J1.3.5 (S1DecodeMemAttrs,
DecodeLDFAttr, S1ConstrainUnpredictableRESMAIR, S2DecodeMemAttrs,
S2ResMemAttr, S2CombineS1MemAttrs, S2CombineS1Device, S2CombineS1AttrHints,
S2CombineS1Shareability, EffectiveShareability, EncodePARAttrs,
PAREncodeShareability) and J1.1.4 AArch64.S2ApplyFWBMemAttrs.

A :class:`MemAttrs` is one memory attribute result: ``attr`` in the 8-bit
MAIR/PAR.ATTR encoding (EncodePARAttrs of the attributes) and ``sh`` the
2-bit Shareability. Where the architecture allows more than one result
(CONSTRAINED UNPREDICTABLE reserved encodings, IMPLEMENTATION DEFINED
choices), ``others`` holds the other permitted (attr, sh) pairs and
``notes`` says why; :func:`par_attr_mask` turns that into a PAR_EL1 mask.
FEAT_XS, FEAT_MTE2 and FEAT_MTE_PERM are off unless a keyword says so
(FEAT_MTE_PERM is not modelled: stage 2 MemAttr 0b0100 is reserved).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache

NSH, OSH, ISH = 0b00, 0b10, 0b11
"""Shareability encodings (SH[1:0], PAR_EL1.SH); 0b01 is reserved."""

NC, WT, WB = "NC", "WT", "WB"


@dataclass(frozen=True)
class Cacheability:
    """MemAttrHints: Non-cacheable, Write-Through or Write-Back with the
    read/write allocation hints and the Transient hint."""

    kind: str
    ra: bool = False
    wa: bool = False
    transient: bool = False


_NC = Cacheability(NC)
_WB_RWA = Cacheability(WB, True, True, False)


@dataclass(frozen=True)
class Decoded:
    """MemoryAttributes: ``device`` is the Device type (0 nGnRnE, 1 nGnRE,
    2 nGRE, 3 GRE) or None for Normal memory; ``xs`` the XS attribute;
    ``tagged`` MemTag_AllocationTagged."""

    device: int | None
    inner: Cacheability = _NC
    outer: Cacheability = _NC
    xs: bool = True
    tagged: bool = False

    @property
    def is_nc(self) -> bool:
        return self.device is None and self.inner.kind == NC and self.outer.kind == NC

    @property
    def forces_osh(self) -> bool:
        """EffectiveShareability: Device and Normal iNCoNC are Outer
        Shareable (D8.6.2 R_PYFVQ, D8.6.7 R_YHCTP)."""
        return self.device is not None or self.is_nc


@dataclass(frozen=True)
class MemAttrs:
    """Memory attributes as PAR_EL1 would report them: ``attr`` (8-bit MAIR
    encoding), ``sh`` (2-bit); ``others``: other (attr, sh) results the
    architecture equally permits; ``notes``: why."""

    attr: int
    sh: int
    others: frozenset[tuple[int, int]] = field(default=frozenset())
    notes: tuple[str, ...] = ()

    def candidates(self) -> frozenset[tuple[int, int]]:
        return self.others | {(self.attr, self.sh)}


def _ldf(nibble: int) -> Cacheability:
    """DecodeLDFAttr: 0b0100 NC, 0bx0xx WT, 0bx1xx WB; bits [1:0] are the
    read/write allocation hints; Transient when bit [3] is 0 and some
    allocation hint is given (D24.2 MAIR_ELx.Attr<n>)."""
    if nibble == 0b0100:
        return _NC
    ra, wa = bool(nibble & 2), bool(nibble & 1)
    return Cacheability(WB if nibble & 4 else WT, ra, wa,
                        transient=(ra or wa) and not nibble & 8)


@lru_cache(maxsize=1024)
def decode_attr(attr: int, *, feat_xs: bool = False, feat_mte2: bool = False) -> Decoded | None:
    """S1DecodeMemAttrs of a MAIR_ELx.Attr<n> byte; None for a reserved
    encoding (S1ConstrainUnpredictableRESMAIR: 0b0000dd1x, 0bxxxx0000 other
    than the allocated ones, and 0b0000dd01 / 0x40 / 0xA0 without FEAT_XS,
    0xF0 without FEAT_MTE2), which is CONSTRAINED UNPREDICTABLE. Memoized
    (a byte and two features): the walks decode the same few bytes again."""
    attr &= 0xFF
    if attr >> 4 == 0:
        if attr & 0b10 or (attr & 1 and not feat_xs):
            return None
        return Decoded(device=(attr >> 2) & 3, xs=not attr & 1)
    if attr == 0x40:
        return Decoded(None, _NC, _NC, xs=False) if feat_xs else None
    if attr == 0xA0:
        wt = Cacheability(WT, ra=True)
        return Decoded(None, wt, wt, xs=False) if feat_xs else None
    if attr == 0xF0:
        return Decoded(None, _WB_RWA, _WB_RWA, xs=False, tagged=True) if feat_mte2 else None
    if attr & 0xF == 0:
        return None
    inner, outer = _ldf(attr & 0xF), _ldf(attr >> 4)
    return Decoded(None, inner, outer, xs=not (inner.kind == WB and outer.kind == WB))


def _nibble(c: Cacheability) -> int:
    if c.kind == NC:
        return 0b0100
    top = (0b01 if c.kind == WB else 0b00) | (0 if c.transient else 0b10)
    return (top << 2) | (int(c.ra) << 1) | int(c.wa)


def encode_attr(d: Decoded, *, feat_xs: bool = False) -> int:
    """EncodePARAttrs: the MAIR-style byte for ``d``. Without FEAT_XS the XS
    attribute does not exist (D8.7.4 R_DNHCL) and is not encoded."""
    if d.tagged:
        return 0xF0
    if d.device is not None:
        return (d.device << 2) | int(feat_xs and not d.xs)
    if feat_xs and not d.xs:
        o = d.outer
        if o.kind == WT and d.inner.kind == WT and not o.transient and o.ra and not o.wa:
            return 0xA0
        if d.is_nc:
            return 0x40
    return (_nibble(d.outer) << 4) | _nibble(d.inner)


def _sh_choices(sh: int) -> tuple[int, ...]:
    """DecodeShareability: 0b01 is reserved, CONSTRAINED UNPREDICTABLE as
    one of OSH, ISH, NSH (D8.6.2 R_ZWYSH, J1.3.5.9)."""
    return (OSH, ISH, NSH) if sh & 3 == 0b01 else (sh & 3,)


@lru_cache(maxsize=4)
def _allocated_s1(feat_xs: bool, feat_mte2: bool) -> tuple[int, ...]:
    return tuple(a for a in range(256)
                 if decode_attr(a, feat_xs=feat_xs, feat_mte2=feat_mte2) is not None)


def _result(pairs: list[tuple[int, int]], notes: tuple[str, ...]) -> MemAttrs:
    first = pairs[0]
    return MemAttrs(first[0], first[1], frozenset(pairs) - {first}, notes)


@lru_cache(maxsize=4096)
def s1_attrs(mair: int, attr_index: int, sh: int, *, feat_xs: bool = False,
             feat_mte2: bool = False) -> MemAttrs:
    """Stage 1 attributes of a Block/Page descriptor: MAIR_ELx.Attr<AttrIndx>
    (D8.6.1 R_HHGNL; S1DecodeMemAttrs) and its SH[1:0] (D8.6.2 R_ZWYSH).
    The SH returned is the descriptor's: forcing Outer Shareable for Device
    and Normal iNCoNC happens where the architecture does it (stage 2
    combination, PAR reporting)."""
    attr = (mair >> (8 * (attr_index & 7))) & 0xFF
    notes: list[str] = []
    if decode_attr(attr, feat_xs=feat_xs, feat_mte2=feat_mte2) is None:
        attrs: tuple[int, ...] = (attr, *(a for a in _allocated_s1(feat_xs, feat_mte2)))
        notes.append(f"MAIR Attr{attr_index & 7}=0x{attr:02x} is a reserved encoding: "
                     "CONSTRAINED UNPREDICTABLE, treated as any allocated encoding "
                     "(S1ConstrainUnpredictableRESMAIR, D24.2 MAIR_ELx)")
    else:
        attrs = (attr,)
    shs = _sh_choices(sh)
    if len(shs) > 1:
        notes.append("SH == 0b01 is reserved: CONSTRAINED UNPREDICTABLE as Outer, Inner or "
                     "Non-shareable (D8.6.2 R_ZWYSH; DecodeShareability)")
    return _result([(a, s) for a in attrs for s in shs], tuple(notes))


def s1_disabled_attrs(sctlr_c: bool, hcr_dc: bool) -> MemAttrs:
    """Stage 1 disabled, data access (D8.2.12 R_WFZPW; AArch64.S1DisabledOutput):
    with the Effective HCR_EL2.DC == 1 (EL1&0 regime) Normal Inner/Outer
    Write-Back Read/Write-Allocate Non-transient, Non-shareable; otherwise
    Device-nGnRnE, Outer Shareable. SCTLR_ELx.C plays no part for data
    accesses (only SCTLR_ELx.I, for instruction fetches)."""
    del sctlr_c
    return _S1_DISABLED_DC if hcr_dc else _S1_DISABLED


_S1_DISABLED_DC = MemAttrs(0xFF, NSH)
_S1_DISABLED = MemAttrs(0x00, OSH)


def _s2_decode(memattr: int) -> Decoded | None:
    """S2DecodeMemAttrs (FWB == 0, Table D8-96): 0b00dd Device; otherwise
    outer = MemAttr[3:2], inner = MemAttr[1:0] (01 NC, 10 WT, 11 WB);
    0b0100 (no FEAT_MTE_PERM) and 0b1x00 reserved (S2ResMemAttr)."""
    memattr &= 0xF
    if memattr >> 2 == 0:
        return Decoded(device=memattr & 3)
    if memattr & 3 == 0:
        return None
    kinds = {1: NC, 2: WT, 3: WB}
    return Decoded(None, Cacheability(kinds[memattr & 3]), Cacheability(kinds[memattr >> 2]))


def _combine_hints(s1: Cacheability, s2: Cacheability) -> Cacheability:
    """S2CombineS1AttrHints (Table D8-98): NC if either is NC, else WT if
    either is WT, else WB; hints and Transient from stage 1 (R_KTSYP)."""
    if NC in (s1.kind, s2.kind):
        return _NC
    kind = WT if WT in (s1.kind, s2.kind) else WB
    return Cacheability(kind, s1.ra, s1.wa, s1.transient)


def _taggable(d: Decoded) -> bool:
    return d.device is None and d.inner == _WB_RWA and d.outer == _WB_RWA


def _combine_sh(s1_sh: int, s2_sh: int) -> int:
    """S2CombineS1Shareability (D8.6.7.1): Outer over Inner over Non-shareable."""
    if OSH in (s1_sh, s2_sh):
        return OSH
    return ISH if ISH in (s1_sh, s2_sh) else NSH


def _combine_nofwb(s1: Decoded, s2: Decoded, s2_xs: bool) -> Decoded:
    """S2CombineS1MemAttrs (Tables D8-97, D8-98): Device over Normal, the
    stronger Device type (S2CombineS1Device); XS: 0 for Normal iWBoWB, else
    stage 2 XS AND stage 1 XS (D8.7.4)."""
    if s1.device is not None and s2.device is not None:
        d = Decoded(device=min(s1.device, s2.device))
    elif s1.device is not None:
        d = s1
    elif s2.device is not None:
        d = s2
    else:
        d = Decoded(None, _combine_hints(s1.inner, s2.inner), _combine_hints(s1.outer, s2.outer))
        d = replace(d, tagged=s1.tagged and _taggable(d))
    wbwb = d.device is None and d.inner.kind == WB and d.outer.kind == WB
    return replace(d, xs=False if wbwb else (s2_xs and s1.xs))


def _fwb_hints(s1: Decoded, s1_side: Cacheability) -> Cacheability:
    if s1.device is None and s1_side.kind != NC:
        return Cacheability(WB, s1_side.ra, s1_side.wa, s1_side.transient)
    return _WB_RWA  # R_TBQKG: Read-Allocate, Write-Allocate, Non-transient


def _combine_fwb(s1: Decoded, memattr: int) -> Decoded:
    """AArch64.S2ApplyFWBMemAttrs (Tables D8-100, D8-101): MemAttr[2] == 0:
    Device MemAttr[1:0], combined with a stage 1 Device type; 0b11: the
    stage 1 attributes; 0b10: Write-Back, stage 1 hints where stage 1 is
    cacheable (R_THYXB), else RWA (R_TBQKG), XS 0; 0b01: Non-cacheable unless
    stage 1 is Device. MemAttr[3] is RES0 without FEAT_MTE_PERM (R_NQDNZ)."""
    if not memattr & 4:
        dev = memattr & 3
        return Decoded(device=dev if s1.device is None else min(dev, s1.device), xs=s1.xs)
    low = memattr & 3
    if low == 0b11:
        return s1
    if low == 0b10:
        d = Decoded(None, _fwb_hints(s1, s1.inner), _fwb_hints(s1, s1.outer), xs=False)
        return replace(d, tagged=s1.tagged and _taggable(d))
    if s1.device is not None:
        return s1
    return Decoded(None, _NC, _NC, xs=s1.xs)


def _s2_candidates(memattr: int, fwb: bool) -> tuple[tuple[int, ...], str | None]:
    memattr &= 0xF
    if fwb:
        if memattr & 7 == 0b100:
            return ((memattr, 0, 1, 2, 3, 5, 6, 7),
                    f"stage 2 MemAttr=0b{memattr:04b} with FWB is Reserved (Table D8-101): "
                    "CONSTRAINED UNPREDICTABLE")
        return (memattr,), None
    if _s2_decode(memattr) is None:
        allocated = tuple(m for m in range(16) if _s2_decode(m) is not None)
        return (allocated, f"stage 2 MemAttr=0b{memattr:04b} is reserved "
                "(Table D8-96, S2ResMemAttr): CONSTRAINED UNPREDICTABLE")
    return (memattr,), None


@lru_cache(maxsize=256)
def _s1_decode_any(attr: int) -> Decoded:
    """decode_attr with every feature, a reserved encoding as Device-nGnRnE;
    memoized per byte: par_attrs decodes every permitted candidate."""
    d = decode_attr(attr, feat_xs=True, feat_mte2=True)
    return d if d is not None else Decoded(device=0)


@lru_cache(maxsize=8192)
def s2_combine(s1: MemAttrs, s2_memattr: int, s2_sh: int, fwb: bool, *,
               feat_xs: bool = False, s2_fnxs: bool = False) -> MemAttrs:
    """Stage 1 attributes ``s1`` through a stage 2 Block/Page descriptor with
    MemAttr[3:0] ``s2_memattr`` and SH[1:0] ``s2_sh``: FWB == 0 combines the
    two (D8.6.5, S2CombineS1MemAttrs), FWB == 1 lets stage 2 override
    (D8.6.6, AArch64.S2ApplyFWBMemAttrs). Shareability: the stronger of the
    two (D8.6.7.1), then Outer Shareable for Device and Normal iNCoNC
    (EffectiveShareability, R_YHCTP). Where stage 1 is Device or Normal
    iNCoNC, whether its own SH or Outer Shareable enters stage 2 is
    IMPLEMENTATION DEFINED (D8.6.2 R_NSCNC): both are permitted results.
    ``s2_fnxs``: the stage 2 FnXS bit (FEAT_XS, D8.7.4 R_FQWJG)."""
    notes = list(s1.notes)
    s2_attrs, why = _s2_candidates(s2_memattr, fwb)
    if why:
        notes.append(why)
    s2_shs = _sh_choices(s2_sh)
    if len(s2_shs) > 1:
        notes.append("stage 2 SH == 0b01 is reserved: CONSTRAINED UNPREDICTABLE "
                     "(Table D8-102; DecodeShareability)")
    pairs: list[tuple[int, int]] = []
    xs_differs = nscnc = False
    for a1, sh1 in sorted(s1.candidates(), key=lambda p: p != (s1.attr, s1.sh)):
        d1 = _s1_decode_any(a1)
        sh1_inputs = (sh1, OSH) if d1.forces_osh else (sh1,)
        nscnc |= len(set(sh1_inputs)) > 1
        for m in s2_attrs:
            if fwb:
                d = _combine_fwb(d1, m)
            else:
                d2 = _s2_decode(m)
                assert d2 is not None
                d = _combine_nofwb(d1, d2, s2_xs=True)
            if s2_fnxs:
                d = replace(d, xs=False)
            literal = encode_attr(d, feat_xs=True)
            attr = encode_attr(d, feat_xs=feat_xs)
            xs_differs |= literal != attr
            for sh2 in s2_shs:
                for sh_in in sh1_inputs:
                    sh = OSH if d.forces_osh else _combine_sh(sh_in, sh2)
                    pairs.append((attr, sh))
                    if literal != attr:
                        pairs.append((literal, sh))
    if nscnc and len({sh for _, sh in pairs}) > 1:
        notes.append("stage 1 Device or Normal Non-cacheable: IMPLEMENTATION DEFINED whether "
                     "its SH or Outer Shareable is input to stage 2 (D8.6.2 R_NSCNC)")
    if xs_differs:
        notes.append("without FEAT_XS the XS attribute does not exist (D8.7.4 R_DNHCL), but "
                     "the ASL (S2CombineS1MemAttrs, EncodePARAttrs) propagates it into "
                     "PAR.ATTR: both encodings are accepted")
    return _result(list(dict.fromkeys(pairs)), tuple(dict.fromkeys(notes)))


def par_attrs(a: MemAttrs) -> MemAttrs:
    """PAR_EL1.{ATTR, SH} for the final attributes (AArch64.EncodePAR):
    ATTR as is (EncodePARAttrs); SH forced to 0b10 for any Device memory and
    for Normal Inner and Outer Non-cacheable memory (PAREncodeShareability;
    D24.2 PAR_EL1.SH note "This field returns the value 0b10 for...")."""
    first, candidates = (a.attr, a.sh), a.candidates()
    pairs = [(attr, OSH if _forces_osh(attr) else sh)
             for attr, sh in (first, *(c for c in candidates if c != first))]
    return _result(list(dict.fromkeys(pairs)), a.notes)


@lru_cache(maxsize=256)
def _forces_osh(attr: int) -> bool:
    """Decoded.forces_osh of an attribute byte, memoized per byte: a reserved
    MAIR encoding makes every allocated one a candidate (s1_attrs)."""
    return _s1_decode_any(attr).forces_osh


PAR_ATTR_SHIFT = 56
PAR_SH_SHIFT = 7


@lru_cache(maxsize=256)
def _transient_bits(attr: int) -> int:
    """The Transient bit (bit [3] of a nibble) of the halves of a Normal
    ``attr`` that are Transient: an implementation without Transient support
    reports them Non-transient; a Non-transient half is fixed either way.
    Memoized per byte: par_attr_mask asks it of every permitted candidate."""
    d = decode_attr(attr, feat_xs=True, feat_mte2=True)
    if d is None or d.device is not None or d.tagged or attr in (0x40, 0xA0):
        return 0
    bits = 0
    for shift, c in ((4, d.outer), (0, d.inner)):
        if c.transient:
            bits |= 8 << shift
    return bits


TRANSIENT_NOTE = ("It is IMPLEMENTATION DEFINED whether the cache allocation hints can have "
                  "a Transient attribute (B2.10), and PAR_EL1.ATTR can report the attribute "
                  "actually implemented (D24.2 PAR_EL1.ATTR): a Transient hint may read as "
                  "Non-transient")


def par_attr_mask(a: MemAttrs, *, transient: bool = True) -> tuple[int, tuple[str, ...]]:
    """The bits of a successful 64-bit PAR_EL1 that the architecture fixes
    for the reported attributes ``a`` (from :func:`par_attrs`): ATTR [63:56]
    and SH [8:7] bits that differ between permitted results are cleared, all
    other bits are set; and the reasons. ``transient`` also clears the
    Transient bit of Transient cacheable halves (B2.10: Transient support
    is IMPLEMENTATION DEFINED)."""
    cands = a.candidates()
    attr_vary = sh_vary = 0
    for attr, sh in cands:
        attr_vary |= attr ^ a.attr
        sh_vary |= sh ^ a.sh
    notes = list(a.notes)
    if transient:
        t = 0
        for attr, _ in cands:
            t |= _transient_bits(attr)
        if t:
            attr_vary |= t
            notes.append(TRANSIENT_NOTE)
    mask = ((1 << 64) - 1) & ~((attr_vary & 0xFF) << PAR_ATTR_SHIFT) \
        & ~((sh_vary & 3) << PAR_SH_SHIFT)
    return mask, tuple(notes)
