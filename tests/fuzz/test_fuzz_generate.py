"""Generated cases: deterministic, always loadable, within the CPU (no QEMU)."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from fuzzcpu import CPUS, knobs

import xcheck.fuzz.case
from xcheck.fuzz.case import EXCEPTION_BUDGET, Case, make_case, scenario_of
from xcheck.fuzz.knobs import KnobError, Knobs, parse_features
from xcheck.machine import AtOp
from xcheck.scenario.loader import parse_scenario

RAM = 128 << 20


@functools.cache
def case(cpu: str, index: int, seed: int = 11) -> Case:
    return make_case(seed, index, knobs(cpu), RAM)


def test_the_same_seed_gives_the_same_yaml() -> None:
    for index in range(6):
        a = make_case(7, index, knobs(), RAM)
        b = make_case(7, index, knobs(), RAM)
        assert a.text == b.text


def test_cases_differ_between_seeds_and_indexes() -> None:
    texts = {make_case(seed, i, knobs(), RAM).text.split("\n", 3)[-1]
             for seed in (1, 2) for i in range(4)}
    assert len(texts) == 8


def test_a_case_does_not_depend_on_the_cases_before_it() -> None:
    alone = make_case(3, 17, knobs(), RAM)
    for i in range(17):
        make_case(3, i, knobs(), RAM)
    assert make_case(3, 17, knobs(), RAM).text == alone.text


@pytest.mark.parametrize("cpu", sorted(CPUS))
def test_every_case_loads_from_its_own_yaml_and_builds(cpu: str) -> None:
    """The file text of a case is what ran: loading it with the loader
    (text path) gives the same registers, memory and probes."""
    for index in range(40):
        c = case(cpu, index)
        again = parse_scenario(c.text, Path(f"{c.name}.yaml"))
        assert again.probes == c.scenario.probes
        assert again.build() == c.scenario.build()
        assert len(c.setup.probes) >= 1


def test_fast_loading_agrees_with_the_yaml_text() -> None:
    c = case("qemu72", 2)
    assert scenario_of(c.doc, c.name).build() == parse_scenario(c.text, Path("x.yaml")).build()


def test_the_model_expects_few_exceptions_per_case() -> None:
    for index in range(40):
        raising = sum(1 for m in case("qemu72", index).model if m.kind != "par")
        assert raising <= EXCEPTION_BUDGET


def test_probes_dropped_by_a_repair_leave_the_others_answers_as_they_were(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Cases 30, 33, 40 and 56 of seed 1 drop probes (a walk reads a device
    window; over the exception budget). The model reads memory and never
    writes it, and no AT of these cases may update a descriptor (no TCR.HA),
    so the kept probes' answers are taken over, not worked out again; they
    are what the model answers for the repaired setup."""
    runs: list[int] = []
    real = xcheck.fuzz.case.run_model
    monkeypatch.setattr(xcheck.fuzz.case, "run_model",
                        lambda *args: runs.append(1) or real(*args))
    for index in (30, 33, 40, 56):
        runs.clear()
        c = make_case(1, index, knobs(), RAM)
        assert any(r.startswith("probes") and r.endswith("dropped") for r in c.repairs)
        assert len(runs) == 1
        assert c.model == tuple(real(c.setup, knobs().features, RAM))


def test_probes_at_el1_never_come_with_tge() -> None:
    for index in range(40):
        c = case("qemu72", index)
        if c.setup.sysregs["HCR_EL2"] >> 27 & 1:
            assert all(p.el == 2 for p in c.setup.probes), c.text


def test_a_cpu_without_pan2_gets_no_pan_operations() -> None:
    for index in range(40):
        c = case("plain", index)
        assert not {p.op for p in c.setup.probes} & {AtOp.S1E1RP, AtOp.S1E1WP}
        assert "16K" not in str(c.doc.get("regs", {}))


def test_features_restrict_what_is_generated() -> None:
    only = Knobs(CPUS["qemu72"], parse_features(["-stage2,-vhe,-malformed,-raw-tables"]))
    for index in range(40):
        case = make_case(23, index, only, RAM)
        hcr = case.setup.sysregs["HCR_EL2"]
        assert not hcr & 1 and not hcr >> 34 & 1
        assert "raw" not in case.text and "force" not in case.text
        assert "descriptors" not in case.doc and "VTTBR_EL2" not in case.doc.get("tables", {})


def test_all_knobs_are_reached_over_many_cases() -> None:
    tags: set[str] = set()
    for index in range(120):
        tags |= case("qemu10", index).tags
    for tag in ("case:el10", "case:el10-s2", "case:el2", "case:el20", "case:s2-only",
                "raw-descriptor", "forced-block", "raw-table", "table-attrs", "af=0",
                "HCR_EL2.FWB", "HCR_EL2.E2H", "HCR_EL2.TGE", "SCTLR_EL1.EPAN",
                "SCTLR_EL1.WXN", "TCR_EL1.DS", "TCR_EL1.TBI0", "TCR_EL1.HPD0"):
        assert tag in tags, tag


def test_feature_names_are_checked() -> None:
    assert parse_features([]) == parse_features(["all"])
    assert "pan" not in parse_features(["-pan"])
    assert parse_features(["stage2,pan"]) == {"stage2", "pan"}
    with pytest.raises(KnobError, match="unknown feature 'stage3'"):
        parse_features(["stage3"])


def test_no_probe_reads_memory_the_model_cannot_know() -> None:
    """Walks into the harness or the virt machine's device windows are left out."""
    from xcheck.fuzz.case import DEVICE_WINDOWS

    for index in range(40):
        for m in case("qemu72", index).model:
            for step in m.trace:
                if step.addr is not None:
                    assert not any(lo <= step.addr < hi for lo, hi in DEVICE_WINDOWS)


def test_the_device_tree_at_the_bottom_of_ram_is_memory_the_model_cannot_know() -> None:
    """QEMU's virt machine puts its device tree at the start of RAM
    (machine.RESERVED_LOW); xcheck never writes there, so a walk that reads
    it (a stage 1 table at IPA 0 mapped there: qemu11 seed 153) is left out."""
    from xcheck.fuzz.case import DEVICE_WINDOWS
    from xcheck.machine import RAM_BASE, RESERVED_LOW

    for pa in (RAM_BASE, RAM_BASE + 0x38, RAM_BASE + RESERVED_LOW - 8):
        assert any(lo <= pa < hi for lo, hi in DEVICE_WINDOWS)


def test_hardware_af_cases_make_no_table_point_into_the_arena() -> None:
    """An AT may set AF in memory when HA is on; no table aliases another then."""
    from xcheck.machine import ARENA_PA

    seen = 0
    for index in range(120):
        c = case("qemu10", index)
        if "HA" not in str(c.doc.get("regs", {})):
            continue
        seen += 1
        # table descriptors: raw words above level 3, and every override
        words = [m["raw"] for ms in c.doc.get("tables", {}).values() for m in ms
                 if "raw" in m and m["level"] < 3]
        words += [o["value"] for o in c.doc.get("descriptors", [])]
        for w in words:
            if w & 3 == 3:
                assert not ARENA_PA <= (w & 0xFFFF_FFFF_F000) < ARENA_PA + (16 << 20), c.text
    assert seen > 5


def test_nv_never_comes_with_probes_at_el1() -> None:
    for index in range(120):
        c = case("qemu10", index)
        if c.setup.sysregs["HCR_EL2"] >> 42 & 1:
            assert all(p.el == 2 for p in c.setup.probes)


V9_REGS = ("TCR2_EL1", "TCR2_EL2", "PIR_EL1", "PIRE0_EL1", "PIR_EL2", "PIRE0_EL2",
           "MAIR2_EL1", "MAIR2_EL2", "S2PIR_EL2", "HCRX_EL2")


def _v9_uses(c: Case) -> set[str]:
    """What of FEAT_TCR2, S1PIE, S2PIE, AIE and ATS1A a case uses."""
    regs = c.doc.get("regs", {})
    out = {r for r in V9_REGS if r in regs}
    out |= {f"VTCR_EL2.{f}" for f in ("S2PIE",) if f in regs.get("VTCR_EL2", {})}
    maps = [m for ms in c.doc.get("tables", {}).values() for m in ms]
    out |= {k for m in maps for k in ("pi_index", "ndirty", "dirty") if k in m}
    out |= {"attr>=8" for base, ms in c.doc.get("tables", {}).items() for m in ms
            if base != "VTTBR_EL2" and m.get("attr", 0) >= 8}
    out |= {p.op.value for p in c.setup.probes} & {"S1E1A", "S1E2A"}
    return out


def test_a_cpu_without_the_v9_features_gets_none_of_them() -> None:
    """TCR2_ELx, PIR_ELx, PIRE0_ELx, MAIR2_ELx, S2PIR_EL2, HCRX_EL2, PIIndex,
    AttrIndx[3] and AT S1E1A/S1E2A exist only with FEAT_TCR2, S1PIE, AIE,
    S2PIE, HCX and ATS1A (D24.2; their encodings are UNDEFINED otherwise)."""
    for cpu in ("qemu10", "plain"):
        for index in range(60):
            assert _v9_uses(case(cpu, index)) == set(), (cpu, index)


def test_a_cpu_with_the_v9_features_gets_each_of_them() -> None:
    used: set[str] = set()
    for index in range(120):
        c = case("qemu11", index)
        used |= _v9_uses(c)
        for req, regs in (("S1PIE", ("PIR_EL1", "PIR_EL2")), ("AIE", ("MAIR2_EL1", "MAIR2_EL2")),
                          ("S2PIE", ("S2PIR_EL2",))):
            if any(r in c.doc.get("regs", {}) for r in regs):
                assert req in c.doc["requires"]
    assert used >= {*V9_REGS, "VTCR_EL2.S2PIE", "pi_index", "ndirty", "dirty", "attr>=8",
                    "S1E1A", "S1E2A"}


def test_each_v9_feature_is_left_out_by_its_knob() -> None:
    only = Knobs(CPUS["qemu11"], parse_features(["-s1pie,-s2pie,-aie,-ats1a,-tcr2"]))
    for index in range(40):
        assert _v9_uses(make_case(11, index, only, RAM)) == set()


def test_the_harness_pages_keep_permissions_it_runs_with() -> None:
    """Where the harness runs under Indirect permissions, its code PIIndex
    (8, or 1 in the EL2 regime) is privileged-executable and not writable at
    EL0, and its data PIIndex (12, or 9) privileged read/write and no EL0
    access (R_LLZDZ; docs/scenario-format.md, the harness mappings)."""
    from xcheck.arch.indirect import PI_ENCODINGS, pi_entry

    seen = 0
    for index in range(120):
        c = case("qemu11", index)
        for el, regime_on, two in (("EL1", c.setup.code_va.get("EL10"), True),
                                   ("EL2", c.setup.code_va.get("EL2"), False),
                                   ("EL2", c.setup.code_va.get("EL20"), True)):
            if regime_on is None or f"PIR_{el}" not in c.doc.get("regs", {}):
                continue
            seen += 1
            code, data = (8, 12) if two else (1, 9)
            pir = c.setup.sysregs[f"PIR_{el}"]
            assert PI_ENCODINGS[pi_entry(pir, code)][2]
            assert PI_ENCODINGS[pi_entry(pir, data)][:2] == (True, True)
            assert not PI_ENCODINGS[pi_entry(pir, data)][2]
            if two:
                pire0 = c.setup.sysregs[f"PIRE0_{el}"]
                assert not PI_ENCODINGS[pi_entry(pire0, code)][1]
                assert pi_entry(pire0, data) == 0
    assert seen > 0


def test_no_descriptor_sets_the_contiguous_bit() -> None:
    """The Contiguous bit on a lone entry is a misprogramming whose output is
    CONSTRAINED UNPREDICTABLE (D8.7.1): no generated leaf sets bit 52, raw
    words with reserved and ignored bits set included."""
    raw = 0
    for index in range(300):
        c = case("qemu10", index)
        words = [m["raw"] for ms in c.doc.get("tables", {}).values() for m in ms if "raw" in m]
        words += [w for block in c.doc.get("memory", []) for w in block.get("words", [])]
        words += [o["value"] for o in c.doc.get("descriptors", [])]
        raw += len(words)
        for w in words:
            if w & 1:
                assert not w >> 52 & 1, (hex(w), c.text)
    assert raw > 50
