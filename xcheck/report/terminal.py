"""The terminal report: a progress bar over probes while the run goes, then
each failing probe in full (both PARs decoded, the model's trace) and a
summary table."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from xcheck.outcome import Kind, Outcome
from xcheck.report.text import outcome_text

STYLE = {
    Kind.MATCH: "green",
    Kind.KNOWN: "yellow",
    Kind.SKIPPED: "dim",
    Kind.MISMATCH: "bold red",
    Kind.EXPECT_FAILED: "bold red",
    Kind.TARGET_ERROR: "bold magenta",
    Kind.INVALID: "bold magenta",
}
SHOWN = (Kind.MISMATCH, Kind.EXPECT_FAILED, Kind.TARGET_ERROR, Kind.INVALID)


def scenario_folder(path: str) -> str:
    """The folder a scenario file is in (the unit of the summaries); the
    path itself when it has none."""
    return path.rsplit("/", 2)[-2] if path.count("/") >= 1 else path


class TerminalReport:
    """Progress while running; details and a summary at the end."""

    def __init__(self, console: Console, total: int, *, verbose: bool = False) -> None:
        self.console = console
        self.verbose = verbose
        self.counts: Counter[Kind] = Counter()
        self.shown: list[Outcome] = []
        self._progress = Progress(
            TextColumn("[bold]probes"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        )
        self._task = self._progress.add_task("probes", total=total, status="")

    def __enter__(self) -> TerminalReport:
        self._progress.start()
        return self

    def __exit__(
        self,
        et: type[BaseException] | None,
        ev: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def add(self, outcome: Outcome) -> None:
        self.counts[outcome.kind] += 1
        if outcome.kind in SHOWN or (self.verbose and outcome.kind == Kind.KNOWN):
            self.shown.append(outcome)
            self._progress.console.print(Text(outcome_text(outcome)))
            self._progress.console.print()
        bad = sum(self.counts[k] for k in SHOWN)
        self._progress.update(
            self._task, advance=1, status=f"[red]{bad} failing" if bad else "[green]ok"
        )

    def summary(self, outcomes: Iterable[Outcome], *, title: str = "xcheck") -> None:
        """A table of outcomes per scenario folder, with totals."""
        per: dict[str, Counter[Kind]] = {}
        for o in outcomes:
            per.setdefault(scenario_folder(o.path), Counter())[o.kind] += 1
        kinds = [k for k in Kind if any(c[k] for c in per.values())]
        table = Table(title=title)
        table.add_column("scenarios")
        for k in kinds:
            table.add_column(k.value, justify="right", style=STYLE[k])
        total: Counter[Kind] = Counter()
        for group, c in sorted(per.items()):
            table.add_row(group, *(str(c[k]) if c[k] else "" for k in kinds))
            total.update(c)
        table.add_section()
        table.add_row("total", *(str(total[k]) for k in kinds), style="bold")
        self.console.print(table)
