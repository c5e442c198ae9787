"""Granule protection checks seen by AT on the `rme` profile (QEMU 11.x,
-cpu max,x-rme=on); real QEMU, real gdb-multiarch (marker qemu).

Expected values from the Arm ARM (D9; AArch64.FetchDescriptor, AArch64.AT,
EncodeLDFSC): a table of the Root state's EL3 walk in a granule whose GPI does
not permit the Root PA space is a granule protection fault on the walk,
reported in PAR_EL1 at EL3 with FST 0b1001LL (the table's level), S = PTW = 0.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from qemuprofiles import installed_profile

from xcheck.arch.par import decode_par
from xcheck.check import check_scenario
from xcheck.outcome import Kind
from xcheck.scenario.loader import load_scenario
from xcheck.target.guest import QemuTarget

pytestmark = pytest.mark.qemu

SCENARIO = Path(__file__).parents[2] / "scenarios" / "rme" / "gpc-el3-walk.yaml"


@pytest.fixture(scope="module")
def rme() -> Iterator[QemuTarget]:
    with QemuTarget(installed_profile("rme")) as t:
        yield t


def test_at_s1e3_reports_a_gpc_fault_on_the_walk(rme: QemuTarget) -> None:
    out = check_scenario(rme, load_scenario(SCENARIO))
    assert {o.kind for o in out} <= {Kind.MATCH, Kind.KNOWN}
    by_va = {(o.op, o.va, o.pan): o for o in out}
    for va, level in ((0x80_0000_0000, 1), (0x100_0000_0000, 2), (0x180_0000_0000, 3)):
        par = by_va[("S1E3R", va, False)].par_target
        assert isinstance(par, int)
        f = decode_par(par)
        assert (f["F"], f["FST"], f["S"], f["PTW"]) == (1, 0b100100 | level, 0, 0)
    # the output address is not checked: a leaf in a GPI "no access" granule translates
    par = by_va[("S1E3W", 0x200_0000_0000, False)].par_target
    assert isinstance(par, int) and par & 1 == 0 and par & 0xFFFF_FFFF_F000 == 0x4500_0000
