"""Register access over the stub by number, on every QEMU the test machine has.

QEMU 11's stub gives cpsr a flags type that gdb 13 prints as ``[ SP EL=2 ... ]``;
xcheck reads raw values so that 7.2, 10.0 and 11.x read alike.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from qemuprofiles import PROFILES, installed_profile

from xcheck.target.gdb import GdbError
from xcheck.target.stub import AttachedQemu

pytestmark = pytest.mark.qemu



@pytest.fixture(scope="module", params=PROFILES)
def stub(request: pytest.FixtureRequest) -> Iterator[AttachedQemu]:
    prof = installed_profile(request.param)
    attached = AttachedQemu(prof)
    attached.start()
    try:
        yield attached
    finally:
        attached.close()


def test_cpsr_reads_as_a_number_at_el2(stub: AttachedQemu) -> None:
    # The virt machine with virtualization=on resets to EL2h with DAIF masked
    # (PSTATE.M = 0b1001, D/A/I/F set: 0x3c9).
    assert stub.gdb.read_reg("cpsr") & 0x3FF == 0x3C9


def test_register_writes_read_back(stub: AttachedQemu) -> None:
    g = stub.gdb
    g.write_reg("x5", 0x1122_3344_5566_7788)
    assert g.read_reg("x5") == 0x1122_3344_5566_7788
    old = g.read_reg("cpsr")
    g.write_reg("cpsr", old | 1 << 22)  # PSTATE.PAN
    assert g.read_reg("cpsr") >> 22 & 1 == 1
    g.write_reg("cpsr", old)


def test_system_registers_by_name_and_alias(stub: AttachedQemu) -> None:
    g = stub.gdb
    # QEMU up to 10.0 describes SCTLR_EL1 as SCTLR, 11.x by its own name: both
    # read it. M is 0 at reset.
    sctlr = g.read_reg("SCTLR_EL1")
    assert sctlr & 1 == 0
    assert g.read_reg("SCTLR_EL12") == sctlr  # the same register, by any name
    assert g.read_reg("SCTLR_EL2") & 1 == 0
    with pytest.raises(GdbError, match="no register"):
        g.read_reg("NO_SUCH_REG_EL9")
