"""AT executed at EL1 and EL2 in the Secure and Realm states (no QEMU).

Expected values from the Arm ARM (DDI 0487), C5.4 and AArch64.AT:
- the regime an AT translates depends on the Security state and the op, not
  on the EL it runs at: AT S1E1R at Secure EL1 translates the Secure EL1&0
  regime as AT S1E1R at EL3 with SCR_EL3.NS == 0 does;
- what the EL decides: AT S1E2* and AT S12E* are UNDEFINED at EL1 (C5.4.3,
  C5.4.13), trapped to EL2 by HCR_EL2.NV and HCR_EL2.AT only where EL2 is
  enabled (EL2Enabled(): Secure only with SCR_EL3.EEL2 == 1, Realm always);
  without Secure EL2, HCR_EL2 has no effect on the Secure EL1&0 regime
  (no stage 2, no trap);
- at EL2 of a state where EL2 is enabled, {E2H, TGE} == {1, 1} makes AT
  S1E1*/S1E0* translate that state's EL2&0 regime (AArch64.AT);
- PSTATE.PAN applies to AT S1E1RP/WP at EL1 in every state (C5.4.9,
  AArch64.S1CheckPermissions);
- HCR_EL2.GPF makes a GPC fault of an AT at EL1 an exception where EL2 is
  enabled (AArch64.AT).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from archtables import LEAF, MAIR, MAX, SCTLR_ON, TCR_4K_48, Tables, at, regs

from xcheck.arch.par import decode_par
from xcheck.arch.rules import Rule
from xcheck.machine import ARENA_PA, AtOp, SecurityState

CPU = replace(MAX, el3=True, sel2=True, rme=1)
SECURE, REALM = SecurityState.SECURE, SecurityState.REALM
EEL2 = 1 << 18
RW, VM, E2H, TGE, NV, AT_TRAP = 1 << 31, 1, 1 << 34, 1 << 27, 1 << 42, 1 << 44
VTCR_4K_40 = 24 | 0b01 << 6 | 0b010 << 16 | 1 << 31
VSTCR_4K_40 = 24 | 0b01 << 6 | 1 << 31
S2_RW = 1 << 10 | 0b11 << 6 | 0b1111 << 2 | 0b11 << 8
AP_EL0 = 0b01 << 6
VA = 0x8000_1000
IPA = 0x4400_0000
PA_S1 = IPA
PA_S2 = 0x4500_0000


def setup(hcr: int = RW, scr: int = 0, leaf: int = LEAF) -> tuple[dict[str, int], Tables]:
    """EL1&0 stage 1 maps VA to IPA; both stage 2s (VTTBR_EL2, VSTTBR_EL2)
    map IPA to PA_S2 and the stage 1 tables VA = PA."""
    words: dict[int, int] = {}
    s1 = Tables(words=words)
    s1.map(VA, IPA, flags=leaf)
    ns2 = Tables(iasize=40, start_level=1, arena=ARENA_PA + 0x10_0000, words=words)
    ss2 = Tables(iasize=40, start_level=1, arena=ARENA_PA + 0x20_0000, words=words)
    for s2 in (ns2, ss2):
        s2.map(IPA, PA_S2, flags=S2_RW)
        for page in range(ARENA_PA, ARENA_PA + 0x8000, 0x1000):
            s2.map(page, page, flags=S2_RW)
    r = regs(SCTLR_EL1=SCTLR_ON, TCR_EL1=TCR_4K_48, MAIR_EL1=MAIR, TTBR0_EL1=s1.root,
             HCR_EL2=hcr, VTCR_EL2=VTCR_4K_40, VTTBR_EL2=ns2.root, VSTCR_EL2=VSTCR_4K_40,
             VSTTBR_EL2=ss2.root, SCR_EL3=scr)
    return r, s1


@pytest.mark.parametrize(("op", "el", "space", "hcr", "scr", "expect"), [
    # Secure EL1 without Secure EL2: HCR_EL2 has no effect
    (AtOp.S1E1R, 1, SECURE, RW | VM, 0, (Rule.REGIME_EL10_SECURE_EL1, PA_S1)),
    (AtOp.S1E1W, 1, SECURE, RW | AT_TRAP, 0, (Rule.REGIME_EL10_SECURE_EL1, PA_S1)),
    (AtOp.S12E1R, 1, SECURE, RW | NV, 0, ("undefined", Rule.AT_EL2_OP_UNDEFINED_AT_EL1)),
    (AtOp.S1E2R, 1, SECURE, RW, 0, ("undefined", Rule.AT_EL2_OP_UNDEFINED_AT_EL1)),
    # Secure EL1 with Secure EL2: stage 2 and the HCR_EL2 traps apply
    (AtOp.S1E1R, 1, SECURE, RW | VM, EEL2, (Rule.REGIME_EL10, PA_S1)),  # stage 1 only
    (AtOp.S1E1R, 1, SECURE, RW | AT_TRAP, EEL2, ("trap", Rule.AT_TRAP_HCR_AT)),
    (AtOp.S12E1R, 1, SECURE, RW | NV, EEL2, ("trap", Rule.AT_TRAP_NV)),
    (AtOp.S12E1R, 1, SECURE, RW, EEL2, ("undefined", Rule.AT_EL2_OP_UNDEFINED_AT_EL1)),
    # Secure EL2
    (AtOp.S12E1R, 2, SECURE, RW | VM, EEL2, (Rule.REGIME_EL10_S12, PA_S2)),
    (AtOp.S1E1R, 2, SECURE, RW | VM, EEL2, (Rule.REGIME_EL10, PA_S1)),
    (AtOp.S1E1R, 2, SECURE, RW | AT_TRAP, EEL2, (Rule.REGIME_EL10, PA_S1)),
    (AtOp.S1E1R, 2, SECURE, RW | E2H | TGE, EEL2, (Rule.REGIME_HOST, VA)),
    # Realm EL1: EL2 is always enabled
    (AtOp.S1E1R, 1, REALM, RW | VM, 0, (Rule.REGIME_EL10, PA_S1)),
    (AtOp.S1E1W, 1, REALM, RW | AT_TRAP, 0, ("trap", Rule.AT_TRAP_HCR_AT)),
    (AtOp.S1E2W, 1, REALM, RW, 0, ("undefined", Rule.AT_EL2_OP_UNDEFINED_AT_EL1)),
    (AtOp.S12E0R, 1, REALM, RW | NV, 0, ("trap", Rule.AT_TRAP_NV)),
    # Realm EL2
    (AtOp.S12E1W, 2, REALM, RW | VM, 0, (Rule.REGIME_EL10_S12, PA_S2)),
    (AtOp.S1E2R, 2, REALM, RW, 0, (Rule.REGIME_EL2, VA)),
    (AtOp.S1E2R, 2, REALM, RW | E2H, 0, (Rule.REGIME_EL20, VA)),
], ids=str)
def test_routing_at_el1_and_el2(op: AtOp, el: int, space: SecurityState, hcr: int, scr: int,
                                expect: tuple[object, object]) -> None:
    """C5.4 "Executing AT ...", AArch64.AT: the regime (and so the PA) or the
    exception, at EL1 and EL2 of the Secure and Realm states."""
    r, t = setup(hcr, scr)
    res = at(op, VA, r, t.image(), el=el, features=CPU, space=space)
    if isinstance(expect[0], str):
        assert (res.kind, res.trace[-1].cites) == expect
        return
    rule, pa = expect
    assert res.kind == "par", res.render()
    f = decode_par(res.par)
    assert res.trace[0].cites is rule
    assert (f["F"], f["PA"] << 12) == (0, pa)


def test_secure_el2_needs_eel2() -> None:
    r, t = setup()
    with pytest.raises(ValueError, match="EEL2"):
        at(AtOp.S1E2R, VA, r, t.image(), el=2, features=CPU, space=SECURE)


@pytest.mark.parametrize(("space", "scr"), [(SECURE, 0), (SECURE, EEL2), (REALM, 0)])
def test_el1_translates_the_regime_at_el3_translates(space: SecurityState, scr: int) -> None:
    """The regime is the state's, whichever EL runs the AT (C5.4): AT S1E1W at
    EL1 answers what AT S1E1W at EL3 with the same SCR_EL3 answers."""
    r, t = setup(RW | VM, scr)
    mem = t.image()
    low = at(AtOp.S1E1W, VA, r, mem, el=1, features=CPU, space=space)
    high = at(AtOp.S1E1W, VA, r, mem, el=3, features=CPU, space=space)
    assert (low.kind, low.par & low.mask) == (high.kind, high.par & high.mask)


@pytest.mark.parametrize("space", [SECURE, REALM])
def test_pan_at_el1_of_each_state(space: SecurityState) -> None:
    """AT S1E1RP with PSTATE.PAN == 1 on an EL0-accessible page: Permission
    fault, level 3 (C5.4.9, AArch64.S1CheckPermissions); with PAN == 0 it
    translates."""
    r, t = setup(leaf=LEAF | AP_EL0)
    mem = t.image()
    on = at(AtOp.S1E1RP, VA, r, mem, el=1, pan=True, features=CPU, space=space)
    off = at(AtOp.S1E1RP, VA, r, mem, el=1, pan=False, features=CPU, space=space)
    assert (decode_par(on.par)["F"], decode_par(on.par)["FST"]) == (1, 0b001111)
    assert decode_par(off.par)["F"] == 0
