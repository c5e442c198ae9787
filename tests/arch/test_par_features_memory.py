"""PAR_EL1 encode/decode/diff (D24.2 PAR_EL1), ID register decode (D24.2
ID_AA64MMFR*_EL1), the memory image."""

from __future__ import annotations

import pytest

from xcheck.arch.fault import Fault, FaultRecord, encode_fst
from xcheck.arch.features import Features
from xcheck.arch.memory import MemoryImage
from xcheck.arch.par import (
    FAULT_MASK,
    SUCCESS_MASK,
    describe_par,
    diff_par,
    encode_fault,
    encode_success,
)


@pytest.mark.parametrize(("status", "level", "fst"), [
    (Fault.ADDRESS_SIZE, 0, 0b000000), (Fault.TRANSLATION, 3, 0b000111),
    (Fault.ACCESS_FLAG, 1, 0b001001), (Fault.PERMISSION, 2, 0b001110),
    (Fault.EXTERNAL_ABORT_ON_WALK, 0, 0b010100), (Fault.TRANSLATION, -1, 0b101011),
    (Fault.ADDRESS_SIZE, -1, 0b101001),
])
def test_fault_status_codes(status: Fault, level: int, fst: int) -> None:
    """EncodeLDFSC / PAR_EL1.FST table."""
    assert encode_fst(status, level) == fst


def test_encode_fault_fields() -> None:
    """AArch64.EncodePAR: F=1, FST [6:1], PTW [8], S [9], bit [11] RES1."""
    par = encode_fault(FaultRecord(Fault.TRANSLATION, 2, stage=2, s2fs1walk=True))
    assert par == (1 << 11) | (1 << 9) | (1 << 8) | (0b000110 << 1) | 1
    assert describe_par(par) == "fault FST=0b000110 (translation, level 2) S=1 PTW=1"


def test_encode_success_fields() -> None:
    """AArch64.EncodePAR: F=0, SH [8:7], NS [9], RES1 [11], PA [55:12], ATTR [63:56]."""
    par = encode_success(0x000F_1234_5678_9ABC, 0xFF, 0b11)
    assert par == 0xFF0F_1234_5678_9000 | (1 << 11) | (1 << 9) | (0b11 << 7)
    assert describe_par(par) == "PA=0xf123456789000 ATTR=0xff SH=0b11 NS=1"


def test_diff_par_respects_mask_and_names_fields() -> None:
    a = encode_success(0x4000_1000, 0x00, 0b10)
    assert diff_par(a ^ (1 << 9), a, SUCCESS_MASK) == []  # NS is UNKNOWN
    diffs = diff_par(a ^ (0b11 << 7), a, SUCCESS_MASK)
    assert [(d.name, d.a, d.b) for d in diffs] == [("SH", 0b01, 0b10)]
    f = encode_fault(FaultRecord(Fault.PERMISSION, 3))
    assert diff_par(f | (0xAB << 56), f, FAULT_MASK) == []  # [63:48] IMPLEMENTATION DEFINED
    assert [d.name for d in diff_par(a, f, FAULT_MASK)] == ["F"]


QEMU_MAX_72 = {  # values of the kind QEMU -cpu max reports
    "ID_AA64MMFR0_EL1": 0x0000_1222_0010_1125,
    "ID_AA64MMFR1_EL1": 0x0000_0000_1031_1122,
    "ID_AA64MMFR2_EL1": 0x1221_0001_1001_1011,
    "ID_AA64PFR0_EL1": 0x0000_0000_1100_1111,
}


def test_features_from_id_regs() -> None:
    f = Features.from_id_regs(QEMU_MAX_72)
    assert f.pa_range_bits == 48
    assert (f.tgran4, f.tgran16, f.tgran64) == (True, True, True)
    assert (f.tgran4_2, f.tgran16_2, f.tgran64_2) == (True, True, True)
    assert f.lpa2 is False and f.lpa is False
    assert f.pan == 3 and f.hafdbs == 2 and f.vh and f.hpds == 1
    assert f.e0pd and f.ttst and f.nv == 0 and f.lva
    assert Features.from_id_regs({"ID_AA64MMFR0_EL1": 0xF000_0006}).tgran4 is False
    assert Features.from_id_regs({"ID_AA64MMFR0_EL1": 0x1000_0006}).lpa2
    assert Features.from_id_regs({"ID_AA64MMFR0_EL1": 6}).lpa


def test_memory_image() -> None:
    mem = MemoryImage({0x4000_0004: b"\x11\x22\x33\x44\x55\x66"}, 0x4000_0000, 0x1000)
    assert mem.read64(0x4000_0000) == 0x4433_2211_0000_0000
    assert mem.read64(0x4000_0008) == 0x6655
    assert mem.read64(0x4000_0006) == 0x6655_4433
    assert mem.read64(0x4000_0100) == 0
    assert mem.read64(0x3FFF_FFF8) is None and mem.read64(0x4000_1000) is None
