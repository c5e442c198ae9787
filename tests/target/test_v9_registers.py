"""The Armv8.9 registers of the register table on QEMU 11 (marker qemu).

The harness writes TCR2_ELx, PIR_ELx, PIRE0_ELx, MAIR2_ELx and HCRX_EL2 by
MSR with the encodings of xcheck.sysregs; reading them back by name over the
stub checks those encodings against QEMU's own register names (no
disassembler on this machine knows them). On a CPU without the features the
harness must not write them at all (their encodings are UNDEFINED), and the
probe still runs.
"""

from __future__ import annotations

import pytest
from qemuprofiles import installed_profile

from xcheck.arch.par import decode_par
from xcheck.machine import RAM_BASE, AtOp, MachineSetup, Probe, sysreg_defaults
from xcheck.target.guest import QemuTarget

pytestmark = pytest.mark.qemu

VALUES = {
    "TCR2_EL1": 0b10010, "PIR_EL1": 0x1234_5678_9ABC_DEF0, "PIRE0_EL1": 0x0FED_CBA9_8765_4321,
    "MAIR2_EL1": 0x44FF_0400, "TCR2_EL2": 0b10, "PIR_EL2": 0x1111_2222_3333_4444,
    "PIRE0_EL2": 0x5555_6666_7777_8888, "MAIR2_EL2": 0x04FF, "HCRX_EL2": 1 << 14,
}


def _setup() -> MachineSetup:
    regs = {**sysreg_defaults(), **VALUES}
    return MachineSetup(regs, {}, (Probe(AtOp.S1E1R, RAM_BASE, 2),))


def test_harness_writes_the_v9_registers_qemu11() -> None:
    with QemuTarget(installed_profile("qemu11")) as t:
        (par,) = t.run(_setup())
        assert isinstance(par, int) and decode_par(par)["F"] == 0
        for name, value in VALUES.items():
            assert t.gdb.read_reg(name) == value, name


def test_harness_leaves_them_alone_without_the_features_qemu10() -> None:
    with QemuTarget(installed_profile("qemu10")) as t:
        (par,) = t.run(_setup())
        assert isinstance(par, int) and decode_par(par)["F"] == 0
