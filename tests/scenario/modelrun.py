"""Run a built scenario through the model, as xcheck.check.run_model does."""

from __future__ import annotations

from pathlib import Path

from xcheck.arch.at import ArchState, AtResult, translate
from xcheck.arch.fault import Fault
from xcheck.arch.features import Features
from xcheck.arch.memory import MemoryImage
from xcheck.arch.par import decode_par
from xcheck.machine import RAM_BASE, AtOp, MachineSetup
from xcheck.scenario.loader import Scenario, parse_scenario

RAM = 128 << 20
CPU = Features(pan=3, hpds=2, xnx=True, ttst=True, e0pd=True)


def scenario(text: str) -> Scenario:
    return parse_scenario(text, Path("t.yaml"))


def at(setup: MachineSetup, op: AtOp, va: int, el: int = 1, pan: bool = False,
       features: Features = CPU) -> AtResult:
    state = ArchState.from_sysregs(setup.sysregs, features, el, pan)
    return translate(op, va, state, MemoryImage(setup.memory, RAM_BASE, RAM))


def run(s: Scenario, features: Features = CPU) -> list[AtResult]:
    setup = s.build()
    return [at(setup, p.op, p.va, p.el, p.pan, features) for p in setup.probes]


def pa(r: AtResult) -> int:
    assert r.kind == "par" and r.fault is None, r.render()
    return decode_par(r.par)["PA"] << 12


def fault(r: AtResult) -> tuple[Fault, int, int, bool]:
    assert r.fault is not None, r.render()
    return r.fault.statuscode, r.fault.level, r.fault.stage, r.fault.s2fs1walk
