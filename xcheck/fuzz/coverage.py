"""What the generated cases reached: the model's trace steps and rules,
fault kinds per stage and level, AT operations per EL, case features, and
which rules of the model's registry (xcheck.arch.rules) were never reached."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from xcheck.arch.at import AtResult
from xcheck.arch.fault import Fault
from xcheck.arch.rules import Rule
from xcheck.fuzz.signature import normalize
from xcheck.machine import AtOp, Probe


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

    def add(self, probes: Iterable[Probe], results: Iterable[AtResult]) -> None:
        """Count each probe with the model's answer for it (one case's, in
        one go: each counter is updated once, and each kind of trace step is
        made into counter keys once)."""
        ops: list[str] = []
        answers: list[str] = []
        traces = []
        for probe, result in zip(probes, results, strict=True):
            ops.append(_op_key(probe.op, probe.el, probe.pan))
            traces.append(result.trace)
            if result.kind != "par":
                answers.append(result.kind)
            elif result.fault is None:
                answers.append("success")
            else:
                f = result.fault
                answers.append(_fault_key(f.stage, f.statuscode, f.level, f.s2fs1walk))
        # TraceStep's fields unpacked (a NamedTuple): far cheaper than by name
        kinds = Counter((stage, level, what, rule, cites, addr is not None)
                        for trace in traces
                        for stage, what, _, level, _, _, addr, _, rule, cites in trace)
        steps, rules, cited = self.steps, self.rules, self.cited
        for kind, n in kinds.items():
            fetch, rule, cites = _step_keys(*kind)
            if fetch:
                steps[fetch] += n
            if rule:
                rules[rule] += n
            if cites:
                cited[cites] += n
        self.probes += len(ops)
        self.ops.update(ops)
        self.results.update(answers)

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


@lru_cache(maxsize=256)
def _op_key(op: AtOp, el: int, pan: bool) -> str:
    """The ``ops`` counter of a probe."""
    return f"{op.value} at EL{el}" + (" PAN" if pan else "")


@lru_cache(maxsize=4096)
def _step_keys(stage: int, level: int | None, what: str, rule: str, cites: Rule | None,
               fetched: bool) -> tuple[str, str, str]:
    """The ``steps``, ``rules`` and ``cited`` counters a trace step adds to
    ("" for none): a descriptor fetch (or the lack of memory for one), the
    rule's text with its numbers blanked, the registry rule it cites."""
    head = f"S{stage}" if stage else "AT"
    return (f"{head} L{level} {what}" if fetched or what == "no memory" else "",
            f"{head} {what}: {normalize(rule)}" if rule else "",
            cites.name if cites is not None else "")


@lru_cache(maxsize=256)
def _fault_key(stage: int, status: Fault, level: int, s2fs1walk: bool) -> str:
    """The ``results`` counter of a PAR that reports a fault."""
    return f"S{stage} {status.value} L{level}" + (" (on the S1 walk)" if s2fs1walk else "")


COUNTERS = ("steps", "rules", "results", "ops", "features", "cited")
