"""The EL3 regime and the Secure state in the model (no QEMU).

Expected values from the Arm ARM (DDI 0487):
- C5.4.16/17 AT S1E3R/S1E3W: the EL3 regime, UNDEFINED below EL3;
- C5.4.8, C5.4.3 (AT S1E1R, S12E1R executed at EL3): the EL1&0 regime of the
  Security state SCR_EL3.NS selects; with NS == 0 and Secure EL2 not enabled,
  stage 1 only (!EL2Enabled()); C5.4.13 AT S1E2R at EL3 is UNDEFINED then;
- D8.4.6 (R_KZLVM, R_VZYQL, D8.4.6.1) and AArch64.S1Walk: a Secure regime's
  walk starts in the Secure PA space, NSTable == 1 puts the later levels and
  the output in the Non-secure space, the leaf's NS bit selects the output
  space; Non-secure regimes
  ignore both; AArch64.S1DisabledOutput keeps the regime's own space;
- AArch64.EncodePAR: PAR_EL1.NS is the output space for a Secure regime
  (0 Secure) and UNKNOWN for a Non-secure one; with FEAT_RME the EL3 regime
  is the Root state's: its walk starts in the Root PA space, bit 63 is RES0,
  the leaf's NSE and NS select the output space (DecodePASpace) and
  PAR_EL1.{NSE, NS} report it.
"""

from __future__ import annotations

from dataclasses import replace

from archtables import LEAF, MAIR, MAX, SCTLR_ON, TCR_4K_48, Tables, at, regs

from xcheck.arch.par import NS_BIT, NSE_BIT, decode_par
from xcheck.machine import AtOp, SecurityState

EL3_CPU = replace(MAX, el3=True)
TCR_EL3 = 0x8080_0000 | 16 | 0b101 << 16  # RES1, T0SZ = 16, TG0 = 4KB, PS = 48 bits
SCTLR_EL3_ON = 0x30C5_0830 | 1 | 1 << 2  # RES1, M, C
NS = 1 << 5
NSTABLE = 1 << 63
VA = 0x8000_1000
PA = 0x4020_3000


def el3_regs(tables: Tables, **over: int) -> dict[str, int]:
    return regs(SCTLR_EL3=SCTLR_EL3_ON, TCR_EL3=TCR_EL3, MAIR_EL3=MAIR, TTBR0_EL3=tables.root,
                **over)


def test_s1e3r_reports_the_secure_output_space() -> None:
    t = Tables()
    t.map(VA, PA)
    res = at(AtOp.S1E3R, VA, el3_regs(t), t.image(), el=3, features=EL3_CPU)
    assert res.kind == "par" and res.mask & NS_BIT
    f = decode_par(res.par)
    assert (f["F"], f["PA"] << 12, f["NS"], f["ATTR"], f["SH"]) == (0, PA, 0, 0xFF, 0b11)


def test_leaf_ns_bit_selects_the_nonsecure_output_space() -> None:
    t = Tables()
    t.map(VA, PA, flags=LEAF | NS)
    res = at(AtOp.S1E3W, VA, el3_regs(t), t.image(), el=3, features=EL3_CPU)
    assert decode_par(res.par)["NS"] == 1 and res.mask & NS_BIT
    assert any(s.what == "PA space" and "NS == 1" in str(s.text) for s in res.trace)


def test_nstable_makes_the_rest_of_the_walk_and_the_output_nonsecure() -> None:
    t = Tables()
    t.map(VA, PA, table_flags=NSTABLE)  # NSTable in every table descriptor, leaf NS == 0
    res = at(AtOp.S1E3R, VA, el3_regs(t), t.image(), el=3, features=EL3_CPU)
    assert decode_par(res.par)["NS"] == 1
    assert [s.what for s in res.trace].count("NSTable") == 1  # once Non-secure, it stays


def test_s1e3_with_the_el3_mmu_off_is_flat_and_secure() -> None:
    res = at(AtOp.S1E3R, PA, regs(), Tables().image(), el=3, features=EL3_CPU)
    f = decode_par(res.par)
    assert (f["F"], f["PA"] << 12, f["NS"]) == (0, PA, 0) and res.mask & NS_BIT


def test_s1e3w_checks_ap2_like_a_single_privilege_regime() -> None:
    t = Tables()
    t.map(VA, PA, flags=LEAF | 1 << 7)  # AP[2] = 1: read-only
    regs3 = el3_regs(t)
    assert at(AtOp.S1E3R, VA, regs3, t.image(), el=3, features=EL3_CPU).par & 1 == 0
    res = at(AtOp.S1E3W, VA, regs3, t.image(), el=3, features=EL3_CPU)
    assert res.par & 1 and decode_par(res.par)["FST"] == 0b001111  # Permission, level 3


def test_s1e3_is_undefined_below_el3_and_without_el3() -> None:
    t = Tables()
    for el in (1, 2):
        assert at(AtOp.S1E3R, VA, el3_regs(t), t.image(), el=el, features=EL3_CPU).kind == \
            "undefined"
    assert at(AtOp.S1E3R, VA, el3_regs(t), t.image(), el=3, features=MAX).kind == "undefined"


def test_nonsecure_regimes_ignore_ns_and_nstable_and_leave_par_ns_unknown() -> None:
    t = Tables()
    t.map(VA, PA, table_flags=NSTABLE)
    r = regs(SCTLR_EL1=SCTLR_ON, TCR_EL1=TCR_4K_48, MAIR_EL1=MAIR, TTBR0_EL1=t.root)
    res = at(AtOp.S1E1R, VA, r, t.image(), el=2, features=EL3_CPU)
    assert decode_par(res.par)["PA"] << 12 == PA and not res.mask & NS_BIT
    assert all(s.what not in ("NSTable", "PA space") for s in res.trace)


def test_s1e1r_at_el3_secure_translates_the_secure_el10_regime_without_stage_2() -> None:
    t = Tables()
    t.map(VA, PA)
    # Stage 2 enabled with no tables: any Non-secure EL1&0 translation faults at stage 2.
    r = regs(SCTLR_EL1=SCTLR_ON, TCR_EL1=TCR_4K_48, MAIR_EL1=MAIR, TTBR0_EL1=t.root,
             HCR_EL2=1 << 31 | 1, VTCR_EL2=1 << 31 | 0x3F)
    secure = at(AtOp.S12E1R, VA, r, t.image(), el=3, features=EL3_CPU, space=SecurityState.SECURE)
    f = decode_par(secure.par)
    assert (f["F"], f["PA"] << 12, f["NS"]) == (0, PA, 0) and secure.mask & NS_BIT
    assert secure.trace[0].cites is not None and "Secure EL1&0" in str(secure.trace[0].text)
    nonsecure = at(AtOp.S12E1R, VA, r, t.image(), el=3, features=EL3_CPU)
    assert nonsecure.par & 1 and decode_par(nonsecure.par)["S"] == 1
    assert nonsecure.par == at(AtOp.S12E1R, VA, r, t.image(), el=2, features=EL3_CPU).par


def test_s1e2r_at_el3_needs_el2_enabled_in_the_selected_security_state() -> None:
    r = regs()
    assert at(AtOp.S1E2R, VA, r, Tables().image(), el=3, features=EL3_CPU,
              space=SecurityState.SECURE).kind == "undefined"
    res = at(AtOp.S1E2R, PA, r, Tables().image(), el=3, features=EL3_CPU)
    assert res.kind == "par" and decode_par(res.par)["PA"] << 12 == PA


def test_with_rme_the_el3_regime_is_root_and_reports_nse_and_ns() -> None:
    rme = replace(EL3_CPU, rme=1, sel2=True)
    off = at(AtOp.S1E3R, PA, regs(), Tables().image(), el=3, features=rme)
    f = decode_par(off.par)
    assert (off.par >> 11 & 1, f["NS"]) == (1, 0)  # the Root PA space (MMU off)
    assert off.mask & NS_BIT and off.mask & NSE_BIT
    t = Tables()
    t.map(VA, PA, table_flags=NSTABLE)  # bit 63 is RES0 in the Root state: no NSTable
    t.map(VA + 0x1000, PA, flags=LEAF | NS | 1 << 11)  # NSE, NS: the Realm PA space
    regs3 = el3_regs(t)
    secure = at(AtOp.S1E3R, VA, regs3, t.image(), el=3, features=rme)
    assert (secure.par >> 11 & 1, decode_par(secure.par)["NS"]) == (0, 0)
    realm = at(AtOp.S1E3R, VA + 0x1000, regs3, t.image(), el=3, features=rme)
    assert (realm.par >> 11 & 1, decode_par(realm.par)["NS"]) == (1, 1)
    assert any(s.what == "PA space" and "Realm" in str(s.text) for s in realm.trace)


def test_root_state_fetches_only_from_the_root_pa_space() -> None:
    from xcheck.arch.at import ArchState
    from xcheck.arch.perms import S1Access
    from xcheck.arch.regime import Regime
    from xcheck.arch.walk import Access, Translated, s1_translate

    t = Tables()
    t.map(VA, PA)  # {NSE, NS} = 00: Secure
    t.map(VA + 0x1000, PA, flags=LEAF | 1 << 11)  # Root
    rme = replace(EL3_CPU, rme=1, sel2=True)
    rp = ArchState.from_sysregs(el3_regs(t), rme, 3, False).regime(Regime.EL3)
    fetch = Access(S1Access(el=3, write=False, pan_op=False, fetch=True), False, False, 3)
    denied = s1_translate(rp, VA, fetch, None, t.image(), [])
    assert not isinstance(denied, Translated) and denied.fst == 0b001111
    assert isinstance(s1_translate(rp, VA + 0x1000, fetch, None, t.image(), []), Translated)


def test_root_state_00_is_nonsecure_without_secure_el2() -> None:
    t = Tables()
    t.map(VA, PA)
    res = at(AtOp.S1E3R, VA, el3_regs(t), t.image(), el=3, features=replace(EL3_CPU, rme=1))
    assert (res.par >> 11 & 1, decode_par(res.par)["NS"]) == (0, 1)  # D8.4.6 Table D8-88
