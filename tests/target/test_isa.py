"""Every encoding of xcheck.target.isa, checked against capstone."""

from __future__ import annotations

import capstone
import pytest

from xcheck.machine import AtOp
from xcheck.target import isa

CS = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)


def dis(word: int, addr: int = 0x1000) -> str:
    insns = list(CS.disasm(word.to_bytes(4, "little"), addr))
    assert insns, f"capstone cannot decode 0x{word:08x}"
    i = insns[0]
    return f"{i.mnemonic} {i.op_str}".strip().lower()


ATS1A_SYS = {AtOp.S1E1A: "sys #0, c7, c9, #2", AtOp.S1E2A: "sys #4, c7, c9, #2"}
"""capstone 5 has no alias for the FEAT_ATS1A operations; their SYS operands
are those of C5.4.7 AT S1E1A and C5.4.12 AT S1E2A (op1, CRn, CRm, op2)."""


def at_texts(op: AtOp, rt: int) -> tuple[str, ...]:
    """What capstone may print for AT ``op`` with Xt = ``rt``."""
    return (f"at {op.value.lower()}, x{rt}", f"{ATS1A_SYS.get(op)}, x{rt}")


@pytest.mark.parametrize("op", list(AtOp))
def test_at(op: AtOp) -> None:
    for rt in (0, 7):
        assert dis(isa.at(op, rt)) in at_texts(op, rt)


def test_at_words_from_the_notes() -> None:
    # The words measured by hand on QEMU's stub (shared notes) agree.
    assert isa.at(AtOp.S1E1R) == 0xD5087800
    assert isa.at(AtOp.S12E0W) == 0xD50C78E0


@pytest.mark.parametrize("name", sorted(isa.SYSREGS))
def test_msr_mrs(name: str) -> None:
    got_msr = dis(isa.msr(name, 3))
    got_mrs = dis(isa.mrs(5, name))
    low = name.lower()
    # capstone names registers it does not know generically: s3_<op1>_c<n>_c<m>_<op2>
    op0, op1, crn, crm, op2 = isa.SYSREGS[name]
    generic = f"s{op0}_{op1}_c{crn}_c{crm}_{op2}"
    assert got_msr in (f"msr {low}, x3", f"msr {generic}, x3")
    assert got_mrs in (f"mrs x5, {low}", f"mrs x5, {generic}")


def test_sysreg_names_capstone_knows_are_not_generic() -> None:
    for name in ("SCTLR_EL1", "TCR_EL2", "VTTBR_EL2", "HCR_EL2", "PAR_EL1", "VBAR_EL2", "ELR_EL2"):
        assert dis(isa.msr(name, 1)) == f"msr {name.lower()}, x1"


@pytest.mark.parametrize("op", sorted(isa.TLBI_OPS))
def test_tlbi(op: str) -> None:
    assert dis(isa.tlbi(op)) == f"tlbi {op.lower()}"


@pytest.mark.parametrize(
    "value",
    [
        0,
        1,
        0xFFFF,
        0x10000,
        0x4020_0000,
        0xFFFF_0000_0000_0000,
        0x0000_8000_0000_1234,
        0xFFFF_FFFF_FFFF_FFFF,
    ],
)
def test_mov_imm_loads_the_value(value: int) -> None:
    # Execute the MOVZ/MOVK sequence as capstone decodes it.
    reg = 0
    for word in isa.mov_imm(9, value):
        insn = next(iter(CS.disasm(word.to_bytes(4, "little"), 0)))
        assert insn.op_str.startswith("x9, #")
        imm_text = insn.op_str.split("#", 1)[1]
        imm = int(imm_text.split(",")[0], 0)
        shift = int(imm_text.split("#")[-1], 0) if "lsl" in imm_text else 0
        if insn.mnemonic == "mov":  # capstone shows MOVZ as mov with the shifted value
            reg = imm
        elif insn.mnemonic == "movz":
            reg = imm << shift
        else:
            assert insn.mnemonic == "movk"
            reg = (reg & ~(0xFFFF << shift)) | imm << shift
    assert reg & ((1 << 64) - 1) == value


def test_simple_words() -> None:
    assert dis(isa.NOP) == "nop"
    assert dis(isa.ISB) == "isb"
    assert dis(isa.ERET) == "eret"
    assert dis(isa.dsb("SY")) == "dsb sy"
    assert dis(isa.dsb("ISH")) == "dsb ish"
    assert dis(isa.hvc(0x12)) == "hvc #0x12"
    assert dis(isa.smc(0)) == "smc #0"
    assert dis(isa.brk(1)) == "brk #1"
    assert dis(isa.msr_pan(1)) == "msr pan, #1"
    assert dis(isa.msr_pan(0)) == "msr pan, #0"
    assert dis(isa.mov(3, 4)) == "mov x3, x4"
    assert dis(isa.IC_IALLU) == "ic iallu"


def test_branches() -> None:
    assert dis(isa.b(8), 0x1000) == "b #0x1008"
    assert dis(isa.b(-4), 0x1000) == "b #0xffc"
    assert dis(isa.b_cond("EQ", 16), 0x1000) == "b.eq #0x1010"
    assert dis(isa.b_cond("NE", -8), 0x1000) == "b.ne #0xff8"
    assert dis(isa.br(24)) == "br x24"
    assert dis(isa.blr(14)) == "blr x14"
    assert dis(isa.RET) == "ret"


def test_loads_stores_arith() -> None:
    assert dis(isa.str_imm(1, 20, 16)) == "str x1, [x20, #0x10]"
    assert dis(isa.str_imm(1, 20, 0)) == "str x1, [x20]"
    assert dis(isa.str_reg(1, 20, 21)) == "str x1, [x20, x21, lsl #3]"
    assert dis(isa.add_imm(2, 3, 4)) == "add x2, x3, #4"
    assert dis(isa.add_lsl(26, 23, 21, 5)) == "add x26, x23, x21, lsl #5"
    assert dis(isa.ubfx(26, 25, 26, 6)) == "ubfx x26, x25, #0x1a, #6"
    assert dis(isa.cmp_imm(26, 0x16)) == "cmp x26, #0x16"
    assert dis(isa.cmp_reg(15, 16)) == "cmp x15, x16"
    assert dis(isa.ldp_post(0, 1, 15, 16)) == "ldp x0, x1, [x15], #0x10"
    assert dis(isa.ldp_post(2, 3, 4, -16)) == "ldp x2, x3, [x4], #-0x10"
    assert dis(isa.ubfx(21, 1, 0, 32)) in ("ubfx x21, x1, #0, #0x20", "mov w21, w1")
    assert dis(isa.ubfx(1, 1, 32, 32)) == "lsr x1, x1, #0x20"


def test_unknown_register_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown system register"):
        isa.msr("NOPE_EL1", 0)
