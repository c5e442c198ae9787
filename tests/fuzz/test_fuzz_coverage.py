"""Coverage names the registry rules a campaign reached and those it never
reached (model only, no QEMU)."""

from __future__ import annotations

from fuzzcpu import knobs

from xcheck.arch.rules import Rule
from xcheck.fuzz.case import make_case
from xcheck.fuzz.coverage import Coverage

RAM = 128 << 20


def test_every_deciding_step_of_a_walk_cites_a_registry_rule() -> None:
    """Faults, the start of each walk, descriptors that lead on, the AT's
    route and its output: each names the rule that decided it."""
    reached: set[Rule] = set()
    for index in range(25):
        case = make_case(3, index, knobs(), RAM)
        for result in case.model:
            for step in result.trace:
                if step.rule or step.what in ("fault", "regime", "output", "undefined",
                                              "trap", "abort", "table", "block", "page"):
                    assert step.cites is not None, step
                    reached.add(step.cites)
    assert {Rule.ENCODE_PAR, Rule.S1_START, Rule.S1_TABLE, Rule.REGIME_EL10} <= reached


def test_coverage_names_the_rules_never_reached() -> None:
    cov = Coverage()
    for index in range(10):
        case = make_case(5, index, knobs(), RAM)
        cov.add_case(case.tags)
        cov.add(case.setup.probes, case.model)
    reached = {Rule[name] for name in cov.cited}
    assert reached and cov.never_reached
    assert set(cov.never_reached) == set(Rule) - reached
    data = cov.to_json()
    assert data["never_reached"] == [r.name for r in Rule if r not in reached]
    assert Coverage.from_json(data).to_json() == data
