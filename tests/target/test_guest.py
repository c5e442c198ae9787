"""The QEMU target end to end: real QEMU, real gdb-multiarch (marker qemu).

Expected PARs come from the architecture: with every stage of translation
off the PA is the VA (Arm ARM D8.2.11, "The effects of disabling address
translation"); with a 1GB block the PA is the block base plus the VA's low
30 bits (D8.3 block descriptors), ATTR = MAIR[AttrIndx] and SH the
descriptor's SH (D24.2 PAR_EL1).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from xcheck.arch.par import decode_par
from xcheck.machine import (
    ARENA_PA,
    HARNESS_DATA_PA,
    HARNESS_PA,
    RAM_BASE,
    AtOp,
    MachineSetup,
    Probe,
    TargetException,
    sysreg_defaults,
)
from xcheck.target import harness
from xcheck.target.errors import QemuLaunchError, TargetError
from xcheck.target.guest import QemuTarget
from xcheck.target.profile import Profile, Timeouts

pytestmark = pytest.mark.qemu

TCR_EL2_RES1 = (1 << 31) | (1 << 23)
BLOCK_1G_RW = 0b01 | 1 << 10 | 0b11 << 8  # block, AF, Inner Shareable, AttrIndx 0, AP RW at EL2


def off_setup(probes: tuple[Probe, ...]) -> MachineSetup:
    return MachineSetup(sysreg_defaults(), {}, probes)


def el2_mmu_setup(va_of_ram: int, probes: tuple[Probe, ...]) -> MachineSetup:
    """EL2 stage 1 on (E2H=0), 4KB granule, T0SZ=25 (start level 1), one
    1GB block mapping VA ``va_of_ram`` to RAM; the harness at its VA there."""
    regs = sysreg_defaults()
    regs["TCR_EL2"] = TCR_EL2_RES1 | 25 | 0b010 << 16
    regs["MAIR_EL2"] = 0xFF
    regs["TTBR0_EL2"] = ARENA_PA
    regs["SCTLR_EL2"] |= 1
    table = bytearray(4096)
    idx = va_of_ram >> 30
    table[8 * idx : 8 * idx + 8] = (RAM_BASE | BLOCK_1G_RW).to_bytes(8, "little")
    return MachineSetup(
        regs, {ARENA_PA: bytes(table)}, probes, code_va={"EL2": va_of_ram + HARNESS_PA - RAM_BASE}
    )


def pa(par: object) -> int:
    assert isinstance(par, int), par
    d = decode_par(par)
    assert d["F"] == 0, f"PAR reports a fault: 0x{par:x}"
    return d["PA"] << 12


def test_identifies_itself(target: QemuTarget) -> None:
    assert target.version[0].isdigit()
    assert target.id_regs["ID_AA64MMFR0_EL1"] != 0
    assert target.phys_mode


def test_mmu_off_pa_is_va(target: QemuTarget) -> None:
    vas = [RAM_BASE + 0x1000 * k for k in range(1, 40)]
    probes = tuple(Probe(op, va, 2) for op in (AtOp.S1E1R, AtOp.S1E2W, AtOp.S12E1R) for va in vas)
    got = target.run(off_setup(probes))
    assert [pa(p) for p in got] == [p.va for p in probes]


def test_batch_and_step_agree(target: QemuTarget) -> None:
    probes = tuple(
        Probe(op, RAM_BASE + 0x5000, el, pan)
        for op in AtOp
        for el in (1, 2)
        for pan in (False, True)
    )
    setup = el2_mmu_setup(0, probes)
    batch = target.run(setup, "batch")
    step = target.run(setup, "step")

    def key(r: object) -> object:  # an exception's ELR is where the AT sat: not comparable
        return (r.esr, r.el) if isinstance(r, TargetException) else r

    assert [key(r) for r in batch] == [key(r) for r in step]
    assert any(isinstance(r, TargetException) for r in batch)  # S1E2* at EL1 is UNDEFINED


def test_undefined_at_el1_is_reported_with_its_syndrome(target: QemuTarget) -> None:
    (got,) = target.run(off_setup((Probe(AtOp.S1E2R, RAM_BASE, 1),)))
    assert isinstance(got, TargetException)
    assert got.esr >> 26 == 0 and got.el == 1  # EC 0: Unknown reason (UNDEFINED), taken to EL1


def test_an_el1_group_that_cannot_fetch_is_the_harness_exception(target: QemuTarget) -> None:
    """Stage 2 on (HCR_EL2.VM = 1) with an empty level 1 table: every IPA
    is a stage 2 Translation fault, so the EL1 group's first instruction
    fetch takes an Instruction Abort from a lower EL to EL2 (EC 0x20; D8.2,
    D24.2 ESR_EL2), and so does every fetch after it. It comes after the EL2
    group's probe: the error names that exception as the harness's own, not
    "gave up" with the exception left in the EL2 probe's slot."""
    regs = sysreg_defaults()
    regs["HCR_EL2"] |= 1  # VM
    regs["VTCR_EL2"] = 1 << 31 | 32 | 1 << 6  # RES1, T0SZ 32, SL0 1: 4KB, start level 1
    regs["VTTBR_EL2"] = ARENA_PA
    probes = (Probe(AtOp.S1E2R, RAM_BASE, 2), Probe(AtOp.S1E1R, RAM_BASE, 1))
    setup = MachineSetup(regs, {ARENA_PA: bytes(4096)}, probes)
    with pytest.raises(TargetError, match=r"took an exception: .*\(EC=0x20\)"):
        target.run(setup, "batch")
    got = target.run(off_setup((Probe(AtOp.S1E1R, RAM_BASE, 2),)))  # the next setup runs
    assert pa(got[0]) == RAM_BASE


def test_el2_stage1_with_the_harness_relocated(target: QemuTarget) -> None:
    # RAM at VA 0: the harness runs at VA 0x20_0000 once the EL2 MMU is on.
    probes = (Probe(AtOp.S1E2R, 0x1234_5000, 2), Probe(AtOp.S1E2W, 0x4000_0000, 2))
    got = target.run(el2_mmu_setup(0, probes))
    assert pa(got[0]) == RAM_BASE + 0x1234_5000
    assert decode_par(got[0])["ATTR"] == 0xFF and decode_par(got[0])["SH"] == 0b11
    assert isinstance(got[1], int) and decode_par(got[1])["F"] == 1  # VA 1GB..2GB unmapped
    assert decode_par(got[1])["FST"] == 0b000101  # translation fault, level 1
    # The next setup starts from a clean machine: EL2 MMU off again.
    assert pa(target.run(off_setup((Probe(AtOp.S1E1R, 0x4000_3000, 2),)))[0]) == 0x4000_3000


def test_code_the_loader_writes_is_the_code_that_runs(target: QemuTarget) -> None:
    # The same probe under programs that differ only in code (MAIR_EL2 as a
    # constant load), the harness at VA = PA (no stop on the way): each
    # PAR.ATTR must be its own setup's MAIR_EL2 Attr0 (D24.2 PAR_EL1.ATTR),
    # so the loader copied that setup's code, and the PA the 1GB block's
    # base plus VA[29:0] (D8.3).
    probe = (Probe(AtOp.S1E2R, 0x4123_4000, 2),)
    assert target._stub is not None
    ram = target._stub.ram
    for k, attr in enumerate((0xFF, 0x44, 0xFF, 0x04)):
        setup = el2_mmu_setup(RAM_BASE, probe)
        setup = replace(setup, sysregs={**setup.sysregs, "MAIR_EL2": attr})
        ram.write(HARNESS_DATA_PA + harness.LOAD_LIST, bytes(8))
        (got,) = target.run(setup)
        assert pa(got) == 0x4123_4000 and decode_par(got)["ATTR"] == attr
        if k:  # the loader ran: its list names the entry
            entry = int.from_bytes(ram.read(HARNESS_DATA_PA + harness.LOAD_LIST, 8), "little")
            assert entry == HARNESS_PA + harness.PROGRAM


def test_a_single_step_ends_after_one_instruction(target: QemuTarget) -> None:
    """The teardown's single step (and a bare stepi): with xcheck's frame
    unwinder in gdb, a step must stop at the next instruction, not run on."""
    g = target.gdb
    nop = HARNESS_PA + 0x8000
    g.write_memory(nop, (0xD503201F).to_bytes(4, "little") * 2)  # NOP; NOP
    g.write_reg("pc", nop)
    g.resume("-exec-step-instruction", 5)
    assert g.read_reg("pc") == nop + 4


def test_tables_from_a_previous_setup_are_cleared(target: QemuTarget) -> None:
    target.run(el2_mmu_setup(0, (Probe(AtOp.S1E2R, 0x1000, 2),)))
    # Same registers, an empty table but for the harness: VA 0x1000 must now fault.
    s = el2_mmu_setup(0, (Probe(AtOp.S1E2R, 0x4000_1000, 2),))
    got = target.run(s)
    assert decode_par(got[0])["F"] == 1


def test_many_probes_span_several_programs(target: QemuTarget) -> None:
    n = 5000
    probes = tuple(Probe(AtOp.S1E1R, RAM_BASE + 0x1000 * (k % 30000), 2) for k in range(n))
    got = target.run(off_setup(probes))
    assert len(got) == n and [pa(g) for g in got[-3:]] == [p.va for p in probes[-3:]]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return (
        Path(f"/proc/{pid}/stat").exists()
        and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    )


def test_a_killed_qemu_is_a_target_error_and_nothing_is_left(qemu_profile: Profile) -> None:
    t = QemuTarget(qemu_profile)
    t.start()
    stub = t._stub
    assert stub is not None and stub.qemu is not None and stub.gdb._proc is not None
    qpid, gpid = stub.qemu.pid, stub.gdb._proc.pid
    assert qpid and _alive(qpid)
    os.kill(qpid, signal.SIGKILL)
    time.sleep(0.2)
    with pytest.raises(TargetError, match="QEMU"):
        t.run(off_setup((Probe(AtOp.S1E1R, RAM_BASE, 2),)))
    t.close()
    assert not _alive(qpid) and not _alive(gpid)


def test_an_exception_loop_is_caught_before_the_timeout(qemu_profile: Profile) -> None:
    """The harness unmapped in the EL2 regime: every fetch, the vector's
    too, takes a Prefetch Abort (D1.3) and the CPU never leaves the vector.
    The driver names the loop; it does not wait for the 30 s batch timeout
    (which would say "did not stop")."""
    prof = replace(qemu_profile, timeouts=Timeouts(launch=15, command=5, batch=30))
    setup = el2_mmu_setup(0, (Probe(AtOp.S1E2R, 0x1000, 2),))
    broken = replace(setup, memory={ARENA_PA: bytes(4096)})
    with QemuTarget(prof) as t:
        with pytest.raises(TargetError, match="exception loop") as err:
            t.run(broken)
        assert "ESR_EL2=0x86" in str(err.value)  # EC 0x21: Instruction Abort, same EL
        assert t._stub is not None and t._stub.qemu is not None
        pid = t._stub.qemu.pid
        got = t.run(off_setup((Probe(AtOp.S1E1R, RAM_BASE, 2),)))  # the target recovers
        assert isinstance(got[0], int) and decode_par(got[0])["F"] == 0
        # by a machine reset (the teardown cannot be fetched), not a new QEMU
        assert t._stub.qemu is not None and t._stub.qemu.pid == pid


def test_missing_binary_is_a_launch_error(qemu_profile: Profile) -> None:
    with pytest.raises(QemuLaunchError, match="not found"):
        QemuTarget(replace(qemu_profile, binary="/nonexistent/qemu-system-aarch64")).start()


def test_qemu_that_never_opens_its_stub(qemu_profile: Profile, tmp_path: Path) -> None:
    fake = tmp_path / "qemu-system-aarch64"
    fake.write_text(
        '#!/bin/sh\n[ "$1" = --version ] && echo "QEMU emulator version 1.2.3" && exit 0\n'
        "echo starting >&2\nsleep 60\n"
    )
    fake.chmod(0o755)
    prof = replace(qemu_profile, binary=str(fake), timeouts=Timeouts(launch=1, command=2, batch=2))
    with pytest.raises(QemuLaunchError, match="did not open its GDB stub") as err:
        QemuTarget(prof).start()
    assert "starting" in str(err.value)
    out = subprocess.run(["pgrep", "-f", str(fake)], capture_output=True, text=True, check=False)
    assert out.stdout.strip() == ""


def test_doctor_exit_codes(qemu_profile: Profile) -> None:
    # the command installed beside the Python running the tests (a venv's)
    xcheck = Path(sys.executable).parent / "xcheck"
    exe = str(xcheck) if xcheck.exists() else "xcheck"
    ok = subprocess.run([exe, "doctor"], capture_output=True, text=True, timeout=60, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "physical-memory mode" in ok.stdout and "usable" in ok.stdout
    bad = subprocess.run(
        [exe, "doctor", "--qemu", "/nonexistent/q"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 125 and "not found" in bad.stdout


def test_guest_ram_is_shared_and_leaves_no_file(qemu_profile: Profile) -> None:
    """The target maps QEMU's RAM (memory-backend-file, share=on): what the
    stub writes the mapping reads and the reverse; the file is unlinked once
    QEMU has it mapped, so nothing is left behind even if xcheck is killed."""
    with QemuTarget(qemu_profile) as t:
        assert t._stub is not None
        ram = t._stub.ram
        t.gdb.write_memory(ARENA_PA, b"\x5a" * 16)
        assert ram.read(ARENA_PA, 16) == b"\x5a" * 16
        ram.write(ARENA_PA + 16, b"\xa5" * 8)
        assert t.gdb.read_memory(ARENA_PA + 16, 8) == b"\xa5" * 8
        assert not ram.path.exists()
        with pytest.raises(TargetError, match="outside the guest's RAM"):
            ram.read(RAM_BASE - 8, 16)
