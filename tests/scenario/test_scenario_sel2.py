"""Scenario format for Secure EL2 (no QEMU): regs SCR_EL3: {EEL2: 1},
VSTCR_EL2 by field, tables under VSTTBR_EL2 sized by VSTCR_EL2 (D24.2
VSTCR_EL2: T0SZ, SL0, TG0; AArch64.SS2TTWParams), and errors that name the
file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from xcheck.arch.features import Features
from xcheck.arch.par import decode_par
from xcheck.model import run_model
from xcheck.scenario.loader import ScenarioError, parse_scenario
from xcheck.scenario.schema import json_schema

SEL2 = """
regs:
  SCR_EL3: {EEL2: 1}
  SCTLR_EL1: {M: 1}
  TCR_EL1: {T0SZ: 25, TG0: 4K, IPS: 40bit}
  HCR_EL2: {VM: 1}
  VTCR_EL2: {T0SZ: 25, SL0: 1, TG0: 4K, PS: 40bit}
  VSTCR_EL2: {T0SZ: 32, SL0: 1, TG0: 64K, SA: 1}
tables:
  TTBR0_EL1:
    - {va: 0x1000_0000, pa: 0x8000_0000, size: 2M}
  VSTTBR_EL2:
    - {ipa: 0x4000_0000, pa: 0x4000_0000, size: 512M}
    - {ipa: 0x8000_0000, pa: 0x4000_0000, size: 512M}
probes:
  - {op: S12E1R, va: 0x1000_0000, el: 3, space: secure}
expect:
  - {op: S12E1R, pa: 0x4000_0000, ns: 1}
"""


def error(text: str) -> str:
    with pytest.raises(ScenarioError) as err:
        parse_scenario(text, Path("t.yaml"))
    return str(err.value)


def test_vsttbr_tables_follow_vstcr_and_the_model_uses_them() -> None:
    s = parse_scenario(SEL2, Path("t.yaml"))
    setup = s.build()
    assert setup.sysregs["SCR_EL3"] == 1 << 18
    vstcr = setup.sysregs["VSTCR_EL2"]
    assert (vstcr & 0x3F, vstcr >> 6 & 3, vstcr >> 14 & 3, vstcr >> 30 & 1, vstcr >> 31) == \
        (32, 1, 0b01, 1, 1)  # T0SZ, SL0, TG0 = 64KB, SA, RES1 bit 31
    root = setup.sysregs["VSTTBR_EL2"]
    assert root and root % (64 << 10) == 0 and root != setup.sysregs["VTTBR_EL2"]
    # 64KB granule, 32-bit IPA space, start level 2: entry 4 (0x8000_0000 >> 29) is a block
    word = int.from_bytes(setup.memory[root][4 * 8:5 * 8], "little")
    assert word & 3 == 1 and word & 0xFFFF_E000_0000 == 0x4000_0000
    (r,) = run_model(setup, Features.everything(), 128 << 20)
    f = decode_par(r.par)
    assert (f["F"], f["PA"] << 12, f["NS"]) == (0, 0x4000_0000, 1)
    assert s.expect[0].check(r) == ""


@pytest.mark.parametrize("text, message", [
    (SEL2.replace("SCR_EL3: {EEL2: 1}", "SCR_EL3: {NS: 1}"), "t.yaml:3: regs.SCR_EL3.NS"),
    (SEL2.replace("SL0: 1, TG0: 64K", "SL0: 3, TG0: 64K"),
     "t.yaml:12: tables.VSTTBR_EL2: VSTCR_EL2.SL0 = 0b11"),
    (SEL2.replace("{ipa: 0x8000_0000", "{va: 0x8000_0000"), "tables.VSTTBR_EL2[1].va: stage 2"),
    (SEL2.replace("{ipa: 0x8000_0000, pa: 0x4000_0000, size: 512M}",
                  "{ipa: 0x1_0000_0000, pa: 0x4000_0000, size: 512M}"),
     "tables.VSTTBR_EL2[1].ipa: 0x1_0000_0000 is outside the range of VSTTBR_EL2"),
])
def test_errors_name_the_field(text: str, message: str) -> None:
    assert message in error(text)


def test_schema_knows_vsttbr_and_every_space() -> None:
    schema = json_schema()
    assert "VSTTBR_EL2" in schema["properties"]["tables"]["properties"]
    text = str(schema)
    assert "'nonsecure', 'secure', 'realm', 'root'" in text
