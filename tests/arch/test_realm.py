"""The Realm state (FEAT_RME) in the model (no QEMU).

Expected values from the Arm ARM (DDI 0487) and its ASL:
- SecurityStateAtEL: below EL3, SCR_EL3.{NSE, NS} == {1, 1} is the Realm
  state; EL2Enabled() is true there (SCR_EL3.NS == 1), so AT S1E2* at EL3
  translate the Realm EL2 (E2H == 0) or EL2&0 regime and AT S12E* the Realm
  EL1&0 regime with stage 2 (AArch64.AT); {NSE, NS} == {1, 0} (Root) makes
  every AT but S1E3* UNDEFINED (AArch64.AT);
- AArch64.S1InitialTTWState: a Realm walk starts in the Realm PA space;
  AArch64.S1NextWalkStateTable: NSTable has no effect outside a Secure walk;
  AArch64.S1NextWalkStateLeaf: in the Realm EL2 and EL2&0 regimes the leaf's
  NS (bit 5) selects the Non-secure PA space, else Realm; the Realm EL1&0
  regime's output is Realm whatever NS says;
- AArch64.RLS2TTWParams: Realm stage 2 takes the Non-secure parameters
  (VTTBR_EL2, VTCR_EL2; NSW and NSA are read by AArch64.SS2TTWParams only);
  AArch64.S2InitialTTWState: its tables are in the Realm PA space;
  AArch64.S2NextWalkStateLeaf: the leaf's NS (bit 55) selects the Non-secure
  output, else Realm; AArch64.S2CheckPermissions: a stage 1 walk access
  (AccessType_TTW) in the Realm state whose stage 2 output is not Realm is a
  stage 2 Permission fault;
- AArch64.EncodePAR with FEAT_RME: for a Realm regime NSE is UNKNOWN and NS is
  0 for the Realm PA space, 1 for the Non-secure one, except AT S1E1*/S1E0*
  of the Realm EL1&0 regime (is_ATS1Ex), where NS is UNKNOWN too;
- AArch64.S1DirectBasePermissions: Realm EL2 and EL2&0 cannot execute from
  outside the Realm PA space;
- AArch64.GranuleProtectionCheck / GPICheck: every table read of a Realm
  walk (stage 1 and stage 2) is checked in the Realm PA space.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from archtables import LEAF, MAIR, MAX, SCTLR_ON, TCR_4K_48, Tables, at, regs
from test_gpc import GPCCR_ON, GPT_L0, GPT_L1, gpt, l1_granules

from xcheck.arch.at import ArchState, AtResult
from xcheck.arch.fault import FaultRecord
from xcheck.arch.gpc import GPI_ALL, GPI_NO_ACCESS, GPI_NONSECURE, GPI_REALM, GPI_SECURE
from xcheck.arch.memory import MemoryImage
from xcheck.arch.par import NS_BIT, NSE_BIT, decode_par
from xcheck.arch.perms import S1Access
from xcheck.arch.regime import Regime
from xcheck.arch.rules import Rule
from xcheck.arch.walk import Access, s1_translate
from xcheck.machine import ARENA_PA, AtOp, SecurityState

RME = replace(MAX, el3=True, rme=1, sel2=True)
REALM = SecurityState.REALM
HCR_VM = 1 << 31 | 1
HCR_E2H = 1 << 34
VTCR_4K_40 = 24 | 0b01 << 6 | 0b010 << 16 | 1 << 31  # T0SZ 24, SL0 level 1, PS 40 bits
NSW, NSA = 1 << 29, 1 << 30
S2_RW = 1 << 10 | 0b11 << 6 | 0b1111 << 2 | 0b11 << 8
S2_NS = 1 << 55
NS = 1 << 5
NSTABLE = 1 << 63
VA = 0x8000_1000
IPA = 0x4400_0000
PA = 0x4500_0000
SCTLR_EL2_ON = 0x30C5_0830 | 1 | 1 << 2
TCR_EL2_48 = 0x8080_0000 | 16 | 0b101 << 16


def s12_setup(leaf: int = LEAF, s2_leaf: int = S2_RW, table_flags: int = 0,
              vtcr: int = VTCR_4K_40, s1_tables_flags: int = S2_RW,
              hcr: int = HCR_VM) -> tuple[dict[str, int], Tables, Tables]:
    """The EL1&0 regime maps VA to IPA, stage 2 maps IPA to PA with
    ``s2_leaf`` and the stage 1 tables (VA = PA) with ``s1_tables_flags``."""
    words: dict[int, int] = {}
    s1 = Tables(words=words)
    s1.map(VA, IPA, flags=leaf, table_flags=table_flags)
    s2 = Tables(iasize=40, start_level=1, arena=ARENA_PA + 0x10_0000, words=words)
    s2.map(IPA, PA, flags=s2_leaf)
    for page in range(ARENA_PA, ARENA_PA + 0x8000, 0x1000):
        s2.map(page, page, flags=s1_tables_flags)
    r = regs(SCTLR_EL1=SCTLR_ON, TCR_EL1=TCR_4K_48, MAIR_EL1=MAIR, TTBR0_EL1=s1.root,
             HCR_EL2=hcr, VTCR_EL2=vtcr, VTTBR_EL2=s2.root)
    return r, s1, s2


def realm(op: AtOp, r: dict[str, int], mem: MemoryImage, va: int = VA,
          space: SecurityState = REALM) -> AtResult:
    return at(op, va, r, mem, el=3, features=RME, space=space)


def fields(res: AtResult) -> dict[str, int]:
    assert res.kind == "par", res.render()
    return decode_par(res.par)


@pytest.mark.parametrize(("s2_leaf", "ns"), [(S2_RW, 0), (S2_RW | S2_NS, 1)])
def test_realm_stage_2_ns_bit_selects_the_output_pa_space(s2_leaf: int, ns: int) -> None:
    r, s1, _ = s12_setup(s2_leaf=s2_leaf)
    res = realm(AtOp.S12E1R, r, s1.image())
    f = fields(res)
    assert (f["F"], f["PA"] << 12, f["NS"]) == (0, PA, ns)
    assert res.mask & NS_BIT and not res.mask & NSE_BIT
    cites = [s.cites for s in res.trace]
    assert Rule.REALM_EL2_ENABLED in cites and Rule.RLS2_REALM in cites
    assert Rule.S2_REALM_OUTPUT_PASPACE in cites


def test_bit_55_is_not_ns_in_the_nonsecure_state() -> None:
    """Outside the Realm state bit 55 is reserved for software (the
    Non-secure stage 2 output is always Non-secure)."""
    r, s1, _ = s12_setup(s2_leaf=S2_RW | S2_NS)
    res = realm(AtOp.S12E1R, r, s1.image(), space=SecurityState.NONSECURE)
    assert fields(res)["PA"] << 12 == PA
    assert not res.mask & NS_BIT
    assert Rule.S2_REALM_OUTPUT_PASPACE not in [s.cites for s in res.trace]


def test_vtcr_nsw_nsa_have_no_effect_in_the_realm_state() -> None:
    for vtcr in (VTCR_4K_40 | NSW, VTCR_4K_40 | NSA, VTCR_4K_40 | NSW | NSA):
        r, s1, _ = s12_setup(vtcr=vtcr)
        assert fields(realm(AtOp.S12E1W, r, s1.image()))["NS"] == 0


def test_realm_el10_stage_1_ns_bit_is_ignored() -> None:
    """The Realm EL1&0 output is an IPA in the Realm space; stage 2 decides."""
    r, s1, _ = s12_setup(leaf=LEAF | NS)
    res = realm(AtOp.S12E1R, r, s1.image())
    assert (fields(res)["PA"] << 12, fields(res)["NS"]) == (PA, 0)
    assert Rule.S1_REALM_OUTPUT_PASPACE in [s.cites for s in res.trace]


def test_at_s1e1_in_realm_el10_reports_neither_ns_nor_nse() -> None:
    r, s1, _ = s12_setup()
    for op in (AtOp.S1E1R, AtOp.S1E1W):
        res = realm(op, r, s1.image())
        assert fields(res)["PA"] << 12 == IPA
        assert not res.mask & (NS_BIT | NSE_BIT)


def test_s12_with_stage_2_off_reports_the_realm_ipa_space() -> None:
    """HCR_EL2.VM == 0: the output is stage 1's (Realm); AT S12E* is still
    not an ATS1Ex, so EncodePAR reports NS (0: Realm)."""
    r, s1, _ = s12_setup(hcr=0)
    res = realm(AtOp.S12E1R, r, s1.image())
    assert (fields(res)["PA"] << 12, fields(res)["NS"]) == (IPA, 0) and res.mask & NS_BIT


def test_nstable_has_no_effect_in_a_realm_walk() -> None:
    r, s1, _ = s12_setup(table_flags=NSTABLE, hcr=0)
    res = realm(AtOp.S12E1R, r, s1.image())
    assert fields(res)["NS"] == 0
    assert Rule.S1_REALM_NSTABLE in [s.cites for s in res.trace]


def test_stage_1_walk_mapped_nonsecure_by_stage_2_is_a_permission_fault() -> None:
    """S2CheckPermissions (AccessType_TTW): the Realm stage 1 tables must be
    Realm at stage 2; an NS stage 2 mapping of them is a Permission fault on
    the walk (PAR.S = 1, PTW = 1), even with S2AP granting read."""
    r, s1, _ = s12_setup(s1_tables_flags=S2_RW | S2_NS)
    res = realm(AtOp.S1E1R, r, s1.image())
    f = fields(res)
    assert (f["F"], f["FST"] >> 2, f["S"], f["PTW"]) == (1, 0b0011, 1, 1)
    assert res.trace[-1].cites is Rule.S2_REALM_WALK_NONREALM
    # the same tables from the Non-secure state translate
    ns = realm(AtOp.S1E1R, r, s1.image(), space=SecurityState.NONSECURE)
    assert fields(ns)["F"] == 0


def test_realm_el2_regime_ns_bit_selects_the_output() -> None:
    t = Tables()
    t.map(VA, PA, flags=LEAF)
    t.map(VA + 0x1000, PA + 0x1000, flags=LEAF | NS)
    r = regs(SCTLR_EL2=SCTLR_EL2_ON, TCR_EL2=TCR_EL2_48, MAIR_EL2=MAIR, TTBR0_EL2=t.root)
    for va, ns in ((VA, 0), (VA + 0x1000, 1)):
        res = realm(AtOp.S1E2R, r, t.image(), va=va)
        assert (fields(res)["PA"] << 12, fields(res)["NS"]) == (va - VA + PA, ns)
        assert res.mask & NS_BIT and not res.mask & NSE_BIT
        assert res.trace[0].cites is Rule.REGIME_EL2


def test_realm_el20_regime_with_e2h() -> None:
    t = Tables()
    t.map(VA, PA, flags=LEAF | NS)
    r = regs(SCTLR_EL2=SCTLR_EL2_ON, TCR_EL2=TCR_4K_48, MAIR_EL2=MAIR, TTBR0_EL2=t.root,
             HCR_EL2=HCR_E2H | 1 << 31)
    res = realm(AtOp.S1E2W, r, t.image())
    assert res.trace[0].cites is Rule.REGIME_EL20
    assert (fields(res)["PA"] << 12, fields(res)["NS"]) == (PA, 1)


def test_root_space_makes_el1_el2_ops_undefined() -> None:
    r, s1, _ = s12_setup()
    for op in (AtOp.S1E1R, AtOp.S12E1R, AtOp.S1E2R):
        res = realm(op, r, s1.image(), space=SecurityState.ROOT)
        assert res.kind == "undefined" and res.trace[-1].cites is Rule.AT_ROOT_UNDEFINED


def test_realm_needs_rme() -> None:
    r, s1, _ = s12_setup()
    with pytest.raises(ValueError, match="FEAT_RME"):
        at(AtOp.S1E1R, VA, r, s1.image(), el=3, features=replace(RME, rme=0), space=REALM)


def test_realm_el2_does_not_fetch_from_the_nonsecure_pa_space() -> None:
    t = Tables()
    t.map(VA, PA, flags=LEAF)
    t.map(VA + 0x1000, PA + 0x1000, flags=LEAF | NS)
    r = regs(SCTLR_EL2=SCTLR_EL2_ON, TCR_EL2=TCR_EL2_48, MAIR_EL2=MAIR, TTBR0_EL2=t.root)
    state = ArchState.from_sysregs(r, RME, 3, False)
    acc = Access(S1Access(el=2, write=False, pan_op=False, fetch=True), False, False, 3)
    for regime_state, fault in ((state.regime(Regime.EL2, REALM), (False, True)),
                                (state.regime(Regime.EL2), (False, False))):
        for va, faults in zip((VA, VA + 0x1000), fault, strict=True):
            trace: list = []
            out = s1_translate(regime_state, va, acc, None, t.image(), trace)
            assert isinstance(out, FaultRecord) == faults
            if faults:
                assert trace[-1].cites is Rule.S1_REALM_FETCH


def gpc_image(words: dict[int, int], gpi_of: dict[int, int]) -> MemoryImage:
    """``words`` plus a GPT whose level 1 Granules descriptors give each 4KB
    granule of ``gpi_of`` its GPI, every other granule GPI_ALL."""
    out = dict(words)
    out[GPT_L0 + 8] = GPT_L1 | 0b0011
    l1: dict[int, list[int]] = {}
    for pa, gpi in gpi_of.items():
        l1.setdefault(GPT_L1 + 8 * ((pa >> 16) & 0x3FFF), [GPI_ALL] * 16)[(pa >> 12) & 0xF] = gpi
    for addr in range(GPT_L1, GPT_L1 + (1 << 17), 8):
        out[addr] = l1_granules(*l1.get(addr, []))
    return gpt(out)


@pytest.mark.parametrize(("gpi", "ok"), [(GPI_REALM, True), (GPI_ALL, True),
                                         (GPI_NONSECURE, False), (GPI_SECURE, False),
                                         (GPI_NO_ACCESS, False)])
def test_realm_walk_tables_are_checked_in_the_realm_pa_space(gpi: int, ok: bool) -> None:
    r, s1, s2 = s12_setup()
    r |= {"GPCCR_EL3": GPCCR_ON, "GPTBR_EL3": GPT_L0 >> 12}
    s1_l2 = s1.entry(VA, 2) & ~0xFFF
    s2_l2 = s2.entry(IPA, 2) & ~0xFFF
    for table, stage in ((s1_l2, 1), (s2_l2, 2)):
        res = realm(AtOp.S12E1R, r, gpc_image(s1.words, {table: gpi}))
        f = fields(res)
        if ok:
            assert (f["F"], f["PA"] << 12) == (0, PA)
        else:
            # Fault_GPCFOnWalk at the level of the table access (level 2 is
            # read at level 2: FST 0b1001LL), reported at EL3
            assert (f["F"], f["FST"], f["S"]) == (1, 0b100110, int(stage == 2))
            assert any(s.cites is Rule.AT_GPC_ON_WALK for s in res.trace)
        # the Non-secure state reads the same tables in the Non-secure space
        ns = realm(AtOp.S12E1R, r, gpc_image(s1.words, {table: gpi}),
                   space=SecurityState.NONSECURE)
        assert fields(ns)["F"] == int(gpi not in (GPI_NONSECURE, GPI_ALL))


def test_doctor_names_the_realm_state_only_with_rme() -> None:
    from xcheck.target.doctor import reachable_states
    assert "realm (EL3, SCR_EL3.{NSE, NS} = {1, 1}" in reachable_states(RME)
    assert "realm" not in reachable_states(replace(RME, rme=0))
