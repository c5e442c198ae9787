"""A live outcome exported as a scenario reproduces the model's answer
without the kernel (no QEMU: the tables are livetables' fake RAM)."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest
from livetables import L1, L2, RAM_SIZE, VA_L1, FakeRam, state, words

from xcheck.live.export import ExportError, scenario_text
from xcheck.live.sweep import Sweep
from xcheck.live.tables import walk_tables
from xcheck.machine import AtOp
from xcheck.model import run_model
from xcheck.outcome import FieldDelta, Kind, Outcome
from xcheck.scenario.loader import parse_scenario
from xcheck.target.gdb import Gdb


def _sweep(mem: FakeRam) -> Sweep:
    st = state()
    rp = st.arch_state().regime(st.regime)
    assert rp.upper is not None
    maps = [walk_tables(rp.lower, mem), walk_tables(rp.upper, mem)]
    return Sweep(cast(Gdb, None), st, mem, st.default_ops, maps=maps, timeout=1,
                 target_version="7.2.22", name="fake")


def _outcome(op: AtOp, va: int, where: str = "TTBR1") -> Outcome:
    return Outcome(scenario="fake", path="fake/TTBR1/sample", kind=Kind.MISMATCH, op=op.value,
                   va=va, el=2, target_version="7.2.22",
                   fields=(FieldDelta("SH", 3, 2),), extra={"why": "sample", "range": where})


@pytest.mark.parametrize(("op", "va"), [
    (AtOp.S1E2R, VA_L1 + (3 << 21) + 0x7000 + 0x18),   # device page
    (AtOp.S1E2W, VA_L1 + (3 << 21) + 0x5000),          # read-only page: permission fault
    (AtOp.S1E0R, VA_L1 + (1 << 30) + 0x1234_5000),     # 1G block, no EL0 access
    (AtOp.S1E2R, VA_L1 + (3 << 21) + 0x8000),          # invalid level 3 entry
])
def test_exported_scenario_gives_the_model_the_same_answer(op: AtOp, va: int,
                                                           tmp_path: Path) -> None:
    mem = FakeRam(words())
    sweep = _sweep(mem)
    live = sweep.model(op, va)
    text = scenario_text(sweep, _outcome(op, va), kernel="fake-kernel", ram="128M")
    path = tmp_path / "x.yaml"
    path.write_text(text)
    scenario = parse_scenario(text, path)
    assert [(p.op, p.va, p.el, p.pan) for p in scenario.probes] == [(op, va, 2, False)]
    setup = scenario.build()
    again = run_model(setup, sweep.state.features, RAM_SIZE)[0]
    assert (again.kind, again.par, again.mask) == (live.kind, live.par, live.mask)
    # Only the descriptors of this walk were copied, at their own addresses.
    steps = [s for s in live.trace if s.addr is not None]
    for s in steps:
        assert setup.memory[s.addr] == (s.desc or 0).to_bytes(8, "little")
    assert f"regs:\n  SCTLR_EL1: 0x{sweep.state.sysregs['SCTLR_EL1']:x}" in text


def test_a_ttbr0_export_says_it_may_not_reproduce() -> None:
    sweep = _sweep(FakeRam(words()))
    text = scenario_text(sweep, _outcome(AtOp.S1E2R, 0x1000, "TTBR0"), kernel="k", ram="128M")
    assert "may not reproduce" in " ".join(text.split())


def test_descriptors_below_the_arena_cannot_be_exported() -> None:
    low_l2 = 0x4030_0000  # in the harness's region, below ARENA_PA
    low = {(a - L2 + low_l2 if L2 <= a < L2 + 0x1000 else a): v for a, v in words().items()}
    low[L1] = low_l2 | 0b11
    sweep = _sweep(FakeRam(low))
    with pytest.raises(ExportError, match="below"):
        scenario_text(sweep, _outcome(AtOp.S1E2R, VA_L1 + (3 << 21)), kernel="k", ram="128M")


def test_a_known_divergence_is_exported_with_its_known_entry(tmp_path: Path) -> None:
    sweep = _sweep(FakeRam(words()))
    va = VA_L1 + (3 << 21) + 0x7000
    known = {"qemu": "<8.2", "why": "PAR_EL1.SH: it's forced", "link": "https://example.org/x"}
    o = _outcome(AtOp.S1E2R, va)
    o = Outcome(**{**o.__dict__, "kind": Kind.KNOWN, "extra": {**o.extra, "known": known}})
    text = scenario_text(sweep, o, kernel="k", ram="128M")
    scenario = parse_scenario(text, tmp_path / "k.yaml")
    (k,) = scenario.known
    assert k.why == known["why"] and k.link == known["link"]
    assert k.applies(scenario.probes[0], "7.2.22") and not k.applies(scenario.probes[0], "8.2.0")
