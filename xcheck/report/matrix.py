"""The side-by-side report of a matrix run: one row per probe, one column
per target (outcome and PAR), rows where the targets disagree highlighted,
and which targets fail each probe."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from rich.table import Table
from rich.text import Text

from xcheck.outcome import FAILING, Kind, Outcome, exit_code
from xcheck.report.terminal import STYLE

Column = tuple[str, str, Sequence[Outcome]]
"""A target's label, its version and its outcomes."""

ALWAYS_ALL_ROWS = 40
"""Up to this many probes the table shows every row; above, only the rows
that differ between targets or fail somewhere (``-v`` shows all)."""


@dataclass(frozen=True)
class Row:
    """One probe across targets (None: the target did not run it)."""

    key: tuple[str, str, str]
    cells: tuple[Outcome | None, ...]

    @property
    def probe(self) -> str:
        _, scenario, label = self.key
        return f"{scenario} {label}".strip()

    def differs(self) -> bool:
        """Do the targets that ran this probe disagree (outcome, or PAR in
        the bits the model determines)?"""
        return len({_answer(c) for c in self.cells if c is not None}) > 1

    def failing_on(self, labels: Sequence[str]) -> list[str]:
        return [
            lab for lab, c in zip(labels, self.cells, strict=True)
            if c is not None and c.kind in FAILING
        ]


def _answer(o: Outcome) -> tuple[Kind, int | None]:
    par = o.par_target
    if par is not None and o.mask is not None:
        par &= o.mask
    return o.kind, par


def rows(columns: Sequence[Column]) -> list[Row]:
    """Probes in order of first appearance, each with every target's outcome."""
    keys: dict[tuple[str, str, str], None] = {}
    maps = []
    for _, _, outcomes in columns:
        m = {}
        for o in outcomes:
            k = (o.path, o.scenario, o.label)
            keys.setdefault(k)
            m[k] = o
        maps.append(m)
    return [Row(k, tuple(m.get(k) for m in maps)) for k in keys]


def _cell(o: Outcome | None) -> Text:
    if o is None:
        return Text("-", style="dim")
    text = Text(o.kind.value, style=STYLE[o.kind])
    if o.par_target is not None:
        text.append(f" 0x{o.par_target:x}")
    if o.fields:
        text.append("\n" + ", ".join(
            f"{f.name}=0x{f.target:x} (model 0x{f.model:x})" for f in o.fields
        ))
    elif o.kind in (Kind.MISMATCH, Kind.TARGET_ERROR) and o.detail:
        text.append("\n" + o.detail.splitlines()[0][:60])
    return text


def model_pars(cells: Sequence[Outcome | None]) -> str:
    pars = dict.fromkeys(
        f"0x{c.par_model:x}" for c in cells if c is not None and c.par_model is not None
    )
    return " / ".join(pars) or "-"


def matrix_table(columns: Sequence[Column], *, all_rows: bool = False) -> Table:
    """Probe x target. Rows where targets disagree are marked and bold; the
    last column names the targets where the probe fails."""
    labels = [label for label, _, _ in columns]
    all_ = rows(columns)
    shown = all_
    if not all_rows and len(all_) > ALWAYS_ALL_ROWS:
        shown = [r for r in all_ if r.differs() or r.failing_on(labels)]
    caption = None
    if len(shown) < len(all_):
        caption = (
            f"{len(shown)} of {len(all_)} probes shown; the others give the same "
            "non-failing answer on every target (-v shows all)"
        )
    table = Table(title="xcheck: probe x target", caption=caption, show_lines=True)
    table.add_column("probe")
    for label, version, _ in columns:
        table.add_column(f"{label}\n{version or '?'}", overflow="fold")
    table.add_column("model")
    table.add_column("fails on")
    for r in shown:
        mark = r.differs()
        probe = Text(("≠ " if mark else "") + r.probe, style="bold yellow" if mark else "")
        failing = r.failing_on(labels)
        table.add_row(
            probe,
            *(_cell(c) for c in r.cells),
            model_pars(r.cells),
            Text(", ".join(failing), style="bold red") if failing else Text(""),
        )
    return table


def summary_table(
    runs: Sequence[tuple[str, str, Sequence[Outcome], str | None]],
) -> Table:
    """Per target: version, outcome counts, and its own exit code."""
    counts = [Counter(o.kind for o in outcomes) for _, _, outcomes, _ in runs]
    kinds = [k for k in Kind if any(c[k] for c in counts)]
    table = Table(title="per target")
    widest = max((len(label) for label, _, _, _ in runs), default=6)
    table.add_column("target", no_wrap=True, min_width=widest)
    table.add_column("version")
    for k in kinds:
        table.add_column(k.value, justify="right", style=STYLE[k])
    table.add_column("exit")
    for (label, version, outcomes, cannot), c in zip(runs, counts, strict=True):
        code = exit_code(outcomes, could_not_test=cannot is not None)
        table.add_row(
            label, version or "?", *(str(c[k]) if c[k] else "" for k in kinds),
            f"{int(code)} ({code.name.lower().replace('_', ' ')})",
        )
    return table
