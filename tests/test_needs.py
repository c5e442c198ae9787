"""What a probe needs of the CPU, derived from the scenario (no QEMU):
which probes the harness cannot run on a CPU, and which pinned expectations
depend on a feature the CPU lacks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from xcheck.arch.features import Features
from xcheck.check import _unjudged
from xcheck.machine import HARNESS_CODE_SIZE
from xcheck.model import ImpDefStates, run_model
from xcheck.needs import unrunnable
from xcheck.scenario.loader import load_scenario, parse_scenario

SUITE = Path(__file__).resolve().parent.parent / "scenarios"
MAX = Features.everything()
RAM = 128 << 20


def test_the_max_cpu_runs_every_probe_of_the_suite_folders() -> None:
    for name in ("vhe/e2h-tge0.yaml", "el2/s1e2-16k.yaml", "stage2/s2-16k-l2-concat16.yaml"):
        setup = load_scenario(SUITE / name).build()
        assert not any(unrunnable(setup, MAX, RAM)), name


def test_el2_and_0_without_vhe_cannot_host_the_harness() -> None:
    """E2H is RES0 without FEAT_VHE (D24.2 HCR_EL2): EL2 code then runs in the
    EL2 regime, where descriptor bit 54 is XN, not UXN (D8.4.1.3): the
    harness's EL2&0 mapping (UXN = 1, PXN = 0) is not executable there."""
    setup = load_scenario(SUITE / "vhe/e2h-tge0.yaml").build()
    why = unrunnable(setup, dataclasses.replace(MAX, vh=False), RAM)
    assert all(why) and "EL2 regime is not executable" in why[0]


def test_a_granule_the_cpu_lacks_in_the_harness_regime() -> None:
    """The EL2 regime with the 16KB granule on a CPU without it: the TG0
    encoding selects an implemented granule instead (D24.2 TCR_EL2.TG0),
    so the harness's 16KB tables are read as tables of another granule."""
    setup = load_scenario(SUITE / "el2/s1e2-16k.yaml").build()
    why = unrunnable(setup, dataclasses.replace(MAX, tgran16=False), RAM)
    assert all(why) and "harness" in why[0]


def test_the_models_decode_gives_the_same_answers() -> None:
    """unrunnable asks its questions of the registers as run_model decoded
    them for the probes (ImpDefStates, other PSTATEs) and answers as when it
    decodes them itself: on a CPU that can run the probes and on one whose
    missing granule or VHE stops the harness."""
    for name, cpu in (("el2/s1e2-16k.yaml", MAX),
                      ("el2/s1e2-16k.yaml", dataclasses.replace(MAX, tgran16=False)),
                      ("vhe/e2h-tge0.yaml", dataclasses.replace(MAX, vh=False)),
                      ("stage2/s2-16k-l2-concat16.yaml", MAX)):
        setup = load_scenario(SUITE / name).build()
        choices = ImpDefStates(setup, cpu, 2, False)
        run_model(setup, cpu, RAM, choices)
        alone = list(unrunnable(setup, cpu, RAM))
        assert list(unrunnable(setup, cpu, RAM, choices)) == alone, name
        assert any(alone) is (cpu is not MAX), name


def test_pan_probes_need_feat_pan() -> None:
    s = parse_scenario(
        "name: p\nprobes:\n  - {op: S1E1R, va: 0x4000_0000, el: 2, pan: [0, 1]}\n",
        Path("p.yaml"),
    )
    why = unrunnable(s.build(), dataclasses.replace(MAX, pan=0), RAM)
    assert why == ["", "PSTATE.PAN = 1 needs FEAT_PAN, which this CPU lacks"]


EXPECT_48 = """
name: pa48
about: a page at PA 0x80_0000_0000 (bit 39 set); with a 40-bit PA that is the
  top of the space, with a 36-bit PA it is beyond it
regs:
  SCTLR_EL1: {M: 1}
  TCR_EL1: {TG0: 4K, T0SZ: 25, IPS: 48bit, EPD1: 1}
  MAIR_EL1: {Attr0: 0xff}
tables:
  TTBR0_EL1:
    - {va: 0x1000_0000, pa: 0x80_0000_0000, size: 4K, ap: RW_ANY}
    - {va: 0x1000_1000, pa: 0x4800_0000, size: 4K, ap: RW_ANY}
probes:
  - {op: S1E1R, va: [0x1000_0000, 0x1000_1000], el: 2}
expect:
  - {op: S1E1R, va: 0x1000_0000, pa: 0x80_0000_0000}
  - {op: S1E1R, va: 0x1000_1000, pa: 0x4800_0000}
"""


def test_an_expectation_written_for_a_48_bit_pa_is_not_judged_on_36_bits() -> None:
    """AArch64.PhysicalAddressSize is min(IPS, PAMax): on a 36-bit PE the
    output 0x80_0000_0000 is an Address size fault (D8.3), not the page the
    expectation pins. That expectation is not judged there, and says why;
    the other one (a PA within 36 bits) still is."""
    s = parse_scenario(EXPECT_48, Path("pa48.yaml"))
    setup = s.build()
    pa36 = dataclasses.replace(MAX, pa_range_bits=36)
    model = run_model(setup, pa36, RAM)
    assert _unjudged(s, setup, pa36, model, RAM) == ["PA40", ""]
    assert _unjudged(s, setup, MAX, run_model(setup, MAX, RAM), RAM) == ["", ""]


def test_pie_without_execute_for_the_harness_code_index() -> None:
    """With TCR2_EL1.PIE = 1 the harness's EL1 code page (AP[2:1] = 0b10, UXN)
    is PIIndex 8 (AArch64.S1ApplyOutputPerms); PIR_EL1.Perm8 = 0b1000 grants
    read only (D8.4 R_LLZDZ), so EL1 cannot fetch it: EL1 probes are skipped.
    The shipped scenario gives Perm8 0b1010 (RX) and runs."""
    text = (SUITE / "s1pie/pir-at-el1.yaml").read_text()
    assert "Perm8: 0b1010" in text
    assert not any(unrunnable(load_scenario(SUITE / "s1pie/pir-at-el1.yaml").build(), MAX, RAM))
    broken = text.replace("Perm8: 0b1010", "Perm8: 0b1000").split("expect:")[0]
    why = unrunnable(parse_scenario(broken, Path("p.yaml")).build(), MAX, RAM)
    assert all(why) and "not executable" in why[0]


WRITE_ONLY_DATA = """
name: s2-write-only-harness-data
about: stage 2 maps the first page of the harness's data half write-only (the
  builder maps the rest of the harness read/write)
regs:
  HCR_EL2: {VM: 1}
  VTCR_EL2: {TG0: 4K, T0SZ: 25, SL0: 1, PS: 40bit}
tables:
  VTTBR_EL2:
    - {ipa: 0x4030_0000, pa: 0x4030_0000, size: 4K, s2ap: WO}
probes:
  - {op: S1E1R, va: 0x4000_0000, el: [1, 2]}
"""


def test_harness_data_the_el1_probes_cannot_read() -> None:
    """The harness reads its probe table from the data half and writes the
    PARs there: with stage 2 S2AP = WO on it (D8.6.3, stage 2 data access
    permissions) a load at EL1 is a stage 2 Permission fault, so probes at
    EL1 cannot run; those at EL2 (stage 2 does not apply) can."""
    setup = parse_scenario(WRITE_ONLY_DATA, Path("wo.yaml")).build()
    why = unrunnable(setup, MAX, RAM)
    assert why[1] == ""
    assert "harness's data" in why[0] and "AT S12E1R gives fault" in why[0]
    assert "permission, level 3" in why[0]


def test_secure_el1_probes_need_a_cpu_that_starts_at_el3() -> None:
    """The harness enters Secure EL1 from EL3 (SCR_EL3.NS = 0, ERET): without
    EL3 the probes are skipped with that reason; with it they run."""
    setup = load_scenario(SUITE / "secure/secure-el1.yaml").build()
    why = unrunnable(setup, dataclasses.replace(MAX, el3=False), RAM)
    assert all("entered from EL3" in w for w in why)
    assert not any(unrunnable(setup, dataclasses.replace(MAX, el3=True), RAM))


def test_secure_el1_regime_that_does_not_map_the_harness() -> None:
    """The Secure EL1&0 regime reads the same TTBR0_EL1 tables as the
    Non-secure one, but a leaf's NS bit counts there (D8.4.6): the harness's
    code mapped VA = PA is still found; a harness code VA outside the tables
    is not, and the probes are skipped with the regime named."""
    text = (SUITE / "secure/secure-el1.yaml").read_text()
    setup = parse_scenario(text, SUITE / "secure/secure-el1.yaml").build()
    moved = dataclasses.replace(setup, code_va={"EL10": 0x7000_0000 - HARNESS_CODE_SIZE})
    why = unrunnable(moved, dataclasses.replace(MAX, el3=True), RAM)
    assert all(why) and "secure state's EL1&0 regime" in why[0]


def test_an_abort_expectation_that_depends_on_lpa2_is_not_judged_without_it() -> None:
    """VTCR_EL2.DS is RES0 without FEAT_LPA2 (D24.2): a stage 2 table
    descriptor's bits [9:8] are then not OA[51:50] (AArch64.NextTableBase),
    so the Address size fault the file pins for its EL1 probes' aborts (a
    Data Abort to EL2, AArch64.AT) becomes another fault. Both answers are
    aborts: the fault they carry tells them apart."""
    s = load_scenario(SUITE / "fuzz-findings/s2-ds-table-oa-51-50.yaml")
    setup = s.build()
    no_lpa2 = dataclasses.replace(MAX, lpa2=False)
    model = run_model(setup, no_lpa2, RAM)
    depends = _unjudged(s, setup, no_lpa2, model, RAM)
    aborts = [i for i, p in enumerate(setup.probes)
              if p.el == 1 and p.va in (0x2_0000_0000, 0x2_4000_0000)]
    assert len(aborts) == 4 and all(model[i].kind == "abort" for i in aborts)
    assert all(depends[i] == "LPA2" for i in aborts)
    assert _unjudged(s, setup, MAX, run_model(setup, MAX, RAM), RAM) == [""] * len(setup.probes)
