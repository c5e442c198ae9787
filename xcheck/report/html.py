"""One self-contained HTML file for a run or a matrix run: probe x target
cells coloured by outcome, filters, each failing cell expanding to the same
text the terminal report prints, and a summary per scenario folder.

The outcomes are embedded once as JSON (every distinct string, down to each
line of the explanations, stored once in one table) and a small inline
script renders them, so the file stays small for the whole suite on several
targets; it fetches nothing."""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

from xcheck.outcome import FAILING, Kind, Outcome
from xcheck.report.matrix import ALWAYS_ALL_ROWS, model_pars, rows
from xcheck.report.terminal import scenario_folder
from xcheck.report.text import outcome_text

BAD = FAILING | {Kind.INVALID}
"""What the page's "failing" filter shows, and first: also scenarios that do not load."""

Run = tuple[str, str, Sequence[Outcome], str | None]
"""A target's label, its version, its outcomes and why it could not be used."""


class _Strings:
    """A table of distinct strings; each is stored once and referred to by index."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    def __call__(self, s: str) -> int:
        return self.index.setdefault(s, len(self.index))


def _cell(o: Outcome | None, kinds: dict[Kind, int], strings: _Strings) -> Any:
    """0 for a probe the target did not run; else [kind, PAR in hex] and, when
    there is something to explain, the lines of its text (indices: the lines
    of traces and reasons repeat from probe to probe and target to target)."""
    if o is None:
        return 0
    cell: list[Any] = [kinds[o.kind], "" if o.par_target is None else f"{o.par_target:x}"]
    if o.kind != Kind.MATCH or o.detail:
        cell.append([strings(line) for line in outcome_text(o).splitlines()])
    return cell


def report_data(runs: Sequence[Run]) -> dict[str, Any]:
    """What the page shows, as JSON-ready data."""
    kinds = {k: i for i, k in enumerate(Kind)}
    strings = _Strings()
    data_rows = []
    table = rows([(label, version, outcomes) for label, version, outcomes, _ in runs])
    # Probes that fail somewhere first, then those the targets disagree on.
    table.sort(key=lambda r: (not any(c and c.kind in BAD for c in r.cells), not r.differs()))
    for r in table:
        first = next(c for c in r.cells if c is not None)
        data_rows.append([
            strings(first.path), strings(scenario_folder(first.path)), strings(first.scenario),
            first.label, strings(first.op), first.el, int(r.differs()),
            model_pars(r.cells), [_cell(c, kinds, strings) for c in r.cells],
        ])
    return {
        "kinds": [k.value for k in Kind],
        "failing": [kinds[k] for k in Kind if k in BAD],
        "allRows": ALWAYS_ALL_ROWS,
        "targets": [
            {"label": label, "version": version, "cannot": cannot or ""}
            for label, version, _, cannot in runs
        ],
        "strings": list(strings.index),
        "rows": data_rows,
    }


def _asset(name: str) -> str:
    return files("xcheck.report").joinpath("html_assets", name).read_text(encoding="utf-8")


def html_report(runs: Sequence[Run], *, title: str = "xcheck") -> str:
    """The whole page: inline CSS, the data, the inline script."""
    data = json.dumps(report_data(runs), separators=(",", ":"))
    # Inside <script>, "</" could end the element early: escape it.
    data = data.replace("</", "<\\/")
    page = _asset("page.html")
    for key, value in (
        ("title", title.replace("&", "&amp;").replace("<", "&lt;")),
        ("css", _asset("page.css")),
        ("js", _asset("page.js")),
    ):
        page = page.replace("{{" + key + "}}", value)
    return page.replace("{{data}}", data, 1)  # last: nothing is substituted inside it


def write_html(runs: Sequence[Run], path: Path, *, title: str = "xcheck") -> None:
    path.write_text(html_report(runs, title=title), encoding="utf-8")
