"""`xcheck export --format kvm-selftest` without QEMU: the generated C file,
the CPU an nVHE guest hypervisor sees, the console parser, bad input."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from xcheck.cli import main
from xcheck.export import kvm_selftest
from xcheck.export.answers import Cpu, expected
from xcheck.export.selftest_run import parse_console
from xcheck.machine import (
    HARNESS_DATA_PA,
    HARNESS_PA,
    AtOp,
    MachineSetup,
    Probe,
    sysreg_defaults,
)
from xcheck.target.kvm.protocol import EXIT_PA

ROOT = Path(__file__).resolve().parents[2]
HCR_E2H, HCR_TGE = 1 << 34, 1 << 27
VHE_CPU = Cpu("kvm-nested", "10.0.2/kvm-7.3.4", {
    "ID_AA64MMFR0_EL1": 0x0000_0000_0000_1125,  # 4KB, 16KB, 64KB; 48-bit PA
    "ID_AA64MMFR1_EL1": 0x0000_0000_1030_2101,  # VH = 1, PAN = 3, HPDS = 2
    "ID_AA64MMFR2_EL1": 0,
    "ID_AA64PFR0_EL1": 0x1100,  # EL2 and EL3 AArch64 only
}, 128 << 20)
PROBES = (Probe(AtOp.S1E1R, 0x4000_1000, el=2, label="S1E1R va=0x4000_1000 el=2"),
          Probe(AtOp.S1E1W, 0x4000_1000, el=1, label="S1E1W va=0x4000_1000 el=1"))


def _setup(**regs: int) -> MachineSetup:
    return MachineSetup(sysregs={**sysreg_defaults(), **regs}, memory={}, probes=PROBES)


def test_file_names_suit_the_selftest_makefile() -> None:
    assert kvm_selftest.source_name("s2-fault-on-s1-walk") == "xcheck_s2_fault_on_s1_walk"
    assert kvm_selftest.source_name("PAN3/EPAN x") == "xcheck_pan3_epan_x"


def test_an_nvhe_guest_hypervisor_has_no_vhe() -> None:
    """KVM_ARM_VCPU_HAS_EL2_E2H0: ID_AA64MMFR1_EL1.VH reads 0 at vEL2, so the
    answers are computed for a CPU without FEAT_VHE (Arm ARM D24.2)."""
    nvhe = kvm_selftest.cpu_for(VHE_CPU, "nvhe")
    assert VHE_CPU.features.vh and not nvhe.features.vh
    assert nvhe.id_regs["ID_AA64MMFR1_EL1"] == 0x1030_2001
    assert kvm_selftest.cpu_for(VHE_CPU, "vhe") is VHE_CPU


def test_the_c_file_holds_the_program_the_answers_and_the_cpu() -> None:
    setup = _setup()
    cpu = kvm_selftest.cpu_for(VHE_CPU, kvm_selftest.flavour_of(setup, VHE_CPU))
    answers, refused = expected(setup, [cpu])
    assert not refused
    text = kvm_selftest.test_c("mmu-off", "mmu-off.yaml", "MMU off: PA = VA.", setup,
                               answers, cpu)
    assert "// SPDX-License-Identifier: GPL-2.0-only" in text
    assert "#define E2H0\t\t1" in text and "#define N_PROBES\t2" in text
    assert f"#define EXIT_GPA\t0x{EXIT_PA:x}ul" in text
    assert f"#define DATA_GPA\t0x{HARNESS_DATA_PA:x}ul" in text
    assert f"{{0x{HARNESS_PA:x}, " in text  # the program's first word
    assert '{"0 S1E1R va=0x4000_1000 el=2", 0, 1},' in text
    # MMU off: PA = VA, Device-nGnRnE (ATTR 0), PAR.SH = 0b10 (D8.2.11, D24.2 PAR_EL1.SH)
    assert "{0x0000000040001900ul, 0xfffffffffffff9fful, 0},\t/* 1 */" in text
    assert '"ID_AA64MMFR1_EL1"}' in text and "0x10302001ul" in text
    assert "ksft_test_result(ok" in text and "KVM_ARM_VCPU_HAS_EL2_E2H0" in text


def test_setups_the_nested_kvm_program_cannot_run_are_refused() -> None:
    setup = _setup(HCR_EL2=HCR_TGE | HCR_E2H | 1 << 31)
    refused = kvm_selftest.refusals(setup, VHE_CPU)
    assert [r.label for r in refused] == [p.label for p in PROBES]
    assert "TGE = 0" in refused[0].reason


CONSOLE = """\
[    1.0] Run /init as init process
XCHECK-START xcheck_a
Random seed: 0x1
TAP version 13
1..2
# got  PAR 0x1
#   want PAR 0x3
not ok 1 0 S12E1R va=0x8000_0000 el=2 pan=0
[   61.250000] WARNING: arch/arm64/kvm/nested.c:288 at kvm_walk_nested_s2
ok 2 1 S12E1W va=0x8000_0000 el=2 pan=0
# Totals: pass:1 fail:1 xfail:0 xpass:0 skip:0 error:0
XCHECK-EXIT xcheck_a 1
XCHECK-START xcheck_b
TAP version 13
1..0 # SKIP no nested virtualisation
XCHECK-EXIT xcheck_b 4
XCHECK-DONE
"""


def test_the_console_gives_each_tests_results_and_exit_status() -> None:
    a, b = parse_console(CONSOLE)
    assert (a.name, a.status, b.name, b.status) == ("xcheck_a", 1, "xcheck_b", 4)
    assert a.results == [(False, "0 S12E1R va=0x8000_0000 el=2 pan=0",
                          ["got  PAR 0x1", "  want PAR 0x3"]),
                         (True, "1 S12E1W va=0x8000_0000 el=2 pan=0", [])]
    assert b.results == []
    assert a.klog == ["61.250000 WARNING: arch/arm64/kvm/nested.c:288 at kvm_walk_nested_s2"]
    assert b.klog == []


def test_bad_input_is_refused_in_seconds(tmp_path: Path) -> None:
    scenario = str(ROOT / "tests/bisect/sh-mmu-off.yaml")
    cases = [
        (["--format", "kvm-selftest", "--run"], "--run needs --linux-src"),
        (["--linux-src", str(tmp_path)], "are for --format kvm-selftest"),
        (["--format", "kvm-selftest", "--linux-src", str(tmp_path)],
         "is not a Linux source tree"),
        (["--format", "kvm-selftest", "--linux-src", str(tmp_path / "none")],
         "no such file or folder"),
        (["--format", "kvm-selftest", "--config", "kvm-nested", "--config", "qemu10"],
         "takes one --config"),
        (["--format", "kvm-selftest", "--config", "qemu10"], "needs kvm-nested profiles"),
    ]
    for extra, message in cases:
        res = CliRunner().invoke(main, ["export", scenario, "--out", str(tmp_path / "o"),
                                        *extra])
        assert res.exit_code == 2, (extra, res.output)
        assert message in " ".join(res.output.split()), (extra, res.output)
        assert "Traceback" not in res.output and not (tmp_path / "o").exists()
