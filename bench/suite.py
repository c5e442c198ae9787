"""End to end: the shipped suite's wall time and batch probes per second
(loading, building, QEMU, the model and the comparison included), and the
size of its HTML report."""

from __future__ import annotations

import time
from pathlib import Path

from xcheck.check import check_scenario, load_all
from xcheck.outcome import Kind, Outcome, target_version
from xcheck.report.html import html_report
from xcheck.scenario.loader import parse_scenario
from xcheck.target.factory import make_target
from xcheck.target.profile import load_profile
from xcheck.workers import CannotTest, run_parallel

SUITE = Path(__file__).resolve().parent.parent / "scenarios"

BIG = """
name: bench-4k-identity
about: one 2MB-block identity map, probes over it (bench)
regs:
  SCTLR_EL1: {M: 1, C: 1}
  TCR_EL1: {TG0: 4K, T0SZ: 25, IPS: 40bit, EPD1: 1}
  MAIR_EL1: {Attr0: 0xff}
tables:
  TTBR0_EL1:
    - {va: 0x4000_0000, pa: 0x4000_0000, size: 1G, attr: 0, ap: RW_EL1}
probes:
  - op: [S1E1R, S1E1W, S1E0R, S1E0W]
    el: 2
    va: [%s]
"""


def bench_suite() -> dict[str, float]:
    profile = load_profile()
    vas = ", ".join(hex(0x4000_0000 + 0x1000 * k) for k in range(1000))
    scenario = parse_scenario(BIG % vas, Path("bench.yaml"))
    target = make_target(profile)
    try:
        target.start()
        check_scenario(target, scenario)
        t = time.perf_counter()
        rounds = 3
        for _ in range(rounds):
            outcomes = check_scenario(target, scenario)
        rate = rounds * len(outcomes) / (time.perf_counter() - t)
    finally:
        target.close()
    figures = {"batch_probes_per_s": rate}
    if SUITE.is_dir():
        t = time.perf_counter()
        scenarios, _ = load_all([SUITE])
        results: list[Outcome] = []
        for event in run_parallel(scenarios, profile, "batch", 2):
            if isinstance(event, CannotTest):
                continue
            results += event
        figures["suite_wall_s"] = time.perf_counter() - t
        figures["suite_probes"] = len(results)
        figures["suite_failing_probes"] = sum(
            o.kind not in (Kind.MATCH, Kind.KNOWN, Kind.SKIPPED) for o in results
        )
        page = html_report([(profile.name, target_version(results), results, None)])
        figures["suite_html_kb"] = len(page.encode()) / 1024
    return figures
