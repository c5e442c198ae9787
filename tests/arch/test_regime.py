"""AT routing and the EL2 / EL2&0 regimes (Arm ARM DDI 0487, C5.4, AArch64.AT,
D8.13 Virtualization Host Extensions)."""

from __future__ import annotations

import dataclasses

import pytest
from archtables import LEAF, MAIR, MAX, SCTLR_ON, TCR_4K_48, Tables, at, regs

from xcheck.arch.par import decode_par
from xcheck.arch.regime import AtRoute, HcrState, NotExecuted, Regime, route
from xcheck.machine import RAM_BASE, AtOp

RW = 1 << 31
E2H, TGE, NV, AT_TRAP, VM = 1 << 34, 1 << 27, 1 << 42, 1 << 44, 1


def r(op: AtOp, el: int, hcr: int, pan: int = 3) -> AtRoute | NotExecuted:
    feats = dataclasses.replace(MAX, pan=pan)
    return route(op, el, HcrState.decode(hcr, feats), feats)


@pytest.mark.parametrize(("op", "el", "hcr", "expect"), [
    (AtOp.S1E1R, 1, RW, (Regime.EL10, 1, False)),
    (AtOp.S1E0W, 1, RW, (Regime.EL10, 0, False)),
    (AtOp.S1E1R, 2, RW, (Regime.EL10, 1, False)),
    (AtOp.S1E1R, 2, RW | E2H, (Regime.EL10, 1, False)),
    (AtOp.S1E1R, 2, RW | E2H | TGE, (Regime.EL20, 2, False)),
    (AtOp.S1E0R, 2, RW | E2H | TGE, (Regime.EL20, 0, False)),
    (AtOp.S1E2R, 2, RW, (Regime.EL2, 2, False)),
    (AtOp.S1E2W, 2, RW | E2H, (Regime.EL20, 2, False)),
    (AtOp.S12E1R, 2, RW | VM, (Regime.EL10, 1, True)),
    (AtOp.S12E0W, 2, RW | VM, (Regime.EL10, 0, True)),
    (AtOp.S12E1R, 2, RW, (Regime.EL10, 1, False)),
    (AtOp.S12E1R, 2, RW | VM | E2H | TGE, (Regime.EL20, 2, False)),
    (AtOp.S1E2R, 1, RW, "undefined"),
    (AtOp.S12E1W, 1, RW, "undefined"),
    (AtOp.S1E2R, 1, RW | NV, "trap"),
    (AtOp.S1E1R, 1, RW | AT_TRAP, "trap"),
    (AtOp.S1E1R, 2, RW | AT_TRAP, (Regime.EL10, 1, False)),
    (AtOp.S1E1R, 0, RW, "undefined"),
], ids=lambda v: str(v))
def test_routing(op: AtOp, el: int, hcr: int, expect: object) -> None:
    """C5.4 "Executing AT ...": the regime, the EL of the access, and stage 2."""
    got = r(op, el, hcr)
    if isinstance(expect, str):
        assert isinstance(got, NotExecuted) and got.kind == expect
    else:
        assert isinstance(got, AtRoute)
        assert (got.regime, got.acc_el, got.stage12) == expect


@pytest.mark.parametrize(("pan", "undefined"), [(1, True), (2, False), (3, False)])
def test_s1e1rp_needs_pan2(pan: int, undefined: bool) -> None:
    """C5.4.9: AT S1E1RP/WP are UNDEFINED without FEAT_PAN2."""
    for op in (AtOp.S1E1RP, AtOp.S1E1WP):
        got = r(op, 1, RW, pan)
        assert isinstance(got, NotExecuted) is undefined
        if not undefined:
            assert isinstance(got, AtRoute) and got.pan_op


def test_e2h_ignored_without_vhe() -> None:
    """HCR_EL2.E2H is RES0 without FEAT_VHE: S1E2R uses the EL2 regime."""
    feats = dataclasses.replace(MAX, vh=False)
    got = route(AtOp.S1E2R, 2, HcrState.decode(RW | E2H, feats), feats)
    assert isinstance(got, AtRoute) and got.regime is Regime.EL2


VA, PA = 0x0000_0000_1234_5000, RAM_BASE + 0x0200_5000
TCR_EL2_4K = 16 | (0b101 << 16) | (1 << 31) | (1 << 23)  # T0SZ=16, PS=48, RES1 bits


def test_el2_regime_uses_tcr_el2_layout() -> None:
    """AArch64.S1TTWParamsEL2: TCR_EL2.{T0SZ, TG0, PS}, TTBR0_EL2, MAIR_EL2."""
    t = Tables()
    t.map(VA, PA)
    sysregs = regs(SCTLR_EL2=0x30C5_0830 | 1 | 4, TCR_EL2=TCR_EL2_4K, TTBR0_EL2=t.root,
                   MAIR_EL2=MAIR)
    res = at(AtOp.S1E2R, VA, sysregs, t.image(), el=2)
    assert decode_par(res.par)["PA"] << 12 == PA
    assert decode_par(res.par)["ATTR"] == 0xFF


def test_el2_regime_has_one_va_range() -> None:
    """The EL2 regime has only TTBR0_EL2: a VA with bit 55 set is out of range."""
    t = Tables()
    sysregs = regs(SCTLR_EL2=0x30C5_0830 | 1, TCR_EL2=TCR_EL2_4K, TTBR0_EL2=t.root)
    res = at(AtOp.S1E2R, 0xFFFF_0000_0000_0000, sysregs, t.image(), el=2)
    assert decode_par(res.par)["FST"] == 0b000100


def test_el20_regime_uses_ttbr1_el2() -> None:
    """D8.13: with E2H == 1 TCR_EL2 has the TCR_EL1 layout and TTBR1_EL2 exists;
    with {E2H, TGE} == {1, 1} AT S1E1R translates the EL2&0 regime."""
    t = Tables()
    va = 0xFFFF_0000_0000_0000 | VA
    t.map(VA, PA)
    sysregs = regs(SCTLR_EL2=0x30C5_0830 | 1 | 4, TCR_EL2=TCR_4K_48, TTBR1_EL2=t.root,
                   MAIR_EL2=MAIR, HCR_EL2=RW | E2H | TGE)
    for op in (AtOp.S1E2R, AtOp.S1E1R):
        res = at(op, va, sysregs, t.image(), el=2)
        assert decode_par(res.par)["PA"] << 12 == PA, res.render()


def test_tge_without_e2h_disables_el10_stage1() -> None:
    """AArch64.S1Enabled: the EL1&0 stage 1 is disabled when HCR_EL2.TGE == 1."""
    t = Tables()
    t.map(VA, PA, flags=LEAF)
    sysregs = regs(SCTLR_EL1=SCTLR_ON, TCR_EL1=TCR_4K_48, TTBR0_EL1=t.root,
                   HCR_EL2=RW | TGE)
    res = at(AtOp.S1E1R, VA, sysregs, t.image(), el=2)
    assert decode_par(res.par)["PA"] << 12 == VA


def test_pan2_at_s1e1rp() -> None:
    """AT S1E1RP with PSTATE.PAN == 1 faults on an EL0-accessible page; S1E1R
    does not apply PAN (CreateAccDescAT)."""
    t = Tables()
    t.map(VA, PA, flags=LEAF | (0b01 << 6))
    sysregs = regs(SCTLR_EL1=SCTLR_ON, TCR_EL1=TCR_4K_48, TTBR0_EL1=t.root)
    assert decode_par(at(AtOp.S1E1RP, VA, sysregs, t.image(), pan=True).par)["FST"] \
        == 0b001111
    assert not at(AtOp.S1E1R, VA, sysregs, t.image(), pan=True).par & 1
    assert not at(AtOp.S1E1RP, VA, sysregs, t.image(), pan=False).par & 1
