"""Scenario format for EL3 and the Security state: probes at EL3, space:,
TTBR0_EL3 tables with the harness at VA = PA, ns:/nse: in mappings, ns: in
expectations (no QEMU). Descriptor bits: Arm ARM D8.3 (NS [5], NSE [11],
NSTable [63]); the EL3 regime has one VA range (AP[1] is RES1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from xcheck.arch.features import Features
from xcheck.machine import HARNESS_PA, AtOp, SecurityState
from xcheck.model import run_model
from xcheck.scenario.loader import ScenarioError, parse_scenario

EL3 = """
regs:
  SCTLR_EL3: {M: 1}
  TCR_EL3: {T0SZ: 25, TG0: 4K, PS: 40bit}
  MAIR_EL3: {Attr0: 0xff}
tables:
  TTBR0_EL3:
    - {va: 0x8000_0000, pa: 0x4100_0000, size: 2M, ns: true}
    - {va: 0x8020_0000, pa: 0x4120_0000, size: 2M, nse: true, ap: RO}
    - {va: 0xC000_0000, pa: 0x4140_0000, size: 2M, table: {nstable: true}}
probes:
  - {op: [S1E3R, S1E3W], va: [0x8000_0000, 0x8020_0000, 0xC000_0000], el: 3}
  - {op: S1E1R, va: 0x1000, el: 3, space: [secure, nonsecure]}
expect:
  - {op: S1E3R, va: 0x8000_0000, pa: 0x4100_0000, ns: 1}
  - {op: S1E3W, va: 0x8020_0000, fault: permission, level: 2}
  - {op: S1E1R, space: secure, pa: 0x1000, ns: 0}
"""


def load(text: str):  # type: ignore[no-untyped-def]
    return parse_scenario(text, Path("t.yaml"))


def error(text: str) -> str:
    with pytest.raises(ScenarioError) as info:
        load(text)
    return str(info.value)


def test_probes_at_el3_and_their_security_state() -> None:
    s = load(EL3)
    probes = s.probes
    assert [p.el for p in probes] == [3] * 8
    assert [(p.op, p.space) for p in probes[-2:]] == [(AtOp.S1E1R, SecurityState.SECURE),
                                                  (AtOp.S1E1R, SecurityState.NONSECURE)]
    assert probes[-2].label == "S1E1R va=0x1000 el=3 pan=0 space=secure"
    assert probes[-1].label == "S1E1R va=0x1000 el=3 pan=0"


def test_el3_tables_carry_ns_nse_nstable_and_map_the_harness_at_va_eq_pa() -> None:
    setup = load(EL3).build()
    assert setup.code_va["EL3"] == HARNESS_PA
    words = {a + 8 * i: int.from_bytes(b[8 * i:8 * i + 8], "little")
             for a, b in setup.memory.items() for i in range(len(b) // 8)}
    leaves = {w & 0xFFFF_FFFF_F000: w for w in words.values() if w & 3 == 1}
    assert leaves[0x4100_0000] >> 5 & 1 and not leaves[0x4100_0000] >> 11 & 1
    assert leaves[0x4120_0000] >> 11 & 1 and leaves[0x4120_0000] >> 7 & 1  # NSE, AP[2]
    assert any(w >> 63 and w & 3 == 3 for w in words.values())  # an NSTable table descriptor


def test_expectations_hold_in_the_model() -> None:
    s = load(EL3)
    setup = s.build()
    results = run_model(setup, Features.everything(), 128 << 20)
    for e in s.expect:
        for p, r in zip(setup.probes, results, strict=True):
            if e.matches(p):
                assert e.check(r) == "", (p.label, e.check(r))


def test_ns_expectation_fails_where_par_ns_is_unknown() -> None:
    s = load("probes:\n  - {op: S1E1R, va: 0x1000, el: 2}\nexpect:\n"
             "  - {va: 0x1000, pa: 0x1000, ns: 1}\n")
    (r,) = run_model(s.build(), Features.everything(), 128 << 20)
    assert "NS 1" in s.expect[0].check(r)


@pytest.mark.parametrize("text, message", [
    ("probes:\n  - {op: S1E1R, va: 0, el: 2, space: secure}\n",
     "probes[0].space: space: secure at EL2 needs Secure EL2: set regs: {SCR_EL3: {EEL2: 1}}"),
    ("probes:\n  - {op: S1E1R, va: 0, el: 1, space: root}\n",
     "probes[0].space: space: root is the state of EL3 itself (FEAT_RME): there is no Root"),
    ("probes:\n  - {op: S1E1R, va: 0, el: 3, space: root}\n",
     "probes[0].space: space: root is the state of EL3 itself (FEAT_RME): AT S1E1R"),
    ("probes:\n  - {op: S1E3R, va: 0, el: 3, space: realm}\n",
     "probes[0].space: space: realm is for AT S1E1*/S1E0*/S12E*/S1E2*"),
    ("probes:\n  - {op: S1E1R, va: 0, el: 3, space: other}\n",
     "'other' is not one of nonsecure, secure, realm, root"),
    ("tables:\n  TTBR0_EL3:\n    - {va: 0, pa: 0, size: 4K, ap: RW_ANY}\n"
     "probes:\n  - {op: S1E3R, va: 0, el: 3}\n", "the EL3 regime has no EL0"),
    ("probes:\n  - {op: S1E3R, va: 0, el: 3}\nexpect:\n  - {fault: permission, ns: 0}\n",
     "attr, sh and ns go with pa:"),
])
def test_errors_name_the_field(text: str, message: str) -> None:
    assert message in error(text)
