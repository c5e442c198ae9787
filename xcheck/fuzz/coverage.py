"""What the generated cases reached: the model's trace steps and rules,
fault kinds per stage and level, AT operations per EL, case features, and
which rules of the model's registry (xcheck.arch.rules) were never reached."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from xcheck.arch.at import AtResult
from xcheck.arch.rules import Rule
from xcheck.fuzz.signature import normalize
from xcheck.machine import Probe


@dataclass
class Coverage:
    """Counters over every probe of every case."""

    cases: int = 0
    probes: int = 0
    steps: Counter[str] = field(default_factory=Counter)
    """Descriptor fetches by stage, level and decoded type: "S1 L2 block"."""
    rules: Counter[str] = field(default_factory=Counter)
    """Trace steps that cite a rule: "S1 fault: AF == # and TCR.HA == # ..."."""
    results: Counter[str] = field(default_factory=Counter)
    """Final answers: "success", "S2 permission L3 PTW", "undefined"..."""
    ops: Counter[str] = field(default_factory=Counter)
    features: Counter[str] = field(default_factory=Counter)
    cited: Counter[str] = field(default_factory=Counter)
    """Trace steps by the registry rule they cite (Rule member names)."""

    def add_case(self, tags: frozenset[str]) -> None:
        self.cases += 1
        self.features.update(sorted(tags))

    def add(self, probe: Probe, result: AtResult) -> None:
        self.probes += 1
        self.ops[f"{probe.op.value} at EL{probe.el}" + (" PAN" if probe.pan else "")] += 1
        for step in result.trace:
            head = f"S{step.stage}" if step.stage else "AT"
            if step.addr is not None or step.what in ("no memory",):
                self.steps[f"{head} L{step.level} {step.what}"] += 1
            if step.rule:
                self.rules[f"{head} {step.what}: {normalize(step.rule)}"] += 1
            if step.cites is not None:
                self.cited[step.cites.name] += 1
        if result.kind != "par":
            self.results[result.kind] += 1
        elif result.fault is None:
            self.results["success"] += 1
        else:
            f = result.fault
            self.results[f"S{f.stage} {f.statuscode.value} L{f.level}"
                         + (" (on the S1 walk)" if f.s2fs1walk else "")] += 1

    @property
    def never_reached(self) -> list[Rule]:
        """The registry's rules that no trace step of the run cited."""
        return [r for r in Rule if not self.cited[r.name]]

    def to_json(self) -> dict[str, Any]:
        return {"cases": self.cases, "probes": self.probes,
                **{name: dict(sorted(getattr(self, name).items())) for name in COUNTERS},
                "never_reached": [r.name for r in self.never_reached]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Coverage:
        """What to_json wrote (KeyError, TypeError or ValueError when it is not)."""
        return cls(int(data["cases"]), int(data["probes"]),
                   **{name: Counter({str(k): int(v) for k, v in data[name].items()})
                      for name in COUNTERS})

    def merge(self, other: Coverage) -> None:
        """Add ``other``'s counts (another shard of the campaign)."""
        self.cases += other.cases
        self.probes += other.probes
        for name in COUNTERS:
            getattr(self, name).update(getattr(other, name))


COUNTERS = ("steps", "rules", "results", "ops", "features", "cited")
