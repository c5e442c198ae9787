"""Granule protection checks (FEAT_RME): the GPT walk, GPI check, and how an
AT reports a GPC fault.

Expected values from Arm ARM DDI 0487: D9 (GPCCR_EL3 and GPTBR_EL3 in D24.2,
AArch64.GranuleProtectionCheck, AArch64.GPTWalk, the level 0 Block/Table and
level 1 Contiguous/Granules descriptor formats, GPICheck), and AArch64.AT /
AArch64.EncodePAR for the report: a GPC fault on a translation table access
is Fault_GPCFOnWalk, FST 0b1001LL with the walk's level; the output address
is never checked by an AT; ReportAsGPCException makes GPT faults, and
granule protection faults below EL3 with SCR_EL3.GPF == 1, exceptions.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from archtables import LEAF, MAIR, MAX, SCTLR_ON, TCR_4K_48, Tables, at, regs

from xcheck.arch.at import ArchState, translate
from xcheck.arch.fault import Fault, encode_fst
from xcheck.arch.gpc import (
    GPI_ALL,
    GPI_NO_ACCESS,
    GPI_NONSECURE,
    GPI_REALM,
    GPI_ROOT,
    GPI_SECURE,
    Gpcf,
    GpcFault,
    GpcParams,
    PASpace,
    gpt_walk,
    granule_protection_check,
    report_as_gpc_exception,
)
from xcheck.arch.memory import MemoryImage
from xcheck.arch.par import decode_par, describe_fst
from xcheck.arch.rules import Rule
from xcheck.machine import RAM_BASE, AtOp, SecurityState

RME = replace(MAX, el3=True, rme=1, sel2=True)
GPT_L0 = 0x4600_0000
GPT_L1 = 0x4610_0000
GPCCR_ON = 1 << 16 | 0b10 << 12 | 0b01 << 10 | 0b01 << 8  # GPC, OSH, WBWA, PPS 32, PGS 4K


def gpt(words: dict[int, int]) -> MemoryImage:
    return MemoryImage({a: w.to_bytes(8, "little") for a, w in words.items()}, RAM_BASE,
                       128 << 20)


def l0_block(gpi: int) -> int:
    return gpi << 4 | 0b0001


def l1_granules(*gpis: int) -> int:
    """A Granules descriptor: GPI[i] in bits [4i+3:4i]; the rest GPI_ALL."""
    word = 0
    for i in range(16):
        word |= (gpis[i] if i < len(gpis) else GPI_ALL) << (4 * i)
    return word


def params(gpccr: int = GPCCR_ON, base: int = GPT_L0) -> GpcParams:
    return GpcParams.decode(gpccr, base >> 12, 48)


PA = 0x4123_4000  # level 0 index 1 (1GB entries), level 1 index (PA[29:16])
L0_ENTRY = GPT_L0 + 8 * 1
L1_ENTRY = GPT_L1 + 8 * ((PA >> 16) & 0x3FFF)
GRANULE = (PA >> 12) & 0xF


def two_level(gpi: int) -> dict[int, int]:
    gpis = [GPI_ALL] * 16
    gpis[GRANULE] = gpi
    return {L0_ENTRY: GPT_L1 | 0b0011, L1_ENTRY: l1_granules(*gpis)}


@pytest.mark.parametrize(("gpi", "allowed"), [
    (GPI_NO_ACCESS, set()),
    (GPI_SECURE, {PASpace.SECURE}),
    (GPI_NONSECURE, {PASpace.NONSECURE}),
    (GPI_ROOT, {PASpace.ROOT}),
    (GPI_REALM, {PASpace.REALM}),
    (GPI_ALL, set(PASpace)),
])
def test_gpi_check_permits_exactly_its_pa_spaces(gpi: int, allowed: set[PASpace]) -> None:
    """GPICheck (D9.5 GPI encodings), from a level 0 Block and from a level 1
    Granules descriptor; a denial is GPCF_Fail at the level of the entry."""
    for words, level in (({L0_ENTRY: l0_block(gpi)}, 0), (two_level(gpi), 1)):
        for space in PASpace:
            trace: list = []
            fault = granule_protection_check(params(), PA, space, gpt(words), trace)
            if space in allowed:
                assert fault is None
                assert trace[-1].cites is Rule.GPC_GPI_PERMITS
            else:
                assert fault == GpcFault(Gpcf.FAIL, level, Rule.GPC_GPI_DENIES)


def test_granules_descriptor_is_indexed_by_the_pa_bits_above_the_granule() -> None:
    """A Granules descriptor holds 16 GPIs, GPI[PA[pgs+3:pgs]] (GPTL1)."""
    words = two_level(GPI_ROOT)
    mem = gpt(words)
    assert gpt_walk(params(), PA, mem, []) == (GPI_ROOT, 1)
    assert gpt_walk(params(), PA ^ 0x1000, mem, []) == (GPI_ALL, 1)
    # 64KB PGS: PA[19:16] selects, one L1 entry per 1MB
    p64 = params(GPCCR_ON | 0b01 << 14)
    l1 = GPT_L1 + 8 * ((PA >> 20) & 0x3FF)
    mem64 = gpt({L0_ENTRY: GPT_L1 | 0b0011, l1: GPI_SECURE << (4 * ((PA >> 16) & 0xF))})
    assert gpt_walk(p64, PA, mem64, [])[0] == GPI_SECURE


def test_contiguous_descriptor_gives_one_gpi_and_contig_00_is_a_walk_fault() -> None:
    """GPTL1 Contiguous (bits [3:0] == 0b0001, Contig bits [9:8], GPI [7:4]);
    Contig == 0b00 and RES0 bits [63:10] set are invalid: GPCF_Walk level 1."""
    base = {L0_ENTRY: GPT_L1 | 0b0011}
    ok = gpt(base | {L1_ENTRY: 0b01 << 8 | GPI_REALM << 4 | 0b0001})
    assert gpt_walk(params(), PA, ok, []) == (GPI_REALM, 1)
    for bad in (GPI_REALM << 4 | 0b0001, 1 << 10 | 0b01 << 8 | GPI_REALM << 4 | 0b0001):
        res = gpt_walk(params(), PA, gpt(base | {L1_ENTRY: bad}), [])
        assert res == GpcFault(Gpcf.WALK, 1, Rule.GPT_L1_INVALID)


@pytest.mark.parametrize(("word", "why"), [
    (0, "invalid type 0b0000"),
    (0b0101, "reserved type"),
    (GPI_ROOT << 4 | 1 << 8 | 0b0001, "Block with RES0 bit 8"),
    (0b0110 << 4 | 0b0001, "Block with a reserved GPI"),
    (GPT_L1 | 1 << 4 | 0b0011, "Table with RES0 bits [11:4]"),
    (GPT_L1 + 0x1000 | 0b0011, "Table not aligned to the 128KB level 1 table"),
    (1 << 40 | 0b0011, "Table above the 32-bit PPS"),
])
def test_invalid_level_0_descriptors_are_gpt_walk_faults(word: int, why: str) -> None:
    res = gpt_walk(params(), PA, gpt({L0_ENTRY: word}), [])
    assert res == GpcFault(Gpcf.WALK, 0, Rule.GPT_L0_INVALID), why


def test_reserved_gpi_in_the_selected_granule_is_a_walk_fault() -> None:
    res = gpt_walk(params(), PA, gpt(two_level(0b0110)), [])
    assert res == GpcFault(Gpcf.WALK, 1, Rule.GPT_L1_INVALID)


def test_gpt_fetch_without_memory_is_an_external_abort_on_the_gpt() -> None:
    outside = params(base=0x8000_0000)  # below the PPS, no RAM there
    fault = granule_protection_check(outside, PA, PASpace.NONSECURE, gpt({}), [])
    assert fault == GpcFault(Gpcf.EABT, 0, Rule.GPT_EXTERNAL_ABORT)


def test_above_pps_only_the_nonsecure_space_passes() -> None:
    """D24.2 GPCCR_EL3 (APPSAA == 0): above the PPS, accesses must be to the
    Non-secure PA space, otherwise a GPF at level 0; the GPT is not read."""
    high = 1 << 32
    assert granule_protection_check(params(), high, PASpace.NONSECURE, gpt({}), []) is None
    for space in (PASpace.SECURE, PASpace.ROOT, PASpace.REALM):
        fault = granule_protection_check(params(), high, space, gpt({}), [])
        assert fault == GpcFault(Gpcf.FAIL, 0, Rule.GPC_ABOVE_PPS)


@pytest.mark.parametrize(("gpccr", "why"), [
    (GPCCR_ON | 0b11 << 14, "PGS 0b11 reserved"),
    (GPCCR_ON & ~(3 << 12) | 0b01 << 12, "SH 0b01 reserved"),
    (GPCCR_ON & ~(0xF << 8) & ~(3 << 12), "Non-cacheable GPT, Non-shareable"),
    (GPCCR_ON | 0b110, "PPS 52 bits above a 48-bit PA"),
    (GPCCR_ON | 0b111, "PPS 0b111 reserved"),
])
def test_inconsistent_gpccr_is_a_level_0_walk_fault(gpccr: int, why: str) -> None:
    fault = granule_protection_check(params(gpccr), PA, PASpace.ROOT, gpt({}), [])
    assert fault == GpcFault(Gpcf.WALK, 0, Rule.GPC_CONFIG_INVALID), why


def test_gpc_disabled_checks_nothing_and_gptbr_low_bits_are_ignored() -> None:
    assert granule_protection_check(params(GPCCR_ON & ~(1 << 16)), PA, PASpace.ROOT,
                                    gpt({}), []) is None
    # PPS 32, L0GPTSZ 30: a 4-entry level 0 table, aligned to 4KB at least
    assert GpcParams.decode(GPCCR_ON, (GPT_L0 >> 12) | 0, 48).base == GPT_L0
    # PPS 40: 1024 entries (8KB): BADDR[0] is treated as zero
    assert GpcParams.decode(GPCCR_ON | 0b010, (GPT_L0 >> 12) | 1, 48).base == GPT_L0


def test_report_as_gpc_exception() -> None:
    """ReportAsGPCException: GPT faults always; a GPF only below EL3 with SCR_EL3.GPF."""
    gpf = GpcFault(Gpcf.FAIL, 1, Rule.GPC_GPI_DENIES)
    walk = GpcFault(Gpcf.WALK, 0, Rule.GPT_L0_INVALID)
    assert report_as_gpc_exception(walk, 3, False)
    assert not report_as_gpc_exception(gpf, 3, True)
    assert not report_as_gpc_exception(gpf, 2, False)
    assert report_as_gpc_exception(gpf, 2, True)


def test_fst_of_gpc_faults() -> None:
    """EncodeLDFSC: GPCF on walk 0b1001LL (level -1: 0b100011), on output 0b101000."""
    assert [encode_fst(Fault.GPCF_ON_WALK, lv) for lv in (-1, 0, 1, 2, 3)] == [
        0b100011, 0b100100, 0b100101, 0b100110, 0b100111]
    assert encode_fst(Fault.GPCF_ON_OUTPUT, 0) == 0b101000
    assert describe_fst(0b100110) == "granule protection on walk, level 2"
    assert describe_fst(0b101000) == "granule protection on output"


# --- AT with granule protection ------------------------------------------------

VA = 0x8000_1000
OUT = 0x4150_0000
TCR_EL3 = 0x8080_0000 | 16 | 0b101 << 16
SCTLR_EL3_ON = 0x30C5_0830 | 1 | 1 << 2


def at_setup(t: Tables, gpi_of: dict[int, int], **over: int) -> tuple[dict[str, int],
                                                                     MemoryImage]:
    """Tables ``t`` plus a GPT with level 1 Granules descriptors: ``gpi_of``
    maps a 4KB granule's address to its GPI, every other granule GPI_ALL."""
    words = dict(t.words)
    words[GPT_L0 + 8] = GPT_L1 | 0b0011
    l1: dict[int, list[int]] = {}
    for pa, gpi in gpi_of.items():
        l1.setdefault(GPT_L1 + 8 * ((pa >> 16) & 0x3FFF), [GPI_ALL] * 16)[(pa >> 12) & 0xF] = gpi
    for addr in range(GPT_L1, GPT_L1 + (1 << 17), 8):
        words[addr] = l1_granules(*l1.get(addr, []))
    sysregs = regs(SCTLR_EL3=SCTLR_EL3_ON, TCR_EL3=TCR_EL3, MAIR_EL3=MAIR, TTBR0_EL3=t.root,
                   GPCCR_EL3=GPCCR_ON, GPTBR_EL3=GPT_L0 >> 12, **over)
    return sysregs, gpt(words)


def test_at_s1e3_gpc_fault_on_a_table_is_reported_in_par_with_the_walk_level() -> None:
    """At EL3 a GPF is not a GPC exception (ReportAsGPCException): PAR_EL1
    reports Fault_GPCFOnWalk with the level of the table access, stage 1."""
    t = Tables()
    t.map(VA, OUT, flags=LEAF | 1 << 11)  # Root output
    level2 = t.entry(VA, 2) & ~0xFFF
    for gpi, ok in ((GPI_SECURE, False), (GPI_NONSECURE, False), (GPI_ROOT, True)):
        sysregs, mem = at_setup(t, {level2: gpi})
        res = at(AtOp.S1E3R, VA, sysregs, mem, el=3, features=RME)
        f = decode_par(res.par)
        if ok:
            assert f["F"] == 0 and f["PA"] << 12 == OUT
        else:
            assert (f["F"], f["FST"], f["S"], f["PTW"]) == (1, 0b100110, 0, 0)
            assert res.fault is not None and res.fault.gpcf is not None
            assert any(s.cites is Rule.AT_GPC_ON_WALK for s in res.trace)


def test_at_does_not_check_the_output_address() -> None:
    t = Tables()
    t.map(VA, OUT, flags=LEAF | 1 << 11)
    sysregs, mem = at_setup(t, {OUT: GPI_NO_ACCESS})
    res = at(AtOp.S1E3W, VA, sysregs, mem, el=3, features=RME)
    assert decode_par(res.par)["F"] == 0
    assert any(s.cites is Rule.AT_NO_OUTPUT_GPC for s in res.trace)


def test_walk_space_follows_the_regime_nonsecure_stage_2_and_hcr_gpf() -> None:
    """A Non-secure EL1&0 walk reads in the Non-secure PA space: a table in a
    Secure granule is a GPF. From EL2 it is reported in PAR (SCR_EL3.GPF ==
    0); from EL1 with HCR_EL2.GPF == 1 it is taken to EL2 (AArch64.AT)."""
    t = Tables(start_level=1, iasize=39)
    t.map(VA, OUT)
    level3 = t.entry(VA, 3) & ~0xFFF
    el1 = dict(SCTLR_EL1=SCTLR_ON, TCR_EL1=TCR_4K_48 & ~0x3F | 25, MAIR_EL1=MAIR,
               TTBR0_EL1=t.root)
    sysregs, mem = at_setup(t, {level3: GPI_SECURE}, **el1)
    from_el2 = at(AtOp.S1E1R, VA, sysregs, mem, el=2, features=RME)
    assert decode_par(from_el2.par)["FST"] == 0b100111
    sysregs_gpf = sysregs | {"HCR_EL2": sysregs["HCR_EL2"] | 1 << 38}
    assert at(AtOp.S1E1R, VA, sysregs_gpf, mem, el=1, features=RME).kind == "abort"
    assert at(AtOp.S1E1R, VA, sysregs, mem, el=1, features=RME).kind == "par"
    # the Secure EL1&0 regime (at EL3, SCR_EL3.NS == 0) walks in the Secure space
    state = ArchState.from_sysregs(sysregs, RME, 3, False)
    state = state.with_pstate(3, False, SecurityState.SECURE)
    assert decode_par(translate(AtOp.S1E1R, VA, state, mem).par)["F"] == 0


def test_gpt_walk_fault_of_an_at_is_a_gpc_exception() -> None:
    t = Tables()
    t.map(VA, OUT, flags=LEAF | 1 << 11)
    sysregs, mem = at_setup(t, {})
    words = {GPT_L0 + 8: 0}  # invalid level 0 descriptor: GPCF_Walk
    mem = MemoryImage({**{a: w.to_bytes(8, "little") for a, w in t.words.items()},
                       **{a: w.to_bytes(8, "little") for a, w in words.items()}}, RAM_BASE,
                      128 << 20)
    res = at(AtOp.S1E3R, VA, sysregs, mem, el=3, features=RME)
    assert res.kind == "abort" and res.trace[-1].cites is Rule.AT_GPC_EXCEPTION


def test_without_rme_gpccr_is_ignored() -> None:
    t = Tables()
    t.map(VA, OUT)
    sysregs, mem = at_setup(t, {t.root: GPI_NO_ACCESS})
    res = at(AtOp.S1E3R, VA, sysregs, mem, el=3, features=replace(RME, rme=0))
    assert decode_par(res.par)["F"] == 0
