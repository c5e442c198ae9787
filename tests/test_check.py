"""The comparison: IMPLEMENTATION DEFINED alternatives, known target errors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from xcheck.arch.at import AtResult
from xcheck.arch.features import Features
from xcheck.arch.par import decode_par
from xcheck.check import agrees, compare, memory_fields, target_failed
from xcheck.machine import (
    RAM_BASE,
    AtOp,
    MachineSetup,
    Probe,
    Readback,
    TargetException,
    sysreg_defaults,
)
from xcheck.model import run_model
from xcheck.outcome import FieldDelta, Kind
from xcheck.scenario.loader import Scenario, ScenarioError, parse_scenario
from xcheck.target.errors import TargetError

ABOVE_MAX = """
name: txsz-above-max
about: T0SZ above the maximum is an IMPLEMENTATION DEFINED fault or clamp (AArch64.S1TxSZFaults)
regs:
  SCTLR_EL1: {M: 1, C: 1}
  TCR_EL1: {TG0: 4K, T0SZ: 63, EPD1: 1, IPS: 40bit}
  MAIR_EL1: {Attr0: 0xff}
  TTBR0_EL1: 0x4100_0000
memory:   # a level 3 table: entry 1 is a page (AF, RW at EL1, AttrIndx 0)
  - {addr: 0x4100_0000, words: [0, 0x4800_1743]}
probes:
  - {op: S1E1R, va: 0x1000, el: 2}
"""


def test_impdef_txsz_gives_the_other_choice_as_an_alternative() -> None:
    s = parse_scenario(ABOVE_MAX, Path("x.yaml"))
    setup = s.build()
    (res,) = run_model(setup, Features(ttst=True), 128 << 20)  # FEAT_TTST: max TxSZ 48
    assert res.kind == "par"
    assert len(res.alternatives) == 1
    kinds = {decode_par(res.par)["F"], decode_par(res.alternatives[0].par)["F"]}
    assert kinds == {0, 1}  # one choice clamps (and walks), the other faults at level 0
    fault = res if decode_par(res.par)["F"] else res.alternatives[0]
    assert decode_par(fault.par)["FST"] == 0b000100  # translation fault, level 0
    # A target reporting either answer conforms.
    for got in (res.par, res.alternatives[0].par):
        out = compare(s, setup.probes[0], got, res, target="qemu", version="1.0")
        assert out.kind is Kind.MATCH


def test_a_mismatch_names_the_fields_of_the_closest_permitted_answer() -> None:
    """A PAR that differs from every permitted answer is diffed against the
    one it is closest to: the level 0 fault with a wrong PAR.S names S only,
    not every field of the clamped walk's success."""
    s = parse_scenario(ABOVE_MAX, Path("x.yaml"))
    setup = s.build()
    (res,) = run_model(setup, Features(ttst=True), 128 << 20)
    fault = next(a for a in (res, *res.alternatives) if decode_par(a.par)["F"])
    assert fault is not res  # the model's default choice clamps
    got = fault.par | (1 << 9)  # PAR.S: no choice gives a stage 2 fault
    out = compare(s, setup.probes[0], got, res, target="qemu", version="1.0")
    assert out.kind is Kind.MISMATCH
    assert [f.name for f in out.fields] == ["S"]
    assert out.par_model == fault.par
    assert out.trace == res.render()
    # without the trace (the fuzzer renders only a new finding's): the same outcome
    bare = compare(s, setup.probes[0], got, res, target="qemu", version="1.0", trace=False)
    assert bare.trace == "" and replace(bare, trace=out.trace) == out


def test_no_alternative_where_no_impdef_choice_decides() -> None:
    setup = MachineSetup(sysreg_defaults(), {}, (Probe(AtOp.S1E1R, RAM_BASE, 2),))
    (res,) = run_model(setup, Features(), 128 << 20)
    assert res.alternatives == ()


KNOWN_CRASH = """
name: crash
about: a QEMU abort recorded as known for one probe
probes:
  - {op: [S1E1R, S1E1W], va: 0x4000_0000, el: 2}
known:
  - {op: S1E1W, qemu: ">=9.2", why: "QEMU aborts here"}
"""


def test_a_known_crash_is_known_and_the_rest_target_errors() -> None:
    s = parse_scenario(KNOWN_CRASH, Path("c.yaml"))
    out = target_failed(s, TargetError("QEMU died (signal 6)"), target="qemu", version="10.0.2")
    assert [o.kind for o in out] == [Kind.TARGET_ERROR, Kind.KNOWN]
    assert "QEMU aborts here" in out[1].detail and "signal 6" in out[1].detail
    old = target_failed(s, TargetError("QEMU died"), target="qemu", version="7.2.22")
    assert [o.kind for o in old] == [Kind.TARGET_ERROR, Kind.TARGET_ERROR]


def test_access_flag_update_through_stage2_is_a_permitted_alternative() -> None:
    """TCR.HA = 1, AF = 0: an AT may set AF (D8.5); the write goes through
    stage 2 as a walk access (CreateAccDescTTEUpdate), which a read-only
    stage 2 mapping of the tables refuses: PAR.S = 1, PTW = 1, stage 2 level 1."""
    path = (
        Path(__file__).resolve().parent.parent
        / "scenarios/access-flag/hardware-af-update-through-stage2.yaml"
    )
    s = parse_scenario(path.read_text(), path)
    results = run_model(s.build(), Features.everything(), 128 << 20)
    # (FST, S, PTW) of the answer without the update, where the update's
    # stage 2 Permission fault on the walk (level 1) is the alternative:
    own_fault = {
        # the update comes before the output's stage 2 (AArch64.FullTranslate):
        # its fault is the alternative to the output's Translation fault
        0x1000_2000: (0b000110, 1, 0),
        # a write to a read-only page: AF may be set with the stage 1
        # Permission fault (AArch64.SettingAccessFlagPermitted, CONSTRAINED
        # UNPREDICTABLE), and the write's stage 2 fault then replaces it
        0x1000_3000: (0b001111, 0, 0),
        # the output IPA is write-only at stage 2: its level 3 stage 2
        # Permission fault (R_FQNDX, PTW = 0)
        0x1000_4000: (0b001111, 1, 0),
    }
    for probe, res in zip(s.probes, results, strict=True):
        faults = [a for a in res.alternatives if a.kind == "par" and decode_par(a.par)["F"]]
        if probe.va == 0x1000_1000:
            assert not faults  # AF = 1: nothing to write
            continue
        (alt,) = faults
        f, own = decode_par(alt.par), decode_par(res.par)
        assert (f["FST"], f["S"], f["PTW"]) == (0b001101, 1, 1)
        if probe.va == 0x1000_0000:
            assert own["F"] == 0  # not updating is also permitted
        else:
            assert (own["FST"], own["S"], own["PTW"]) == own_fault[probe.va]


KVM_KNOWN = """
name: kvm-known
about: known entries for QEMU and for KVM's AT emulation
probes:
  - {op: [S1E1R, S1E1W], va: 0x4000_0000, el: 2}
known:
  - {op: S1E1R, qemu: "<8.2", why: "a QEMU bug"}
  - {op: S1E1W, kvm: "<=7.3.4", why: "a KVM bug"}
"""


def test_known_entries_for_kvm_apply_to_the_kvm_target_only() -> None:
    s = parse_scenario(KVM_KNOWN, Path("k.yaml"))
    r, w = s.probes
    qemu_bug, kvm_bug = s.known
    assert qemu_bug.applies(r, "7.2.22") and qemu_bug.applies(r, "7.2.22/kvm-7.3.4")
    assert not qemu_bug.applies(r, "10.0.2/kvm-7.3.4")
    assert kvm_bug.applies(w, "10.0.2/kvm-7.3.4")
    assert not kvm_bug.applies(w, "10.0.2/kvm-7.4.0")
    assert not kvm_bug.applies(w, "10.0.2") and not kvm_bug.applies(w, "7.2.22")


LACKS = """
name: lacks
about: a QEMU bug that shows only on CPUs without FEAT_HPDS
probes:
  - {op: S1E1R, va: 0x4000_1000, el: 2}
known:
  - {op: S1E1R, lacks: [HPDS], why: "TCR.HPD honoured without FEAT_HPDS"}
"""


def test_a_known_entry_with_lacks_applies_only_on_cpus_without_the_feature() -> None:
    s = parse_scenario(LACKS, Path("l.yaml"))
    setup = s.build()
    (probe,) = setup.probes
    (model,) = run_model(setup, Features.everything(), 128 << 20)
    wrong = model.par ^ (1 << 12)  # another PA: a mismatch
    without = compare(s, probe, wrong, model, target="qemu", version="7.2.22",
                      features=Features(hpds=0))
    assert without.kind is Kind.KNOWN and "HPD" in without.detail
    with_it = compare(s, probe, wrong, model, target="qemu", version="7.2.22",
                      features=Features(hpds=1))
    assert with_it.kind is Kind.MISMATCH


def test_lacks_names_known_features(tmp_path: Path) -> None:
    bad = LACKS.replace("[HPDS]", "[HPDX]")
    with pytest.raises(ScenarioError, match=r"l.yaml:7: known\[0\].lacks\[0\]: unknown feature"):
        parse_scenario(bad, Path("l.yaml"))


SIDE_EFFECTS = """
name: side-effects
about: one page with AF == 0 (HA == 1), one writable-clean page (HD == 1)
regs:
  SCTLR_EL1: {M: 1, C: 1}
  TCR_EL1: {TG0: 4K, T0SZ: 25, IPS: 40bit, EPD1: 1, HA: 1, HD: 1}
  MAIR_EL1: {Attr0: 0xff}
pstate: {EL: 2}
tables:
  TTBR0_EL1:
    - {va: 0x1000_0000, pa: 0x8000_0000, size: 4K, af: false}
    - {va: 0x1000_1000, pa: 0x8000_1000, size: 4K, ap: RO_EL1, dbm: 1}
probes:
  - {op: [S1E1R, S1E1W], va: [0x1000_0000, 0x1000_1000], el: 2}
known:
  - {op: S1E1W, va: 0x1000_1000, qemu: "<2", why: an old version updated the dirty state}
"""


def _side_effects() -> tuple[Scenario, list[AtResult], int, int]:
    s = parse_scenario(SIDE_EFFECTS, Path("x.yaml"))
    model = run_model(s.build(), Features().upgraded(), 128 << 20)
    af_page, clean_page = model[0].memory[-1], model[3].memory[-1]
    return s, model, af_page.pa, clean_page.pa


def test_memory_af_set_is_permitted_dirty_state_update_is_a_mismatch() -> None:
    _, model, af_pa, clean_pa = _side_effects()
    words = {w.pa: w.value for m in model for w in m.memory}
    words[af_pa] |= 1 << 10  # AF set: permitted (HA == 1)
    words[clean_pa] &= ~(1 << 7)  # AP[2] cleared: a dirty state update (R_ZYGHJ)
    fields = memory_fields(model, [Readback((0, 1, 2, 3), words)])
    # a batch: the word goes to the probes that read it (both on the clean page)
    assert [len(f) for f in fields] == [0, 1, 0, 1]
    (delta,) = fields[3]
    assert delta.name == f"memory@0x{clean_pa:x}"
    assert delta.target == words[clean_pa] and delta.model == words[clean_pa] | 1 << 7


def test_memory_step_readbacks_name_the_probe_and_report_a_word_once() -> None:
    _, model, _, clean_pa = _side_effects()
    start = {w.pa: w.value for m in model for w in m.memory}
    dirty = {**start, clean_pa: start[clean_pa] & ~(1 << 7)}
    steps = [Readback((0,), start), Readback((0, 1), start), Readback((0, 1, 3), dirty),
             Readback((0, 1, 3, 2), dirty)]
    fields = memory_fields(model, steps)
    assert [len(f) for f in fields] == [0, 0, 0, 1]


def test_memory_fields_make_a_mismatch_or_a_known_one() -> None:
    s, model, _, clean_pa = _side_effects()
    probe = s.build().probes[3]
    delta = (FieldDelta(f"memory@0x{clean_pa:x}", 0, 1 << 7),)
    out = compare(s, probe, model[3].par, model[3], target="qemu", version="3.0",
                  memory=delta)
    assert out.kind is Kind.MISMATCH and out.fields == delta and "R_ZYGHJ" in out.detail
    old = compare(s, probe, model[3].par, model[3], target="qemu", version="1.0", memory=delta)
    assert old.kind is Kind.KNOWN
    assert compare(s, probe, model[3].par, model[3], target="qemu", version="3.0").kind \
        is Kind.MATCH


def test_the_device_tree_region_is_not_read_back() -> None:
    """QEMU puts the device tree at the bottom of RAM (RESERVED_LOW), which
    xcheck never writes and the model reads as zeros: what an AT leaves
    there is not compared; the table arena is."""
    from xcheck.check import _not_ours
    from xcheck.machine import ARENA_PA, RESERVED_LOW

    assert _not_ours(RAM_BASE) and _not_ours(RAM_BASE + RESERVED_LOW - 8)
    assert not _not_ours(ARENA_PA) and not _not_ours(RAM_BASE - 8)


def test_agrees_is_what_compare_calls_a_match() -> None:
    """A PAR equal within the mask (or an IMPLEMENTATION DEFINED
    alternative's), or the exception the model's answer means (UNDEFINED:
    ESR.EC 0, D24.2.39); nothing else. Each case is judged by compare too."""
    ok = 0xFF00_0000_4000_0000  # F = 0, PA 0x40000000, ATTR 0xff (D24.2 PAR_EL1)
    sh_unknown = AtResult("par", ok, ~0x180, (), None, ())  # SH[8:7] masked
    exact = AtResult("par", ok, ~0, (), None, ())
    outer = AtResult("par", ok | 0x100, ~0, (), None, ())  # SH = OSH: the other choice
    with_alt = exact._replace(alternatives=(outer,))
    undefined = AtResult("undefined", 0, 0, (), None, ())
    probe = Probe(AtOp.S1E1R, 0x1000, 1)
    scenario = parse_scenario(
        "name: s\nprobes:\n  - {op: S1E1R, va: 0x1000}\n", Path("s.yaml"))
    cases = [(sh_unknown, ok | 0x180, True), (sh_unknown, ok | 1 << 12, False),
             (sh_unknown, ok | 1, False), (exact, ok | 0x100, False),
             (with_alt, ok | 0x100, True), (with_alt, ok | 0x80, False),
             (undefined, TargetException(0, 0, 0, 1), True),
             (undefined, TargetException(0x18 << 26, 0, 0, 2), False),
             (undefined, ok, False), (exact, TargetException(0, 0, 0, 1), False)]
    for m, got, want in cases:
        assert agrees(m, got) is want, (m.kind, got)
        out = compare(scenario, probe, got, m, target="qemu", version="10.0.0")
        assert (out.kind is Kind.MATCH) is want, (m.kind, got, out.kind)


def test_an_abort_from_an_at_is_a_data_abort_with_cm_and_s1ptw() -> None:
    """A stage 2 fault on the stage 1 walk of an AT at EL1 is taken as a Data
    Abort to EL2 (AArch64.AT) whose syndrome gives the fault (DFSC), that it
    was on the walk (S1PTW = 1) and that an address translation instruction
    took it (CM = 1; D24.2 ESR_EL2, ISS encoding for a Data Abort)."""
    path = Path(__file__).resolve().parent.parent / "scenarios/stage2/s2-fault-on-s1-walk-el1.yaml"
    s = parse_scenario(path.read_text(), path)
    setup = s.build()
    i = next(k for k, p in enumerate(setup.probes) if p.va == 0x3_4000_0000)
    one = replace(setup, probes=(setup.probes[i],))
    (model,) = run_model(one, Features.everything(), 128 << 20)
    assert model.kind == "abort" and model.fault is not None and model.fault.s2fs1walk
    dabt = 0x24 << 26 | 1 << 25 | model.fault.fst  # EC Data Abort from a lower EL, IL
    for iss, want in ((1 << 8 | 1 << 7 | 1 << 6, True),  # CM, S1PTW, WnR (1 for an AT)
                      (1 << 8 | 1 << 7, True),
                      (1 << 6, False),                  # S1PTW and CM 0 (nested KVM 7.3.4)
                      (1 << 7 | 1 << 6, False),         # CM 0
                      (1 << 8 | 1 << 6, False)):        # S1PTW 0
        got = TargetException(dabt | iss, 0, 0x3_4000_0000, 2)
        assert agrees(model, got) is want, hex(dabt | iss)
