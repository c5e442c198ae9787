"""The nested-KVM target with two guest CPUs (options: vcpus: 2): a group of
jobs runs at once, one VM on each CPU, and a batch's probes are shared out
over them and come back in probe order (markers qemu, slow; one boot for the
module). Skipped, with the reason, when `make kvm` has not been run.

Expected PARs come from the architecture: with every stage of translation off
the PA is the VA (Arm ARM D8.2.11); AT S1E2R is UNDEFINED at EL1 (C5.5), taken
to EL1 with EC 0 (unknown reason); a 1GB stage 1 block maps its VA range to
the block base plus the low 30 bits (D8.3).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from xcheck.machine import (
    ARENA_PA,
    HARNESS_PA,
    RAM_BASE,
    AtOp,
    MachineSetup,
    Probe,
    TargetException,
    sysreg_defaults,
)
from xcheck.target import isa
from xcheck.target.errors import QemuLaunchError
from xcheck.target.kvm.protocol import EXIT_FREE, EXIT_PA
from xcheck.target.kvm.target import MIN_PART, KvmTarget
from xcheck.target.profile import load_profile

pytestmark = [pytest.mark.qemu, pytest.mark.slow]

HCR_RW, HCR_E2H = 1 << 31, 1 << 34


@pytest.fixture(scope="module")
def kvm2() -> Iterator[KvmTarget]:
    base = load_profile("kvm-nested")
    profile = replace(base, options=tuple(sorted((dict(base.options) | {"vcpus": "2"}).items())))
    target = KvmTarget(profile)
    try:
        target.start()
    except QemuLaunchError as err:
        pytest.skip(f"nested-KVM target unavailable: {err}")
    try:
        yield target
    finally:
        target.close()


def program(words: list[int]) -> list[tuple[int, bytes]]:
    return [(HARNESS_PA, b"".join(w.to_bytes(4, "little") for w in words))]


def stores(value: int) -> list[tuple[int, bytes]]:
    """A program that stores ``value`` to the exit page, then ends."""
    return program([*isa.mov_imm(2, EXIT_PA), *isa.mov_imm(1, value),
                    isa.str_imm(1, 2, EXIT_FREE), isa.str_imm(isa.XZR, 2, 0)])


def test_the_guest_has_two_cpus(kvm2: KvmTarget) -> None:
    assert kvm2.session.banner.cpus == 2


def test_a_group_of_jobs_runs_one_on_each_cpu_and_is_answered_in_order(
    kvm2: KvmTarget,
) -> None:
    answers = kvm2.run_jobs("vhe", [(stores(0x1111), HARNESS_PA, ()),
                                    (stores(0x2222), HARNESS_PA, ())])
    assert [a.error for a in answers] == ["", ""]
    assert [a.out[EXIT_FREE] for a in answers] == [0x1111, 0x2222]
    assert [a.stats["cpu"] for a in answers] == [0, 1]


def test_a_job_that_hangs_times_out_beside_one_that_finishes(kvm2: KvmTarget) -> None:
    hang, done = program([isa.b(0)]), stores(0x3333)
    answers = kvm2.run_jobs("nvhe", [(hang, HARNESS_PA, ()), (done, HARNESS_PA, ())],
                            timeout=1.0)
    assert answers[0].error == "timeout after 1000 ms"
    assert answers[1].ok and answers[1].out[EXIT_FREE] == 0x3333
    kvm2.session.ping()


def test_a_malformed_run_fails_every_job_of_its_group(kvm2: KvmTarget) -> None:
    s = kvm2.session
    s.send_raw(f"JOB q1 vhe\nENTRY 0x{HARNESS_PA:x}\nQUEUE\nJOB q2 vhe\nENTRY 0x{HARNESS_PA:x}\n"
               "RUN 0\n")
    assert "malformed RUN" in s.expect_line("RESULT q1 ")
    s.expect_line("END q1")
    assert "malformed RUN" in s.expect_line("RESULT q2 ")
    s.expect_line("END q2")
    s.ping()


@pytest.mark.parametrize("e2h", [0, 1], ids=["nvhe", "vhe"])
def test_a_batch_is_shared_out_and_comes_back_in_probe_order(kvm2: KvmTarget, e2h: int) -> None:
    """Probes at vEL2 (trapped) and vEL1, MMU off, with an UNDEFINED AT
    S1E2R at vEL1 at an even and an odd position: each job reports its own
    exceptions, every other probe still runs."""
    regs = sysreg_defaults() | {"HCR_EL2": HCR_RW | e2h * HCR_E2H}
    ops = ((AtOp.S1E1R, 2), (AtOp.S1E2R, 2), (AtOp.S12E1W, 2), (AtOp.S1E1R, 1), (AtOp.S1E0W, 1))
    n = 2 * MIN_PART + 37
    probes = []
    for k in range(n):
        op, el = ops[k % len(ops)]
        probes.append(Probe(op, RAM_BASE + 0x1000 * k, el))
    undefined = (10, 101)
    for k in undefined:
        probes[k] = Probe(AtOp.S1E2R, RAM_BASE + 0x1000 * k, 1)
    vms = kvm2.run_job("vhe", stores(0), HARNESS_PA).stats["vms"]
    got = kvm2.run(MachineSetup(regs, {}, tuple(probes)))
    assert kvm2.last_stats["vms"] == vms + 2  # two VMs, one job each
    for k, (probe, r) in enumerate(zip(probes, got, strict=True)):
        if k in undefined:
            assert isinstance(r, TargetException) and r.el == 1 and r.esr >> 26 == 0, (k, r)
        else:
            assert isinstance(r, int) and r & 1 == 0, (k, r)
            assert r & ((1 << 48) - 1) & ~0xFFF == probe.va, (k, hex(r))


def test_each_job_reads_back_the_words_its_probes_walked(kvm2: KvmTarget) -> None:
    """A stage 1 level 1 block (4KB granule, T0SZ 25): the watched descriptor
    comes back from each job's VM, with the probes that ran there."""
    regs = sysreg_defaults()
    regs["HCR_EL2"] = HCR_RW
    regs["SCTLR_EL1"] |= 1
    regs["TCR_EL1"] = 25 | 0b01 << 8 | 0b01 << 10 | 0b11 << 12 | 1 << 23 | 0b010 << 32
    regs["MAIR_EL1"] = 0xFF
    regs["TTBR0_EL1"] = ARENA_PA
    block = RAM_BASE | 0b01 | 0b11 << 8 | 1 << 10  # AttrIndx 0, AP 00, Inner Shareable, AF
    table = bytearray(4096)
    table[8:16] = block.to_bytes(8, "little")
    n = 2 * MIN_PART
    probes = tuple(Probe(AtOp.S1E1R, 0x4000_0000 + 0x1000 * k, 2 - k % 2) for k in range(n))
    got = kvm2.run(MachineSetup(regs, {ARENA_PA: bytes(table)}, probes, watch=(ARENA_PA + 8,)))
    assert all(isinstance(r, int) and r & 1 == 0 and r & ~0xFFF & ((1 << 48) - 1) == p.va
               for p, r in zip(probes, got, strict=True))
    assert len(kvm2.readbacks) == 2
    assert sorted(i for rb in kvm2.readbacks for i in rb.ran) == list(range(n))
    assert [set(rb.ran) for rb in kvm2.readbacks] == [set(range(0, n, 2)), set(range(1, n, 2))]
    assert all(rb.words == {ARENA_PA + 8: block} for rb in kvm2.readbacks)
