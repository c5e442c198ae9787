"""Signatures, the YAML writer, the sparse memory image (no QEMU)."""

from __future__ import annotations

import gc
import random
from pathlib import Path

import pytest
from fuzzcpu import QEMU72_MAX, knobs

from xcheck.arch.at import translate
from xcheck.arch.memory import MemoryImage
from xcheck.check import compare
from xcheck.fuzz.case import make_case, model_results
from xcheck.fuzz.command import parse_duration
from xcheck.fuzz.memory import sparse
from xcheck.fuzz.session import _young_collections, known_signatures
from xcheck.fuzz.signature import (
    Signature,
    last_rule,
    normalize,
    signature,
    target_error_signature,
)
from xcheck.fuzz.yamlout import dump, hexnum
from xcheck.machine import RAM_BASE, MachineSetup, ProbeResult, TargetException
from xcheck.model import arch_states, reads, run_model, variant_differs
from xcheck.scenario.loader import parse_scenario
from xcheck.target.errors import TargetError

RAM = 128 << 20


def test_normalize_blanks_numbers_not_names() -> None:
    assert normalize("VA[63:39] not all zeros, TCR.EPD1 == 1 at 0x4000_1000, S2AP=0b01") \
        == "VA[#:#] not all zeros, TCR.EPD1 == # at #, S2AP=#"


def test_signatures_of_a_case_on_a_fake_target() -> None:
    """A target that answers every probe with PAR = 0 (a success at PA 0,
    Device-nGnRnE, Non-shareable) fails differently per model answer."""
    case = make_case(37, 0, knobs(), RAM)
    sigs = set()
    for p, m in zip(case.setup.probes, case.model, strict=True):
        o = compare(case.scenario, p, 0, m, target="qemu", version="1.0")
        sig = signature(o, 0, m)
        if m.kind == "par" and m.par & m.mask == 0:
            assert sig is None
        elif m.kind != "par":
            assert sig is not None and sig.fields == (f"model:{m.kind}",)
        elif m.fault is not None:
            assert sig is not None and "F" in sig.fields and sig.op == p.op.value
        if sig is not None:
            sigs.add(sig.family)
    assert all(s.op == "*" for s in sigs)


def test_an_unexpected_exception_names_its_class() -> None:
    case = make_case(37, 0, knobs(), RAM)
    p, m = case.setup.probes[0], case.model[0]
    exc = TargetException(esr=0x96000010, elr=0, far=0, el=2)
    o = compare(case.scenario, p, exc, m, target="qemu", version="1.0")
    sig = signature(o, exc, m)
    assert sig is not None and sig.fields[0] == "target:exception EC=0x25"


def test_target_errors_group_by_message_shape() -> None:
    a = target_error_signature("QEMU died (signal 6): the guest stopped at 0x40201000")
    b = target_error_signature("QEMU died (signal 6): the guest stopped at 0x40202000")
    assert a == b and a.kind == "target-error"


def test_a_nested_kvm_job_that_never_answers_is_one_signature_whatever_the_job() -> None:
    # the nested-KVM target numbers its jobs "j-<n>" (test_kvm_target checks it)
    def lost(job: str) -> str:
        return f"no answer from the agent in time (waiting for 'RESULT {job} '); console output:\n"

    a, b = target_error_signature(lost("j-7")), target_error_signature(lost("j-1653"))
    assert a == b and "'RESULT j-# '" in a.rule


def test_a_qemu_abort_is_told_apart_by_its_assertion() -> None:
    def died(where: str) -> str:
        return str(TargetError("QEMU died (signal 6)", f"qemu-system-aarch64: target/arm/"
                               f"{where}: Assertion `x' failed.\n"))

    a = target_error_signature(died("helper.c:3508: do_ats_write"))
    b = target_error_signature(died("helper.c:3511: do_ats_write"))
    c = target_error_signature(died("internals.h:812: arm_fi_to_lfsc"))
    assert a == b != c
    assert a.rule == "QEMU died (signal #): do_ats_write: Assertion `x' failed"


def test_slug_and_json_round_trip() -> None:
    sig = Signature("mismatch", "S1E1R", ("SH",), "AArch64.EncodePAR")
    assert sig.slug.startswith("s1e1r-sh-")
    assert sig.family.slug.startswith("sh-")
    assert Signature.from_json(sig.to_json()) == sig


def test_known_signatures_are_read_from_comments(tmp_path: Path) -> None:
    sig = Signature("mismatch", "*", ("F",), "rule #")
    (tmp_path / "x.yaml").write_text(f"# signature: {sig.key()}\nname: x\n")
    (tmp_path / "bad.yaml").write_text("# signature: {not json\n")
    assert known_signatures((tmp_path, tmp_path / "missing")) == {sig: tmp_path / "x.yaml"}


def test_known_signatures_are_found_in_subfolders(tmp_path: Path) -> None:
    """A finding recorded anywhere under a --known folder (scenarios/stage2,
    not only scenarios/fuzz-findings) is known; a file may record several."""
    a = Signature("mismatch", "*", ("F",), "rule #")
    b = Signature("target-error", "*", (), "QEMU died (signal #)")
    (tmp_path / "stage2").mkdir()
    (tmp_path / "stage2" / "y.yaml").write_text(f"# signature: {a.key()}\n"
                                                f"# signature: {b.key()}\nname: y\n")
    assert known_signatures((tmp_path,)) == {a: tmp_path / "stage2" / "y.yaml",
                                             b: tmp_path / "stage2" / "y.yaml"}


def test_signatures_name_what_disabled_stage_1() -> None:
    """HCR_EL2.TGE == 1 disables the EL1&0 stage 1 (AArch64.S1Enabled) like
    SCTLR_EL1.M == 0 does; the signature tells the two apart."""
    def rule(hcr: str) -> str:
        s = parse_scenario(f"""
name: s1-off
regs: {{HCR_EL2: {hcr}, SCTLR_EL1: {{M: 1}}}}
probes: [{{op: S1E1R, va: 0x4000_0000, el: 2}}]
""", Path("off.yaml"))
        (m,) = model_results(s.build(), QEMU72_MAX, RAM)
        return last_rule(m.trace)

    assert rule("{TGE: 1}") == "AArch64.EncodePAR [S1 off (HCR_EL2.TGE == #)]"
    assert rule("{DC: 1}") == "AArch64.EncodePAR [S1 off (HCR_EL2.DC == #)]"


def test_dump_writes_hex_and_names_that_load_back() -> None:
    assert hexnum(0x4000_1000) == "0x4000_1000" and hexnum(0) == "0x0"
    tcr = {"TG0": "4K", "T0SZ": 25, "TG1": "4K", "T1SZ": 25}
    doc = {"name": "t", "about": "a: b # c", "regs": {"TCR_EL1": tcr,
           "MAIR_EL1": {"Attr0": 0xFF}},
           "tables": {"TTBR0_EL1": [{"va": 0x8000_0000, "pa": 0x4800_0000, "size": "4K"}],
                      "TTBR1_EL1": []},
           "probes": [{"op": "S1E1R", "va": 0xFFFF_0000_0000_0000, "el": 2, "pan": 0}]}
    text = dump(doc, ["first line", "second"])
    assert text.startswith("# first line\n# second\nname: t\n")
    assert "Attr0: 0xff" in text and "va: 0xffff_0000_0000_0000" in text
    s = parse_scenario(text, Path("t.yaml"))
    assert s.about == "a: b # c" and s.probes[0].va == 0xFFFF_0000_0000_0000


def test_sparse_memory_reads_the_same() -> None:
    r = random.Random(1)
    for _ in range(50):
        mem, a = {}, 0x4040_0000
        for _ in range(r.randint(1, 4)):
            n = r.choice([8, 64, 4096, 65536])
            b = bytearray(n)
            for _ in range(r.randint(0, 20)):
                b[r.randrange(n)] = r.randrange(1, 256)
            mem[a] = bytes(b)
            a += n + r.choice([0, 8, 4096])
        full = MemoryImage(mem, RAM_BASE, RAM)
        lazy = MemoryImage(sparse(mem), RAM_BASE, RAM)
        for addr in range(0x4040_0000 - 16, a + 16, 8):
            assert full.read64(addr) == lazy.read64(addr)
        assert sum(map(len, sparse(mem).values())) <= sum(map(len, mem.values()))


def test_sparse_keeps_runs_of_non_zero_pieces_trimmed_to_words() -> None:
    """512-byte pieces: 0x000 and 0x200 hold bytes (one run), 0x400..0x7ff
    are zero, 0x800 holds one byte; each run loses its zero words at both ends."""
    data = bytearray(0x1000)
    data[0x10], data[0x208], data[0x900] = 1, 2, 3
    assert sparse({0x4040_0000: bytes(data)}) == {
        0x4040_0010: bytes(data[0x10:0x210]), 0x4040_0900: bytes(data[0x900:0x908])}
    # adjacent blocks are one image: a run goes on across their boundary
    assert sparse({0x4040_0000: bytes(0x1ff) + b"\1", 0x4040_0200: b"\2" + bytes(0x1ff)}) == {
        0x4040_01f8: bytes(7) + b"\1\2" + bytes(7)}


def test_sparse_case_memory_is_small() -> None:
    case = make_case(41, 3, knobs(), RAM)
    full = case.scenario.build().memory
    assert sum(map(len, case.setup.memory.values())) < sum(map(len, full.values()))
    assert QEMU72_MAX.pa_range_bits == 52


def test_durations() -> None:
    assert parse_duration("90") == 90 and parse_duration("10m") == 600
    assert parse_duration("1.5h") == 5400
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("ten minutes")


class _GivesUpOnBigBatches:
    """A fake target whose harness gives up on batches of more than 16 probes."""

    version = "1.0"
    ram_size = RAM

    def __init__(self) -> None:
        self.id_regs: dict[str, int] = {}
        self.batches: list[int] = []

    def run(self, setup: MachineSetup, mode: str = "batch") -> list[ProbeResult]:
        self.batches.append(len(setup.probes))
        if len(setup.probes) > 16:
            raise TargetError("3 probe(s) did not run (the program gave up after 64 "
                              "unexpected exceptions)")
        return [0] * len(setup.probes)


def test_batches_run_again_small_when_the_harness_gives_up(tmp_path: Path) -> None:
    from xcheck.fuzz.session import Fuzzer, FuzzOptions
    from xcheck.target.profile import load_profile

    fz = Fuzzer(load_profile(), FuzzOptions(out=tmp_path))
    fake = _GivesUpOnBigBatches()
    fz.target = fake
    case = make_case(43, 1, knobs(), RAM)
    got = fz.run_target(case.setup)
    assert len(got) == len(case.setup.probes) > 16
    assert fake.batches[0] == len(case.setup.probes) and max(fake.batches[1:]) <= 16


def test_success_signatures_tell_the_way_to_the_output() -> None:
    rules = set()
    for index in range(30):
        for m in make_case(47, index, knobs(), RAM).model:
            if m.kind == "par" and m.fault is None:
                rules.add(last_rule(m.trace))
    assert "AArch64.EncodePAR [S1 walk]" in rules
    assert any(r.startswith("AArch64.EncodePAR [S1 off (") for r in rules)
    assert any("S2" in r for r in rules) and all(r.startswith("AArch64.EncodePAR [") for r in rules)


@pytest.mark.parametrize("cpu", ["qemu72", "qemu10"])
def test_the_model_skips_only_variants_that_cannot_differ(cpu: str) -> None:
    """run_model translates a probe again under an IMPLEMENTATION DEFINED
    variant only when the variant decodes the registers the probe reads
    differently; the answers are those of translating under every variant."""
    skipped = 0
    for index in range(12):
        setup = make_case(11, index, knobs(cpu), RAM).setup
        mem = MemoryImage(setup.memory, RAM_BASE, RAM)
        first = setup.probes[0]
        decoded = arch_states(setup, knobs(cpu).features, first.el, first.pan)
        for probe, res in zip(setup.probes, run_model(setup, knobs(cpu).features, RAM),
                              strict=True):
            every = {(a.kind, a.par & a.mask)
                     for st in decoded
                     for r in [translate(probe.op, probe.va,
                                         st.with_pstate(probe.el, probe.pan), mem)]
                     for a in (r, *r.alternatives)}
            assert {(a.kind, a.par & a.mask) for a in (res, *res.alternatives)} == every
        skipped += sum(not (reads(decoded[0], p.op, p.va) & variant_differs(decoded[0], v))
                       for p in setup.probes for v in decoded[1:])
    assert skipped > 0


def test_permission_encoding_names_are_blanked_with_their_number() -> None:
    """One rule of AArch64.S2CheckPermissions (S2Dirty with software dirty
    state) is one signature whatever S2PIR encoding granted the write."""
    a = normalize("PIIndex 3: S2BasePerm=0b1111 (RW+puX): S2Dirty (bit 7) == 0")
    b = normalize("PIIndex 0: S2BasePerm=0b0100 (WO): S2Dirty (bit 7) == 0")
    assert a == b == "PIIndex #: S2BasePerm=# (#): S2Dirty (bit #) == #"
    assert normalize("PIR entry 0b0011 (RX (overlay)) gives no write permission") \
        == "PIR entry # (#) gives no write permission"
    assert normalize("AF == 0 and VTCR_EL2.HA == 0 (AArch64.S2Walk)") \
        == "AF == # and VTCR_EL2.HA == # (AArch64.S2Walk)"


def test_known_signatures_hold_only_where_the_bug_is_recorded(tmp_path: Path) -> None:
    """A signature recorded by a scenario whose `known:` entries name QEMU
    before 8.0 is that bug on 7.2, not on 11.1 (there the same signature is
    another disagreement); an unrecorded finding (no `known:`) counts on
    every version."""
    a = Signature("mismatch", "*", ("F",), "rule #")
    b = Signature("mismatch", "*", ("PA",), "rule #")
    probe = "probes:\n  - {op: S1E1R, va: 0x1000}\n"
    (tmp_path / "old.yaml").write_text(
        f"# signature: {a.key()}\nname: old\n{probe}"
        "known:\n  - {qemu: \"<8.0\", why: a bug fixed in 8.0}\n")
    (tmp_path / "new.yaml").write_text(f"# signature: {b.key()}\nname: new\n{probe}")
    assert known_signatures((tmp_path,), "7.2.22") == {a: tmp_path / "old.yaml",
                                                       b: tmp_path / "new.yaml"}
    assert known_signatures((tmp_path,), "11.1.3") == {b: tmp_path / "new.yaml"}
    assert known_signatures((tmp_path,), "11.1.3/kvm-7.3.4") == {b: tmp_path / "new.yaml"}


def test_fuzzing_collects_the_young_generation_less_often_and_sets_it_back() -> None:
    before = gc.get_threshold()
    with pytest.raises(KeyError), _young_collections(12_345):
        assert gc.get_threshold() == (12_345, *before[1:])
        raise KeyError("a case failed")
    assert gc.get_threshold() == before
