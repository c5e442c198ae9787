"""Generated cases: deterministic, always loadable, within the CPU (no QEMU)."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from fuzzcpu import CPUS, knobs

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
