"""Step mode against batch mode on shipped scenarios, on every QEMU the test
machine has: step mode runs the batch program and stops after each probe, so
for the same setup it must give the same PARs, the same exception records
(ESR, ELR, FAR, EL), the same outcomes and, after its last probe, the same
memory; and it reads the watched words back after every probe."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from qemuprofiles import PROFILES, installed_profile

from xcheck.arch.par import decode_par
from xcheck.check import check_scenario
from xcheck.machine import (
    ARENA_PA,
    RAM_BASE,
    AtOp,
    MachineSetup,
    Probe,
    ProbeResult,
    Readback,
    TargetException,
    sysreg_defaults,
)
from xcheck.scenario.loader import load_scenario
from xcheck.target.errors import TargetError
from xcheck.target.guest import QemuTarget

pytestmark = pytest.mark.qemu

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"

Run = tuple[str, list[ProbeResult], list[Readback]]


@pytest.fixture(scope="module", params=PROFILES)
def qemu(request: pytest.FixtureRequest) -> Iterator[QemuTarget]:
    with QemuTarget(installed_profile(request.param)) as target:
        yield target


def _runs(target: QemuTarget, monkeypatch: pytest.MonkeyPatch) -> list[Run]:
    """Record each run the target makes: its mode, results and read backs."""
    runs: list[Run] = []
    real = target.run

    def run(setup: MachineSetup, mode: str = "batch") -> list[ProbeResult]:
        out = real(setup, mode)
        runs.append((mode, out, list(target.readbacks)))
        return out

    monkeypatch.setattr(target, "run", run)
    return runs


def _outcomes(out: Sequence[Any]) -> list[tuple[object, ...]]:
    return [(o.kind, o.par_target, o.fields, o.detail) for o in out]


@pytest.mark.parametrize("name", [
    "el2/undefined-at-el1.yaml",  # AT S1E2*/S12E* at EL1: UNDEFINED, taken to EL1
    "el2/nv-trap.yaml",  # AT at EL1 trapped to EL2 (HCR_EL2.NV, AT)
    "access-flag/hardware-af.yaml",  # watched words, AF set by hardware where QEMU does
    "access-flag/at-leaves-memory-unchanged.yaml",  # dirty state updates (QEMU < 10.1)
])
def test_step_mode_gives_the_results_of_batch_mode(
        qemu: QemuTarget, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    scenario = load_scenario(SCENARIOS / name)
    runs = _runs(qemu, monkeypatch)
    batch = check_scenario(qemu, scenario)
    step = check_scenario(qemu, scenario, mode="step")
    (b_mode, b_out, b_back), *_ = runs
    s_mode, s_out, s_back = runs[-1]
    assert (b_mode, s_mode) == ("batch", "step")
    assert s_out == b_out  # exceptions included, ELR and all: the same program
    assert _outcomes(step) == _outcomes(batch)
    if name.startswith("el2/"):
        assert any(isinstance(r, TargetException) for r in s_out)
    else:
        assert b_back and b_back[-1].words  # the scenario watches descriptors
        # one read back per probe (in the order they ran: group by group),
        # each after the probes so far
        assert len(s_back) == len(s_out) and len(s_back[0].ran) == 1
        assert [rb.ran[:-1] for rb in s_back[1:]] == [rb.ran for rb in s_back[:-1]]
        assert sorted(s_back[-1].ran) == list(range(len(s_out)))
        assert s_back[-1].words == b_back[-1].words  # memory after the last probe


def test_an_exception_loop_after_a_stop_is_caught_and_the_target_recovers(
        qemu: QemuTarget) -> None:
    """The EL2 probe stops as usual; the EL1 group's ERET then fetches
    through an EL1&0 regime with no valid table (TTBR0_EL1 at zeroed memory):
    an Instruction Abort to EL1 (D8.2), whose vector cannot be fetched either.
    Step mode names the loop, as batch mode does, and the next setup runs."""
    regs = sysreg_defaults()
    regs |= {"SCTLR_EL1": regs["SCTLR_EL1"] | 1, "TCR_EL1": 25, "TTBR0_EL1": ARENA_PA}
    probes = (Probe(AtOp.S1E2R, RAM_BASE, 2), Probe(AtOp.S1E1R, RAM_BASE, 1))
    broken = MachineSetup(regs, {ARENA_PA: bytes(4096)}, probes)
    with pytest.raises(TargetError, match="exception loop"):
        qemu.run(broken, "step")
    (par,) = qemu.run(MachineSetup(sysreg_defaults(), {}, probes[:1]), "step")
    assert isinstance(par, int) and decode_par(par)["PA"] << 12 == RAM_BASE  # MMU off: PA = VA
