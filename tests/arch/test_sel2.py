"""Secure EL2 (FEAT_SEL2) in the model (no QEMU).

Expected values from the Arm ARM (DDI 0487):
- EL2Enabled() in the Secure state is SCR_EL3.EEL2 == 1 (D24.2 SCR_EL3.EEL2,
  RES0 without FEAT_SEL2): then AT S1E2* at EL3 with SCR_EL3.NS == 0
  translate the Secure EL2 (or, with HCR_EL2.E2H, EL2&0) regime and AT
  S12E1* use stages 1 and 2 of the Secure EL1&0 regime (C5.4.3, C5.4.13);
- a Secure regime's walk starts in the Secure PA space; NSTable and NS move
  the walk and the output to the Non-secure space (D8.4.6, AArch64.S1Walk);
- AArch64.S2Walk / AArch64.SS2TTWParams: a Secure IPA is translated with
  VSTTBR_EL2 and VSTCR_EL2.{T0SZ, SL0, TG0}, a Non-secure IPA with VTTBR_EL2
  and VTCR_EL2; the other controls (PS, SH0...) come from VTCR_EL2;
- AArch64.SS2InitialTTWState: the tables of a Secure IPA are in the Non-secure
  PA space when VSTCR_EL2.SW == 1, those of a Non-secure IPA when
  VTCR_EL2.NSW == 1; AArch64.SS2OutputPASpace: the output of a Secure IPA is
  Secure only when VSTCR_EL2.{SW, SA} == {0, 0}, that of a Non-secure IPA
  only when VSTCR_EL2.{SW, SA} and VTCR_EL2.{NSW, NSA} are all 0;
- AArch64.EncodePAR: PAR_EL1.NS is the output PA space of a Secure regime.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from archtables import LEAF, MAIR, MAX, SCTLR_ON, TCR_4K_48, Tables, at, regs

from xcheck.arch.par import NS_BIT, decode_par
from xcheck.arch.rules import Rule
from xcheck.machine import ARENA_PA, AtOp, SecurityState

SEL2_CPU = replace(MAX, el3=True, sel2=True)
SECURE = SecurityState.SECURE
EEL2 = 1 << 18
HCR_VM = 1 << 31 | 1
HCR_E2H = 1 << 34
VTCR_4K_40 = 24 | 0b01 << 6 | 0b010 << 16 | 1 << 31  # T0SZ 24, SL0 level 1, PS 40 bits
VSTCR_4K_40 = 24 | 0b01 << 6 | 1 << 31
NSW, NSA, SW, SA = 1 << 29, 1 << 30, 1 << 29, 1 << 30
S2_RW = 1 << 10 | 0b11 << 6 | 0b1111 << 2 | 0b11 << 8
NS = 1 << 5
NSTABLE = 1 << 63
VA = 0x8000_1000
IPA = 0x4400_0000
PA_S = 0x4500_0000
"""Where the Secure stage 2 (VSTTBR_EL2) maps IPA."""
PA_N = 0x4600_0000
"""Where the Non-secure stage 2 (VTTBR_EL2) maps IPA."""


def setup(leaf: int = LEAF, table_flags: int = 0, vtcr: int = VTCR_4K_40,
          vstcr: int = VSTCR_4K_40, scr: int = EEL2, hcr: int = HCR_VM,
          s1_tables_in: tuple[str, ...] = ("secure", "nonsecure")) -> tuple[dict[str, int], Tables]:
    words: dict[int, int] = {}
    s1 = Tables(words=words)
    s1.map(VA, IPA, flags=leaf, table_flags=table_flags)
    ss2 = Tables(iasize=40, start_level=1, arena=ARENA_PA + 0x10_0000, words=words)
    ns2 = Tables(iasize=40, start_level=1, arena=ARENA_PA + 0x20_0000, words=words)
    ss2.map(IPA, PA_S, flags=S2_RW)
    ns2.map(IPA, PA_N, flags=S2_RW)
    for name, s2 in (("secure", ss2), ("nonsecure", ns2)):
        if name in s1_tables_in:
            for page in range(ARENA_PA, ARENA_PA + 0x8000, 0x1000):
                s2.map(page, page, flags=S2_RW)
    r = regs(SCTLR_EL1=SCTLR_ON, TCR_EL1=TCR_4K_48, MAIR_EL1=MAIR, TTBR0_EL1=s1.root,
             HCR_EL2=hcr, VTCR_EL2=vtcr, VTTBR_EL2=ns2.root, VSTCR_EL2=vstcr,
             VSTTBR_EL2=ss2.root, SCR_EL3=scr)
    return r, s1


def par(op: AtOp, r: dict[str, int], t: Tables, va: int = VA) -> dict[str, int]:
    res = at(op, va, r, t.image(), el=3, features=SEL2_CPU, space=SECURE)
    assert res.kind == "par", res.render()
    return decode_par(res.par)


def test_secure_ipa_is_translated_by_vsttbr() -> None:
    r, t = setup()
    res = at(AtOp.S12E1R, VA, r, t.image(), el=3, features=SEL2_CPU, space=SECURE)
    f = decode_par(res.par)
    assert (f["F"], f["PA"] << 12, f["NS"]) == (0, PA_S, 0) and res.mask & NS_BIT
    cites = [s.cites for s in res.trace]
    assert Rule.SECURE_EL2_ENABLED in cites and Rule.SS2_SECURE_IPA in cites
    assert Rule.SS2_NONSECURE_IPA not in cites


def test_nonsecure_ipa_is_translated_by_vttbr_into_the_secure_pa_space_by_default() -> None:
    r, t = setup(leaf=LEAF | NS)
    f = par(AtOp.S12E1R, r, t)
    # SS2OutputPASpace: a Non-secure IPA with SW, SA, NSW, NSA all 0 is Secure
    assert (f["F"], f["PA"] << 12, f["NS"]) == (0, PA_N, 0)


@pytest.mark.parametrize(("ns_ipa", "vtcr", "vstcr", "ns"), [
    (False, 0, 0, 0), (False, 0, SA, 1), (False, 0, SW, 1), (False, NSW | NSA, 0, 0),
    (True, 0, 0, 0), (True, NSA, 0, 1), (True, NSW, 0, 1), (True, 0, SA, 1), (True, 0, SW, 1),
])
def test_output_pa_space_follows_ss2outputpaspace(ns_ipa: bool, vtcr: int, vstcr: int,
                                                  ns: int) -> None:
    r, t = setup(leaf=LEAF | (NS if ns_ipa else 0), vtcr=VTCR_4K_40 | vtcr,
                 vstcr=VSTCR_4K_40 | vstcr)
    f = par(AtOp.S12E1W, r, t)
    assert (f["F"], f["PA"] << 12, f["NS"]) == (0, PA_N if ns_ipa else PA_S, ns)


def test_a_secure_stage_2_leaf_has_no_ns_bit() -> None:
    r, t = setup()
    ss2 = Tables(iasize=40, start_level=1, arena=ARENA_PA + 0x10_0000, words=t.words)
    assert ss2.root == r["VSTTBR_EL2"]  # the same tree: map() rewrites its leaf
    ss2.map(IPA, PA_S, flags=S2_RW | 1 << 55)  # bit 55: software use outside the Realm state
    f = par(AtOp.S12E1R, r, t)
    assert (f["F"], f["PA"] << 12, f["NS"]) == (0, PA_S, 0)


def test_walk_pa_space_follows_sw_and_nsw() -> None:
    from xcheck.arch.at import ArchState
    r, _ = setup(vtcr=VTCR_4K_40 | NSW)
    st = ArchState.from_sysregs(r, SEL2_CPU, 3, False)
    assert (st.ss2_secure_ipa.walk_ns, st.ss2_nonsecure_ipa.walk_ns) == (False, True)
    r, _ = setup(vstcr=VSTCR_4K_40 | SW)
    st = ArchState.from_sysregs(r, SEL2_CPU, 3, False)
    assert (st.ss2_secure_ipa.walk_ns, st.ss2_nonsecure_ipa.walk_ns) == (True, False)
    assert (st.ss2_secure_ipa.ttbr_name, st.s2.walk_ns, st.s2.out_ns) == ("VSTTBR_EL2", True, True)


def test_vstcr_t0sz_sizes_the_secure_ipa_space_only() -> None:
    big = 1 << 33  # above a 32-bit Secure IPA space, inside the 40-bit Non-secure one
    r, t = setup(vstcr=32 | 0b01 << 6 | 1 << 31)
    t.map(VA + 0x1000, big, flags=LEAF)
    t.map(VA + 0x2000, big, flags=LEAF | NS)
    f = par(AtOp.S12E1R, r, t, VA + 0x1000)
    assert (f["F"], f["S"], f["FST"]) == (1, 1, 0b000100)  # stage 2 Translation, level 0
    f = par(AtOp.S12E1R, r, t, VA + 0x2000)
    assert (f["F"], f["S"], f["FST"]) == (1, 1, 0b000101)  # walked VTTBR: level 1, no entry


def test_stage_1_walk_moves_to_vttbr_after_nstable() -> None:
    # Secure stage 2 maps only the root table's IPA page; the later tables are
    # reached through VTTBR_EL2 once NSTable == 1 in the root.
    r, t = setup(table_flags=NSTABLE, s1_tables_in=("nonsecure",))
    ss2 = Tables(iasize=40, start_level=1, arena=ARENA_PA + 0x30_0000, words=t.words)
    ss2.map(t.root, t.root, flags=S2_RW)
    r["VSTTBR_EL2"] = ss2.root
    f = par(AtOp.S12E1R, r, t)
    assert (f["F"], f["PA"] << 12) == (0, PA_N)  # NSTable: a Non-secure IPA
    r2, t2 = setup(s1_tables_in=("nonsecure",))
    f = par(AtOp.S12E1R, r2, t2)  # no NSTable: the root's IPA faults in VSTTBR_EL2
    assert (f["F"], f["S"], f["PTW"]) == (1, 1, 1)


def test_s1e1r_walks_through_stage_2_and_reports_the_ipa() -> None:
    r, t = setup()
    f = par(AtOp.S1E1R, r, t)
    assert (f["F"], f["PA"] << 12, f["NS"]) == (0, IPA, 0)
    r, t = setup(s1_tables_in=())
    f = par(AtOp.S1E1R, r, t)
    assert (f["F"], f["S"], f["PTW"]) == (1, 1, 1)


def test_without_eel2_or_feat_sel2_the_secure_state_has_stage_1_only() -> None:
    r, t = setup(scr=0)
    assert par(AtOp.S12E1R, r, t)["PA"] << 12 == IPA
    r, t = setup()
    res = at(AtOp.S12E1R, VA, r, t.image(), el=3, features=replace(SEL2_CPU, sel2=False),
             space=SECURE)
    assert decode_par(res.par)["PA"] << 12 == IPA
    assert at(AtOp.S1E2R, VA, r, t.image(), el=3, features=replace(SEL2_CPU, sel2=False),
              space=SECURE).kind == "undefined"


def el2_setup(e2h: bool, leaf: int = LEAF, table_flags: int = 0) -> tuple[dict[str, int], Tables]:
    t = Tables()
    t.map(VA, PA_S, flags=leaf, table_flags=table_flags)
    tcr = TCR_4K_48 if e2h else 0x8080_0000 | 16 | 0b101 << 16
    r = regs(SCTLR_EL2=0x30C5_0830 | 1 | 1 << 2, TCR_EL2=tcr, MAIR_EL2=MAIR, TTBR0_EL2=t.root,
             HCR_EL2=1 << 31 | (HCR_E2H if e2h else 0), SCR_EL3=EEL2)
    return r, t


@pytest.mark.parametrize("e2h", [False, True])
def test_secure_el2_regimes_start_secure_and_honour_ns_and_nstable(e2h: bool) -> None:
    r, t = el2_setup(e2h)
    res = at(AtOp.S1E2R, VA, r, t.image(), el=3, features=SEL2_CPU, space=SECURE)
    f = decode_par(res.par)
    assert (f["F"], f["PA"] << 12, f["NS"]) == (0, PA_S, 0) and res.mask & NS_BIT
    assert ("Secure EL2&0" if e2h else "Secure EL2") in str(res.trace[0].text)
    r, t = el2_setup(e2h, leaf=LEAF | NS)
    assert par(AtOp.S1E2W, r, t)["NS"] == 1
    r, t = el2_setup(e2h, table_flags=NSTABLE)
    assert par(AtOp.S1E2R, r, t)["NS"] == 1
    # the same tables from the Non-secure state: NS and NSTable ignored, NS UNKNOWN
    res = at(AtOp.S1E2R, VA, r, t.image(), el=3, features=SEL2_CPU)
    assert decode_par(res.par)["PA"] << 12 == PA_S and not res.mask & NS_BIT


def test_secure_el2_regime_with_mmu_off_is_flat_and_secure() -> None:
    r = regs(SCR_EL3=EEL2)
    f = par(AtOp.S1E2R, r, Tables(), PA_S)
    assert (f["F"], f["PA"] << 12, f["NS"]) == (0, PA_S, 0)
