"""Stage 1 translation (Arm ARM DDI 0487, D8.1-D8.3, J1.1.4 AArch64.S1Translate)."""

from __future__ import annotations

import dataclasses

import pytest
from archtables import (
    AF,
    LEAF,
    MAIR,
    MAX,
    SCTLR_ON,
    TCR_4K_48,
    Tables,
    at,
    regs,
)

from xcheck.arch.at import ArchState, translate
from xcheck.arch.features import Features
from xcheck.arch.par import decode_par
from xcheck.arch.walkparams import ImpDef
from xcheck.machine import RAM_BASE, AtOp

PA = RAM_BASE + 0x0123_4000
VA = 0x0000_0012_3456_7000


def el1(tables: Tables, tcr: int = TCR_4K_48, **over: int) -> dict[str, int]:
    base = {"SCTLR_EL1": SCTLR_ON, "TCR_EL1": tcr, "TTBR0_EL1": tables.root, "MAIR_EL1": MAIR}
    return regs(**{**base, **over})


def fst(par: int) -> tuple[int, int, int]:
    f = decode_par(par)
    assert par & 1, f"expected a fault, got {par:#x}"
    return f["FST"], f["S"], f["PTW"]


def test_4k_four_level_walk_reports_pa_attr_sh() -> None:
    """D8.2: a 48-bit VA resolves through levels 0-3; PAR.PA/ATTR/SH (D24.2 PAR_EL1)."""
    t = Tables()
    t.map(VA, PA)
    r = at(AtOp.S1E1R, VA | 0xABC, el1(t), t.image())
    f = decode_par(r.par)
    assert r.kind == "par" and f["F"] == 0
    assert f["PA"] << 12 == PA and f["ATTR"] == 0xFF and f["SH"] == 0b11
    assert [s.level for s in r.trace if s.addr is not None] == [0, 1, 2, 3]


@pytest.mark.parametrize(("g", "tg0", "txsz", "level"), [
    (12, 0b00, 16, 0), (12, 0b00, 25, 1), (12, 0b00, 33, 1), (12, 0b00, 34, 2), (12, 0b00, 39, 2),
    (14, 0b10, 16, 0), (14, 0b10, 17, 1), (14, 0b10, 28, 2), (14, 0b10, 39, 3),
    (16, 0b01, 16, 1), (16, 0b01, 22, 2), (16, 0b01, 39, 3),
], ids=lambda v: str(v))
def test_start_level_from_txsz(g: int, tg0: int, txsz: int, level: int) -> None:
    """AArch64.S1StartLevel: 3 - ((iasize - 1 - granulebits) DIV stride); the walk
    starts there and resolves a page at level 3."""
    t = Tables(granule_bits=g, iasize=64 - txsz, start_level=level)
    va = (0x5A5A_5A5A_5A5A_5A5A & ((1 << (64 - txsz)) - 1)) & ~((1 << g) - 1)
    t.map(va, PA & ~((1 << g) - 1))
    sysregs = el1(t, tcr=txsz | (tg0 << 14) | (0b101 << 32))
    state = ArchState.from_sysregs(sysregs, MAX, 1, False)
    assert state.el10.lower.start_level == level
    r = at(AtOp.S1E1R, va, sysregs, t.image())
    assert decode_par(r.par)["PA"] << 12 == PA & ~((1 << g) - 1), r.render()
    assert [s.level for s in r.trace if s.addr is not None] == list(range(level, 4))


@pytest.mark.parametrize(("txsz", "features", "impdef", "expect"), [
    (8, MAX, ImpDef(), "clamp16"),  # below minimum, no FEAT_LVA: treated as 16
    (8, dataclasses.replace(MAX, lva=True), ImpDef(), "fault"),  # FEAT_LVA: fault
    (8, MAX, ImpDef(fault_txsz_below_min=True), "fault"),
    (45, MAX, ImpDef(), "clamp39"),  # above maximum: IMPLEMENTATION DEFINED clamp
    (45, MAX, ImpDef(fault_txsz_above_max=True), "fault"),
], ids=["below-clamp", "below-lva-fault", "below-impdef-fault", "above-clamp",
        "above-impdef-fault"])
def test_txsz_out_of_range(txsz: int, features: Features, impdef: ImpDef, expect: str) -> None:
    """AArch64.S1TxSZFaults / S1MinTxSZ / MaxTxSZ: fault (Translation, level 0) or clamp."""
    iasize = 48 if expect == "clamp16" else 25
    t = Tables(iasize=iasize, start_level=0 if iasize == 48 else 2)
    va = 0x1000
    t.map(va, PA)
    state = ArchState.from_sysregs(el1(t, tcr=txsz | (0b101 << 32)), features, 1, False, impdef)
    r = translate(AtOp.S1E1R, va, state, t.image())
    if expect == "fault":
        assert fst(r.par) == (0b000100, 0, 0)
    else:
        assert decode_par(r.par)["PA"] << 12 == PA, r.render()
        assert any(n for bits, n in r.mask_notes if bits == 0 and "TxSZ" in n)


def test_ttbr1_selected_by_va_bit_55() -> None:
    """AArch64.GetVARange / S1TTBR: VA[55] == 1 walks TTBR1_EL1 (T1SZ, TG1)."""
    t0, t1 = Tables(), Tables(arena=RAM_BASE + 0x0400_0000)
    va1 = 0xFFFF_8000_0000_0000 | VA
    t1.map(va1, PA)
    t0.words.update(t1.words)
    r = at(AtOp.S1E1R, va1, el1(t0, TTBR1_EL1=t1.root), t0.image())
    assert decode_par(r.par)["PA"] << 12 == PA


@pytest.mark.parametrize("va", [0x0001_0000_0000_0000, 0xFFFE_FFFF_FFFF_F000,
                                0x8000_0000_0000_0000, 0x00FF_0000_0000_0000])
def test_va_hole_is_translation_fault_level_0(va: int) -> None:
    """AArch64.VAIsOutOfRange: VA[63:iasize] not all 0 (TTBR0) / all 1 (TTBR1)."""
    t = Tables()
    r = at(AtOp.S1E1R, va, el1(t, TTBR1_EL1=t.root), t.image())
    assert fst(r.par) == (0b000100, 0, 0)


@pytest.mark.parametrize(("tbi0", "ok"), [(1, True), (0, False)])
def test_tbi_ignores_top_byte(tbi0: int, ok: bool) -> None:
    """AArch64.AddrTop: with TCR.TBI0 == 1 VA[63:56] is ignored (AT is a data
    access, so TBID does not matter)."""
    t = Tables()
    t.map(VA, PA)
    r = at(AtOp.S1E1R, 0x5A00_0000_0000_0000 | VA, el1(t, tcr=TCR_4K_48 | (tbi0 << 37)),
           t.image())
    if ok:
        assert decode_par(r.par)["PA"] << 12 == PA
    else:
        assert fst(r.par) == (0b000100, 0, 0)


@pytest.mark.parametrize(("tcr_bit", "op", "va", "features_e0pd", "faults"), [
    (7, AtOp.S1E1R, VA, True, True),  # EPD0
    (23, AtOp.S1E1R, 0xFFFF_0000_0000_0000 | VA, True, True),  # EPD1
    (55, AtOp.S1E0R, VA, True, True),  # E0PD0, EL0 access
    (55, AtOp.S1E1R, VA, True, False),  # E0PD0 does not affect EL1 accesses
    (55, AtOp.S1E0R, VA, False, False),  # E0PD0 is RES0 without FEAT_E0PD
    (56, AtOp.S1E0R, 0xFFFF_0000_0000_0000 | VA, True, True),  # E0PD1
], ids=["EPD0", "EPD1", "E0PD0-EL0", "E0PD0-EL1", "E0PD0-no-feature", "E0PD1"])
def test_epd_e0pd(tcr_bit: int, op: AtOp, va: int, features_e0pd: bool, faults: bool) -> None:
    """AArch64.S1Walk (EPDn) and AArch64.S1Translate (E0PDn): Translation fault, level 0."""
    t = Tables()
    t.map(va & ((1 << 48) - 1), PA, flags=LEAF | (0b01 << 6))  # EL0 and EL1 read/write
    r = at(op, va, el1(t, tcr=TCR_4K_48 | (1 << tcr_bit), TTBR1_EL1=t.root), t.image(),
           features=dataclasses.replace(MAX, e0pd=features_e0pd))
    if faults:
        assert fst(r.par) == (0b000100, 0, 0)
    else:
        assert not r.par & 1, r.render()


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_invalid_descriptor_is_translation_fault_at_its_level(level: int) -> None:
    """AArch64.DecodeDescriptorType: bit[0] == 0 is Invalid: Translation fault at that level."""
    t = Tables()
    leaf = t.map(VA, PA)
    t.set(t.entry(VA, level) if level < 3 else leaf, 0)
    r = at(AtOp.S1E1R, VA, el1(t), t.image())
    assert fst(r.par) == (0b000100 | level, 0, 0)


@pytest.mark.parametrize(("g", "level", "pa_bits", "ds", "ok"), [
    (12, 0, 48, False, False), (12, 1, 48, False, True), (12, 2, 48, False, True),
    (12, 0, 52, True, True),
    (14, 1, 48, False, False), (14, 2, 48, False, True), (14, 1, 52, True, True),
    (16, 1, 48, False, False), (16, 1, 52, False, True), (16, 2, 48, False, True),
], ids=lambda v: str(v))
def test_block_levels(g: int, level: int, pa_bits: int, ds: bool, ok: bool) -> None:
    """AArch64.BlockDescSupported: blocks only where the granule allows them;
    elsewhere a block descriptor is Invalid (Translation fault at that level)."""
    iasize, start = {12: (48, 0), 14: (48, 0), 16: (48, 1)}[g]
    features = dataclasses.replace(MAX, pa_range_bits=pa_bits, lpa=pa_bits >= 52, lpa2=ds)
    t = Tables(granule_bits=g, iasize=iasize, start_level=start)
    size = 1 << ((3 - level) * (g - 3) + g)
    flags = LEAF if not ds else AF
    t.map(0, 0x4000_0000 & ~(size - 1) if size <= 0x4000_0000 else 0, level=level, flags=flags)
    tg0 = {12: 0, 14: 0b10, 16: 0b01}[g]
    tcr = (64 - iasize) | (tg0 << 14) | ((0b110 if pa_bits >= 52 else 0b101) << 32) \
        | (int(ds) << 59)
    r = at(AtOp.S1E1R, 0x1000, el1(t, tcr=tcr), t.image(), features=features)
    if ok:
        assert not r.par & 1, r.render()
    else:
        assert fst(r.par) == (0b000100 | level, 0, 0)


def test_level3_block_encoding_is_invalid() -> None:
    """D8.3: at level 3 bits[1:0] == 0b01 is Invalid (no level 3 blocks)."""
    t = Tables()
    t.map(VA, PA, kind=0b01)
    assert fst(at(AtOp.S1E1R, VA, el1(t), t.image()).par) == (0b000111, 0, 0)


@pytest.mark.parametrize(("tcr_ha", "hafdbs", "faults"), [(0, 2, True), (1, 2, False),
                                                          (1, 0, True)])
def test_access_flag(tcr_ha: int, hafdbs: int, faults: bool) -> None:
    """AArch64.S1Walk: AF == 0 with HA == 0 is an Access flag fault; with
    FEAT_HAFDBS and TCR.HA == 1 the AT reports as if AF == 1 (D8.5 R_XQSMX)."""
    t = Tables()
    leaf = t.map(VA, PA, level=2, flags=LEAF & ~AF)
    mem = t.image()
    r = at(AtOp.S1E1R, VA, el1(t, tcr=TCR_4K_48 | (tcr_ha << 39)), mem,
           features=dataclasses.replace(MAX, hafdbs=hafdbs))
    if faults:
        assert fst(r.par) == (0b001010, 0, 0)
    else:
        assert decode_par(r.par)["PA"] << 12 == (PA & ~0x1F_FFFF) | (VA & 0x1F_F000)
    assert mem.read64(leaf) == t.words[leaf]  # never updated


def test_address_size_faults() -> None:
    """AArch64.S1Walk / S1OAOutOfRange against min(IPS, PAMax): the TTBR base
    (level 0), a next-level table address (the table descriptor's level) and
    the output address (the leaf's level)."""
    t = Tables()
    leaf = t.map(VA, PA)
    tcr40 = (TCR_4K_48 & ~(7 << 32)) | (0b010 << 32)  # IPS = 40 bits
    # TTBR base above 40 bits
    r = at(AtOp.S1E1R, VA, el1(t, tcr=tcr40, TTBR0_EL1=t.root | (1 << 44)), t.image())
    assert fst(r.par) == (0b000000, 0, 0)
    # level 1 table descriptor pointing above 40 bits
    l1 = t.entry(VA, 1)
    t.set(l1, t.words[l1] | (1 << 41))
    assert fst(at(AtOp.S1E1R, VA, el1(t, tcr=tcr40), t.image()).par) == (0b000001, 0, 0)
    t.set(l1, t.words[l1] & ~(1 << 41))
    t.set(leaf, t.words[leaf] | (1 << 40))
    assert fst(at(AtOp.S1E1R, VA, el1(t, tcr=tcr40), t.image()).par) == (0b000011, 0, 0)
    # IPS above PARange: capped at PAMax (AArch64.PhysicalAddressSize)
    small = dataclasses.replace(MAX, pa_range_bits=40)
    assert fst(at(AtOp.S1E1R, VA, el1(t), t.image(), features=small).par) == (0b000011, 0, 0)


@pytest.mark.parametrize(("op", "ap", "table_flags", "faults"), [
    (AtOp.S1E1W, 0b10, 0, True),  # AP[2] read-only
    (AtOp.S1E1R, 0b10, 0, False),
    (AtOp.S1E1W, 0b00, 1 << 62, True),  # APTable[1]: no write at any level
    (AtOp.S1E0R, 0b01, 1 << 61, True),  # APTable[0]: no EL0 access
    (AtOp.S1E0R, 0b00, 0, True),  # AP 0b00: EL1 only
    (AtOp.S1E0W, 0b01, 0, False),
], ids=["AP-RO-write", "AP-RO-read", "APTable-RO", "APTable-noEL0", "AP-EL1-only",
        "AP-EL0-RW"])
def test_permission_faults(op: AtOp, ap: int, table_flags: int, faults: bool) -> None:
    """D8.4 direct and hierarchical permissions (AArch64.S1ApplyTablePerms,
    S1DirectBasePermissions): Permission fault at the leaf's level."""
    t = Tables()
    t.map(VA, PA, flags=LEAF | (ap << 6), table_flags=table_flags)
    r = at(op, VA, el1(t), t.image())
    if faults:
        assert fst(r.par) == (0b001111, 0, 0)
    else:
        assert not r.par & 1, r.render()


@pytest.mark.parametrize(("hpd", "faults"), [(0, True), (1, False)])
def test_hpd_disables_hierarchical_permissions(hpd: int, faults: bool) -> None:
    """TCR_EL1.HPD0 (FEAT_HPDS): APTable is ignored (AArch64.S1NextWalkStateTable)."""
    t = Tables()
    t.map(VA, PA, table_flags=1 << 62)
    r = at(AtOp.S1E1W, VA, el1(t, tcr=TCR_4K_48 | (hpd << 41)), t.image())
    assert bool(r.par & 1) is faults


def test_writable_clean_descriptor_permits_at_write() -> None:
    """D8.5 R_RKMHW: AT S1E1W on a writable-clean descriptor (DBM == 1, AP[2] == 1)
    with TCR.HD == 1 is permitted, and the descriptor is not updated (R_ZYGHJ)."""
    t = Tables()
    leaf = t.map(VA, PA, flags=LEAF | (0b10 << 6) | (1 << 51))
    mem = t.image()
    on = el1(t, tcr=TCR_4K_48 | (1 << 39) | (1 << 40))
    assert not at(AtOp.S1E1W, VA, on, mem).par & 1
    assert mem.read64(leaf) == t.words[leaf]
    assert fst(at(AtOp.S1E1W, VA, el1(t, tcr=TCR_4K_48 | (1 << 39)), mem).par)[0] == 0b001111


def test_contiguous_bit_is_accepted() -> None:
    """D8.7: the Contiguous bit is a TLB hint; it does not change the AT result."""
    t = Tables()
    t.map(VA, PA, flags=LEAF | (1 << 52))
    assert decode_par(at(AtOp.S1E1R, VA, el1(t), t.image()).par)["PA"] << 12 == PA


def test_walk_outside_memory_is_an_abort_not_a_par() -> None:
    """AArch64.AT: a Synchronous External abort on the walk is taken as a Data
    Abort; PAR_EL1 does not report it (D24.2 PAR_EL1.FST note)."""
    t = Tables()
    r = at(AtOp.S1E1R, VA, el1(t, TTBR0_EL1=0x1000_0000), t.image())
    assert r.kind == "abort" and r.fault is not None and r.fault.level == 0


def test_big_endian_descriptors() -> None:
    """SCTLR_EL1.EE == 1: descriptors are read big-endian (FetchDescriptor)."""
    t = Tables()
    t.map(VA, PA)
    t.words = {a: int.from_bytes(v.to_bytes(8, "little"), "big") for a, v in t.words.items()}
    r = at(AtOp.S1E1R, VA, el1(t, SCTLR_EL1=SCTLR_ON | (1 << 25)), t.image())
    assert decode_par(r.par)["PA"] << 12 == PA


def test_mmu_off_flat_device() -> None:
    """AArch64.S1DisabledOutput: PA = VA, Device-nGnRnE (ATTR 0x00), SH forced
    to 0b10 (PAREncodeShareability); VA above PAMax is an Address size fault, level 0."""
    r = at(AtOp.S1E1R, 0x4000_1000, regs(), Tables().image())
    assert r.par & r.mask == 0x4000_1900 & r.mask
    assert fst(at(AtOp.S1E1R, 1 << 48, regs(), Tables().image()).par) == (0, 0, 0)


def test_sctlr_c_zero_makes_normal_non_cacheable() -> None:
    """AArch64.S1TreatAsNormalNC: SCTLR_EL1.C == 0 treats Normal memory as
    Normal Non-cacheable (ATTR 0x44, SH 0b10) for data accesses."""
    t = Tables()
    t.map(VA, PA)
    r = at(AtOp.S1E1R, VA, el1(t, SCTLR_EL1=SCTLR_ON & ~4), t.image())
    f = decode_par(r.par)
    assert (f["ATTR"], f["SH"]) == (0x44, 0b10)


def test_transient_attribute_bits_are_masked_in_the_result() -> None:
    """B2.10: support for Transient memory is IMPLEMENTATION DEFINED, so a
    PE may report a Transient MAIR encoding as its Non-transient twin: the
    translate() mask leaves the Transient bits of PAR.ATTR out of the
    comparison, with a note, and keeps the rest of ATTR (D24.2 PAR_EL1)."""
    t = Tables()
    t.map(VA, PA)
    sysregs = el1(t)
    sysregs["MAIR_EL1"] = 0x77  # Normal, Inner and Outer Write-Back Transient, R+W allocate
    r = at(AtOp.S1E1R, VA, sysregs, t.image())
    assert r.kind == "par" and decode_par(r.par)["ATTR"] == 0x77
    attr_mask = (r.mask >> 56) & 0xFF
    assert attr_mask & 0x88 == 0x00  # bit 3 of each half: Transient (0b01RW) or not (0b11RW)
    assert attr_mask & 0x33 == 0x33  # the allocation hints stay compared
    assert any(bits >> 56 and "ransient" in why for bits, why in r.mask_notes)


def test_min_txsz_is_12_with_ds_even_without_lva() -> None:
    """AArch64.S1MinTxSZ: 12 when DS == 1 (FEAT_LPA2), or with FEAT_LVA and the
    64KB granule; otherwise 16. FEAT_LVA is not needed for DS."""
    from xcheck.arch.regime import HcrState, Regime
    from xcheck.arch.walkparams import ImpDef, s1_regime_params

    feats = dataclasses.replace(MAX, lpa2=True, lva=False, pa_range_bits=52)
    tcr = 12 | (1 << 59) | (0b110 << 32) | (1 << 23)  # T0SZ=12, DS=1, IPS=52, EPD1
    sysregs = regs(TCR_EL1=tcr, SCTLR_EL1=SCTLR_ON)
    hcr = HcrState.decode(sysregs["HCR_EL2"], feats)
    rp = s1_regime_params(Regime.EL10, sysregs, hcr, feats, ImpDef())
    p = rp.params(0)
    assert p.txsz == 12 and not p.txsz_fault
    assert not [n for n in p.notes if "below the minimum" in n]


def test_sctlr_c_off_reports_nc_or_the_descriptor_attributes() -> None:
    """AArch64.S1Translate: with SCTLR_EL1.C == 0 a data access to Normal
    memory is Normal Non-cacheable: PAR.ATTR 0x44, SH 0b10 (D24.2 PAR_EL1.SH).
    D24.2 PAR_EL1.ATTR also permits the value the descriptor gives (MAIR
    0xFF with the descriptor's SH): the result carries it as an alternative."""
    t = Tables()
    t.map(VA, PA)  # LEAF: AttrIndx 0, SH Inner Shareable
    sysregs = el1(t)
    sysregs["SCTLR_EL1"] = SCTLR_ON & ~(1 << 2)
    r = at(AtOp.S1E1R, VA, sysregs, t.image())
    f = decode_par(r.par)
    assert (f["ATTR"], f["SH"]) == (0x44, 0b10)
    (alt,) = r.alternatives
    g = decode_par(alt.par)
    assert (g["ATTR"], g["SH"], g["PA"]) == (0xFF, 0b11, f["PA"])
    on = at(AtOp.S1E1R, VA, el1(t), t.image())
    assert on.alternatives == ()
