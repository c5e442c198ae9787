"""Secure EL2 on real QEMU (marker qemu): AT from EL3 in the Secure state with
SCR_EL3.EEL2 == 1, through the Secure stage 2, on the `secure` profile (QEMU
7.2) and the `rme` profile (QEMU 11.1), each skipped when not installed.

Expected values from the Arm ARM (DDI 0487): AArch64.S2Walk takes VSTTBR_EL2
for a Secure IPA and VTTBR_EL2 for a Non-secure one (a leaf with NS == 1 in
the Secure EL1&0 stage 1, D8.4.6); AArch64.SS2OutputPASpace puts the output
of a Secure IPA in the Secure PA space while VSTCR_EL2.{SW, SA} == {0, 0},
that of a Non-secure IPA in the Non-secure one once VTCR_EL2.NSA == 1;
AArch64.EncodePAR reports it in PAR_EL1.NS. Without EEL2 the Secure state has
no stage 2 (EL2Enabled() is FALSE): AT S12E1R returns the IPA.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from qemuprofiles import installed_profile

from xcheck.arch.features import Features
from xcheck.arch.par import decode_par
from xcheck.check import check_scenario
from xcheck.outcome import Kind
from xcheck.scenario.loader import parse_scenario
from xcheck.target.guest import QemuTarget

pytestmark = pytest.mark.qemu

SCENARIO = """
regs:
  SCR_EL3: {{EEL2: {eel2}}}
  SCTLR_EL1: {{M: 1}}
  TCR_EL1: {{T0SZ: 25, TG0: 4K, T1SZ: 25, TG1: 4K, IPS: 40bit}}
  MAIR_EL1: {{Attr0: 0xff}}
  HCR_EL2: {{VM: 1}}
  VTCR_EL2: {{T0SZ: 25, SL0: 1, TG0: 4K, PS: 40bit, NSA: 1}}
  VSTCR_EL2: {{T0SZ: 25, SL0: 1, TG0: 4K}}
pstate: {{EL: 3}}
tables:
  TTBR0_EL1:
    - {{va: 0x1000_0000, pa: 0x8000_0000, size: 2M}}
    - {{va: 0x1020_0000, pa: 0x8000_1000, size: 4K, ns: true}}
  VSTTBR_EL2:
    - {{ipa: 0x4000_0000, pa: 0x4000_0000, size: 1G}}
    - {{ipa: 0x8000_0000, pa: 0x4400_0000, size: 2M}}
  VTTBR_EL2:
    - {{ipa: 0x4000_0000, pa: 0x4000_0000, size: 1G}}
    - {{ipa: 0x8000_0000, pa: 0x4500_0000, size: 2M}}
probes:
  - {{op: [S12E1R, S12E1W], va: [0x1000_0000, 0x1020_0000], space: secure}}
"""


@pytest.fixture(scope="module", params=["secure", "rme"])
def target(request: pytest.FixtureRequest) -> Iterator[QemuTarget]:
    prof = installed_profile(request.param)
    with QemuTarget(prof) as t:
        if t.scr_el3 is None or not Features.from_id_regs(t.id_regs).sel2:
            pytest.skip(f"profile {request.param}: the CPU lacks FEAT_SEL2")
        yield t


def _pars(target: QemuTarget, eel2: int) -> dict[tuple[str, int], dict[str, int]]:
    scenario = parse_scenario(SCENARIO.format(eel2=eel2), Path("secure-el2.yaml"))
    outcomes = check_scenario(target, scenario)
    assert [o.kind for o in outcomes] == [Kind.MATCH] * 4, [o.detail for o in outcomes]
    return {(o.op, o.va): decode_par(o.par_target or 0) for o in outcomes}


def test_at_from_el3_in_the_secure_state_goes_through_the_secure_stage_2(
        target: QemuTarget) -> None:
    pars = _pars(target, 1)
    for op in ("S12E1R", "S12E1W"):
        secure_ipa, nonsecure_ipa = pars[(op, 0x1000_0000)], pars[(op, 0x1020_0000)]
        assert (secure_ipa["F"], secure_ipa["PA"] << 12, secure_ipa["NS"]) == (0, 0x4400_0000, 0)
        assert (nonsecure_ipa["F"], nonsecure_ipa["PA"] << 12, nonsecure_ipa["NS"]) == \
            (0, 0x4500_1000, 1)


def test_without_eel2_the_secure_state_has_stage_1_only(target: QemuTarget) -> None:
    pars = _pars(target, 0)
    assert pars[("S12E1R", 0x1000_0000)]["PA"] << 12 == 0x8000_0000
    assert (pars[("S12E1W", 0x1020_0000)]["PA"] << 12, pars[("S12E1W", 0x1020_0000)]["NS"]) == \
        (0x8000_1000, 1)
