"""JUnit XML for CI: one testsuite per scenario file, one testcase per probe."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from xcheck.outcome import Kind, Outcome
from xcheck.report.text import outcome_text


def junit_xml(outcomes: Iterable[Outcome], *, name: str = "xcheck") -> ET.ElementTree:
    """Build the JUnit tree: mismatches and failed expectations are
    failures, target errors and invalid scenarios errors, skips skipped."""
    by_file: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        by_file[o.path].append(o)
    root = ET.Element("testsuites", name=name)
    totals: defaultdict[str, int] = defaultdict(int)
    for path, items in sorted(by_file.items()):
        suite = ET.SubElement(root, "testsuite", name=path)
        counts: defaultdict[str, int] = defaultdict(int)
        for o in items:
            case = ET.SubElement(
                suite, "testcase", classname=o.scenario, name=o.label or o.scenario, file=path
            )
            if o.line:
                case.set("line", str(o.line))
            counts["tests"] += 1
            if o.kind in (Kind.MISMATCH, Kind.EXPECT_FAILED):
                el = ET.SubElement(case, "failure", type=o.kind.value, message=_first_line(o))
                el.text = outcome_text(o)
                counts["failures"] += 1
            elif o.kind in (Kind.TARGET_ERROR, Kind.INVALID):
                el = ET.SubElement(case, "error", type=o.kind.value, message=_first_line(o))
                el.text = outcome_text(o)
                counts["errors"] += 1
            elif o.kind == Kind.SKIPPED:
                ET.SubElement(case, "skipped", message=o.detail)
                counts["skipped"] += 1
            elif o.kind == Kind.KNOWN:
                ET.SubElement(case, "system-out").text = "known divergence: " + o.detail
        for key in ("tests", "failures", "errors", "skipped"):
            suite.set(key, str(counts[key]))
            totals[key] += counts[key]
    for key in ("tests", "failures", "errors", "skipped"):
        root.set(key, str(totals[key]))
    return ET.ElementTree(root)


def _first_line(o: Outcome) -> str:
    text = outcome_text(o)
    return text.splitlines()[0] if text else o.kind.value


def write_junit(outcomes: Iterable[Outcome], path: Path) -> None:
    tree = junit_xml(outcomes)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)
