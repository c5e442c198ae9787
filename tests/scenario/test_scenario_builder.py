"""The page-table builder, checked by walking what it built with the model:
every mapped VA must translate to the PA its mapping names, every unmapped
VA must fault where the tree ends, and the harness must translate to
HARNESS_PA in every regime where it is mapped. Expected values come from the
mappings, never from an emulator."""

from __future__ import annotations

import pytest
from modelrun import CPU, at, fault, pa, run, scenario

from xcheck.arch.fault import Fault
from xcheck.arch.features import Features
from xcheck.machine import (
    ARENA_PA,
    ARENA_SIZE,
    HARNESS_CODE_SIZE,
    HARNESS_PA,
    HARNESS_SIZE,
    TRANSLATION_SYSREGS,
    AtOp,
)
from xcheck.scenario.loader import ScenarioError

S1E1R, S1E1W, S1E2R, S1E2W = AtOp.S1E1R, AtOp.S1E1W, AtOp.S1E2R, AtOp.S1E2W
S12E1R = AtOp.S12E1R

# (granule, TCR fields, [(va, pa, size, level)], an unmapped VA and the level its walk ends)
GRANULES = [
    ("4K", "T0SZ: 25", [(0x4000_0000, 0x4000_0000, "1G", 1), (0x8020_0000, 0x4060_0000, "2M", 2),
                        (0x8000_5000, 0x4070_3000, "4K", 3)], (0x8000_6000, 3)),
    ("4K", "T0SZ: 16", [(0x7F_8000_0000, 0x4000_0000, "1G", 1),
                        (0x1000, 0x4070_1000, "4K", 3)], (0x80_0000_0000, 0)),
    ("16K", "T0SZ: 28", [(0x6000_0000, 0x4200_0000, "32M", 2),
                         (0x8000_4000, 0x4070_8000, "16K", 3)], (0x8000_8000, 3)),
    ("16K", "T0SZ: 17", [(0x1_0000_0000, 0x4200_0000, "32M", 2)], (0x10_0000_0000, 1)),
    ("64K", "T0SZ: 22", [(0x2000_0000, 0x6000_0000, "512M", 2),
                         (0x8001_0000, 0x4073_0000, "64K", 3)], (0x1_0000_0000, 2)),
    ("64K", "T0SZ: 16", [(0x8_0000_0000, 0x4000_0000, "512M", 2)], (0x400_0000_0000, 1)),
]


def _ttbr0_el1(granule: str, tcr: str, maps: list[tuple[int, int, str, int]],
               extra: str = "") -> str:
    lines = "\n".join(f"    - {{va: {va:#x}, pa: {p:#x}, size: {size}}}" for va, p, size, _ in maps)
    return (f"regs:\n  SCTLR_EL1: {{M: 1}}\n  TCR_EL1: {{TG0: {granule}, {tcr}, EPD1: 1, "
            f"IPS: 40bit}}\n  MAIR_EL1: {{Attr0: 0xff}}\n{extra}tables:\n  TTBR0_EL1:\n{lines}\n")


@pytest.mark.parametrize(("granule", "tcr", "maps", "hole"), GRANULES,
                         ids=[f"{g[0]}-{g[1].replace(': ', '')}" for g in GRANULES])
def test_mappings_translate(granule: str, tcr: str, maps: list[tuple[int, int, str, int]],
                            hole: tuple[int, int]) -> None:
    units = {"K": 10, "M": 20, "G": 30}
    half = [(int(size[:-1]) << units[size[-1]]) // 2 for _, _, size, _ in maps]
    probes = ", ".join(f"{va + 0x123:#x}, {va + h + 0x8:#x}"
                       for (va, *_), h in zip(maps, half, strict=True))
    s = scenario(_ttbr0_el1(granule, tcr, maps)
                 + f"probes:\n  - {{op: S1E1R, va: [{probes}, {hole[0]:#x}]}}\n")
    results = run(s)
    for i, ((_, p, _, _), h) in enumerate(zip(maps, half, strict=True)):
        assert pa(results[2 * i]) == p, results[2 * i].render()
        assert pa(results[2 * i + 1]) == p + (h & ~0xFFF), results[2 * i + 1].render()
    assert fault(results[-1]) == (Fault.TRANSLATION, hole[1], 1, False)
    # every level of each mapping's walk, as the trace shows it
    for i, (_, _, _, level) in enumerate(maps):
        leaf = [st for st in results[2 * i].trace if st.what in ("block", "page")]
        assert [st.level for st in leaf] == [level], results[2 * i].render()


def test_page_offset_reaches_the_pa() -> None:
    s = scenario(_ttbr0_el1("4K", "T0SZ: 25", [(0x8020_0000, 0x4060_0000, "2M", 2)])
                 + "probes:\n  - {op: S1E1R, va: 0x8023_4567}\n")
    assert pa(run(s)[0]) == 0x4063_4000


def test_ttbr1_range() -> None:
    s = scenario(
        "regs:\n  SCTLR_EL1: {M: 1}\n  TCR_EL1: {TG0: 4K, T0SZ: 25, TG1: 64K, T1SZ: 22}\n"
        "tables:\n  TTBR1_EL1:\n"
        "    - {va: 0xffff_ffff_e000_0000, pa: 0x6000_0000, size: 512M}\n"
        "    - {va: 0xffff_fc00_0001_0000, pa: 0x4074_0000, size: 64K}\n"
        "  TTBR0_EL1: []\n"
        "probes:\n  - {op: S1E1R, va: [0xffff_ffff_e000_1000, 0xffff_fc00_0001_0008, "
        "0xffff_fc00_0002_0000, 0x1000]}\n")
    r = run(s)
    assert pa(r[0]) == 0x6000_1000
    assert pa(r[1]) == 0x4074_0000
    assert fault(r[2]) == (Fault.TRANSLATION, 3, 1, False)
    assert fault(r[3])[0] is Fault.TRANSLATION
    setup = s.build()
    assert "EL10" in setup.code_va


def test_attributes_af_ap_and_table_attrs() -> None:
    s = scenario(
        "regs:\n  SCTLR_EL1: {M: 1, C: 1}\n  TCR_EL1: {TG0: 4K, T0SZ: 25, EPD1: 1}\n"
        "  MAIR_EL1: {Attr0: 0x44, Attr1: 0xff}\n"
        "tables:\n  TTBR0_EL1:\n"
        "    - {va: 0x8000_0000, pa: 0x4070_0000, size: 4K, af: 0}\n"
        "    - {va: 0x8000_1000, pa: 0x4070_1000, size: 4K, ap: RO_EL1, attr: 1, sh: OSH}\n"
        "    - {va: 0xC000_0000, pa: 0x4070_2000, size: 4K, table: {aptable: 0b10}}\n"
        "probes:\n  - {op: [S1E1R, S1E1W], va: [0x8000_0000, 0x8000_1000, 0xC000_0000]}\n")
    r = run(s)
    assert fault(r[0]) == (Fault.ACCESS_FLAG, 3, 1, False)
    assert pa(r[1]) == 0x4070_1000
    assert r[1].par >> 56 == 0xFF and (r[1].par >> 7) & 3 == 0b10
    assert pa(r[2]) == 0x4070_2000
    assert fault(r[3]) == (Fault.ACCESS_FLAG, 3, 1, False)
    assert fault(r[4]) == (Fault.PERMISSION, 3, 1, False)
    assert fault(r[5]) == (Fault.PERMISSION, 3, 1, False)  # APTable[1]: no writes below


def test_raw_leaf_forced_block_and_descriptor_override() -> None:
    s = scenario(
        "regs:\n  SCTLR_EL1: {M: 1}\n  TCR_EL1: {TG0: 16K, T0SZ: 17, EPD1: 1}\n"
        "tables:\n  TTBR0_EL1:\n"
        "    - {va: 0x10_0000_0000, pa: 0x10_0000_0000, level: 1, force: true}\n"
        "    - {va: 0x2_0000_0000, raw: 0x0, size: 32M}\n"
        "    - {va: 0x3_0000_0000, pa: 0x4200_0000, size: 32M}\n"
        "    - {va: 0x3_0200_0000, pa: 0x4400_0000, size: 32M}\n"
        "descriptors:\n"
        "  - {table: TTBR0_EL1, level: 2, va: 0x3_0200_0000, value: 0x4600_0401}\n"
        "  - {table: TTBR0_EL1, level: 1, index: 12, value: 0x7}\n"
        "probes:\n  - {op: S1E1R, va: [0x10_0000_0000, 0x2_0000_0000, 0x3_0000_0000, "
        "0x3_0200_0000, 0xC0_0000_0000]}\n")
    r = run(s)
    assert fault(r[0]) == (Fault.TRANSLATION, 1, 1, False)  # a 16KB block at level 1
    assert fault(r[1]) == (Fault.TRANSLATION, 2, 1, False)  # raw 0: invalid
    assert pa(r[2]) == 0x4200_0000
    assert pa(r[3]) == 0x4600_0000  # the override replaced the built block
    # level 1 entry 12 now points at a table at PA 0, where there is no memory
    assert r[4].kind == "abort"
    assert fault(r[4]) == (Fault.EXTERNAL_ABORT_ON_WALK, 2, 1, False)


def test_raw_memory_table_reached_by_override() -> None:
    """A level 2 table made by hand in raw memory, linked by an override."""
    s = scenario(
        "regs:\n  SCTLR_EL1: {M: 1}\n  TCR_EL1: {TG0: 4K, T0SZ: 25, EPD1: 1}\n"
        "tables:\n  TTBR0_EL1: []\n"
        "memory:\n  - {addr: 0x4300_0000, words: [0x4500_0401, 0x4520_0001]}\n"
        "descriptors:\n  - {table: TTBR0_EL1, level: 1, index: 2, value: 0x4300_0003}\n"
        "probes:\n  - {op: S1E1R, va: [0x8000_0000, 0x8020_0000, 0x8040_0000]}\n")
    r = run(s)
    assert pa(r[0]) == 0x4500_0000
    assert fault(r[1]) == (Fault.ACCESS_FLAG, 2, 1, False)
    assert fault(r[2]) == (Fault.TRANSLATION, 2, 1, False)
    setup = s.build()
    assert setup.memory[0x4300_0000][:8] == (0x4500_0401).to_bytes(8, "little")


def test_big_endian_tables() -> None:
    """SCTLR_EL1.EE == 1: the walk reads descriptors big-endian (D8.3)."""
    s = scenario(_ttbr0_el1("4K", "T0SZ: 25", [(0x8000_0000, 0x4070_0000, "4K", 3)])
                 .replace("SCTLR_EL1: {M: 1}", "SCTLR_EL1: {M: 1, EE: 1}")
                 + "probes:\n  - {op: S1E1R, va: 0x8000_0000, el: 2}\n")
    assert pa(run(s)[0]) == 0x4070_0000


def test_large_pa_64k_and_ds() -> None:
    cpu = Features(pa_range_bits=52, lpa=True, lpa2=True)
    s = scenario(
        "regs:\n  SCTLR_EL2: {M: 1}\n  TCR_EL2: {TG0: 64K, T0SZ: 22, PS: 52bit}\n"
        "  SCTLR_EL1: {M: 1}\n  TCR_EL1: {TG0: 4K, T0SZ: 25, IPS: 52bit, DS: 1, EPD1: 1}\n"
        "tables:\n  TTBR0_EL2:\n    - {va: 0x8000_0000, pa: 0xF_0000_4000_0000, size: 512M}\n"
        "  TTBR0_EL1:\n    - {va: 0x8000_0000, pa: 0xA_BCDE_4000_0000, size: 2M}\n"
        "probes:\n  - {op: S1E2R, va: 0x8000_1000, el: 2}\n"
        "  - {op: S1E1R, va: 0x8000_1000, el: 2}\n")
    r = run(s, cpu)
    assert pa(r[0]) == 0xF_0000_4000_1000
    assert pa(r[1]) == 0xA_BCDE_4000_1000


def test_stage2_concatenated_and_s12() -> None:
    s = scenario(
        "regs:\n  HCR_EL2: {VM: 1}\n  VTCR_EL2: {TG0: 4K, T0SZ: 24, SL0: 1, PS: 40bit}\n"
        "tables:\n  VTTBR_EL2:\n"
        "    - {ipa: 0x80_4000_0000, pa: 0x4080_0000, size: 4K}\n"
        "    - {ipa: 0x1000_0000, pa: 0x4100_0000, size: 2M, s2ap: RO}\n"
        "probes:\n  - {op: [S12E1R, S12E1W], va: [0x80_4000_0000, 0x1000_0000, 0x2000_0000], "
        "el: 2}\n")
    r = run(s)
    assert pa(r[0]) == 0x4080_0000
    assert pa(r[1]) == 0x4100_0000
    assert fault(r[2]) == (Fault.TRANSLATION, 2, 2, False)
    assert pa(r[3]) == 0x4080_0000
    assert fault(r[4]) == (Fault.PERMISSION, 2, 2, False)
    setup = s.build()
    vttbr = setup.sysregs["VTTBR_EL2"]
    assert vttbr % 0x2000 == 0  # two concatenated 4KB tables, aligned to 8KB
    assert len(setup.memory[vttbr]) == 0x2000


def _harness_ok(setup, op: AtOp, va: int, el: int, cpu: Features = CPU) -> None:  # type: ignore[no-untyped-def]
    code = at(setup, op, va + 0x40, el, features=cpu)
    assert pa(code) == HARNESS_PA, code.render()
    data = at(setup, op, va + HARNESS_CODE_SIZE + 0x10, el, features=cpu)
    assert pa(data) == HARNESS_PA + HARNESS_CODE_SIZE


@pytest.mark.parametrize("granule", ["4K", "16K", "64K"])
def test_harness_el2_identity(granule: str) -> None:
    s = scenario(f"regs:\n  SCTLR_EL2: {{M: 1, C: 1}}\n  TCR_EL2: {{TG0: {granule}, T0SZ: 25}}\n"
                 "  MAIR_EL2: {Attr0: 0x00, Attr5: 0xff}\n"
                 "probes:\n  - {op: S1E2R, va: 0x1000, el: 2}\n")
    setup = s.build()
    assert setup.code_va == {"EL2": HARNESS_PA}
    _harness_ok(setup, S1E2R, HARNESS_PA, 2)
    code = at(setup, S1E2R, HARNESS_PA, 2)
    assert code.par >> 56 == 0xFF  # AttrIndx 5: the Normal Write-Back entry
    assert fault(at(setup, S1E2W, HARNESS_PA, 2))[0] is Fault.PERMISSION  # code is read-only
    assert pa(at(setup, S1E2W, HARNESS_PA + HARNESS_CODE_SIZE, 2))
    assert fault(at(setup, S1E2R, 0x1000, 2))[0] is Fault.TRANSLATION


def test_harness_moves_when_the_author_maps_its_va() -> None:
    s = scenario("regs:\n  SCTLR_EL2: {M: 1}\n  TCR_EL2: {TG0: 4K, T0SZ: 33}\n"
                 "tables:\n  TTBR0_EL2:\n"
                 "    - {va: 0x4000_0000, pa: 0x8000_0000, size: 1G}\n"
                 "    - {va: 0x3FE0_0000, pa: 0x5000_0000, size: 4K}\n"
                 "probes:\n  - {op: S1E2R, va: 0x4020_0000, el: 2}\n")
    setup = s.build()
    va = setup.code_va["EL2"]
    assert va == 0x3FC0_0000  # the highest free 2 MiB slot of the 31-bit range
    _harness_ok(setup, S1E2R, va, 2)
    assert pa(at(setup, S1E2R, 0x4020_0000, 2)) == 0x8020_0000


def test_harness_skips_slots_whose_table_forbids_it() -> None:
    s = scenario("regs:\n  SCTLR_EL1: {M: 1}\n  TCR_EL1: {TG0: 4K, T0SZ: 25, EPD1: 1}\n"
                 "tables:\n  TTBR0_EL1:\n"
                 "    - {va: 0x4000_0000, pa: 0x4000_0000, size: 4K, table: {level: 1, "
                 "pxntable: 1}}\n"
                 "probes:\n  - {op: S1E1R, va: 0x4000_0000}\n")
    setup = s.build()
    va = setup.code_va["EL10"]
    assert va == (1 << 39) - HARNESS_SIZE
    _harness_ok(setup, S1E1R, va, 1)


@pytest.mark.parametrize("granule", ["4K", "16K", "64K"])
def test_harness_el20_and_el10(granule: str) -> None:
    s = scenario(
        f"regs:\n  HCR_EL2: {{E2H: 1}}\n  SCTLR_EL2: {{M: 1}}\n"
        f"  TCR_EL2: {{TG0: {granule}, T0SZ: 30, EPD1: 1}}\n"
        f"  SCTLR_EL1: {{M: 1}}\n  TCR_EL1: {{TG0: {granule}, T0SZ: 25, EPD1: 1}}\n"
        "probes:\n  - {op: S1E1R, va: 0x1000, el: 1}\n  - {op: S1E2R, va: 0x1000, el: 2}\n")
    setup = s.build()
    assert setup.code_va == {"EL20": HARNESS_PA, "EL10": HARNESS_PA}
    _harness_ok(setup, S1E2R, HARNESS_PA, 2)
    _harness_ok(setup, S1E1R, HARNESS_PA, 1)
    assert fault(at(setup, S1E1W, HARNESS_PA, 1))[0] is Fault.PERMISSION
    # not accessible at EL0
    assert fault(at(setup, AtOp.S1E0R, HARNESS_PA, 1))[0] is Fault.PERMISSION


def test_no_el10_harness_without_el1_probes() -> None:
    s = scenario("regs:\n  SCTLR_EL1: {M: 1}\n  TCR_EL1: {TG0: 4K, T0SZ: 25}\n"
                 "probes:\n  - {op: S1E1R, va: 0x1000, el: 2}\n")
    setup = s.build()
    assert setup.code_va == {}
    assert setup.sysregs["TTBR0_EL1"] == 0 and not setup.memory


@pytest.mark.parametrize(("s1", "s2"), [("4K", "4K"), ("64K", "4K"), ("4K", "64K"),
                                        ("16K", "16K")])
def test_harness_under_stage2(s1: str, s2: str) -> None:
    """EL1 probes with stage 2 on: the harness IPA range and the stage 1
    table pages its own walk reads are mapped identically in stage 2, so
    the EL1 harness translates through both stages; other table pages are
    not (the author's stage 2 decides)."""
    sl0 = {"4K": 1, "16K": 1, "64K": 1}[s2]
    sizes = {"4K": "2M", "16K": "32M", "64K": "512M"}
    s = scenario(
        f"regs:\n  HCR_EL2: {{VM: 1}}\n  SCTLR_EL1: {{M: 1}}\n"
        f"  TCR_EL1: {{TG0: {s1}, T0SZ: 25, EPD1: 1}}\n"
        f"  VTCR_EL2: {{TG0: {s2}, T0SZ: 25, SL0: {sl0}, PS: 40bit}}\n"
        f"tables:\n  TTBR0_EL1:\n    - {{va: 0x10_0000_0000, pa: 0x2000_0000, size: {sizes[s1]}}}\n"
        f"  VTTBR_EL2:\n    - {{ipa: 0x2000_0000, pa: 0x6000_0000, size: {sizes[s2]}}}\n"
        "probes:\n  - {op: S1E1R, va: 0x10_0000_0000}\n")
    setup = s.build()
    va = setup.code_va["EL10"]
    assert va == HARNESS_PA
    _harness_ok(setup, S1E1R, va, 1)
    full = at(setup, S12E1R, va + 0x40, 2)
    assert pa(full) == HARNESS_PA
    mine = at(setup, S12E1R, 0x10_0000_0000, 2)
    if s1 == "64K" or s2 == "64K":
        # a single-level 64KB stage 1 shares its table with the harness walk; a
        # 64KB stage 2 page holds every 4KB stage 1 table: all mapped
        assert pa(mine) == 0x6000_0000
    else:
        # the author's level 2 table is not on the harness walk: not mapped
        assert fault(mine) == (Fault.TRANSLATION, 3, 2, True)


def test_author_stage2_mapping_wins_over_harness() -> None:
    s = scenario(
        "regs:\n  HCR_EL2: {VM: 1}\n"
        "  VTCR_EL2: {TG0: 4K, T0SZ: 25, SL0: 1, PS: 40bit}\n"
        "tables:\n  VTTBR_EL2:\n    - {ipa: 0x4020_0000, pa: 0x4800_0000, size: 4K}\n"
        "probes:\n  - {op: S1E1R, va: 0x1000}\n")
    setup = s.build()
    assert pa(at(setup, S12E1R, HARNESS_PA, 2)) == 0x4800_0000
    assert pa(at(setup, S12E1R, HARNESS_PA + 0x1000, 2)) == HARNESS_PA + 0x1000


def test_setup_contents() -> None:
    s = scenario(_ttbr0_el1("4K", "T0SZ: 25", [(0x8000_0000, 0x4070_0000, "4K", 3)])
                 + "memory:\n  - {addr: 0x4240_0000, words: [1, 2]}\n"
                 + "probes:\n  - {op: [S1E1R, S1E1W], va: 0x8000_0000}\n")
    setup = s.build()
    assert tuple(p.op for p in setup.probes) == (S1E1R, S1E1W)
    assert set(TRANSLATION_SYSREGS) <= set(setup.sysregs)
    root = setup.sysregs["TTBR0_EL1"] & 0xFFFF_FFFF_FFFE
    tables = {a: d for a, d in setup.memory.items() if a != 0x4240_0000}
    assert root in tables
    assert len(tables) == 5  # level 1; levels 2 and 3 for the mapping and for the harness
    for addr, data in tables.items():
        assert addr >= ARENA_PA and addr + len(data) <= ARENA_PA + ARENA_SIZE
        assert addr % 0x1000 == 0 and len(data) == 0x1000
    assert setup.memory[0x4240_0000] == (1).to_bytes(8, "little") + (2).to_bytes(8, "little")


def test_tables_avoid_raw_memory_in_the_arena() -> None:
    s = scenario(_ttbr0_el1("4K", "T0SZ: 25", [(0x8000_0000, 0x4070_0000, "4K", 3)])
                 + f"memory:\n  - {{addr: {ARENA_PA:#x}, words: [7]}}\n"
                 + "probes:\n  - {op: S1E1R, va: 0x8000_0000}\n")
    setup = s.build()
    assert setup.memory[ARENA_PA] == (7).to_bytes(8, "little")
    assert pa(run(s)[0]) == 0x4070_0000
    assert all(a >= ARENA_PA + 0x1000 for a in setup.memory if a != ARENA_PA)


def test_with_probes_rebuilds_the_harness() -> None:
    s = scenario("regs:\n  SCTLR_EL1: {M: 1}\n  TCR_EL1: {TG0: 4K, T0SZ: 25}\n"
                 "probes:\n  - {op: S1E1R, va: 0x1000, el: [1, 2]}\n")
    assert "EL10" in s.build().code_va
    assert s.with_probes(s.probes[1:]).build().code_va == {}


def test_good_examples_meet_their_expectations() -> None:
    from pathlib import Path

    from xcheck.scenario.loader import load_scenario

    for f in sorted((Path(__file__).parent / "good").glob("*.yaml")):
        s = load_scenario(f)
        results = run(s, Features.everything())
        for p, r in zip(s.probes, results, strict=True):
            for e in s.expect:
                if e.matches(p):
                    assert e.check(r) == "", f"{f.name}: {p.label}: {e.check(r)}"


def test_errors_from_the_builder() -> None:
    with pytest.raises(ScenarioError) as info:
        scenario("regs:\n  SCTLR_EL1: {M: 1}\n  TCR_EL1: {TG0: 4K, EPD0: 1, T0SZ: 25}\n"
                 "probes:\n  - {op: S1E1R, va: 0x1000}\n")
    assert "EPD0 == 1" in str(info.value) and "run the probes at EL2" in str(info.value)
    assert str(info.value).startswith("t.yaml:3: regs.TCR_EL1:")


def test_cpu_default_has_pan3() -> None:
    assert CPU.pan == 3
