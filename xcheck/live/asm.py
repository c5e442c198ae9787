"""The few A64 encodings live mode adds to xcheck.target.isa.

Arm ARM DDI 0487, C6.2 (LDR immediate, SUBS immediate); each encoding is
checked against an independent disassembler in tests/live/test_asm.py.
"""

from __future__ import annotations


def _reg(r: int) -> int:
    if not 0 <= r <= 31:
        raise ValueError(f"register number {r} out of range")
    return r


def ldr_post(rt: int, rn: int, imm: int) -> int:
    """LDR Xt, [Xn], #imm (post-index, C6.2 LDR immediate)."""
    assert -256 <= imm < 256
    return 0xF8400400 | (imm & 0x1FF) << 12 | _reg(rn) << 5 | _reg(rt)


def str_post(rt: int, rn: int, imm: int) -> int:
    """STR Xt, [Xn], #imm (post-index, C6.2 STR immediate)."""
    assert -256 <= imm < 256
    return 0xF8000400 | (imm & 0x1FF) << 12 | _reg(rn) << 5 | _reg(rt)


def subs_imm(rd: int, rn: int, imm12: int) -> int:
    """SUBS Xd, Xn, #imm12 (C6.2 SUBS immediate)."""
    assert 0 <= imm12 < 4096
    return 0xF1000000 | imm12 << 10 | _reg(rn) << 5 | _reg(rd)
