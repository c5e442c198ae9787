"""`xcheck fuzz merge`: the summaries that the shards of a campaign wrote
(each into its --out folder) as one report: findings by signature family,
coverage added up, and which case numbers of which seed ran."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xcheck.fuzz.coverage import Coverage
from xcheck.fuzz.signature import Signature

SUMMARY_GLOB = "fuzz-summary*.json"


def summary_name(shard: tuple[int, int] | None) -> str:
    """The summary file a run writes into its --out folder."""
    return "fuzz-summary.json" if shard is None else f"fuzz-summary-{shard[0]}-of-{shard[1]}.json"


class MergeError(Exception):
    """A summary is missing or unreadable (a usage error)."""


@dataclass(frozen=True)
class ShardSummary:
    """What one run wrote: its seed, shard, figures, findings and coverage."""

    path: Path
    seed: int
    profile: str
    shard: tuple[int, int]
    cases: int
    probes: int
    fuzz_seconds: float
    target_errors: int
    findings: tuple[dict[str, Any], ...]
    coverage: Coverage

    @property
    def case_numbers(self) -> range:
        """The case numbers it ran (fuzz.session.shard_indices)."""
        k, n = self.shard
        return range(k - 1, k - 1 + n * self.cases, n)

    @classmethod
    def read(cls, path: Path) -> ShardSummary:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            shard = data.get("shard") or (1, 1)
            return cls(path, int(data["seed"]), str(data["profile"]),
                       (int(shard[0]), int(shard[1])), int(data["cases"]),
                       int(data["probes"]), float(data["fuzz_seconds"]),
                       int(data["target_errors"]), tuple(data["findings"]),
                       Coverage.from_json(data["coverage"]))
        except OSError as err:
            raise MergeError(f"{path}: cannot read it ({err.strerror})") from None
        except (ValueError, KeyError, TypeError, IndexError) as err:
            raise MergeError(f"{path}: not a summary of xcheck fuzz ({err!r})") from None


def read_summaries(paths: Sequence[Path]) -> list[ShardSummary]:
    """The summaries in these folders (``fuzz-summary*.json``) or files."""
    out: list[ShardSummary] = []
    for p in paths:
        if p.is_dir():
            files = sorted(p.glob(SUMMARY_GLOB))
            if not files:
                raise MergeError(f"{p}: no {SUMMARY_GLOB} in it (the --out folder of a "
                                 "fuzz run holds one)")
            out += [ShardSummary.read(f) for f in files]
        elif p.exists():
            out.append(ShardSummary.read(p))
        else:
            raise MergeError(f"{p}: no such file or folder")
    return out


@dataclass
class MergedFinding:
    """One signature family over every shard."""

    signature: Signature
    first: tuple[int, int]
    """(seed, case number) of its first case."""
    count: int = 0
    ops: Counter[str] = field(default_factory=Counter)
    cases: set[tuple[int, int]] = field(default_factory=set)
    file: Path | None = None
    known_file: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"type": "finding", "signature": self.signature.to_json(),
                "describe": self.signature.describe(), "count": self.count,
                "ops": dict(sorted(self.ops.items())),
                "cases": [f"{s}:{c}" for s, c in sorted(self.cases)[:20]],
                "first_case": f"{self.first[0]}:{self.first[1]}",
                "file": str(self.file) if self.file else None, "known_file": self.known_file}


@dataclass
class Merged:
    summaries: list[ShardSummary]
    coverage: Coverage
    findings: dict[Signature, MergedFinding]
    problems: list[str]
    """Shards run twice or missing: the merged run is not the whole campaign."""

    @property
    def cases(self) -> int:
        return sum(s.cases for s in self.summaries)

    @property
    def probes(self) -> int:
        return sum(s.probes for s in self.summaries)

    def copy_findings(self, out: Path) -> None:
        """One file per finding into ``out`` (each finding's first one)."""
        out.mkdir(parents=True, exist_ok=True)
        for f in self.findings.values():
            if f.file is not None:
                shutil.copyfile(f.file, out / f.file.name)
                f.file = out / f.file.name

    def to_json(self) -> dict[str, Any]:
        return {"type": "summary", "merged": [str(s.path) for s in self.summaries],
                "seeds": sorted({s.seed for s in self.summaries}),
                "profiles": sorted({s.profile for s in self.summaries}),
                "cases": self.cases, "probes": self.probes,
                "target_errors": sum(s.target_errors for s in self.summaries),
                "problems": self.problems,
                "findings": [f.to_json() for f in self.findings.values()],
                "coverage": self.coverage.to_json()}


def merge(summaries: Sequence[ShardSummary]) -> Merged:
    """Add up the shards' coverage and findings; name shards run twice and
    shards of a split that are missing."""
    coverage = Coverage()
    findings: dict[Signature, MergedFinding] = {}
    seen: dict[tuple[int, int], Path] = {}
    problems: list[str] = []
    splits: dict[tuple[int, int], set[int]] = {}
    for s in summaries:
        coverage.merge(s.coverage)
        for number in s.case_numbers:
            if (s.seed, number) in seen:
                problems.append(f"seed {s.seed} case {number} ran twice ({seen[s.seed, number]}"
                                f" and {s.path})")
                break
            seen[s.seed, number] = s.path
        splits.setdefault((s.seed, s.shard[1]), set()).add(s.shard[0])
        for data in s.findings:
            _add_finding(findings, s, data)
    for (seed, n), ks in sorted(splits.items()):
        missing = sorted(set(range(1, n + 1)) - ks)
        if missing:
            problems.append(f"seed {seed}: shard " + ", ".join(f"{k}/{n}" for k in missing)
                            + " missing")
    return Merged(list(summaries), coverage, dict(sorted(
        findings.items(), key=lambda kv: kv[1].first)), problems)


def _add_finding(findings: dict[Signature, MergedFinding], s: ShardSummary,
                 data: dict[str, Any]) -> None:
    sig = Signature.from_json(data["signature"])
    first = (s.seed, int(data["first_case"]))
    f = findings.get(sig)
    if f is None:
        f = findings[sig] = MergedFinding(sig, first)
    f.count += int(data["count"])
    f.ops.update({str(k): int(v) for k, v in data["ops"].items()})
    f.cases.update((s.seed, int(c)) for c in data["cases"])
    f.known_file = f.known_file or data.get("known_file")
    # the shard wrote its finding into the folder of its summary
    file = s.path.parent / Path(data["file"]).name if data.get("file") else None
    if file is not None and file.is_file() and (f.file is None or first <= f.first):
        f.file = file
    f.first = min(f.first, first)
