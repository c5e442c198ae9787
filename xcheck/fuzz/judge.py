"""One case's target answers against the model's: the failures, each with
its signature (xcheck.fuzz.signature), named after a recorded bug when a
file records its family or a recorded ``acts_as`` explains it.

A Judge holds what that needs and nothing of the target: the fuzzer's
process judges the runs it makes itself (shrinking) with one, and each
drawing process (xcheck.fuzz.drawers) the cases it drew with its own copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from xcheck.arch.at import AtResult
from xcheck.arch.features import Features
from xcheck.check import acts_as_explains, agrees, compare
from xcheck.fuzz.signature import Signature, signature
from xcheck.machine import MachineSetup, Probe, ProbeResult
from xcheck.outcome import Outcome
from xcheck.scenario.expect import KnownDivergence
from xcheck.scenario.loader import Scenario


@dataclass(frozen=True)
class Behaviour:
    """A recorded bug known by what the target does: a `known:` entry with
    ``acts_as`` register values, from the scenario ``name`` at ``path``."""

    path: Path
    name: str
    entry: KnownDivergence

    @property
    def label(self) -> str:
        return f"{self.name} ({self.entry.describe_acts()})"


@dataclass(frozen=True)
class Failure:
    """One probe that failed: its signature, its number in the case, the
    outcome, and the file that records the signature's family (if any)."""

    signature: Signature
    probe: int
    outcome: Outcome
    known: Path | None = None


@dataclass
class Judge:
    """Compares a target's answers with the model's for one target."""

    target: str
    """The profile's kind (qemu, kvm-nested): the outcomes' target."""
    version: str
    features: Features
    ram_size: int
    known: dict[Signature, Path] = field(default_factory=dict)
    """Recorded signature families, and the file recording each."""
    behaviours: list[Behaviour] = field(default_factory=list)
    rendered: set[Signature] = field(default_factory=set)
    """The families whose outcome already carried the model's trace."""

    def failures(self, scenario: Scenario, setup: MachineSetup, keep: Sequence[int],
                 model: Sequence[AtResult], got: Sequence[ProbeResult],
                 traces: bool = True) -> list[Failure]:
        """The probes of ``setup`` (numbers ``keep`` in the case, whose model
        answers ``model`` holds) whose target answer ``got`` fails. With
        ``traces`` False, only the first failure of a family carries the
        model's rendered trace (rendering costs more than comparing)."""
        fails = []
        plain = not scenario.expect
        for i, p, g in zip(keep, setup.probes, got, strict=True):
            m = model[i]
            if plain and agrees(m, g):
                continue  # a match (compare would say so; no expectation to judge)
            o = compare(scenario, p, g, m, target=self.target, version=self.version,
                        trace=traces)
            sig = signature(o, g, m)
            if sig is None:
                continue
            sig = self.explained(sig, setup, p, g)
            if not traces and sig.family not in self.rendered:
                self.rendered.add(sig.family)
                o = replace(o, trace=m.render())
            fails.append(Failure(sig, i, o, self.known.get(sig.family)))
        return fails

    def explained(self, sig: Signature, setup: MachineSetup, probe: Probe,
                  got: ProbeResult) -> Signature:
        """``sig``; or, when no file records its family and a recorded bug's
        ``acts_as`` explains the probe (xcheck.check.acts_as_explains), the
        signature with that bug named, which the bug's file then records."""
        if sig.family in self.known:
            return sig
        for b in self.behaviours:
            if acts_as_explains(b.entry, setup, probe, got, self.features, self.ram_size):
                out = replace(sig, acts_as=b.label)
                self.known.setdefault(out.family, b.path)
                return out
        return sig
