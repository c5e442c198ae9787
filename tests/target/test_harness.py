"""The generated in-guest program, read back with capstone (no QEMU)."""

from __future__ import annotations

import struct

import capstone
import pytest
from test_isa import at_texts

from xcheck.arch.features import Features
from xcheck.machine import (
    HARNESS_CODE_SIZE,
    HARNESS_DATA_PA,
    HARNESS_PA,
    AtOp,
    MachineSetup,
    Probe,
    TargetException,
    sysreg_defaults,
)
from xcheck.target import harness

CS = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)


def listing(program: harness.Program, start: int, end: int, base: int = HARNESS_PA) -> list[str]:
    code = program.code[start:end]
    return [f"{i.mnemonic} {i.op_str}".strip() for i in CS.disasm(code, base + start)]


def table_ats(program: harness.Program) -> list[str]:
    """The AT instructions the batch program's loops run, in order: the
    stub each probe table entry names."""
    stubs = [harness.STUBS + (meta >> 32) for (_, meta) in struct.iter_unpack("<2Q", program.table)]
    return [listing(program, stub, stub + 4)[0] for stub in stubs]


PROBES = (
    Probe(AtOp.S1E1R, 0x1000, 2),
    Probe(AtOp.S1E1RP, 0x2000, 1, True),
    Probe(AtOp.S12E1W, 0x3000, 2),
    Probe(AtOp.S1E0W, 0x4000, 1, True),
)


def test_groups_keep_first_appearance_order() -> None:
    gs = harness.groups_of(PROBES)
    assert [(g.el, g.pan, g.indices) for g in gs] == [(2, False, (0, 2)), (1, True, (1, 3))]


def test_batch_program_runs_each_probe_once_in_group_order() -> None:
    p = harness.assemble(MachineSetup(sysreg_defaults(), {}, PROBES))
    body = listing(p, p.resume, p.end + 12)
    assert not [line for line in body if line.startswith("at ")]  # the ATs are the stubs
    assert body.count("blr x1") == 2 and body.count("isb") >= 2  # one loop per group
    assert sum(line.startswith("b.lo") for line in body) == 2
    assert "msr pan, #0" in body
    assert body.count("eret") == 1 and body.count("hvc #0") == 1
    # the end: X1 = SCTLR_EL2 with M = 0 and its RES1 bits, then the teardown's
    # MSR; the driver stops at the next PC, the same for every program
    assert body[-3:] == ["mov x1, #0x830", "movk x1, #0x30c5, lsl #16",
                         f"b #0x{HARNESS_PA + harness.TEARDOWN:x}"]
    assert listing(p, harness.TEARDOWN, harness.HALT) == ["msr sctlr_el2, x1"]
    assert p.stop == HARNESS_PA + harness.HALT == HARNESS_PA + harness.TEARDOWN + 4
    # The table, group after group: each probe's VA, index and the stub of its op.
    entries = [struct.unpack_from("<2Q", p.table, 16 * k) for k in range(len(PROBES))]
    assert [meta & 0xFFFF_FFFF for _, meta in entries] == [0, 2, 1, 3]
    for va, meta in entries:
        probe = PROBES[meta & 0xFFFF_FFFF]
        stub = harness.STUBS + (meta >> 32)
        assert va == probe.va
        assert listing(p, stub, stub + 8) == [at_texts(probe.op, 0)[0], "ret"]
    assert p.initial_data()[p.table_offset :] == p.table


def test_each_group_loops_over_its_part_of_the_table() -> None:
    """X15 and X16 of a group's loop bound its entries (16 bytes each) in
    the data half as that EL sees it (X20)."""
    setup = MachineSetup(sysreg_defaults(), {}, PROBES, code_va={"EL10": 0x7FE0_0000})
    p = harness.assemble(setup)
    body = listing(p, p.resume, p.end, p.el2_base)
    regs: dict[str, int] = {}
    bounds = []
    for line in body:
        op, _, args = line.partition(" ")
        if op in ("mov", "movk") and args.startswith(("x15", "x16", "x20")):
            reg, imm = args.split(", #")[0], args.split("#")[1]
            shift = int(args.rsplit("#", 1)[1], 0) if "lsl" in args else 0
            old = regs.get(reg, 0) if op == "movk" else 0
            regs[reg] = old & ~(0xFFFF << shift) | int(imm.split(",")[0], 0) << shift
        if op == "blr":
            bounds.append((regs["x20"], regs["x15"], regs["x16"]))
    table = p.table_offset
    assert bounds == [
        (HARNESS_PA + HARNESS_CODE_SIZE, HARNESS_PA + HARNESS_CODE_SIZE + table,
         HARNESS_PA + HARNESS_CODE_SIZE + table + 32),
        (0x7FE0_0000 + HARNESS_CODE_SIZE, 0x7FE0_0000 + HARNESS_CODE_SIZE + table + 32,
         0x7FE0_0000 + HARNESS_CODE_SIZE + table + 64),
    ]


def test_programs_of_one_shape_share_their_code() -> None:
    """Other VAs and ops in the same groups: the same code, another table."""
    other = tuple(Probe(AtOp.S1E1W, p.va + 0x1000, p.el, p.pan) for p in PROBES)
    a = harness.assemble(MachineSetup(sysreg_defaults(), {}, PROBES))
    b = harness.assemble(MachineSetup(sysreg_defaults(), {}, other))
    assert a.code == b.code and a.table != b.table
    assert [g.indices for g in b.groups] == [(0, 2), (1, 3)]


def test_setup_clears_hcr_before_el1_registers_and_writes_sctlr_el2_last() -> None:
    regs = sysreg_defaults() | {"HCR_EL2": (1 << 31) | (1 << 34), "SCTLR_EL1": 0x30D0_0801}
    p = harness.assemble(MachineSetup(regs, {}, PROBES[:1]))
    seg_a = listing(p, p.entry, p.mmu_stop)
    msrs = [line.split()[1].rstrip(",") for line in seg_a if line.startswith("msr")]
    assert msrs.index("hcr_el2") < msrs.index("sctlr_el1")
    assert msrs.count("hcr_el2") == 2 and msrs.index("sctlr_el1") < len(msrs) - 1 - msrs[
        ::-1
    ].index("hcr_el2")
    assert msrs[-1] == "sctlr_el2"
    assert "tlbi alle2" in seg_a and "tlbi alle1" in seg_a


def test_vectors_are_aligned_and_branch_to_the_handlers() -> None:
    p = harness.assemble(MachineSetup(sysreg_defaults(), {}, PROBES))
    for base in (harness.VEC_EL2, harness.VEC_EL1):
        for slot in range(16):
            first = listing(p, base + slot * 0x80, base + slot * 0x80 + 8)
            assert (
                first[0] == f"mov x27, #{slot:#x}" if slot > 9 else first[0] == f"mov x27, #{slot}"
            )
            assert first[1].startswith("b #")


def test_relocated_el2_regime_uses_code_va() -> None:
    setup = MachineSetup(
        sysreg_defaults(), {}, PROBES, code_va={"EL2": 0x20_0000, "EL10": 0x7FE0_0000}
    )
    p = harness.assemble(setup)
    assert (p.el2_base, p.el1_base) == (0x20_0000, 0x7FE0_0000)


def test_a_relocated_harness_turns_the_mmu_on_at_mmu_on() -> None:
    """With the harness at a VA other than its PA, segment A ends by a
    branch to MMU_ON (MSR SCTLR_EL2, X1), whose next instruction is where
    the driver stops (the same for every such program); segment B starts
    where it does when the MSR is in place."""
    here = harness.assemble(MachineSetup(sysreg_defaults(), {}, PROBES))
    moved = harness.assemble(MachineSetup(sysreg_defaults(), {}, PROBES,
                                          code_va={"EL2": 0x20_0000}))
    assert listing(moved, harness.MMU_ON, harness.MMU_ON + 4) == ["msr sctlr_el2, x1"]
    assert moved.mmu_stop == harness.MMU_ON + 4
    assert here.mmu_stop == here.resume - 4  # the branch to resume, after the MSR in place
    assert listing(here, here.mmu_stop - 4, here.mmu_stop) == ["msr sctlr_el2, x1"]
    assert moved.resume == here.resume
    assert listing(moved, moved.resume - 8, moved.resume - 4) == [
        f"b #{HARNESS_PA + harness.MMU_ON:#x}"]


def test_step_mode_stops_on_a_nop_right_after_each_loops_store() -> None:
    setup = MachineSetup(sysreg_defaults(), {}, PROBES, code_va={"EL10": 0x7FE0_0000})
    p = harness.assemble(setup)
    for op in AtOp:  # the stubs the table names
        stub = harness.STUBS + harness.STUB_SLOT[op]
        at, ret = listing(p, stub, stub + 8)
        assert at in at_texts(op, 0) and ret == "ret"
    bases = {2: p.el2_base, 1: p.el1_base}
    for g in p.groups:
        at = g.stored - bases[g.el]  # the VA of the group's regime
        # the PAR stored to its slot, then the NOP the driver jumps over,
        # then the loop's compare: one stop per probe, the PAR in memory
        assert listing(p, at - 8, at + 8) == [
            "mrs x1, par_el1", "str x1, [x20, x21, lsl #3]", "nop", "cmp x15, x16"]
    assert len({g.stored for g in p.groups}) == len(p.groups)


def test_decode_results() -> None:
    p = harness.assemble(MachineSetup(sysreg_defaults(), {}, PROBES))
    data = bytearray(p.initial_data())
    data[0:8] = (0x4000_1A00).to_bytes(8, "little")
    rec = p.records_offset + harness.RECORD * 1
    data[rec : rec + 32] = b"".join(
        v.to_bytes(8, "little") for v in (1 | 1 << 8, 0x0200_0000, 0x4020_3000, 0)
    )
    out, setup_exc = harness.decode_results(p, bytes(data))
    assert out[0] == 0x4000_1A00
    assert out[1] == TargetException(esr=0x0200_0000, elr=0x4020_3000, far=0, el=1)
    assert out[2] == harness.SENTINEL
    assert setup_exc is None


def test_only_registers_the_cpu_has_are_written() -> None:
    """TTBR1_EL2 exists only with FEAT_VHE and MSR PAN, #imm only with
    FEAT_PAN (D24.2; C6.2 MSR immediate): on a CPU without them (an Armv8.0
    core such as Cortex-A57) either would be UNDEFINED, so the program for
    that CPU has neither."""
    v80 = Features(vh=False, pan=0, pa_range_bits=44)
    setup = MachineSetup(sysreg_defaults(), {}, (Probe(AtOp.S1E2R, 0x1000, 2),))
    full = listing(harness.assemble(setup), harness.PROGRAM, harness.PROGRAM + 0x800)
    old = listing(
        harness.assemble(setup, features=v80), harness.PROGRAM, harness.PROGRAM + 0x800
    )
    assert any(line.startswith("msr ttbr1_el2") for line in full)
    assert "msr pan, #0" in full
    assert not any(line.startswith("msr ttbr1_el2") for line in old)
    assert not any(line.startswith("msr pan") for line in old)
    assert any(line.startswith("msr ttbr0_el2") for line in old)


def test_pan_probes_need_feat_pan() -> None:
    setup = MachineSetup(sysreg_defaults(), {}, (Probe(AtOp.S1E1R, 0x1000, 2, True),))
    with pytest.raises(ValueError, match="FEAT_PAN"):
        harness.assemble(setup, features=Features(pan=0))


def test_e2h_without_vhe_is_the_el2_regime() -> None:
    """HCR_EL2.E2H is RES0 without FEAT_VHE (D24.2 HCR_EL2): EL2 code runs
    in the EL2 regime, so the EL2&0 placement of the harness is not used."""
    regs = sysreg_defaults() | {"HCR_EL2": 1 << 31 | 1 << 34}
    assert harness.el2_regime(regs) == "EL20"
    assert harness.el2_regime(regs, Features(vh=False)) == "EL2"


def test_the_loader_copies_each_block_and_branches_to_the_entry() -> None:
    p = harness.assemble(MachineSetup(sysreg_defaults(), {}, PROBES))
    body = listing(p, harness.LOADER, harness.VEC_EL3)
    body = body[: body.index("br x2") + 1]
    assert body[0] == f"mov x1, #0x{HARNESS_DATA_PA + harness.LOAD_LIST:x}"
    assert body[1] == "ldp x2, x3, [x1], #0x10"  # the entry
    assert "str x5, [x3]" in body and "str x6, [x3, #8]" in body
    # the instruction stream synchronized with the stores before the branch (B2.4.4)
    assert body[-5:] == ["dsb sy", "ic iallu", "dsb sy", "isb", "br x2"]


def test_load_list_layout() -> None:
    got = harness.load_list(0x4020_2800,
                            [(0x4020_2800, bytes(range(32))), (0x4020_3000, b"x" * 16)])
    assert got is not None
    words = struct.unpack(f"<{len(got) // 8}Q", got)
    assert words[:4] == (0x4020_2800, 0, 0x4020_2800, 32)
    assert got[32:64] == bytes(range(32))
    assert words[8:10] == (0x4020_3000, 16) and got[80:96] == b"x" * 16
    assert words[-2:] == (0, 0)
    assert harness.load_list(0x4020_2800, [(0x4020_2808, bytes(16))]) is None  # unaligned
