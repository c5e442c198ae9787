"""live.asm encodings and the sweep program, checked against capstone."""

from __future__ import annotations

import capstone
import pytest

from xcheck.live import asm
from xcheck.live.sweep import program
from xcheck.machine import AtOp

CS = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)


def dis(word: int, addr: int = 0x1000) -> str:
    insns = list(CS.disasm(word.to_bytes(4, "little"), addr))
    assert insns, f"capstone cannot decode 0x{word:08x}"
    return f"{insns[0].mnemonic} {insns[0].op_str}".strip().lower()


def imm(text: str) -> int:
    """The immediate of a disassembly (capstone writes small ones in decimal)."""
    value = int(text.rsplit("#", 1)[1].rstrip("]"), 0)
    return value - (1 << 64) if value >> 63 else value  # capstone shows -8 as 0xfff...f8


@pytest.mark.parametrize(("rt", "rn", "value"),
                         [(0, 5, 8), (30, 1, -8), (4, 2, 255), (7, 3, -256)])
def test_post_index_loads_and_stores(rt: int, rn: int, value: int) -> None:
    for enc, name in ((asm.ldr_post, "ldr"), (asm.str_post, "str")):
        text = dis(enc(rt, rn, value))
        assert text.startswith(f"{name} x{rt}, [x{rn}], #") and imm(text) == value


@pytest.mark.parametrize(("rd", "rn", "value"), [(6, 6, 1), (0, 29, 4095)])
def test_subs_immediate(rd: int, rn: int, value: int) -> None:
    text = dis(asm.subs_imm(rd, rn, value))
    assert text.startswith(f"subs x{rd}, x{rn}, #") and imm(text) == value


def test_registers_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match="out of range"):
        asm.ldr_post(32, 0, 8)


def test_the_sweep_program_loops_once_per_op_and_ends_in_a_branch_to_itself() -> None:
    ops = (AtOp.S1E2R, AtOp.S1E0W)
    words, end = program(ops)
    text = [dis(w, 0x1000 + 4 * i) for i, w in enumerate(words)]
    assert text[end // 4].startswith("b #") and imm(text[end // 4]) == 0x1000 + end
    assert len(words) == 1 + 9 * len(ops)
    for k, op in enumerate(ops):
        block = text[9 * k : 9 * k + 9]
        assert block[:2] == ["mov x5, x1", "mov x6, x3"]
        assert block[2].startswith("ldr x0, [x5], #") and imm(block[2]) == 8
        assert block[3] == f"at {op.value.lower()}, x0"
        assert block[5] == "mrs x4, par_el1"
        assert block[6] == "str x4, [x2], #8"
        assert block[4] == "isb" and block[7].startswith("subs x6, x6, #")
        assert block[8].startswith("b.ne #") and imm(block[8]) == 0x1000 + 4 * (9 * k + 2)
