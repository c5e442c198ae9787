"""Loading scenario files: defaults, register fields, probe expansion,
expectations, known divergences, discovery (no QEMU)."""

from __future__ import annotations

from pathlib import Path

import pytest

from xcheck.arch.at import AtResult
from xcheck.arch.fault import Fault, FaultRecord
from xcheck.arch.par import encode_fault, encode_success
from xcheck.machine import TRANSLATION_SYSREGS, AtOp, Probe, sysreg_defaults
from xcheck.scenario.loader import ScenarioError, discover, load_scenario, parse_scenario
from xcheck.scenario.versions import parse_range

GOOD = Path(__file__).parent / "good"


def load(text: str) -> object:
    return parse_scenario(text, Path("t.yaml"))


def scenario(text: str):  # type: ignore[no-untyped-def]
    return parse_scenario(text, Path("t.yaml"))


def error(text: str) -> str:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, Path("t.yaml"))
    return str(info.value)


MIN = "probes:\n  - {op: S1E1R, va: 0x1000}\n"


def test_defaults() -> None:
    s = scenario(MIN)
    assert s.name == "t"
    assert s.about == ""
    assert s.requires == ()
    assert s.profile_overrides == ()
    assert s.probes == (Probe(AtOp.S1E1R, 0x1000, 1, False, "S1E1R va=0x1000 el=1 pan=0"),)
    setup = s.build()
    assert set(TRANSLATION_SYSREGS) <= set(setup.sysregs)
    assert dict(setup.sysregs) == sysreg_defaults()


def test_good_example_loads() -> None:
    s = load_scenario(GOOD / "pan2-user-pages.yaml")
    assert s.name == "pan2-user-pages"
    assert s.requires == ("PAN2",)
    labels = [p.label for p in s.probes]
    assert labels[0] == "S1E1RP va=0x4000_0000 el=1 pan=1"
    assert labels[-1] == "pan off: S1E1R va=0x8000_0000 el=1 pan=0"
    assert len(labels) == len(set(labels)) == 7
    assert s.probe_line(s.probes[0]) == 14
    assert s.probe_line(s.probes[-1]) == 15
    assert [e.line for e in s.expect] == [17, 18, 19]
    assert s.known[0].line == 21


def test_register_fields_merge_over_defaults() -> None:
    s = scenario("regs:\n  SCTLR_EL1: {M: 1, WXN: 1, EPAN: 1}\n"
                 "  TCR_EL1: {TG0: 16K, TG1: 16K, T0SZ: 28, IPS: 0b010, SH0: ISH}\n"
                 "  MAIR_EL1: {Attr0: 0xff, Attr3: 0x04}\n" + MIN)
    regs = dict(s.layout.sysregs)
    assert regs["SCTLR_EL1"] == sysreg_defaults()["SCTLR_EL1"] | 1 | (1 << 19) | (1 << 57)
    tcr = regs["TCR_EL1"]
    assert tcr & 0x3F == 28
    assert (tcr >> 14) & 3 == 0b10  # TG0 16KB
    assert (tcr >> 30) & 3 == 0b01  # TG1 16KB: a different encoding
    assert (tcr >> 32) & 7 == 0b010
    assert (tcr >> 12) & 3 == 0b11
    assert regs["MAIR_EL1"] == 0xFF | (0x04 << 24)


@pytest.mark.parametrize(("name", "enc"), [("32bit", 0), ("40bit", 2), ("48-bit", 5),
                                           ("52 bits", 6)])
def test_size_names(name: str, enc: int) -> None:
    s = scenario(f"regs:\n  VTCR_EL2: {{PS: {name}}}\n" + MIN)
    assert (dict(s.layout.sysregs)["VTCR_EL2"] >> 16) & 7 == enc


def test_raw_register_value_replaces_default() -> None:
    s = scenario("regs:\n  HCR_EL2: 0x8000_0002\n" + MIN)
    regs = dict(s.layout.sysregs)
    assert regs["HCR_EL2"] == 0x8000_0002


def test_tcr_el2_layout_follows_e2h() -> None:
    s = scenario("regs:\n  TCR_EL2: {T1SZ: 20, TG1: 64K}\n  HCR_EL2: {E2H: 1}\n" + MIN)
    tcr = dict(s.layout.sysregs)["TCR_EL2"]
    assert (tcr >> 16) & 0x3F == 20 and (tcr >> 30) & 3 == 0b11


def test_probe_cross_product_and_pstate_defaults() -> None:
    s = scenario("pstate: {EL: 2, PAN: 1}\nprobes:\n"
                 "  - {op: [S1E2R, S1E1R], va: [0x1000, '0x2000_0000'], el: [1, 2]}\n"
                 "  - {op: S1E1W, va: 0x3000}\n")
    assert len(s.probes) == 9
    assert all(p.pan for p in s.probes)
    assert s.probes[-1].el == 2
    assert s.probes[0].label == "S1E2R va=0x1000 el=1 pan=1"
    assert {p.va for p in s.probes} == {0x1000, 0x2000_0000, 0x3000}
    assert all(s.probe_line(p) == 3 for p in s.probes[:8])
    assert s.probe_line(s.probes[8]) == 4


def test_with_probes_keeps_the_rest() -> None:
    s = load_scenario(GOOD / "pan2-user-pages.yaml")
    sub = s.with_probes(s.probes[:2])
    assert sub.probes == s.probes[:2]
    assert sub.expect == s.expect and sub.name == s.name
    assert sub.build().probes == s.probes[:2]


def test_profile_overrides_are_hashable_pairs() -> None:
    s = scenario("profile: {cpu: cortex-a76, memory: 256M, extra_args: [-smp, 2]}\n" + MIN)
    assert s.profile_overrides == (("cpu", "cortex-a76"), ("extra_args", ("-smp", "2")),
                                   ("memory", "256M"))
    hash(s.profile_overrides)
    assert s.layout.ram_size == 256 << 20


def test_error_format_names_file_line_field() -> None:
    msg = error("probes:\n  - {op: S1E1R, va: 0x1000, pan: 2}\n")
    assert msg.startswith("t.yaml:2: probes[0].pan: 2 is not a flag")


def test_empty_file() -> None:
    assert error("").startswith("t.yaml:1: probes: the file is empty")


def test_top_level_not_a_mapping() -> None:
    assert "is not a mapping" in error("- 1\n- 2\n")


def test_expect_forms_and_checks() -> None:
    s = scenario("probes:\n  - {op: [S1E1R, S1E2R], va: 0x1000}\nexpect:\n"
                 "  - {op: S1E1R, fault: access-flag, level: 3, stage: 1, ptw: false}\n"
                 "  - {op: S1E2R, result: undefined}\n")
    fault_exp, undef_exp = s.expect
    p1, p2 = s.probes
    assert fault_exp.matches(p1) and not fault_exp.matches(p2)
    af3 = FaultRecord(Fault.ACCESS_FLAG, 3)
    ok = AtResult("par", encode_fault(af3), 0, (), af3, ())
    assert fault_exp.check(ok) == ""
    tr2 = FaultRecord(Fault.TRANSLATION, 2)
    bad = AtResult("par", encode_fault(tr2), 0, (), tr2, ())
    problem = fault_exp.check(bad)
    assert "access flag fault" in problem and "level 3" in problem and "translation" in problem
    success = AtResult("par", encode_success(0x4000_1000, 0xFF, 3), 0, (), None, ())
    assert "model: PA=0x40001000" in fault_exp.check(success)
    assert undef_exp.check(AtResult("undefined", 0, 0, (), None, (), "UNDEFINED at EL1")) == ""
    assert undef_exp.check(success).startswith("expected undefined")


def test_expect_pa_attr_sh() -> None:
    s = scenario(MIN + "expect:\n  - {pa: 0x4000_1000, attr: 0xff, sh: ISH}\n")
    exp = s.expect[0]
    good = AtResult("par", encode_success(0x4000_1000, 0xFF, 3), 0, (), None, ())
    assert exp.check(good) == ""
    other = AtResult("par", encode_success(0x4000_2000, 0x44, 2), 0, (), None, ())
    problem = exp.check(other)
    assert "PA 0x4000_1000" in problem and "ATTR 0xff" in problem and "SH 0b11" in problem


def test_expect_abort_with_ptw() -> None:
    s = scenario(MIN + "expect:\n  - {result: abort, fault: translation, stage: 2, ptw: true}\n")
    rec = FaultRecord(Fault.TRANSLATION, 1, 2, True)
    assert s.expect[0].check(AtResult("abort", 0, 0, (), rec, ())) == ""
    rec1 = FaultRecord(Fault.TRANSLATION, 1, 2, False)
    assert "PTW=1" in s.expect[0].check(AtResult("abort", 0, 0, (), rec1, ()))


@pytest.mark.parametrize(("rng", "version", "inside"), [
    ("<10.1", "10.0.2", True), ("<10.1", "10.1.0", False), ("<10.1", "7.2.22", True),
    (">=7.2,<8.1", "7.2.22", True), (">=7.2,<8.1", "8.1", False), (">=7.2,<8.1", "8.0.5", True),
    (">=7.2,<8.1", "10.0.2", False), ("*", "whatever", True), ("8.2", "8.2.0", True),
    ("!=9.0", "9.0.1", True), ("<=9", "9.0.0", True), ("<10.1", "unknown", False),
    (">=8.2", "8.2.2 (Debian 1:8.2.2+ds-0ubuntu1.4)", True),
])
def test_version_ranges(rng: str, version: str, inside: bool) -> None:
    assert parse_range(rng).contains(version) is inside


def test_known_applies() -> None:
    s = scenario("probes:\n  - {op: [S1E1R, S1E1W], va: 0x1000, pan: [0, 1]}\nknown:\n"
                 "  - {op: S1E1W, pan: 1, qemu: '<8.1', why: because, link: L}\n")
    k = s.known[0]
    assert (k.why, k.link) == ("because", "L")
    hits = [p for p in s.probes if k.applies(p, "8.0.0")]
    assert [(p.op, p.pan) for p in hits] == [(AtOp.S1E1W, True)]
    assert not any(k.applies(p, "8.1.0") for p in s.probes)


def test_discover(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.yaml").write_text(MIN)
    (tmp_path / "a" / "y.yml").write_text(MIN)
    (tmp_path / "a" / "notes.txt").write_text("")
    (tmp_path / "b.yaml").write_text(MIN)
    found = discover([tmp_path, tmp_path / "b.yaml", tmp_path / "a"])
    assert found == sorted({tmp_path / "a" / "x.yaml", tmp_path / "a" / "y.yml",
                            tmp_path / "b.yaml"})
    with pytest.raises(ScenarioError) as info:
        discover([tmp_path / "missing"])
    assert "no such file or folder" in str(info.value)


def test_unreadable_file(tmp_path: Path) -> None:
    f = tmp_path / "bin.yaml"
    f.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ScenarioError) as info:
        load_scenario(f)
    assert str(info.value).startswith(f"{f}:1: file: cannot read it")


def test_v9_registers_and_descriptor_fields() -> None:
    """TCR2_EL1.PIE/AIE, PIR_EL1.Perm<n> and HCRX_EL2.TCR2En by name (D24.2);
    pi_index in bits 54, 53, 51, 6 (AArch64.S1ApplyOutputPerms), ndirty in bit 7,
    AttrIndx[3] in bit 59 (FEAT_AIE)."""
    s = scenario("regs:\n  TCR_EL1: {T0SZ: 25}\n  TCR2_EL1: {PIE: 1, AIE: 1}\n"
                 "  PIR_EL1: {Perm5: 0b1100}\n"
                 "  HCRX_EL2: {TCR2En: 0}\n  MAIR2_EL2: {Attr7: 0x04}\n"
                 "tables:\n  TTBR0_EL1:\n"
                 "    - {va: 0x1000, pa: 0x4100_0000, size: 4K, pi_index: 0b1011, ndirty: 1,"
                 " attr: 12}\n" + MIN)
    regs = dict(s.layout.sysregs)
    assert regs["TCR2_EL1"] == 0b10010
    assert regs["PIR_EL1"] == 0b1100 << 20
    assert regs["HCRX_EL2"] == 0
    assert regs["MAIR2_EL2"] == 0x04 << 56
    (m,) = s.layout.mappings
    assert m.bits == (1 << 10) | (1 << 54) | (1 << 51) | (1 << 6) | (1 << 7) | (4 << 2) | (1 << 59)
