"""Placeholder until the page-table builder lands."""

from __future__ import annotations

from xcheck.machine import MachineSetup, Probe
from xcheck.scenario.spec import Layout


def build_setup(layout: Layout, probes: tuple[Probe, ...]) -> MachineSetup:
    return MachineSetup(sysregs=dict(layout.sysregs), memory={}, probes=probes)
