"""The nested-KVM target's host side without QEMU: the job protocol, the
banner, the initramfs archive, the profile options, what is Unsupported, and
the harness options the target uses."""

from __future__ import annotations

import json
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import capstone
import pytest

from xcheck.machine import (
    HARNESS_PA,
    AtOp,
    MachineSetup,
    Probe,
    SecurityState,
    sysreg_defaults,
)
from xcheck.target import harness
from xcheck.target.errors import (
    HarnessError,
    ProfileError,
    ProgramTimeout,
    TargetError,
    Unsupported,
    needs_restart,
)
from xcheck.target.kvm import artifacts, build
from xcheck.target.kvm.protocol import (
    GUEST_RAM_BASE,
    MAX_GROUP,
    MAX_READ_TOTAL,
    MAX_READS,
    MEM_CHUNK,
    Answer,
    Job,
    ProtocolError,
    fit_reads,
    group_lines,
    job_lines,
    parse_answer,
    shared_job_lines,
)
from xcheck.target.kvm.session import parse_banner, qemu_kvm_argv
from xcheck.target.kvm.target import KvmTarget, guest_hypervisor_for
from xcheck.target.profile import Profile, Timeouts, load_profile

CS = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
HCR_E2H = 1 << 34


# --- jobs -----------------------------------------------------------------


def test_job_lines_leave_out_long_zero_runs_and_split_long_blocks() -> None:
    data = b"\x11" * 8 + bytes(200) + b"\x22" * (MEM_CHUNK + 4)
    lines = job_lines(
        Job("a1", "vhe", [(GUEST_RAM_BASE, data)], GUEST_RAM_BASE, [(GUEST_RAM_BASE, 16)])
    )
    assert lines[0] == "JOB a1 vhe"
    mems = [ln.split() for ln in lines if ln.startswith("MEM")]
    assert mems[0] == ["MEM", f"0x{GUEST_RAM_BASE:x}", "11" * 8]
    assert int(mems[1][1], 16) == GUEST_RAM_BASE + 208 and len(mems[1][2]) == 2 * MEM_CHUNK
    assert int(mems[2][1], 16) == GUEST_RAM_BASE + 208 + MEM_CHUNK and mems[2][2] == "22" * 4
    assert lines[-3:] == [
        f"ENTRY 0x{GUEST_RAM_BASE:x}",
        f"READ 0x{GUEST_RAM_BASE:x} 16",
        "RUN 30000",
    ]


def test_shared_memory_jobs_put_the_blocks_one_after_another() -> None:
    data = b"\x11" * 8 + bytes(200) + b"\x22" * 3
    job = Job("s1", "vhe", [(GUEST_RAM_BASE, data)], GUEST_RAM_BASE, [(GUEST_RAM_BASE, 16)])
    lines, blob = shared_job_lines(job, 1 << 20)
    assert blob == b"\x11" * 8 + b"\x22" * 3
    assert [ln for ln in lines if ln.startswith("MEM")] == [
        f"MEMS 0x{GUEST_RAM_BASE:x} 8", f"MEMS 0x{GUEST_RAM_BASE + 208:x} 3"]
    assert lines[0] == "JOB s1 vhe" and lines[-2:] == [f"READ 0x{GUEST_RAM_BASE:x} 16",
                                                       "RUN 30000"]
    with pytest.raises(ProtocolError, match="exceeds the shared memory"):
        shared_job_lines(job, 10)


def test_a_group_queues_each_job_but_the_last_and_shares_the_memory_out_in_order() -> None:
    a = Job("g1", "vhe", [(GUEST_RAM_BASE, b"\x11" * 8)], GUEST_RAM_BASE, timeout_ms=500)
    b = Job("g2", "nvhe", [(GUEST_RAM_BASE + 64, b"\x22" * 4)], GUEST_RAM_BASE + 4,
            [(GUEST_RAM_BASE, 8)], timeout_ms=700)
    lines, blob = group_lines([a, b], 1 << 20)
    assert lines == [
        "JOB g1 vhe", f"MEMS 0x{GUEST_RAM_BASE:x} 8", f"ENTRY 0x{GUEST_RAM_BASE:x}", "QUEUE",
        "JOB g2 nvhe", f"MEMS 0x{GUEST_RAM_BASE + 64:x} 4", f"ENTRY 0x{GUEST_RAM_BASE + 4:x}",
        f"READ 0x{GUEST_RAM_BASE:x} 8", "RUN 700",
    ]
    assert blob == b"\x11" * 8 + b"\x22" * 4  # the second job's block after the first's
    hex_lines, no_blob = group_lines([a, b])
    assert no_blob == b"" and f"MEM 0x{GUEST_RAM_BASE:x} {'11' * 8}" in hex_lines
    with pytest.raises(ProtocolError, match=f"runs 1 to {MAX_GROUP}"):
        group_lines([a] * (MAX_GROUP + 1))
    with pytest.raises(ProtocolError, match="exceeds the shared memory"):
        group_lines([a, b], 10)


def test_sdata_lines_read_the_shared_memory() -> None:
    shared = bytes(32) + bytes(range(1, 17))
    ans = parse_answer("s1", ["RESULT s1 ok run_us=5", f"SDATA 0x{GUEST_RAM_BASE:x} 16 32",
                              "END s1"], [(GUEST_RAM_BASE, 16)], shared)
    assert ans.data == {GUEST_RAM_BASE: bytes(range(1, 17))}
    with pytest.raises(ProtocolError, match="outside the shared memory"):
        parse_answer("s1", ["RESULT s1 ok", f"SDATA 0x{GUEST_RAM_BASE:x} 16 40"],
                     [(GUEST_RAM_BASE, 16)], shared)


def test_short_zero_runs_are_sent() -> None:
    data = b"\x01" + bytes(10) + b"\x02"
    (mem,) = [
        ln
        for ln in job_lines(Job("a", "nvhe", [(GUEST_RAM_BASE, data)], GUEST_RAM_BASE))
        if ln.startswith("MEM")
    ]
    assert mem.split()[2] == data.hex()


@pytest.mark.parametrize(
    "job, words",
    [
        (Job("bad id", "vhe", [], GUEST_RAM_BASE), "job id"),
        (Job("a", "el3", [], GUEST_RAM_BASE), "job mode"),
        (Job("a", "vhe", [(0x1000, b"x")], GUEST_RAM_BASE), "outside the VM's RAM"),
    ],
)
def test_bad_jobs_are_refused_with_the_reason(job: Job, words: str) -> None:
    with pytest.raises(ProtocolError, match=words):
        job_lines(job)


def test_reads_beyond_the_agents_limit_are_refused_before_sending() -> None:
    many = [(GUEST_RAM_BASE + 0x1000 * i, 8) for i in range(MAX_READS + 1)]
    with pytest.raises(ProtocolError, match=f"at most {MAX_READS} ranges"):
        job_lines(Job("a", "vhe", [], GUEST_RAM_BASE, reads=many))
    with pytest.raises(ProtocolError, match="bytes in all"):
        job_lines(Job("a", "vhe", [], GUEST_RAM_BASE, reads=[(GUEST_RAM_BASE,
                                                              MAX_READ_TOTAL + 8)]))


def test_fit_reads_bridges_the_smallest_gaps_first() -> None:
    a = GUEST_RAM_BASE
    ranges = [(a + 0x9000, 8), (a, 8), (a + 0x10, 8), (a + 0x5000, 16), (a + 0x5800, 8)]
    assert fit_reads(ranges, 5) == sorted(ranges)
    assert fit_reads(ranges, 4) == [(a, 0x18), (a + 0x5000, 16), (a + 0x5800, 8),
                                    (a + 0x9000, 8)]
    assert fit_reads(ranges, 3) == [(a, 0x18), (a + 0x5000, 0x808), (a + 0x9000, 8)]
    assert fit_reads(ranges, 1) == [(a, 0x9008)]


def test_fit_reads_covers_every_range_within_the_limit() -> None:
    words = [(GUEST_RAM_BASE + (i * i * 0x1238) % 0x20_0000 // 8 * 8, 8) for i in range(300)]
    fitted = fit_reads(words, MAX_READS - 1)
    assert len(fitted) == MAX_READS - 1
    assert all(any(a <= w and w + 8 <= a + n for a, n in fitted) for w, _ in words)
    assert all(b[0] > a[0] + a[1] for a, b in pairwise(fitted))
    lines = job_lines(Job("a", "vhe", [], GUEST_RAM_BASE, reads=fitted))
    assert len([ln for ln in lines if ln.startswith("READ ")]) == MAX_READS - 1


# --- answers -------------------------------------------------------------------


def test_answer_fills_read_ranges_with_zeros_between_data_lines() -> None:
    lines = [
        "RESULT j7 ok create_us=12 run_us=34 exits=1 vms=3 mem_kb=900000",
        "OUT 0x100 0xabc",
        "DATA 0x40300008 0102",
        "some kernel noise",
        "KLOG 4 WARNING: at arch/arm64/kvm/at.c",
    ]
    ans = parse_answer("j7", lines, [(0x4030_0000, 16)])
    assert ans.ok and ans.stats["run_us"] == 34 and ans.stats["vms"] == 3
    assert ans.out == {0x100: 0xABC}
    assert ans.data[0x4030_0000] == bytes(8) + b"\x01\x02" + bytes(6)
    assert ans.klog == ("4 WARNING: at arch/arm64/kvm/at.c",)


def test_error_answer_keeps_the_reason() -> None:
    ans = parse_answer("j1", ["RESULT j1 error timeout after 100 ms"], [(0x4030_0000, 8)])
    assert not ans.ok and ans.error == "timeout after 100 ms"
    assert ans.data[0x4030_0000] == bytes(8)


@pytest.mark.parametrize(
    "lines, words",
    [
        (["OUT 0x8 0x1"], "without a RESULT"),
        (["RESULT j2 ok"], "unexpected agent line"),
        (["RESULT j1 ok", "DATA 0x50000000 00"], "outside every READ range"),
        (["RESULT j1 ok", "DATA 0x40300000 0g"], "bad hex"),
        (["RESULT j1 ok run_us=x"], "not a number"),
    ],
)
def test_garbled_answers_raise(lines: list[str], words: str) -> None:
    with pytest.raises(ProtocolError, match=words):
        parse_answer("j1", lines, [(0x4030_0000, 8)])


def test_banner() -> None:
    b = parse_banner(
        "HELLO xcheck-agent 1\nINFO kernel 7.3.4+deb13-arm64\nINFO cap el2=1 e2h0=0 ipa=52\n"
        "INFO kvm kvm [1]: VHE+NV2 mode initialized successfully\n"
    )
    assert (b.protocol, b.kernel) == (1, "7.3.4+deb13-arm64")
    assert b.caps == {"el2": 1, "e2h0": 0, "ipa": 52}
    assert b.shared == 0 and parse_banner("HELLO xcheck-agent 2\nINFO shm 16777216\n").shared \
        == 16 << 20
    assert b.kvm == ("kvm [1]: VHE+NV2 mode initialized successfully",)
    assert parse_banner("HELLO xcheck-agent 1\nINFO nokvm errno=2\n").nokvm == "errno=2"
    assert b.cpus == 1 and parse_banner("HELLO xcheck-agent 3\nINFO cpus 2\n").cpus == 2


def test_qemu_gets_as_many_cpus_as_the_profile_asks_for() -> None:
    argv = qemu_kvm_argv("qemu", machine="virt", cpu="max", memory="1G", kernel=Path("k"),
                         initramfs=Path("i"), append="", console=Path("c"), cpus=2)
    assert argv[argv.index("-smp") + 1] == "2"
    assert artifacts.KvmOptions.from_profile(kvm_profile(vcpus="2")).vcpus == 2


# --- the initramfs and the build cache ---------------------------------------------


def test_newc_archive_members_are_aligned_and_end_with_the_trailer() -> None:
    arc = build.newc_archive(build.initramfs_entries(b"\x7fELF" + bytes(5)))
    names, pos = [], 0
    while True:
        head = arc[pos : pos + 110]
        assert head[:6] == b"070701" and pos % 4 == 0
        fields = [int(head[6 + 8 * k : 14 + 8 * k], 16) for k in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name = arc[pos + 110 : pos + 110 + namesize - 1].decode()
        names.append((name, oct(mode), size))
        pos = pos + 110 + namesize
        pos += -pos % 4
        pos += size + (-size % 4)
        if name == "TRAILER!!!":
            break
    assert pos == len(arc)
    assert ("init", oct(0o100755), 9) in names
    assert names[1][:2] == ("dev/console", oct(0o020600))


def test_build_key_follows_the_source() -> None:
    assert build.build_key(b"a") != build.build_key(b"b")
    assert build.build_key(b"a") == build.build_key(b"a")


def test_find_agent_uses_the_cache_for_this_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    src = tmp_path / "agent.c"
    src.write_text("int main(void) { return 0; }\n")
    assert build.find_agent(src) is None
    entry = tmp_path / "xcheck" / f"kvm-agent-{build.build_key(src.read_bytes())}"
    entry.mkdir(parents=True)
    (entry / build.AGENT_NAME).write_bytes(b"x")
    (entry / build.INITRAMFS_NAME).write_bytes(b"y")
    found = build.find_agent(src)
    assert found is not None and found.initramfs == entry / build.INITRAMFS_NAME
    src.write_text("int main(void) { return 1; }\n")
    assert build.find_agent(src) is None


# --- kernels in the cache ---------------------------------------------------------


def _fake_kernel(root: Path, package: str, version: str) -> Path:
    entry = root / "xcheck" / f"{package}-{version}"
    image = entry / "usr/lib/modules" / package.split("-", 2)[2] / "vmlinuz"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"k")
    (entry / ".xcheck-complete").write_text(json.dumps({"packages": {package: version}}))
    return image


def test_cached_kernel_takes_the_package_or_a_newer_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    want = "linux-binary-7.3.4+deb13-arm64"
    assert artifacts.cached_kernel(want) is None
    _fake_kernel(tmp_path, "linux-binary-7.2.9+deb13-arm64", "7.2.9-1")
    assert artifacts.cached_kernel(want) is None
    newer = _fake_kernel(tmp_path, "linux-binary-7.4.1+deb13-arm64", "7.4.1-1")
    assert artifacts.cached_kernel(want) == newer
    exact = _fake_kernel(tmp_path, want, "7.3.4-1~bpo13+1")
    assert artifacts.cached_kernel(want) == exact


# --- profile options and Unsupported setups -------------------------------------------


def kvm_profile(**options: str) -> Profile:
    base = load_profile("kvm-nested")
    merged = dict(base.options) | options
    return replace(base, options=tuple(sorted(merged.items())))


def test_the_shipped_profile_is_a_kvm_nested_one() -> None:
    p = load_profile("kvm-nested")
    assert p.kind == "kvm-nested" and "gic-version=3" in p.machine
    assert artifacts.KvmOptions.from_profile(p).guest_hypervisor == "auto"


@pytest.mark.parametrize(
    "options, words",
    [
        ({"colour": "red"}, "unknown key"),
        ({"guest_hypervisor": "el3"}, "not one of"),
        ({"vcpus": "0"}, "vcpus: '0' is not a whole number from 1 to 8"),
        ({"vcpus": "two"}, "vcpus: 'two' is not"),
        ({"vcpus": "9"}, "vcpus: '9' is not"),
    ],
)
def test_bad_options_name_what_is_wrong(options: dict[str, str], words: str) -> None:
    with pytest.raises(ProfileError, match=words):
        artifacts.KvmOptions.from_profile(kvm_profile(**options))


def setup_with(hcr: int = 1 << 31, sctlr_el2_m: bool = False, **code_va: int) -> MachineSetup:
    regs = sysreg_defaults() | {"HCR_EL2": hcr}
    if sctlr_el2_m:
        regs["SCTLR_EL2"] |= 1
    return MachineSetup(regs, {}, (Probe(AtOp.S1E2R, HARNESS_PA, 2),), code_va=code_va)


@pytest.mark.parametrize(
    "setup, choice, flavour",
    [
        (setup_with(), "auto", "nvhe"),
        (setup_with(hcr=(1 << 31) | HCR_E2H), "auto", "vhe"),
        (setup_with(), "vhe", "vhe"),  # E2H differs, but only where it does not show
        (setup_with(hcr=(1 << 31) | HCR_E2H), "nvhe", "nvhe"),
    ],
)
def test_guest_hypervisor_follows_or_overrides_e2h(
    setup: MachineSetup, choice: str, flavour: str
) -> None:
    assert guest_hypervisor_for(setup, choice) == flavour


@pytest.mark.parametrize(
    "setup, choice",
    [
        (setup_with(sctlr_el2_m=True), "vhe"),
        (setup_with(hcr=(1 << 31) | HCR_E2H | (1 << 27)), "nvhe"),
    ],
)
def test_a_fixed_guest_hypervisor_that_changes_the_regime_is_unsupported(
    setup: MachineSetup, choice: str
) -> None:
    with pytest.raises(Unsupported, match="E2H"):
        guest_hypervisor_for(setup, choice)


def test_setups_this_target_cannot_run_are_unsupported_before_any_boot() -> None:
    t = KvmTarget(kvm_profile())
    with pytest.raises(Unsupported, match="step mode"):
        t.run(setup_with(), "step")
    with pytest.raises(Unsupported, match="VA 0x12345000 in the EL2 regime"):
        t.run(setup_with(sctlr_el2_m=True, EL2=0x1234_5000))
    with pytest.raises(Unsupported, match="never runs at EL3"):
        t.run(MachineSetup(sysreg_defaults(), {}, (Probe(AtOp.S1E3R, 0, 3),)))
    secure = Probe(AtOp.S1E1R, 0, 1, space=SecurityState.SECURE)
    with pytest.raises(Unsupported, match="in the Secure or Realm state"):
        t.run(MachineSetup(sysreg_defaults(), {}, (Probe(AtOp.S1E1R, 0, 1), secure)))
    with pytest.raises(TargetError, match="TGE"):
        t.run(
            MachineSetup(
                sysreg_defaults() | {"HCR_EL2": (1 << 31) | (1 << 27)},
                {},
                (Probe(AtOp.S1E1R, 0, 1),),
            )
        )


# --- hangs ------------------------------------------------------------------------------


def test_a_job_may_run_in_proportion_to_its_probes_and_never_under_a_tenth() -> None:
    t = KvmTarget(replace(kvm_profile(), timeouts=Timeouts(batch=30.0)))
    assert t.job_timeout(harness.MAX_BATCH) == 30.0
    assert t.job_timeout(harness.MAX_BATCH // 2) == 15.0
    assert t.job_timeout(96) == t.job_timeout(1) == 3.0


def test_a_program_the_agent_stopped_leaves_the_target_usable() -> None:
    """The agent answers a timeout only once the vCPU's thread is back (it
    kicks it until then): the guest serves the next job, no reboot. Any
    other failure of a job still asks for one."""
    program = harness.assemble(setup_with())
    hung = Answer("j1", "timeout after 3000 ms", {}, {}, {})
    with pytest.raises(ProgramTimeout, match="did not finish") as err:
        KvmTarget._results(program, hung, "vhe")
    assert not needs_restart(err.value)
    broken = Answer("j2", "kvm KVM_RUN errno=14 (Bad address)", {}, {}, {})
    with pytest.raises(TargetError, match="KVM_RUN") as err2:
        KvmTarget._results(program, broken, "vhe")
    assert needs_restart(err2.value)
    assert not needs_restart(HarnessError("x")) and not needs_restart(Unsupported("x"))


# --- the harness options --------------------------------------------------------------


def _listing(code: bytes, start: int, end: int) -> list[str]:
    return [
        f"{i.mnemonic} {i.op_str}".strip() for i in CS.disasm(code[start:end], HARNESS_PA + start)
    ]


def test_el1_via_el12_writes_the_el1_regime_through_el12_names() -> None:
    setup = MachineSetup(sysreg_defaults(), {}, (Probe(AtOp.S1E1R, 0, 2),))
    p = harness.assemble(setup, el1_via_el12=True)
    regs = {
        ln.split()[1].rstrip(",")
        for ln in _listing(p.code, p.entry, p.mmu_stop)
        if ln.startswith("msr")
    }
    assert {"sctlr_el12", "tcr_el12", "ttbr0_el12", "ttbr1_el12", "mair_el12", "vbar_el12"} <= regs
    assert not regs & {"sctlr_el1", "tcr_el1", "ttbr0_el1", "mair_el1", "vbar_el1"}
    assert "tcr_el2" in regs and "vttbr_el2" in regs


def test_exit_store_turns_the_el2_mmu_off_and_stores_to_the_exit_address() -> None:
    setup = MachineSetup(sysreg_defaults(), {}, (Probe(AtOp.S1E1R, 0, 2),))
    p = harness.assemble(setup, exit_store=0x0F00_0000)
    tail = _listing(p.code, p.end, p.end + 64)
    msr = tail.index("msr sctlr_el2, x1")
    store = next(i for i, ln in enumerate(tail) if ln.startswith("str xzr, [x1]"))
    assert msr < store and "mov x1, #0xf000000" in tail[msr:store]
    assert (
        harness.assemble(setup).code
        == harness.assemble(setup, el1_via_el12=False, exit_store=None).code
    )


def test_a_kernel_warning_is_summed_up_by_its_heading() -> None:
    from xcheck.target.kvm.target import kernel_complaint

    warn = "4 WARNING: arch/arm64/kvm/nested.c:288 at kvm_walk_nested_s2+0x3dc/0x688"
    text = kernel_complaint(["4  perform_access+0x4c/0x1f0", warn, "4 Modules linked in:", warn])
    assert text.count("kvm_walk_nested_s2") == 1 and "(4 log lines)" in text
