"""AT from EL3 in the Realm state on the `rme` profile (QEMU 11.x, -cpu
max,x-rme=on); real QEMU, real gdb-multiarch (marker qemu).

Expected values from the Arm ARM (AArch64.AT, SecurityStateAtEL: SCR_EL3.{NSE,
NS} == {1, 1} is the Realm state, where EL2 is enabled; AArch64.RLS2TTWParams:
Realm stage 2 uses VTTBR_EL2/VTCR_EL2; AArch64.S2NextWalkStateLeaf: the stage 2
leaf's bit 55 (NS) selects the Non-secure PA space): AT S12E1R of a VA that
stage 1 maps to IPA 0x8000_0000 and Realm stage 2 to PA 0x4400_0000 gives that
PA; the same AT from the Non-secure state walks the same tables.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from qemuprofiles import installed_profile

from xcheck.arch.par import NS_BIT, decode_par
from xcheck.check import check_scenario
from xcheck.outcome import Kind
from xcheck.scenario.loader import load_scenario
from xcheck.target.guest import QemuTarget

pytestmark = pytest.mark.qemu

SCENARIO = Path(__file__).parents[2] / "scenarios" / "rme" / "realm-el10-stage2.yaml"


@pytest.fixture(scope="module")
def rme() -> Iterator[QemuTarget]:
    with QemuTarget(installed_profile("rme")) as t:
        yield t


def test_at_s12e1r_in_the_realm_state_through_realm_stage_2(rme: QemuTarget) -> None:
    out = check_scenario(rme, load_scenario(SCENARIO))
    assert {o.kind for o in out} <= {Kind.MATCH, Kind.KNOWN}
    by = {(o.op, o.va, o.space): o for o in out}
    for space in ("realm", "nonsecure"):
        o = by[("S12E1R", 0x1000_0000, space)]
        assert isinstance(o.par_target, int) and isinstance(o.par_model, int)
        f = decode_par(o.par_target)
        assert (f["F"], f["PA"] << 12, f["ATTR"]) == (0, 0x4400_0000, 0xFF)
        assert decode_par(o.par_model)["PA"] << 12 == 0x4400_0000
    # stage 2 NS (bit 55): the Non-secure output, PAR_EL1.NS = 1, model and QEMU
    o = by[("S12E1R", 0x1020_6000, "realm")]
    assert o.kind is Kind.MATCH and isinstance(o.par_target, int)
    assert o.par_target & NS_BIT and decode_par(o.par_target)["PA"] << 12 == 0x4460_0000
    # a stage 2 fault in the Realm state (IPA 0x9000_0000 unmapped): S = 1, level 2
    f = decode_par(by[("S12E1W", 0x1020_4000, "realm")].par_target)  # type: ignore[arg-type]
    assert (f["F"], f["FST"], f["S"], f["PTW"]) == (1, 0b000110, 1, 0)
