"""Probes at Secure EL1 (`secure` profile) and at Realm EL1 (`rme` profile),
entered from EL3 by the harness; real QEMU, real gdb-multiarch (marker qemu).

Expected values from the Arm ARM (C5.4, AArch64.AT, AArch64.EncodePAR): AT
S1E1R at Secure EL1 without Secure EL2 translates the Secure EL1&0 regime,
stage 1 only, PAR_EL1.NS from the leaf's NS (0x1000_0000 maps to Secure
0x4400_0000, 0x1020_0000 with NS = 1 to Non-secure 0x4410_0000); AT S12E1R is
UNDEFINED at EL1. AT S1E1RP at Realm EL1 with PSTATE.PAN = 1 on an
EL0-accessible page is a Permission fault, level 3 (C5.4.9).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from qemuprofiles import installed_profile

from xcheck.arch.par import decode_par
from xcheck.check import check_scenario
from xcheck.outcome import Kind
from xcheck.scenario.loader import load_scenario
from xcheck.target.guest import QemuTarget

pytestmark = pytest.mark.qemu

SCENARIOS = Path(__file__).parents[2] / "scenarios"


def test_at_at_secure_el1() -> None:
    with QemuTarget(installed_profile("secure")) as t:
        out = check_scenario(t, load_scenario(SCENARIOS / "secure" / "secure-el1.yaml"))
    assert {o.kind for o in out} <= {Kind.MATCH, Kind.KNOWN}
    by = {(o.op, o.va, o.pan): o for o in out}
    for va, pa, ns in ((0x1000_0000, 0x4400_0000, 0), (0x1020_0000, 0x4410_0000, 1)):
        par = by[("S1E1R", va, False)].par_target
        assert isinstance(par, int)
        f = decode_par(par)
        assert (f["F"], f["PA"] << 12, f["NS"]) == (0, pa, ns)
    assert not isinstance(by[("S12E1R", 0x1000_0000, False)].par_target, int)


def test_at_at_realm_el1() -> None:
    with QemuTarget(installed_profile("rme")) as t:
        out = check_scenario(t, load_scenario(SCENARIOS / "rme" / "realm-el1-el2-at.yaml"))
    assert {o.kind for o in out} <= {Kind.MATCH, Kind.KNOWN}
    by = {(o.op, o.va, o.el, o.pan): o for o in out}
    par = by[("S1E1RP", 0x1020_2000, 1, True)].par_target
    assert isinstance(par, int)
    f = decode_par(par)
    assert (f["F"], f["FST"]) == (1, 0b001111)
    par = by[("S1E1RP", 0x1020_2000, 1, False)].par_target
    assert isinstance(par, int) and decode_par(par)["PA"] << 12 == 0x8020_2000
