"""Scenario: a loaded scenario file, its expanded probes, and how to build it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from xcheck.machine import AtOp, MachineSetup, Probe
from xcheck.scenario.expect import Expectation, KnownDivergence
from xcheck.scenario.spec import Layout


@lru_cache(maxsize=32)
def _build(layout: Layout, probes: tuple[Probe, ...]) -> MachineSetup:
    from xcheck.scenario.builder import build_setup

    return build_setup(layout, probes)


@dataclass(frozen=True)
class Scenario:
    """One scenario file, validated.

    ``probes`` are expanded (lists multiplied out) and each has a unique
    label such as ``S1E1RP va=0x8000_0000 el=1 pan=1``. ``profile_overrides``
    are (key, value) pairs for the QEMU profile (machine, cpu, memory,
    extra_args). :meth:`build` places the tables and returns the
    MachineSetup that both the target and the model read.
    """

    name: str
    about: str
    path: Path
    requires: tuple[str, ...]
    probes: tuple[Probe, ...]
    expect: tuple[Expectation, ...]
    known: tuple[KnownDivergence, ...]
    profile_overrides: tuple[tuple[str, Any], ...]
    layout: Layout = field(repr=False, compare=False)
    probe_lines: tuple[tuple[Probe, int], ...] = field(default=(), repr=False, compare=False)

    def build(self) -> MachineSetup:
        """The machine setup for this scenario's probes (ScenarioError if
        the tables cannot be placed)."""
        return self._setup

    @cached_property
    def _setup(self) -> MachineSetup:
        """:meth:`build`'s answer, kept with this scenario (a fuzz case asks
        for it again after loading), from the builds of equal layouts."""
        return _build(self.layout, self.probes)

    @cached_property
    def _exact_lines(self) -> dict[Probe, int]:
        return dict(self.probe_lines)

    @cached_property
    def _loose_lines(self) -> dict[tuple[AtOp, int, int, bool], int]:
        return {(p.op, p.va, p.el, p.pan): line for p, line in reversed(self.probe_lines)}

    def probe_line(self, probe: Probe) -> int | None:
        """The line of the ``probes:`` entry ``probe`` was expanded from (by
        its op, VA, EL and PAN when it is not one of this scenario's own)."""
        line = self._exact_lines.get(probe)
        if line is None:
            line = self._loose_lines.get((probe.op, probe.va, probe.el, probe.pan))
        return line

    def with_probes(self, probes: Iterable[Probe]) -> Scenario:
        """The same scenario with only ``probes`` (a selection of its own)."""
        return replace(self, probes=tuple(probes))
