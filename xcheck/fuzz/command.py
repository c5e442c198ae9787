"""What `xcheck fuzz` does, apart from argument parsing: run the fuzzer,
print findings as they come, then the findings table and the coverage."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.table import Table

from xcheck.arch.rules import Rule
from xcheck.fuzz.coverage import Coverage
from xcheck.fuzz.drawers import Drawn
from xcheck.fuzz.knobs import KNOBS, KnobError, parse_features
from xcheck.fuzz.merge import MergeError, merge, read_summaries, summary_name
from xcheck.fuzz.session import CannotFuzz, Finding, Fuzzer, FuzzOptions
from xcheck.fuzz.signature import Signature
from xcheck.outcome import ExitCode
from xcheck.report.text import outcome_text
from xcheck.target.errors import ProfileError
from xcheck.target.profile import load_profile

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$")


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``10m``, ``1.5h`` in seconds (ValueError otherwise)."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a duration: expected e.g. 90s, 10m or 1h")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def fuzz_command(
    *,
    seed: int | None,
    count: int | None,
    duration: str | None,
    features: tuple[str, ...],
    config: str | None,
    qemu: str | None,
    cpu: str | None = None,
    out: Path,
    known_dirs: tuple[Path, ...],
    json_path: Path | None,
    do_shrink: bool,
    shrink_runs: int,
    console: Console,
    max_shrinks: int | None = None,
    shard: tuple[int, int] | None = None,
    drawers: int | None = None,
) -> int:
    """Run the fuzzer; exit 0 when nothing new failed, 1 on a new finding,
    2 on a usage error, 125 when the target cannot be started."""
    def usage(msg: str) -> int:
        console.print(f"[red]error:[/] {msg}")
        return int(ExitCode.USAGE)

    if count is not None and duration is not None:
        return usage("give --count or --time, not both")
    try:
        seconds = parse_duration(duration) if duration is not None else None
        allowed = parse_features(features)
        profile = load_profile(config, qemu=qemu, cpu=cpu)
    except (ValueError, KnobError, ProfileError) as err:
        return usage(str(err))
    if count is None and seconds is None:
        count = 100
    if seed is None:
        if shard is not None:
            return usage("--shard needs --seed: every shard of a campaign draws from one seed")
        seed = int(time.time()) % 1_000_000
    opts = FuzzOptions(seed=seed, count=count, seconds=seconds, allowed=allowed, out=out,
                       known_dirs=known_dirs, shrink=do_shrink, shrink_runs=shrink_runs,
                       max_shrinks=max_shrinks, shard=shard, drawers=drawers)
    with ExitStack() as stack:
        sink: IO[str] | None = None
        if json_path is not None:
            sink = stack.enter_context(json_path.open("w", encoding="utf-8"))
        progress = _Progress(console, sink)
        fuzzer = Fuzzer(profile, opts, progress.event)
        try:
            stack.enter_context(fuzzer)
        except CannotFuzz as err:
            console.print(f"[red]could not test:[/] {err}")
            return int(ExitCode.CANNOT_TEST)
        console.print(f"xcheck fuzz: seed {seed}, {profile.name} (QEMU {fuzzer.version}), "
                      + (f"{count} cases" if count is not None else f"{duration}")
                      + (f", shard {shard[0]}/{shard[1]}" if shard else ""))
        off = [k for k in KNOBS if not fuzzer.knobs.on(k)]
        if off:
            console.print("  not generated: " + ", ".join(off), highlight=False)
        interrupted = False
        lost = False
        version = fuzzer.version
        try:
            fuzzer.run()
        except KeyboardInterrupt:
            interrupted = True
            console.print("[yellow]interrupted[/]: reporting what ran")
        except CannotFuzz as err:
            lost = True
            console.print(f"[red]could not test:[/] the target could not be started again "
                          f"({err}): reporting what ran", highlight=False)
        _summary(console, fuzzer)
        summary = json.dumps({"type": "summary", "seed": seed, "shard": shard,
                              "profile": profile.name, "qemu": version,
                              **_stats(fuzzer),
                              "findings": [f.to_json() for f in fuzzer.findings.values()],
                              "coverage": fuzzer.coverage.to_json()})
        out.mkdir(parents=True, exist_ok=True)
        (out / summary_name(shard)).write_text(summary + "\n", encoding="utf-8")
        if sink is not None:
            sink.write(summary + "\n")
    new = [f for f in fuzzer.findings.values() if f.known_file is None]
    if interrupted:
        return 130
    if lost:
        return int(ExitCode.CANNOT_TEST)
    return int(ExitCode.FAILED if new else ExitCode.OK)


def _stats(fuzzer: Fuzzer) -> dict[str, Any]:
    s = fuzzer.stats
    return {"cases": s.cases, "probes": s.probes, "fuzz_seconds": round(s.fuzz_seconds, 3),
            "shrink_seconds": round(s.shrink_seconds, 3),
            "probes_per_s": round(s.probes_per_s, 1), "target_errors": s.target_errors,
            "findings": len(fuzzer.findings)}


class _Progress:
    """Prints each finding when it is shrunk and a status line now and then."""

    def __init__(self, console: Console, sink: IO[str] | None) -> None:
        self.console = console
        self.sink = sink
        self.last = time.monotonic()
        self.cases = 0
        self.probes = 0

    def event(self, kind: str, data: Any) -> None:
        if kind == "case":
            assert isinstance(data, Drawn)
            self.cases += 1
            self.probes += data.probes
            if time.monotonic() - self.last > 15:
                self.last = time.monotonic()
                self.console.print(f"  {self.cases} cases, {self.probes} probes", style="dim")
        elif kind == "finding":
            assert isinstance(data, Finding)
            f = data
            if f.known_file is not None:
                self.console.print(f"[yellow]seen before[/] ({f.known_file}): "
                                   f"{f.signature.describe()}", highlight=False)
            else:
                where = f" -> {f.file}" if f.file else ""
                self.console.print(f"[red]new[/] (case {f.first_case}): "
                                   f"{f.signature.describe()}{where}"
                                   + (f" [{f.shrink_note}]" if f.shrink_note else ""),
                                   highlight=False)
            if self.sink is not None:
                self.sink.write(json.dumps(f.to_json()) + "\n")
                self.sink.flush()


def merge_command(paths: tuple[Path, ...], out: Path | None, json_path: Path | None,
                  console: Console) -> int:
    """Merge the summaries of a campaign's shards; exit 0 when no shard had a
    new finding, 1 when one had, 2 when a summary is missing or unreadable."""
    try:
        merged = merge(read_summaries(paths))
    except MergeError as err:
        console.print(f"[red]error:[/] {err}")
        return int(ExitCode.USAGE)
    if out is not None:
        merged.copy_findings(out)
    console.print(f"xcheck fuzz merge: {len(merged.summaries)} summaries, seed "
                  + ", ".join(sorted({f"{s.seed}" for s in merged.summaries})))
    _coverage(console, merged.coverage)
    _findings_table(console, [(f.signature, f.ops, f.count, len(f.cases), f.file, f.known_file)
                              for f in merged.findings.values()])
    for problem in merged.problems:
        console.print(f"[yellow]warning:[/] {problem}", highlight=False)
    new = sum(f.known_file is None for f in merged.findings.values())
    console.print(f"{merged.cases} cases, {merged.probes} probes, "
                  f"{len(merged.findings)} signatures ({new} new)")
    if json_path is not None:
        json_path.write_text(json.dumps(merged.to_json()) + "\n", encoding="utf-8")
    return int(ExitCode.FAILED if new else ExitCode.OK)


_Row = tuple[Signature, Counter[str], int, int, "Path | None", "Path | str | None"]


def _findings_table(console: Console, rows: list[_Row]) -> None:
    """One row per signature family: signature, ops, probes, cases, and the
    file written (or the earlier one that records it)."""
    if not rows:
        return
    t = Table(title="findings (one row per signature, any op)", show_lines=False)
    for col in ("signature", "ops", "probes", "cases", "file"):
        t.add_column(col, overflow="fold")
    for sig, ops, count, cases, file, known in rows:
        where = file or (f"{known} (seen before)" if known else "-")
        t.add_row(sig.describe(), " ".join(sorted(ops)), str(count), str(cases), str(where))
    console.print(t)


def _summary(console: Console, fuzzer: Fuzzer) -> None:
    s = fuzzer.stats
    console.print()
    _coverage(console, fuzzer.coverage)
    _findings_table(console, [(f.signature, f.ops, f.count, len(f.cases), f.file, f.known_file)
                              for f in sorted(fuzzer.findings.values(),
                                              key=lambda f: f.first_case)])
    for f in fuzzer.findings.values():
        ex = f.shrunk_outcome
        if ex is not None:
            console.print(f"--- {f.file}", highlight=False)
            console.print(outcome_text(ex), markup=False, highlight=False)
    console.print(f"{s.cases} cases, {s.probes} probes in {s.fuzz_seconds:.1f} s "
                  f"({s.probes_per_s:.0f} probes/s), shrinking {s.shrink_seconds:.1f} s, "
                  f"{s.target_errors} target errors, {len(fuzzer.findings)} signatures "
                  f"({sum(f.known_file is None for f in fuzzer.findings.values())} new)")


def _rule_label(name: str) -> str:
    """A registry rule's name and what it decides (a name the model no longer
    has, from an older summary, as it is)."""
    rule = Rule.__members__.get(name)
    return f"{name}: {rule.value}" if rule is not None else name


def _coverage(console: Console, cov: Coverage) -> None:
    """The coverage summary: final answers, descriptor kinds per level, the
    rules that decided, and the features the cases used."""
    def table(title: str, counter: Any, limit: int | None = None) -> None:
        t = Table(title=title, title_justify="left", show_header=False, box=None,
                  padding=(0, 1))
        t.add_column(justify="right")
        t.add_column(overflow="fold")
        items = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
        for name, n in items[:limit]:
            t.add_row(str(n), name)
        if limit is not None and len(items) > limit:
            t.add_row("", f"... {len(items) - limit} more")
        console.print(t)

    console.print(f"[bold]coverage[/]: {cov.cases} cases, {cov.probes} probes")
    table("results", cov.results)
    table("descriptors read (stage, level, type)", cov.steps)
    table("rules reached", cov.rules)
    table("registry rules reached (xcheck.arch.rules)",
          {_rule_label(name): n for name, n in cov.cited.items()})
    never = cov.never_reached
    console.print(f"[bold]rules never reached[/] ({len(never)} of {len(Rule)}):"
                  + "".join(f"\n  {_rule_label(r.name)}" for r in never), highlight=False)
    table("AT operations", cov.ops)
    table("case features", cov.features, limit=60)
