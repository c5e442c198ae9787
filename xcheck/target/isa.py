"""A tiny A64 encoder for the instructions xcheck injects into the guest.

Encodings from the Arm ARM (DDI 0487) C6 "A64 Base Instruction
Descriptions"; every one is checked against an independent disassembler in
tests/target/test_isa.py. Functions return 32-bit instruction words.
"""

from __future__ import annotations

from functools import lru_cache

from xcheck import sysregs
from xcheck.machine import AtOp
from xcheck.sysregs import Encoding

XZR = 31

SYSREGS: dict[str, Encoding] = {
    # name: (op0, op1, CRn, CRm, op2), Arm ARM D24 register descriptions;
    # the translation registers come from xcheck.sysregs.TABLE
    **{r.name: r.encoding for r in sysregs.TABLE},
    "MIDR_EL1": (3, 0, 0, 0, 0),
    "ID_AA64PFR0_EL1": (3, 0, 0, 4, 0),
    "ID_AA64PFR1_EL1": (3, 0, 0, 4, 1),
    "ID_AA64ISAR0_EL1": (3, 0, 0, 6, 0),
    "ID_AA64ISAR1_EL1": (3, 0, 0, 6, 1),
    "ID_AA64ISAR2_EL1": (3, 0, 0, 6, 2),
    "ID_AA64MMFR0_EL1": (3, 0, 0, 7, 0),
    "ID_AA64MMFR1_EL1": (3, 0, 0, 7, 1),
    "ID_AA64MMFR2_EL1": (3, 0, 0, 7, 2),
    "ID_AA64MMFR3_EL1": (3, 0, 0, 7, 3),
    "SPSR_EL1": (3, 0, 4, 0, 0),
    "ELR_EL1": (3, 0, 4, 0, 1),
    "SP_EL0": (3, 0, 4, 1, 0),
    "SPSel": (3, 0, 4, 2, 0),
    "CurrentEL": (3, 0, 4, 2, 2),
    "PAN": (3, 0, 4, 2, 3),
    "ESR_EL1": (3, 0, 5, 2, 0),
    "FAR_EL1": (3, 0, 6, 0, 0),
    "PAR_EL1": (3, 0, 7, 4, 0),
    "VBAR_EL1": (3, 0, 12, 0, 0),
    "DAIF": (3, 3, 4, 2, 1),
    "MDCR_EL2": (3, 4, 1, 1, 1),
    "CPTR_EL2": (3, 4, 1, 1, 2),
    "HSTR_EL2": (3, 4, 1, 1, 3),
    "SPSR_EL2": (3, 4, 4, 0, 0),
    "ELR_EL2": (3, 4, 4, 0, 1),
    "SP_EL1": (3, 4, 4, 1, 0),
    "ESR_EL2": (3, 4, 5, 2, 0),
    "FAR_EL2": (3, 4, 6, 0, 0),
    "VBAR_EL2": (3, 4, 12, 0, 0),
    "CNTHCTL_EL2": (3, 4, 14, 1, 0),
    "SCR_EL3": (3, 6, 1, 1, 0),
    "CPTR_EL3": (3, 6, 1, 1, 2),
    "SPSR_EL3": (3, 6, 4, 0, 0),
    "ELR_EL3": (3, 6, 4, 0, 1),
    "ESR_EL3": (3, 6, 5, 2, 0),
    "FAR_EL3": (3, 6, 6, 0, 0),
    "VBAR_EL3": (3, 6, 12, 0, 0),
    "SCTLR_EL12": (3, 5, 1, 0, 0),
    "TTBR0_EL12": (3, 5, 2, 0, 0),
    "TTBR1_EL12": (3, 5, 2, 0, 1),
    "TCR_EL12": (3, 5, 2, 0, 2),
    "MAIR_EL12": (3, 5, 10, 2, 0),
    "TCR2_EL12": (3, 5, 2, 0, 3),
    "PIR_EL12": (3, 5, 10, 2, 3),
    "PIRE0_EL12": (3, 5, 10, 2, 2),
    "MAIR2_EL12": (3, 5, 10, 2, 1),
    "VBAR_EL12": (3, 5, 12, 0, 0),
}

# AT: SYS #op1, C7, CRm, #op2, Xt (C5.5, "A64 system instructions for address translation")
AT_OPS: dict[AtOp, tuple[int, int, int]] = {
    AtOp.S1E1R: (0, 8, 0),
    AtOp.S1E1W: (0, 8, 1),
    AtOp.S1E0R: (0, 8, 2),
    AtOp.S1E0W: (0, 8, 3),
    AtOp.S1E1RP: (0, 9, 0),
    AtOp.S1E1WP: (0, 9, 1),
    AtOp.S1E2R: (4, 8, 0),
    AtOp.S1E2W: (4, 8, 1),
    AtOp.S12E1R: (4, 8, 4),
    AtOp.S12E1W: (4, 8, 5),
    AtOp.S12E0R: (4, 8, 6),
    AtOp.S12E0W: (4, 8, 7),
    AtOp.S1E3R: (6, 8, 0),
    AtOp.S1E3W: (6, 8, 1),
    AtOp.S1E1A: (0, 9, 2),
    AtOp.S1E2A: (4, 9, 2),
}

# TLBI: SYS #op1, C8, CRm, #op2 (C5.5 "TLB maintenance instructions")
TLBI_OPS: dict[str, tuple[int, int, int]] = {
    "VMALLE1": (0, 7, 0),
    "VMALLE1IS": (0, 3, 0),
    "ALLE2": (4, 7, 0),
    "ALLE2IS": (4, 3, 0),
    "ALLE1": (4, 7, 4),
    "ALLE3": (6, 7, 0),
    "PAALL": (6, 7, 4),
    "ALLE1IS": (4, 3, 4),
    "VMALLS12E1": (4, 7, 6),
    "VMALLS12E1IS": (4, 3, 6),
}

CONDITIONS = {
    "EQ": 0,
    "NE": 1,
    "HS": 2,
    "LO": 3,
    "MI": 4,
    "PL": 5,
    "HI": 8,
    "LS": 9,
    "GE": 10,
    "LT": 11,
    "GT": 12,
    "LE": 13,
    "AL": 14,
}

NOP = 0xD503201F
ISB = 0xD5033FDF
ERET = 0xD69F03E0
DSB = {"SY": 0xD5033F9F, "ISH": 0xD5033B9F, "NSH": 0xD503379F}
IC_IALLU = 0xD508751F
"""IC IALLU (SYS #0, C7, C5, #0; C5.3 IC IALLU)."""


def _reg(r: int) -> int:
    if not 0 <= r <= 31:
        raise ValueError(f"register number {r} out of range")
    return r


def _sys(op1: int, crn: int, crm: int, op2: int, rt: int) -> int:
    """SYS #op1, Cn, Cm, #op2, Xt (C6.2 SYS)."""
    return 0xD5080000 | op1 << 16 | crn << 12 | crm << 8 | op2 << 5 | _reg(rt)


def movz(rd: int, imm16: int, hw: int = 0) -> int:
    """MOVZ Xd, #imm16, LSL #(16*hw) (C6.2 MOVZ)."""
    assert 0 <= imm16 < 1 << 16 and 0 <= hw < 4
    return 0xD2800000 | hw << 21 | imm16 << 5 | _reg(rd)


def movk(rd: int, imm16: int, hw: int = 0) -> int:
    """MOVK Xd, #imm16, LSL #(16*hw) (C6.2 MOVK)."""
    assert 0 <= imm16 < 1 << 16 and 0 <= hw < 4
    return 0xF2800000 | hw << 21 | imm16 << 5 | _reg(rd)


@lru_cache(maxsize=4096)
def mov_imm(rd: int, value: int) -> tuple[int, ...]:
    """Load a 64-bit constant: MOVZ for the first non-zero halfword, MOVK for
    the others (one MOVZ for zero); memoized (a program loads the same
    constants again and again)."""
    value &= (1 << 64) - 1
    parts = [(hw, (value >> (16 * hw)) & 0xFFFF) for hw in range(4)]
    nonzero = [(hw, v) for hw, v in parts if v]
    if not nonzero:
        return (movz(rd, 0),)
    first, *rest = nonzero
    return (movz(rd, first[1], first[0]), *(movk(rd, v, hw) for hw, v in rest))


def mov(rd: int, rm: int) -> int:
    """MOV Xd, Xm (ORR Xd, XZR, Xm; C6.2 MOV register)."""
    return 0xAA0003E0 | _reg(rm) << 16 | _reg(rd)


def _sysreg(name: str) -> tuple[int, int, int, int, int]:
    try:
        return SYSREGS[name]
    except KeyError:
        raise ValueError(f"unknown system register {name!r}") from None


@lru_cache(maxsize=1024)
def msr(name: str, rt: int) -> int:
    """MSR <sysreg>, Xt (C6.2 MSR register)."""
    op0, op1, crn, crm, op2 = _sysreg(name)
    return 0xD5000000 | op0 << 19 | op1 << 16 | crn << 12 | crm << 8 | op2 << 5 | _reg(rt)


def mrs(rt: int, name: str) -> int:
    """MRS Xt, <sysreg> (C6.2 MRS)."""
    return msr(name, rt) | 1 << 21


def msr_pan(value: int) -> int:
    """MSR PAN, #imm (C6.2 MSR immediate, FEAT_PAN: op1=0, op2=4)."""
    assert value in (0, 1)
    return 0xD500401F | value << 8 | 4 << 5


def at(op: AtOp, rt: int = 0) -> int:
    """AT <op>, Xt."""
    op1, crm, op2 = AT_OPS[op]
    return _sys(op1, 7, crm, op2, rt)


def tlbi(op: str, rt: int = XZR) -> int:
    """TLBI <op>{, Xt}."""
    op1, crm, op2 = TLBI_OPS[op]
    return _sys(op1, 8, crm, op2, rt)


def dsb(option: str = "SY") -> int:
    return DSB[option]


def hvc(imm: int = 0) -> int:
    """HVC #imm16 (C6.2 HVC)."""
    return 0xD4000002 | (imm & 0xFFFF) << 5


def smc(imm: int = 0) -> int:
    """SMC #imm16 (C6.2 SMC)."""
    return 0xD4000003 | (imm & 0xFFFF) << 5


def brk(imm: int = 0) -> int:
    """BRK #imm16 (C6.2 BRK)."""
    return 0xD4200000 | (imm & 0xFFFF) << 5


def b(offset: int) -> int:
    """B <label>, ``offset`` bytes from this instruction (C6.2 B)."""
    assert offset % 4 == 0 and -(1 << 27) <= offset < 1 << 27
    return 0x14000000 | (offset >> 2) & 0x3FFFFFF


def b_cond(cond: str, offset: int) -> int:
    """B.<cond> <label> (C6.2 B.cond)."""
    assert offset % 4 == 0 and -(1 << 20) <= offset < 1 << 20
    return 0x54000000 | ((offset >> 2) & 0x7FFFF) << 5 | CONDITIONS[cond]


def br(rn: int) -> int:
    """BR Xn (C6.2 BR)."""
    return 0xD61F0000 | _reg(rn) << 5


def blr(rn: int) -> int:
    """BLR Xn (C6.2 BLR)."""
    return 0xD63F0000 | _reg(rn) << 5


RET = 0xD65F03C0
"""RET (X30; C6.2 RET)."""


def ldp_post(rt: int, rt2: int, rn: int, offset: int) -> int:
    """LDP Xt, Xt2, [Xn], #offset, post-index (C6.2 LDP)."""
    assert offset % 8 == 0 and -512 <= offset < 512
    return (0xA8C00000 | ((offset // 8) & 0x7F) << 15 | _reg(rt2) << 10 | _reg(rn) << 5
            | _reg(rt))


def str_imm(rt: int, rn: int, offset: int = 0) -> int:
    """STR Xt, [Xn, #offset], unsigned scaled offset (C6.2 STR immediate)."""
    assert offset % 8 == 0 and 0 <= offset < 8 * 4096
    return 0xF9000000 | (offset // 8) << 10 | _reg(rn) << 5 | _reg(rt)


def str_reg(rt: int, rn: int, rm: int) -> int:
    """STR Xt, [Xn, Xm, LSL #3] (C6.2 STR register)."""
    return 0xF8207800 | _reg(rm) << 16 | _reg(rn) << 5 | _reg(rt)


def add_imm(rd: int, rn: int, imm12: int) -> int:
    """ADD Xd, Xn, #imm12 (C6.2 ADD immediate)."""
    assert 0 <= imm12 < 4096
    return 0x91000000 | imm12 << 10 | _reg(rn) << 5 | _reg(rd)


def add_lsl(rd: int, rn: int, rm: int, shift: int) -> int:
    """ADD Xd, Xn, Xm, LSL #shift (C6.2 ADD shifted register)."""
    assert 0 <= shift < 64
    return 0x8B000000 | _reg(rm) << 16 | shift << 10 | _reg(rn) << 5 | _reg(rd)


def ubfx(rd: int, rn: int, lsb: int, width: int) -> int:
    """UBFX Xd, Xn, #lsb, #width (UBFM; C6.2 UBFX)."""
    return 0xD3400000 | lsb << 16 | (lsb + width - 1) << 10 | _reg(rn) << 5 | _reg(rd)


def cmp_reg(rn: int, rm: int) -> int:
    """CMP Xn, Xm (SUBS XZR, Xn, Xm; C6.2 CMP shifted register)."""
    return 0xEB00001F | _reg(rm) << 16 | _reg(rn) << 5


def cmp_imm(rn: int, imm12: int) -> int:
    """CMP Xn, #imm12 (SUBS XZR, Xn, #imm12)."""
    assert 0 <= imm12 < 4096
    return 0xF100001F | imm12 << 10 | _reg(rn) << 5
