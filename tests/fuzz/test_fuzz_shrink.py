"""The shrinker on synthetic failures: a fake comparison that calls a probe
failing when the model answers it with a given fault (no QEMU)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fuzzcpu import QEMU11_MAX, QEMU72_MAX, RME, knobs

from xcheck.arch.fault import Fault
from xcheck.fuzz.case import built, make_case, model_results, needed_requires, scenario_of
from xcheck.fuzz.shrink import shrink
from xcheck.fuzz.yamlout import Doc, dump
from xcheck.scenario.loader import ScenarioError, parse_scenario

RAM = 128 << 20


class FakeCompare:
    """Fails when some probe's model answer is a stage 1 ``fault`` on a
    write (what a target that ignored that fault would show)."""

    def __init__(self, fault: Fault, write_only: bool = True) -> None:
        self.fault = fault
        self.write_only = write_only
        self.runs = 0

    def __call__(self, doc: Doc) -> bool:
        self.runs += 1
        try:
            setup = built(scenario_of(doc, "t"))
        except ScenarioError:
            return False
        for p, m in zip(setup.probes, model_results(setup, QEMU72_MAX, RAM), strict=True):
            if m.fault is not None and m.fault.statuscode is self.fault \
                    and (p.op.is_write or not self.write_only):
                return True
        return False


def hand_doc() -> Doc:
    maps: list[dict[str, Any]] = [
        {"va": 0x8000_0000 + 0x1000 * i, "pa": 0x4800_0000 + 0x1000 * i, "size": "4K",
         "ap": "RW_ANY", "attr": i % 2} for i in range(6)]
    maps[3]["ap"] = "RO_EL1"
    maps.append({"va": 0x4000_0000, "pa": 0x4000_0000, "size": "2M", "ng": 1})
    probes = [{"op": op, "va": m["va"] + off, "el": 1, "pan": 0}
              for m in maps for op in ("S1E1R", "S1E1W", "S1E0R") for off in (0, 8)]
    return {
        "name": "t",
        "regs": {"SCTLR_EL1": {"M": 1, "C": 1, "WXN": 1},
                 "TCR_EL1": {"TG0": "4K", "T0SZ": 25, "EPD1": 1, "IPS": "40bit", "SH0": "ISH"},
                 "MAIR_EL1": {"Attr0": 0xFF, "Attr1": 0x04}},
        "tables": {"TTBR0_EL1": maps},
        "probes": probes,
    }


def test_shrinks_a_permission_failure_to_one_probe_one_mapping() -> None:
    doc = hand_doc()
    fails = FakeCompare(Fault.PERMISSION)
    assert fails(doc)
    out = shrink(doc, fails)
    assert out.complete
    assert fails(out.doc)
    assert len(out.doc["probes"]) == 1
    assert out.doc["probes"][0]["op"] == "S1E1W"
    assert out.doc["probes"][0]["el"] == 2  # simpler: no EL1 harness mapping needed
    assert out.doc["tables"]["TTBR0_EL1"] == [{"va": 0x8000_3000, "pa": 0x4800_3000,
                                               "size": "4K", "ap": "RO_EL1"}]
    regs = out.doc["regs"]
    assert "MAIR_EL1" not in regs
    assert regs["SCTLR_EL1"] == {"M": 1}
    assert set(regs["TCR_EL1"]) <= {"T0SZ", "TG0"}
    parse_scenario(dump(out.doc), Path("t.yaml"))  # the result is a loadable file


def test_the_input_document_is_not_changed() -> None:
    doc = hand_doc()
    before = dump(doc)
    shrink(doc, FakeCompare(Fault.PERMISSION))
    assert dump(doc) == before


def test_a_run_budget_stops_shrinking_and_keeps_the_best_so_far() -> None:
    doc = hand_doc()
    fails = FakeCompare(Fault.PERMISSION)
    out = shrink(doc, fails, max_runs=6)
    assert not out.complete and out.runs == 6
    assert fails(out.doc)
    assert len(out.doc["probes"]) <= len(doc["probes"])


def test_the_hint_is_tried_first() -> None:
    doc = hand_doc()
    hint = [i for i, p in enumerate(doc["probes"])
            if p["op"] == "S1E1W" and p["va"] == 0x8000_3008]
    fails = FakeCompare(Fault.PERMISSION)
    out = shrink(doc, fails, hint=hint, max_runs=1)
    assert out.doc["probes"] == [doc["probes"][hint[0]]]


def test_shrinks_a_generated_case() -> None:
    """A generated case with an Access flag fault shrinks to a few lines."""
    for index in range(60):
        case = make_case(31, index, knobs(), RAM)
        fails = FakeCompare(Fault.ACCESS_FLAG, write_only=False)
        if fails(case.doc):
            break
    else:
        raise AssertionError("no generated case has an Access flag fault")
    out = shrink(case.doc, fails, max_runs=600)
    assert fails(out.doc)
    assert len(out.doc["probes"]) == 1
    parts = (sum(len(v) for v in out.doc.get("tables", {}).values())
             + len(out.doc.get("memory", [])) + len(out.doc.get("descriptors", [])))
    assert parts <= 3, out.doc


def test_a_raw_register_value_is_kept_or_dropped_whole() -> None:
    """S2PIR_EL2 has no named fields (a raw value): the shrinker drops it
    whole when the failure does not need it and never splits it."""
    doc = hand_doc()
    doc["regs"]["S2PIR_EL2"] = 0xFEDC_BA98_7654_3210
    fails = FakeCompare(Fault.PERMISSION)
    out = shrink(doc, fails)
    assert fails(out.doc) and "S2PIR_EL2" not in out.doc["regs"]
    keep = shrink(doc, lambda d: fails(d) and "S2PIR_EL2" in d.get("regs", {}))
    assert keep.doc["regs"]["S2PIR_EL2"] == 0xFEDC_BA98_7654_3210


def _pie_doc(pie: int) -> Doc:
    """One AT S1E2R on a page of PIIndex 0 in the EL2 regime, with
    TCR2_EL2.PIE = ``pie``; PIR_EL2 gives PIIndex 0 no access, and the
    harness's pages (PIIndex 1 code, 9 data) what they need."""
    return {
        "name": "t", "requires": ["S1PIE", "TCR2"],
        "regs": {"SCTLR_EL2": {"M": 1, "C": 1}, "TCR_EL2": {"TG0": "4K", "T0SZ": 25, "PS": "40bit"},
                 "MAIR_EL2": {"Attr0": 0xFF}, "TCR2_EL2": {"PIE": pie},
                 "PIR_EL2": {"Perm0": 0, "Perm1": 0b1110, "Perm9": 0b0110}},
        "tables": {"TTBR0_EL2": [{"va": 0x1000_0000, "pa": 0x80_0000_0000, "size": "4K",
                                  "pi_index": 0}]},
        "probes": [{"op": "S1E2R", "va": 0x1000_0000, "el": 2, "pan": 0}],
    }


def test_a_shrunk_case_keeps_the_requires_its_answers_depend_on() -> None:
    # TCR2_EL2.PIE == 1 (FEAT_TCR2) makes the permissions indirect (FEAT_S1PIE):
    # Perm0 = 0 is no access, a Permission fault (AArch64.S1IndirectBasePermissions);
    # without either feature the descriptor's direct AP gives read access.
    assert needed_requires(_pie_doc(1), "t", QEMU11_MAX, RAM) == ["S1PIE", "TCR2"]


def test_a_shrunk_case_drops_the_requires_it_no_longer_uses() -> None:
    # TCR2_EL2.PIE == 0: the permissions are direct with or without the features
    assert needed_requires(_pie_doc(0), "t", QEMU11_MAX, RAM) == []


def test_a_requirement_without_which_a_probe_has_no_state_is_kept() -> None:
    """A probe in the Realm state (SCR_EL3.{NSE, NS} = {1, 1}) exists only
    with FEAT_RME: without it the model cannot translate the probe at all
    (there is no Realm state), so RME stays required; EL3 too, which every
    probe at EL3 needs. Seed 192 on rme crashed here while shrinking."""
    doc: Doc = {
        "name": "t", "requires": ["EL3", "RME"],
        "regs": {"SCTLR_EL1": {"M": 1}, "TCR_EL1": {"TG0": "4K", "T0SZ": 25, "EPD1": 1}},
        "tables": {"TTBR0_EL1": [{"va": 0x1000_0000, "pa": 0x8000_0000, "size": "4K"}]},
        "probes": [{"op": "S1E1R", "va": 0x1000_0000, "el": 3, "pan": 0, "space": "realm"}],
    }
    assert needed_requires(doc, "t", RME, RAM) == ["EL3", "RME"]
