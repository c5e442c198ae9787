"""The `secure` profile end to end (virt,secure=on: the CPU starts at EL3);
real QEMU, real gdb-multiarch (marker qemu).

With every stage of translation off the PA is the VA (Arm ARM D8.2.11), and
PAR_EL1.NS is UNKNOWN for a Non-secure regime (D24.2 PAR_EL1), so only
F and PA are compared.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from xcheck.check import check_scenario
from xcheck.cli import main
from xcheck.machine import AtOp, MachineSetup, Probe, sysreg_defaults
from xcheck.outcome import Kind
from xcheck.scenario.loader import load_scenario
from xcheck.target.errors import TargetError
from xcheck.target.guest import QemuTarget
from xcheck.target.profile import Profile, load_profile

pytestmark = pytest.mark.qemu

PROBES = (Probe(AtOp.S1E1R, 0x4000_1000, 2), Probe(AtOp.S12E1W, 0x4123_4000, 2),
          Probe(AtOp.S1E0R, 0x4020_0000, 1))
PA = 0xF_FFFF_FFFF_F000


@pytest.fixture(scope="module")
def secure(qemu_profile: Profile) -> Iterator[QemuTarget]:
    with QemuTarget(load_profile("secure")) as t:
        yield t


def test_the_cpu_starts_at_el3_and_the_harness_drops_to_nonsecure_el2(secure: QemuTarget) -> None:
    assert secure.scr_el3 is not None and secure.scr_el3 & 0b1_0000_0001 == 0b1_0000_0001
    for _ in range(2):  # the second setup starts again at EL3
        for mode in ("batch", "step"):
            pars = secure.run(MachineSetup(sysreg_defaults(), {}, PROBES), mode)
            assert [p & (PA | 1) for p in pars if isinstance(p, int)] == [p.va for p in PROBES]
    assert secure.gdb.read_reg("cpsr") >> 2 & 3 == 3


def test_doctor_on_secure_shows_el3_and_the_security_features(qemu_profile: Profile) -> None:
    res = CliRunner().invoke(main, ["doctor", "--config", "secure"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "EL3: the harness drops to Non-secure EL2" in res.output
    row = next(ln for ln in res.output.splitlines() if "FEAT_SEL2" in ln)
    assert "yes" in row  # QEMU 7.2 -cpu max has Secure EL2
    assert "RME level" in res.output


def test_doctor_on_rme_shows_the_granule_protection_configuration(qemu_profile: Profile) -> None:
    if not shutil.which(load_profile("rme").executable):
        pytest.skip("QEMU 11.1 is not installed (run `make qemu11`)")
    res = CliRunner().invoke(main, ["doctor", "--config", "rme"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    row = next(ln for ln in res.output.splitlines() if "RME level" in ln)
    assert row.split()[-2] in ("1", "2", "3")
    assert "granule protection: GPCCR_EL3 = 0x" in res.output
    assert "level 0 GPT entry covers 30 bits" in res.output  # QEMU's L0GPTSZ: 1 GB


def test_at_from_el3_in_each_security_state_matches_the_model(secure: QemuTarget) -> None:
    """The shipped EL3 scenarios on the secure profile: AT S1E3R/S1E3W and the
    EL1&0 operations at EL3 with SCR_EL3.NS = 0 and 1 (known: QEMU < 8.2's
    PAR_EL1.SH for Device memory, recorded in the files)."""
    root = Path(__file__).resolve().parents[2] / "scenarios" / "el3"
    outcomes = [o for f in sorted(root.glob("*.yaml"))
                for o in check_scenario(secure, load_scenario(f))]
    assert len(outcomes) >= 300
    assert {o.kind for o in outcomes} <= {Kind.MATCH, Kind.KNOWN}
    matched = [o.label for o in outcomes if o.kind is Kind.MATCH]
    assert any(lb.startswith("S1E3W") and "el=3" in lb for lb in matched)
    assert any("space=secure" in lb for lb in matched)
    assert any("S12E1R" in lb and "el=3" in lb and "space" not in lb for lb in matched)


def test_el3_probes_are_skipped_with_the_reason_without_el3(target: QemuTarget) -> None:
    path = Path(__file__).resolve().parents[2] / "scenarios" / "el3" / "s1e3-mmu-off.yaml"
    outcomes = check_scenario(target, load_scenario(path))
    assert {o.kind for o in outcomes} == {Kind.SKIPPED}
    assert "need a CPU with EL3" in outcomes[0].detail


def test_an_exception_loop_at_el3_is_reported_and_the_next_setup_runs(
        secure: QemuTarget) -> None:
    """SCTLR_EL3.M = 1 with no tables: the fetch after the MSR takes an
    Instruction Abort to EL3, whose vectors cannot be fetched either."""
    regs = sysreg_defaults() | {"SCTLR_EL3": 0x30C5_0831, "TTBR0_EL3": 0x4100_0000,
                                "TCR_EL3": 0x8080_0019}
    with pytest.raises(TargetError, match="exception loop"):
        secure.run(MachineSetup(regs, {}, (Probe(AtOp.S1E3R, 0x4000_1000, 3),)))
    pars = secure.run(MachineSetup(sysreg_defaults(), {}, PROBES[:1]))
    assert pars[0] == pars[0] & ~PA | 0x4000_1000 and not pars[0] & 1
