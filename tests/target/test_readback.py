"""AT side effects read back from memory, on every QEMU the test machine has.

What is permitted comes from the Arm ARM (D8.5: an AT may set AF with
hardware Access flag management and never updates the dirty state, R_ZYGHJ);
what QEMU does differs by version (docs/findings.md): up to 10.0 it sets AF
(permitted) and updates the dirty state (a mismatch, recorded as known), from
10.1 it faults an AT write to a writable-clean page instead (a PAR mismatch,
known) and leaves the stage 1 descriptors alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from qemuprofiles import PROFILES, installed_profile

from xcheck.arch.memory import MemoryImage
from xcheck.check import check_scenario
from xcheck.machine import RAM_BASE, word_spans
from xcheck.outcome import FAILING, Kind
from xcheck.scenario.loader import load_scenario
from xcheck.scenario.versions import parse_version
from xcheck.target.guest import QemuTarget

pytestmark = pytest.mark.qemu

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios" / "access-flag"
AF = 1 << 10


@pytest.fixture(scope="module", params=PROFILES)
def qemu(request: pytest.FixtureRequest) -> Iterator[QemuTarget]:
    prof = installed_profile(request.param)
    with QemuTarget(prof) as target:
        yield target


def _before_10_1(target: QemuTarget) -> bool:
    version = parse_version(target.version)
    assert version is not None
    return version < (10, 1)


def _changed(target: QemuTarget, path: Path) -> dict[int, tuple[int, int]]:
    """The watched words the last run changed: PA -> (written, read back)."""
    setup = load_scenario(path).build()
    image = MemoryImage(setup.memory, RAM_BASE, target.ram_size)
    out = {}
    for rb in target.readbacks:
        for pa, got in rb.words.items():
            was = image.read64(pa)
            assert was is not None
            if got != was:
                out[pa] = (was, got)
    return out


def test_dirty_state_update_by_an_at_is_caught_on_the_probe_that_made_it(
        qemu: QemuTarget) -> None:
    path = SCENARIOS / "at-leaves-memory-unchanged.yaml"
    out = check_scenario(qemu, load_scenario(path))
    assert not [o for o in out if o.kind in FAILING]
    in_memory = {(o.op, o.va) for o in out if any(f.name.startswith("memory@") for f in o.fields)}
    if _before_10_1(qemu):
        # AP[2] cleared at stage 1 (three pages), S2AP[1] set at stage 2
        assert in_memory == {("S1E1W", 0x1000_0000), ("S1E1W", 0x1000_1008),
                             ("S1E1W", 0x1020_0000), ("S12E1W", 0x1040_0010)}
        assert all(o.kind is Kind.KNOWN for o in out if (o.op, o.va) in in_memory)
    else:
        assert in_memory == set()
        assert _changed(qemu, path) == {}
    # the batch could not say which probe changed a word: a step-mode run did
    assert len(qemu.readbacks) == (len(out) if in_memory else 1)


def test_access_flag_set_by_an_at_is_permitted(qemu: QemuTarget) -> None:
    path = SCENARIOS / "at-may-set-af.yaml"
    out = check_scenario(qemu, load_scenario(path))
    assert {o.kind for o in out} == {Kind.MATCH}
    (rb,) = qemu.readbacks  # a batch: one read back
    changed = _changed(qemu, path)
    assert all(got ^ was == AF for was, got in changed.values())
    if _before_10_1(qemu):
        assert len(changed) >= 5  # QEMU sets AF where the walks met AF == 0
    watch = tuple(rb.words)
    assert len(watch) == 16  # every descriptor the 20 walks read, once
    assert len(word_spans(watch)) < len(watch)  # words close together share a stub read


def test_step_mode_reads_back_after_every_probe(qemu: QemuTarget) -> None:
    scenario = load_scenario(SCENARIOS / "at-may-set-af.yaml")
    out = check_scenario(qemu, scenario, mode="step")
    assert {o.kind for o in out} == {Kind.MATCH}
    assert [len(rb.ran) for rb in qemu.readbacks] == list(range(1, len(out) + 1))
