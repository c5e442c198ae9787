"""``known: acts_as:``: a recorded bug known by what the target does (no QEMU).

The target's answers here are written from the Arm ARM's rules for the
register values the entry names, never taken from a QEMU run.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from xcheck.arch.features import Features
from xcheck.check import acts_as_explains, compare
from xcheck.fuzz.judge import Judge
from xcheck.fuzz.session import known_behaviours
from xcheck.fuzz.signature import Signature, target_error_signature
from xcheck.machine import TargetException
from xcheck.model import run_model
from xcheck.outcome import Kind
from xcheck.scenario.loader import ScenarioError, parse_scenario

RAM = 128 << 20
CPU = Features().upgraded()

TGE = """
name: tge
about: HCR_EL2.TGE = 1 (E2H = 0) disables the EL1&0 stage 1 (AArch64.S1Enabled)
regs:
  HCR_EL2: {TGE: 1}
  SCTLR_EL1: {M: 1}
  TCR_EL1: {TG0: 4K, T0SZ: 32, EPD1: 1, IPS: 40bit}
  MAIR_EL1: {Attr0: 0xff}
tables:
  TTBR0_EL1:
    - {va: 0x1000_0000, pa: 0x2000_0000, size: 4K, ap: RW_ANY, sh: ISH}
probes:
  - {op: S1E1R, va: 0x1000_0000, el: 2}
known:
  - qemu: ">=7.2"
    why: the target walks the EL1&0 stage 1 although TGE = 1
    acts_as: {HCR_EL2: {TGE: 0, PTW: 0}}
"""

WALKED = (0xFF << 56) | 0x2000_0000 | (1 << 11) | (0b11 << 7)
"""PAR_EL1 of the stage 1 walk TGE = 0 gives (D24.2 PAR_EL1, F = 0): PA
0x2000_0000 from the page descriptor, ATTR = MAIR_EL1.Attr0 (AttrIndx 0),
SH = 0b11 from the descriptor, bit 11 RES1."""


def test_the_stage_1_disabled_answer_is_what_the_model_requires() -> None:
    """AArch64.S1Enabled: with TGE = 1 the output is the VA (flat)."""
    s = parse_scenario(TGE, Path("tge.yaml"))
    (m,) = run_model(s.build(), CPU, RAM)
    assert m.kind == "par" and (m.par >> 12) & ((1 << 40) - 1) == 0x1000_0
    assert (WALKED ^ m.par) & m.mask  # the walked answer is a mismatch


def test_an_answer_the_model_gives_under_acts_as_is_explained_and_known() -> None:
    s = parse_scenario(TGE, Path("tge.yaml"))
    setup = s.build()
    probe = setup.probes[0]
    (m,) = run_model(setup, CPU, RAM)
    (entry,) = s.known
    assert acts_as_explains(entry, setup, probe, WALKED, CPU, RAM)
    acts = partial(acts_as_explains, setup=setup, probe=probe, got=WALKED, features=CPU,
                   ram_size=RAM)
    out = compare(s, probe, WALKED, m, target="qemu", version="7.2.22", features=CPU,
                  acts=acts)
    assert out.kind is Kind.KNOWN
    assert out.detail.startswith("answers as the model does with HCR_EL2.TGE = 0, "
                                 "HCR_EL2.PTW = 0: the target walks")


def test_an_answer_the_model_does_not_give_under_acts_as_stays_a_mismatch() -> None:
    """Another PA (0x3000_0000) is neither the flat output nor the walk's."""
    s = parse_scenario(TGE, Path("tge.yaml"))
    setup = s.build()
    probe = setup.probes[0]
    (m,) = run_model(setup, CPU, RAM)
    (entry,) = s.known
    other = (WALKED & ~0xFFFF_F000) | 0x3000_0000
    assert not acts_as_explains(entry, setup, probe, other, CPU, RAM)
    # an exception where the model under acts_as writes PAR is not explained either
    exc = TargetException(el=2, esr=0x96000007, elr=0, far=0x1000_0000)
    assert not acts_as_explains(entry, setup, probe, exc, CPU, RAM)
    acts = partial(acts_as_explains, setup=setup, probe=probe, got=other, features=CPU,
                   ram_size=RAM)
    out = compare(s, probe, other, m, target="qemu", version="7.2.22", features=CPU,
                  acts=acts)
    assert out.kind is Kind.MISMATCH


def test_acts_as_that_changes_nothing_explains_nothing() -> None:
    """With TGE = 0 already, the values change nothing: a target answer that
    differs from the model's is some other disagreement."""
    s = parse_scenario(TGE.replace("HCR_EL2: {TGE: 1}", "HCR_EL2: {TGE: 0}"),
                       Path("tge.yaml"))
    setup = s.build()
    (entry,) = s.known
    (m,) = run_model(setup, CPU, RAM)
    assert not acts_as_explains(entry, setup, setup.probes[0], m.par ^ (1 << 20), CPU, RAM)


def test_tcr_el2_fields_follow_the_setups_e2h() -> None:
    """TCR_EL2.HD is bit 22 with E2H = 0, bit 40 with E2H = 1 (D24.2 TCR_EL2)."""
    s = parse_scenario(TGE.replace("{HCR_EL2: {TGE: 0, PTW: 0}}", "{TCR_EL2: {HD: 1}}"),
                       Path("hd.yaml"))
    (entry,) = s.known
    assert entry.acting({"HCR_EL2": 0, "TCR_EL2": 0})["TCR_EL2"] == 1 << 22
    assert entry.acting({"HCR_EL2": 1 << 34, "TCR_EL2": 0})["TCR_EL2"] == 1 << 40


@pytest.mark.parametrize(("acts", "where"), [
    ("{HCR_EL3: {TGE: 0}}", r"known\[0\].acts_as.HCR_EL3: unknown register"),
    ("{HCR_EL2: {TGX: 0}}", r"known\[0\].acts_as.HCR_EL2.TGX: unknown field of HCR_EL2"),
    ("{HCR_EL2: {TGE: 2}}", r"known\[0\].acts_as.HCR_EL2.TGE: .*1-bit value"),
    ("{HCR_EL2: {}}", r"known\[0\].acts_as.HCR_EL2: empty"),
])
def test_acts_as_errors_name_file_line_and_field(acts: str, where: str) -> None:
    bad = TGE.replace("{HCR_EL2: {TGE: 0, PTW: 0}}", acts)
    with pytest.raises(ScenarioError, match=rf"tge.yaml:\d+: {where}"):
        parse_scenario(bad, Path("tge.yaml"))


def test_the_fuzzer_knows_an_unrecorded_signature_by_acts_as(tmp_path: Path) -> None:
    """A failure whose signature no file records, explained by a recorded
    bug's acts_as on a version the entry covers, is that bug's: the
    signature names it and the bug's file records it."""
    (tmp_path / "tge.yaml").write_text(TGE)
    assert known_behaviours((tmp_path,), "6.2", CPU) == []  # ">=7.2" does not cover 6.2
    judge = Judge("qemu", "7.2.22", CPU, RAM,
                  behaviours=known_behaviours((tmp_path,), "7.2.22", CPU))
    s = parse_scenario(TGE, Path("case.yaml"))
    setup = s.build()
    sig = Signature("mismatch", "S1E1R", ("ATTR", "PA", "SH"), "some rule")
    seen = judge.explained(sig, setup, setup.probes[0], WALKED)
    assert seen.acts_as == "tge (HCR_EL2.TGE = 0, HCR_EL2.PTW = 0)"
    assert judge.known == {seen.family: tmp_path / "tge.yaml"}
    assert Signature.from_json(seen.to_json()) == seen
    other = (WALKED & ~0xFFFF_F000) | 0x3000_0000
    assert judge.explained(sig, setup, setup.probes[0], other) == sig


def test_a_harness_exception_signature_keeps_its_class_and_fault_status() -> None:
    """ESR_EL2 0x82000004: EC 0x20 (Instruction Abort from a lower EL), IFSC
    0b000100 (Translation fault, level 0); 0x82000085: level 1 with S1PTW."""
    msg = ("writing the system registers took an exception: unexpected exception to "
           "EL2: ESR={} (EC=0x20) ELR=0x40202aa4 FAR=0x40202aa4")
    a = target_error_signature(msg.format("0x82000004"))
    b = target_error_signature(msg.format("0x82000085"))
    assert "(EC=0x20, FSC=0x04) ELR=# FAR=#" in a.rule
    assert "(EC=0x20, FSC=0x05)" in b.rule and a != b
