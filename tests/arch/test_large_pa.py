"""52-bit output addresses: FEAT_LPA (64KB granule) and FEAT_LPA2 (TCR.DS)
(Arm ARM DDI 0487, D8.3; AArch64.S1LeafBase, S1TTBaseAddress, EncodeLDFSC)."""

from __future__ import annotations

import dataclasses

from archtables import AF, LEAF, MAIR, MAX, SCTLR_ON, Tables, at, regs

from xcheck.arch.par import decode_par
from xcheck.machine import RAM_BASE, AtOp

PA52 = dataclasses.replace(MAX, pa_range_bits=52, lpa=True, lpa2=True, lva=True)


def test_64k_descriptor_bits_15_12_are_oa_51_48() -> None:
    """FEAT_LPA: with the 64KB granule and PAMax == 52, OA[51:48] is descriptor[15:12]."""
    t = Tables(granule_bits=16, iasize=48, start_level=1)
    t.map(0x1_0000, RAM_BASE | (0xA << 12), flags=LEAF)
    tcr = 16 | (0b01 << 14) | (0b110 << 32)
    sysregs = regs(SCTLR_EL1=SCTLR_ON, TCR_EL1=tcr, TTBR0_EL1=t.root, MAIR_EL1=MAIR)
    par = at(AtOp.S1E1R, 0x1_0000, sysregs, t.image(), features=PA52).par
    assert decode_par(par)["PA"] << 12 == (0xA << 48) | RAM_BASE
    # PAMax 48: bits [15:12] are not address bits; the OA is RAM_BASE
    par = at(AtOp.S1E1R, 0x1_0000, sysregs, t.image(), features=MAX).par
    assert decode_par(par)["PA"] << 12 == RAM_BASE


def test_lpa2_descriptor_and_shareability_from_tcr() -> None:
    """FEAT_LPA2, TCR.DS == 1: OA[51:50] is descriptor[9:8], OA[49:48] is
    descriptor[49:48]; shareability comes from TCR_EL1.SH0."""
    t = Tables()
    t.map(0x1000, RAM_BASE | (0b10 << 8) | (0b01 << 48), flags=AF)
    tcr = 16 | (0b10 << 12) | (0b110 << 32) | (1 << 59)  # SH0 = Outer Shareable
    sysregs = regs(SCTLR_EL1=SCTLR_ON, TCR_EL1=tcr, TTBR0_EL1=t.root, MAIR_EL1=MAIR)
    f = decode_par(at(AtOp.S1E1R, 0x1000, sysregs, t.image(), features=PA52).par)
    assert f["PA"] << 12 == (0b10 << 50) | (0b01 << 48) | RAM_BASE
    assert f["SH"] == 0b10


def test_lpa2_level_minus_1_fault_encoding() -> None:
    """A 52-bit VA with 4KB granule and DS == 1 starts at level -1; an invalid
    level -1 descriptor is a Translation fault, level -1: FST 0b101011."""
    t = Tables(iasize=52, start_level=-1)
    tcr = 12 | (0b110 << 32) | (1 << 59)
    sysregs = regs(SCTLR_EL1=SCTLR_ON, TCR_EL1=tcr, TTBR0_EL1=t.root, MAIR_EL1=MAIR)
    r = at(AtOp.S1E1R, 1 << 50, sysregs, t.image(), features=PA52)
    assert decode_par(r.par)["FST"] == 0b101011
    t.map(1 << 50, RAM_BASE, flags=AF)
    r = at(AtOp.S1E1R, 1 << 50, sysregs, t.image(), features=PA52)
    assert decode_par(r.par)["PA"] << 12 == RAM_BASE, r.render()
