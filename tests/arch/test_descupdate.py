"""What an AT may change in memory (xcheck.arch.descupdate), from the Arm ARM:
D8.5 hardware updates, AArch64.S1Translate / S2Translate's descriptor update
(AF with HA, SettingAccessFlagPermitted; no dirty state update for
AccessType_AT, R_ZYGHJ), AArch64.S1Walk's effective AP[2] with DBM."""

from __future__ import annotations

from pathlib import Path

from xcheck.arch.at import AtResult
from xcheck.arch.descupdate import AF_BIT, S2_DIRTY_BIT, DescriptorWord, permitted_together
from xcheck.arch.features import Features
from xcheck.model import run_model
from xcheck.scenario.loader import parse_scenario

FULL = Features().upgraded()

STAGE1 = """
name: s1
about: stage 1 leaves (4KB, level 3 page tables)
regs:
  SCTLR_EL1: {M: 1, C: 1, EE: %(ee)d}
  TCR_EL1: {TG0: 4K, T0SZ: 25, IPS: 40bit, EPD1: 1, HA: %(ha)d, HD: %(hd)d}
  MAIR_EL1: {Attr0: 0xff}
pstate: {EL: 2}
tables:
  TTBR0_EL1:
    - {va: 0x1000_0000, pa: 0x8000_0000, size: 4K, af: false}
    - {va: 0x1000_1000, pa: 0x8000_1000, size: 4K, ap: RO_EL1, dbm: 1}
    - {va: 0x1000_2000, pa: 0x8000_2000, size: 4K, ap: RO_EL1, af: false}
    - {va: 0x1000_3000, pa: 0x8000_3000, size: 4K}
probes:
  - {op: [S1E1R, S1E1W], va: [0x1000_0000, 0x1000_1000, 0x1000_2000, 0x1000_3000], el: 2}
"""

STAGE2 = """
name: s2
about: stage 2 leaves, one writable-clean, one with AF == 0
regs:
  HCR_EL2: {VM: 1}
  SCTLR_EL1: {M: 1, C: 1}
  TCR_EL1: {TG0: 4K, T0SZ: 25, IPS: 40bit, EPD1: 1, HA: 1}
  MAIR_EL1: {Attr0: 0xff}
  VTCR_EL2: {TG0: 4K, T0SZ: 24, SL0: 1, PS: 40bit, HA: 1, HD: 1}
pstate: {EL: 2}
tables:
  TTBR0_EL1:
    - {va: 0x1000_0000, pa: 0x8000_0000, size: 4K}
    - {va: 0x1000_1000, pa: 0x8000_1000, size: 4K}
    - {va: 0x2000_0000, level: 2, raw: 0x0000_0000_A000_0003}
    - {va: 0x2020_0000, level: 2, raw: 0x0000_0000_B000_0003}
    - {va: 0x2040_0000, level: 2, raw: 0x0000_0000_C000_0003}
  VTTBR_EL2:
    - {ipa: 0x4000_0000, pa: 0x4000_0000, size: 1G}
    - {ipa: 0x8000_0000, pa: 0x4060_0000, size: 4K, s2ap: RO, dbm: 1}
    - {ipa: 0x8000_1000, pa: 0x4060_1000, size: 4K, af: false}
    - {ipa: 0xA000_0000, pa: 0x4070_0000, size: 4K, s2ap: RO, dbm: 1}
    - {ipa: 0xB000_0000, pa: 0x4071_0000, size: 4K, s2ap: RO}
    - {ipa: 0xC000_0000, pa: 0x4072_0000, size: 4K, s2ap: RO}
memory:
  # stage 1 level 3 tables at IPA 0xA000_0000, 0xB000_0000 and 0xC000_0000:
  # a page with AF == 0 (at 0xC000_0000 read-only, AP[2] == 1)
  - {addr: 0x4070_0000, words: [0x0000_0000_8000_0343]}
  - {addr: 0x4071_0000, words: [0x0000_0000_8000_0343]}
  - {addr: 0x4072_0000, words: [0x0000_0000_8000_03C3]}
probes:
  - {op: [S12E1R, S12E1W], va: [0x1000_0000, 0x1000_1000, 0x2000_0000, 0x2020_0000,
                                0x2040_0000], el: 2}
"""


def _results(text: str, **regs: int) -> dict[tuple[str, int], AtResult]:
    s = parse_scenario(text % regs if regs else text, Path("t.yaml"))
    setup = s.build()
    res = run_model(setup, FULL, 128 << 20)
    return {(p.op.value, p.va): r for p, r in zip(setup.probes, res, strict=True)}


def _leaf(r: AtResult, stage_pa: int | None = None) -> DescriptorWord:
    """The word at ``stage_pa``, or the last word read (the stage 1 leaf)."""
    if stage_pa is None:
        return r.memory[-1]
    (w,) = [w for w in r.memory if w.pa == stage_pa]
    return w


def test_every_descriptor_read_is_listed_tables_never_change() -> None:
    r = _results(STAGE1, ee=0, ha=1, hd=0)[("S1E1R", 0x1000_0000)]
    assert len(r.memory) == 3  # level 1 and 2 tables, the level 3 page
    assert [w.may_set for w in r.memory[:2]] == [0, 0]  # Table descriptors (no FEAT_HAFT)


def test_af_may_be_set_with_ha_and_never_required() -> None:
    r = _results(STAGE1, ee=0, ha=1, hd=0)[("S1E1R", 0x1000_0000)]
    leaf = _leaf(r)
    assert leaf.may_set == AF_BIT
    assert leaf.permits(leaf.value) and leaf.permits(leaf.value | AF_BIT)
    assert not leaf.permits(leaf.value | AF_BIT | 1 << 7)


def test_af_may_be_set_with_a_permission_fault() -> None:
    # SettingAccessFlagPermitted: CONSTRAINED UNPREDICTABLE with a Permission fault
    r = _results(STAGE1, ee=0, ha=1, hd=0)[("S1E1W", 0x1000_2000)]
    assert r.fault is not None and r.fault.statuscode.value == "permission"
    assert _leaf(r).may_set == AF_BIT


def test_nothing_may_change_without_ha() -> None:
    res = _results(STAGE1, ee=0, ha=0, hd=0)
    assert all(w.may_set == 0 for r in res.values() for w in r.memory)


def test_writable_clean_write_succeeds_and_dirty_state_stays() -> None:
    # AArch64.S1Walk: DBM with HA and HD clears the effective AP[2] (R_RKMHW),
    # and an AT never updates the dirty state (R_ZYGHJ).
    r = _results(STAGE1, ee=0, ha=1, hd=1)[("S1E1W", 0x1000_1000)]
    assert r.kind == "par" and r.fault is None
    leaf = _leaf(r)
    assert leaf.value >> 7 & 1 == 1  # AP[2] == 1 in memory
    assert leaf.may_set == 0
    assert not leaf.permits(leaf.value & ~(1 << 7))
    assert leaf.nearest(leaf.value & ~(1 << 7)) == leaf.value


def test_big_endian_tables_permit_af_in_memory_byte_order() -> None:
    r = _results(STAGE1, ee=1, ha=1, hd=0)[("S1E1R", 0x1000_0000)]
    # AF is bit 10 of the descriptor, byte 1 bit 2: byte 6 bit 2 of the word as stored
    assert _leaf(r).may_set == 1 << 50


def test_stage2_af_may_be_set_stage2_dirty_state_stays() -> None:
    res = _results(STAGE2)
    out_af = res[("S12E1R", 0x1000_1000)]
    assert _leaf(out_af).may_set == AF_BIT  # the S2 leaf of the output, AF == 0
    clean = res[("S12E1W", 0x1000_0000)]
    assert clean.kind == "par" and clean.fault is None  # S2 DBM with HD grants write
    assert all(w.may_set == 0 for w in clean.memory)  # no S2AP[1] update by the AT


def test_af_write_through_stage2_may_set_the_stage2_dirty_state() -> None:
    # The AF update of the stage 1 descriptor at IPA 0xA000_0000 is a write
    # (CreateAccDescTTEUpdate, not AccessType_AT) to a writable-clean S2 page.
    r = _results(STAGE2)[("S12E1R", 0x2000_0000)]
    s1_leaf = _leaf(r, 0x4070_0000)
    assert s1_leaf.may_set == AF_BIT
    s2_leaf = [w for w in r.memory if w.value & 0xFFFF_F000 == 0x4070_0000]
    assert [w.may_set for w in s2_leaf] == [S2_DIRTY_BIT]


def test_no_af_update_where_the_write_through_stage2_faults() -> None:
    r = _results(STAGE2)[("S12E1R", 0x2020_0000)]  # S2 read-only, no DBM
    assert _leaf(r, 0x4071_0000).may_set == 0


def test_af_write_faulting_at_stage2_may_replace_a_stage1_permission_fault() -> None:
    # A write to a read-only page with AF == 0 and TCR.HA == 1: the Permission
    # fault stands, and AArch64.SettingAccessFlagPermitted lets the walk set AF
    # all the same (CONSTRAINED UNPREDICTABLE). That write goes through stage 2
    # (CreateAccDescTTEUpdate), where the table's page is read-only: its
    # stage 2 Permission fault on the walk (MemSwapTableDesc) is then the
    # AT's answer, level 3 of the 4KB stage 2 (D24.2 PAR_EL1: S, PTW, FST).
    r = _results(STAGE2)[("S12E1W", 0x2040_0000)]
    assert r.fault is not None and (r.fault.statuscode.value, r.fault.stage) == ("permission", 1)
    (alt,) = r.alternatives
    assert alt.kind == "par" and alt.fault is not None
    assert (alt.fault.statuscode.value, alt.fault.stage, alt.fault.level) == ("permission", 2, 3)
    assert alt.fault.s2fs1walk
    # a read has no Permission fault and no AF alternative beyond the update
    # the read's translation already allows (the same stage 2 fault)
    read = _results(STAGE2)[("S12E1R", 0x2040_0000)]
    assert read.fault is None
    assert [a.fault.s2fs1walk for a in read.alternatives if a.fault] == [True]


TABLES_READ_ONLY = """
name: s2ro
about: stage 1 tables read-only at stage 2, a writable-clean block whose output is too
regs:
  HCR_EL2: {VM: 1}
  SCTLR_EL1: {M: 1, C: 1}
  TCR_EL1: {TG0: 4K, T0SZ: 32, IPS: 40bit, EPD1: 1, HA: 1, HD: 1}
  MAIR_EL1: {Attr0: 0xff}
  VTCR_EL2: {TG0: 4K, T0SZ: 32, SL0: 1, PS: 40bit}
pstate: {EL: 2}
tables:
  TTBR0_EL1:
    - {va: 0x3000_0000, pa: 0x3000_0000, size: 2M, ap: RO_EL1, dbm: 1}
  VTTBR_EL2:
    - {ipa: 0x4000_0000, pa: 0x4000_0000, size: 1G, s2ap: RO}
    - {ipa: 0x3000_0000, pa: 0x4a00_0000, size: 2M, s2ap: RO}
probes:
  - {op: [S12E1W, S1E1W], va: 0x3000_0000, el: 2}
"""


def test_at_write_to_writable_clean_faults_on_the_output_not_the_walk() -> None:
    # AArch64.S1Translate updates the dirty state (MemSwapTableDesc, a stage 2
    # walk write that would fault on the read-only tables here) only when the
    # access is not AccessType_AT (R_ZYGHJ); AF == 1 needs no update either. So
    # AArch64.FullTranslate goes on to the output's stage 2 check:
    # AArch64.S2CheckPermissions, S2AP == 0b01 has no write, a Permission fault
    # at the level of the 2MB stage 2 block (2), PAR.S = 1 and PTW = 0.
    res = _results(TABLES_READ_ONLY)
    r = res[("S12E1W", 0x3000_0000)]
    assert r.kind == "par" and r.fault is not None
    assert (r.fault.statuscode.value, r.fault.stage, r.fault.level) == ("permission", 2, 2)
    assert not r.fault.s2fs1walk
    assert r.alternatives == ()
    assert all(w.may_set == 0 for w in r.memory)
    # stage 1 alone: writable (R_RKMHW), the AT translates
    s1 = res[("S1E1W", 0x3000_0000)]
    assert s1.kind == "par" and s1.fault is None and s1.alternatives == ()


def test_several_ats_permit_the_union_of_their_updates() -> None:
    a, b = DescriptorWord(0x10, 0x3, AF_BIT), DescriptorWord(0x10, 0x3, S2_DIRTY_BIT)
    both = permitted_together([a, b, DescriptorWord(0x18, 0x1)])
    assert both[0x10].may_set == AF_BIT | S2_DIRTY_BIT and both[0x18].may_set == 0
