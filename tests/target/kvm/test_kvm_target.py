"""The nested-KVM target end to end: QEMU 10 boots Debian's arm64 kernel, the
agent runs jobs in nested VMs at vEL2 (markers qemu, slow; one boot for the
module). Skipped, with the reason, when `make kvm` has not been run.

Expected PARs come from the architecture: with every stage of translation off
the PA is the VA (Arm ARM D8.2.11); a 1GB block maps its VA range to the block
base plus the low 30 bits (D8.3); with PSTATE.PAN = 1, AT S1E1RP faults on a
page EL0 can access, with a permission fault (PAN2, D8.4.2 and C5.5 AT S1E1RP);
a stage 2 set up by the guest hypervisor adds its own mapping (D8.2, AT S12E1R).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from xcheck.arch.features import Features
from xcheck.arch.memory import MemoryImage
from xcheck.arch.par import decode_par
from xcheck.check import check_scenario
from xcheck.machine import (
    ARENA_PA,
    HARNESS_PA,
    RAM_BASE,
    AtOp,
    MachineSetup,
    Probe,
    TargetException,
    sysreg_defaults,
    word_spans,
)
from xcheck.outcome import FAILING, Kind
from xcheck.scenario.loader import load_scenario, parse_scenario
from xcheck.target import isa
from xcheck.target.doctor import FEATURE_LABELS, doctor
from xcheck.target.errors import ProgramTimeout, QemuLaunchError
from xcheck.target.kvm.protocol import EXIT_PA, MAX_READS
from xcheck.target.kvm.target import KvmTarget
from xcheck.target.profile import load_profile

pytestmark = [pytest.mark.qemu, pytest.mark.slow]

HCR_RW, HCR_VM, HCR_E2H = 1 << 31, 1 << 0, 1 << 34
FST_TRANSLATION_L1, FST_PERMISSION_L1 = 0b000101, 0b001101


@pytest.fixture(scope="module")
def kvm() -> Iterator[KvmTarget]:
    target = KvmTarget(load_profile("kvm-nested"))
    try:
        target.start()
    except QemuLaunchError as err:
        pytest.skip(f"nested-KVM target unavailable: {err}")
    try:
        yield target
    finally:
        target.close()


def pa_of(par: object) -> int:
    assert isinstance(par, int), par
    d = decode_par(par)
    assert d["F"] == 0, f"PAR reports a fault: 0x{par:x}"
    return d["PA"] << 12


def fault_of(par: object) -> int:
    assert isinstance(par, int), par
    d = decode_par(par)
    assert d["F"] == 1, f"PAR reports no fault: 0x{par:x}"
    return d["FST"]


def field(par: object, name: str) -> int:
    assert isinstance(par, int), par
    return decode_par(par)[name]


def program(words: list[int]) -> list[tuple[int, bytes]]:
    return [(HARNESS_PA, b"".join(w.to_bytes(4, "little") for w in words))]


# --- identity ------------------------------------------------------------------


def test_identifies_qemu_and_the_guest_kernel(kvm: KvmTarget) -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+/kvm-\d+\.\d+(\.\d+)?", kvm.version), kvm.version
    assert kvm.kernel_release
    mmfr1 = kvm.id_regs["ID_AA64MMFR1_EL1"]
    assert kvm.id_regs["ID_AA64MMFR0_EL1"] != 0
    assert mmfr1 >> 20 & 0xF != 0, "FEAT_PAN at vEL2"
    assert kvm.ram_size == 128 << 20


# --- what the guest hypervisor sees ---------------------------------------------------

NEEDS_DIRTY_STATE = """
name: needs-dirty-state
about: needs hardware dirty state management (FEAT_HAFDBS, HAFDBS = 2)
requires: [HAFDBS_DIRTY]
probes:
  - {op: S1E2R, va: 0x4000_1000, el: 2}
"""


def test_doctor_shows_the_cpu_the_guest_hypervisor_sees(kvm: KvmTarget) -> None:
    """`xcheck doctor --config kvm-nested` decodes the ID registers read at vEL2
    (KVM's sanitised view, without FEAT_NV), not the host QEMU's."""
    out = io.StringIO()
    code = doctor(load_profile("kvm-nested"), Console(file=out, width=200, highlight=False))
    text = out.getvalue()
    assert code == 0, text
    for name, value in kvm.id_regs.items():
        assert re.search(rf"{name} \(at vEL2\)\s*│\s*0x{value:016x}", text), name
    feats = Features.from_id_regs(kvm.id_regs)
    assert feats.nv == 0, "KVM shows its guest hypervisor no FEAT_NV"
    for name in ("nv", "hafdbs", "pa_range_bits", "lva"):
        value = getattr(feats, name)
        shown = ("yes" if value else "no") if isinstance(value, bool) else str(value)
        label = re.escape(FEATURE_LABELS[name])
        assert re.search(rf"{label}\s*│\s*{shown} │", text), (name, shown)


def test_requires_is_judged_on_the_cpu_the_guest_hypervisor_sees(kvm: KvmTarget) -> None:
    """The host QEMU's CPU has dirty state management; KVM hides it at vEL2."""
    assert Features.from_id_regs(kvm.id_regs).hafdbs < 2
    scenario = parse_scenario(NEEDS_DIRTY_STATE, Path("needs-dirty-state.yaml"))
    (outcome,) = check_scenario(kvm, scenario, target_name="kvm-nested")
    assert outcome.kind is Kind.SKIPPED and outcome.detail == "the CPU lacks HAFDBS_DIRTY"


# --- AT with translation off ----------------------------------------------------------


@pytest.mark.parametrize("e2h", [0, 1], ids=["nvhe", "vhe"])
def test_mmu_off_pa_is_va_at_vel2_and_vel1(kvm: KvmTarget, e2h: int) -> None:
    regs = sysreg_defaults() | {"HCR_EL2": HCR_RW | e2h * HCR_E2H}
    vas = [RAM_BASE + 0x1000 * k for k in (1, 7, 300)]
    ops2 = (AtOp.S1E1R, AtOp.S1E1W, AtOp.S1E0R, AtOp.S1E2R, AtOp.S12E1R, AtOp.S12E0W)
    probes = tuple(Probe(op, va, 2) for op in ops2 for va in vas)
    probes += tuple(Probe(op, va, 1) for op in (AtOp.S1E1R, AtOp.S1E0W) for va in vas)
    got = kvm.run(MachineSetup(regs, {}, probes))
    assert [pa_of(r) for r in got] == [p.va for p in probes]


# --- a stage 1 built by hand --------------------------------------------------------


def block_1g(pa: int, ap: int) -> int:
    """Stage 1 level 1 block: AttrIndx 0, AP, Inner Shareable, AF."""
    return pa | 0b01 | ap << 6 | 0b11 << 8 | 1 << 10


def stage1_setup(probes: tuple[Probe, ...], e2h: int) -> MachineSetup:
    """EL1&0 stage 1 on, 4KB granule, T0SZ = 25 (start level 1): VA 1-2 GB is
    RAM for EL1 only (AP 00), VA 2-3 GB the same RAM for EL0 too (AP 01)."""
    regs = sysreg_defaults()
    regs["HCR_EL2"] = HCR_RW | e2h * HCR_E2H
    regs["SCTLR_EL1"] |= 1 | 1 << 2 | 1 << 12  # M, C, I: with C = 0 ATTR may read Non-cacheable
    regs["TCR_EL1"] = 25 | 0b01 << 8 | 0b01 << 10 | 0b11 << 12 | 1 << 23 | 0b010 << 32
    regs["MAIR_EL1"] = 0xFF
    regs["TTBR0_EL1"] = ARENA_PA
    table = bytearray(4096)
    table[8:16] = block_1g(RAM_BASE, 0b00).to_bytes(8, "little")
    table[16:24] = block_1g(RAM_BASE, 0b01).to_bytes(8, "little")
    return MachineSetup(regs, {ARENA_PA: bytes(table)}, probes)


@pytest.mark.parametrize("e2h", [0, 1], ids=["nvhe", "vhe"])
def test_stage1_blocks_and_pan_aware_at(kvm: KvmTarget, e2h: int) -> None:
    el1_only, el0_too, unmapped = 0x4000_5000, 0x8000_5000, 0xC000_5000
    probes = (
        Probe(AtOp.S1E1R, el1_only, 2),
        Probe(AtOp.S1E1W, el0_too, 2),
        Probe(AtOp.S1E1R, unmapped, 2),
        Probe(AtOp.S1E1RP, el0_too, 1, pan=True),
        Probe(AtOp.S1E1WP, el0_too, 1, pan=True),
        Probe(AtOp.S1E1RP, el1_only, 1, pan=True),
        Probe(AtOp.S1E1RP, el0_too, 1, pan=False),
        Probe(AtOp.S1E0R, el1_only, 1),
    )
    got = kvm.run(stage1_setup(probes, e2h))
    assert pa_of(got[0]) == el1_only
    assert pa_of(got[1]) == RAM_BASE + 0x5000
    assert field(got[1], "ATTR") == 0xFF
    assert fault_of(got[2]) == FST_TRANSLATION_L1
    assert fault_of(got[3]) == FST_PERMISSION_L1
    assert fault_of(got[4]) == FST_PERMISSION_L1
    assert pa_of(got[5]) == el1_only
    assert pa_of(got[6]) == RAM_BASE + 0x5000
    assert fault_of(got[7]) == FST_PERMISSION_L1


def test_stage2_set_up_by_the_guest_hypervisor(kvm: KvmTarget) -> None:
    """VTCR_EL2: 4KB, T0SZ 25, SL0 = 1 (start level 1), PS 40 bits; IPA 2-3 GB
    maps to RAM (S2AP RW, MemAttr Normal WB); stage 1 off, so IPA = VA."""
    regs = sysreg_defaults()
    regs["HCR_EL2"] = HCR_RW | HCR_VM
    regs["VTCR_EL2"] = 1 << 31 | 25 | 0b01 << 6 | 0b01 << 8 | 0b01 << 10 | 0b11 << 12 | 0b010 << 16
    regs["VTTBR_EL2"] = ARENA_PA + 0x1000
    table = bytearray(4096)
    s2_block = RAM_BASE | 0b01 | 0b1111 << 2 | 0b11 << 6 | 0b11 << 8 | 1 << 10
    table[16:24] = s2_block.to_bytes(8, "little")
    probes = (
        Probe(AtOp.S12E1R, 0x8000_3000, 2),
        Probe(AtOp.S12E0W, 0x8000_4000, 2),
        Probe(AtOp.S1E1R, 0x8000_3000, 2),
        Probe(AtOp.S12E1R, 0xC000_0000, 2),
    )
    got = kvm.run(MachineSetup(regs, {ARENA_PA + 0x1000: bytes(table)}, probes))
    assert pa_of(got[0]) == RAM_BASE + 0x3000
    assert pa_of(got[1]) == RAM_BASE + 0x4000
    assert pa_of(got[2]) == 0x8000_3000  # stage 1 only: the IPA
    assert field(got[3], "F") == 1 and field(got[3], "S") == 1  # a stage 2 fault


# --- what goes wrong ------------------------------------------------------------------


def test_an_undefined_at_at_vel1_is_reported_per_probe(kvm: KvmTarget) -> None:
    """AT S1E2R is UNDEFINED at EL1 (C5.5): the EL1 handler records it, the
    other probes still run."""
    probes = (Probe(AtOp.S1E2R, RAM_BASE, 1), Probe(AtOp.S1E1R, RAM_BASE + 0x2000, 1))
    got = kvm.run(MachineSetup(sysreg_defaults(), {}, probes))
    assert isinstance(got[0], TargetException) and got[0].el == 1
    assert got[0].esr >> 26 == 0x00  # EC: unknown reason
    assert pa_of(got[1]) == RAM_BASE + 0x2000


def test_malformed_jobs_get_an_error_and_the_agent_keeps_serving(kvm: KvmTarget) -> None:
    s = kvm.session
    s.send_raw("JOB m1 vhe\nMEM 0x40200000 0g\nRUN 1000\n")
    assert s.expect_line("RESULT m1 ") == "RESULT m1 error bad hex in MEM"
    s.expect_line("END m1")
    s.send_raw("JOB m2 vhe\nFROB 1\nRUN 1000\n")
    assert "unknown command FROB" in s.expect_line("RESULT m2 ")
    s.expect_line("END m2")
    s.send_raw("JOB m3 vhe\nMEM 0x1000 00\nRUN 1000\n")
    assert "outside RAM" in s.expect_line("RESULT m3 ")
    s.expect_line("END m3")
    s.send_raw("JOB m4 vhe\nRUN 1000\n")
    assert "no ENTRY" in s.expect_line("RESULT m4 ")
    s.expect_line("END m4")
    s.send_raw("garbage\n")
    assert s.expect_line("ERROR") == "ERROR no job open for garbage"
    s.ping()


def test_a_program_that_faults_is_an_error_answer(kvm: KvmTarget) -> None:
    """A load from an address with neither RAM nor a device: KVM exits with an
    MMIO read, which the agent reports."""
    words = [*isa.mov_imm(2, 0x0A00_0000), 0xF9400041, isa.b(0)]  # LDR X1, [X2]
    ans = kvm.run_job("vhe", program(words), HARNESS_PA, timeout=5)
    assert ans.error == "mmio read at 0xa000000"
    ok = kvm.run_job("nvhe", program([*isa.mov_imm(2, EXIT_PA), isa.str_imm(31, 2, 0)]), HARNESS_PA)
    assert ok.ok, ok.error


def test_a_program_that_hangs_times_out_and_the_agent_goes_on(kvm: KvmTarget) -> None:
    ans = kvm.run_job("vhe", program([isa.b(0)]), HARNESS_PA, timeout=1.0)
    assert ans.error == "timeout after 1000 ms"
    assert re.fullmatch(r"j-\d+", ans.id)  # its number blanked in a fuzz signature
    kvm.session.ping()
    probes = (Probe(AtOp.S1E1R, RAM_BASE + 0x9000, 2),)
    assert pa_of(kvm.run(MachineSetup(sysreg_defaults(), {}, probes))[0]) == RAM_BASE + 0x9000


def test_a_hung_at_is_stopped_early_and_the_same_guest_serves_on(kvm: KvmTarget) -> None:
    """KVM 7.3.4 never answers the AT of kvm-s2-walk-no-memory-hang (recorded
    there). Its job of one probe is stopped after a tenth of the profile's
    batch timeout (job_timeout), as a ProgramTimeout, and the same guest, not
    a rebooted one, runs the next setup."""
    path = Path(__file__).resolve().parents[3] / "scenarios/fuzz-findings"
    setup = load_scenario(path / "kvm-s2-walk-no-memory-hang.yaml").build()
    session = kvm.session
    limit = int(kvm.job_timeout(1) * 1000)
    with pytest.raises(ProgramTimeout, match=f"timeout after {limit} ms"):
        kvm.run(setup)
    assert kvm.session is session
    probes = (Probe(AtOp.S1E1R, RAM_BASE + 0xA000, 2),)
    assert pa_of(kvm.run(MachineSetup(sysreg_defaults(), {}, probes))[0]) == RAM_BASE + 0xA000


def test_an_exception_at_vel2_without_vectors_is_reported(kvm: KvmTarget) -> None:
    """The entry point holds zeros (UDF) and VBAR_EL2 is 0, where there is no
    RAM: the vCPU cannot take the exception anywhere. The agent answers with
    what KVM did, and goes on serving."""
    ans = kvm.run_job("vhe", [], HARNESS_PA, timeout=1.0)
    assert not ans.ok and ans.error
    kvm.session.ping()


def test_descriptors_are_read_back_after_the_job(kvm: KvmTarget) -> None:
    # READ lines after the run return the descriptors the walks read; an AF
    # set by KVM's AT emulation is permitted (D8.5), nothing else may change.
    path = Path(__file__).resolve().parents[3] / "scenarios/access-flag/at-may-set-af.yaml"
    scenario = load_scenario(path)
    out = check_scenario(kvm, scenario)
    assert not [o for o in out if o.kind in FAILING]
    (rb,) = kvm.readbacks
    assert len(rb.ran) == len(out) and len(rb.words) == 16
    image = MemoryImage(scenario.build().memory, RAM_BASE, kvm.ram_size)
    for pa, got in rb.words.items():
        was = image.read64(pa)
        assert was is not None and got & ~(1 << 10) == was & ~(1 << 10)


def test_watched_words_in_more_ranges_than_the_agent_reads_come_back(kvm: KvmTarget) -> None:
    # permissions/hpd1.yaml walks tables spread over more places than the
    # agent's READ limit: the ranges are merged, every watched word comes back.
    path = Path(__file__).resolve().parents[3] / "scenarios/permissions/hpd1.yaml"
    scenario = load_scenario(path)
    out = check_scenario(kvm, scenario)
    assert not [o for o in out if o.kind == Kind.TARGET_ERROR]
    (rb,) = kvm.readbacks
    assert len(word_spans(tuple(rb.words))) >= MAX_READS
    image = MemoryImage(scenario.build().memory, RAM_BASE, kvm.ram_size)
    for pa, got in rb.words.items():
        was = image.read64(pa)
        assert was is not None and got & ~(1 << 10) == was & ~(1 << 10)


def test_the_suite_runner_keeps_the_guest_after_a_stopped_program(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A hung job that the agent stopped (ProgramTimeout) leaves the guest
    usable: `xcheck run` goes on in the same boot, where any other target
    error starts a new one. The hang is kvm-s2-walk-no-memory-hang's, recorded
    for KVM 7.3.4; each target the runner makes is counted."""
    from xcheck import workers

    made: list[object] = []

    root = Path(__file__).resolve().parents[3] / "scenarios"
    scenarios = [load_scenario(root / "fuzz-findings/kvm-s2-walk-no-memory-hang.yaml"),
                 load_scenario(root / "mmu-off/vm-stage1-off.yaml")]
    real = workers.make_target
    monkeypatch.setattr(workers, "make_target", lambda p: made.append(real(p)) or made[-1])
    events = list(workers.run_worker(scenarios, load_profile("kvm-nested"), "batch"))
    if isinstance(events[0], workers.CannotTest):
        pytest.skip(f"nested-KVM target unavailable: {events[0].reason}")
    assert len(made) == 1
    hung, after = events
    assert isinstance(hung, list) and all(o.kind is Kind.KNOWN for o in hung)
    assert isinstance(after, list) and after and not [o for o in after if o.kind in FAILING]
