"""A small kernel-like translation table tree in fake RAM, for live-mode
unit tests: the EL2&0 regime (HCR_EL2.{E2H,TGE} = {1,1}), 4KB granule,
48-bit VAs, the mappings in the TTBR1_EL2 range as Linux lays them out
(blocks and runs of pages), and an empty TTBR0_EL2 table."""

from __future__ import annotations

from xcheck.arch.memory import MemoryImage
from xcheck.live.state import LiveState
from xcheck.machine import RAM_BASE, sysreg_defaults

RAM_SIZE = 128 << 20
L0, L1, L2, L3, EMPTY = (0x4100_0000 + 0x1000 * i for i in range(5))
AF = 1 << 10
ISH = 0b11 << 8
UPPER = 0xFFFF_0000_0000_0000
VA_L1 = UPPER | 256 << 39  # 0xffff_8000_0000_0000
ID_REGS = {  # QEMU 7.2 -cpu max (docs/qemu-versions.md)
    "ID_AA64MMFR0_EL1": 0x0000_0323_1020_1126,
    "ID_AA64MMFR1_EL1": 0x0000_0110_1021_1122,
    "ID_AA64MMFR2_EL1": 0x1021_0110_1001_1011,
    "ID_AA64PFR0_EL1": 0x1201_0011_2011_0222,
}
NORMAL = AF | ISH | 0 << 2          # AttrIndx 0 (0xff)
DEVICE = AF | ISH | 1 << 2 | 1 << 54  # AttrIndx 1 (0x04), XN
RO = 0b10 << 6


class FakeRam(MemoryImage):
    """MemoryImage with the RamReader extras (bounds, byte reads)."""

    def __init__(self, words: dict[int, int]) -> None:
        super().__init__({a: w.to_bytes(8, "little") for a, w in words.items()}, RAM_BASE,
                         RAM_SIZE)
        self.ram_base = RAM_BASE
        self.ram_end = RAM_BASE + RAM_SIZE

    def read(self, pa: int, size: int) -> bytes:
        return b"".join((self.read64(a) or 0).to_bytes(8, "little")
                        for a in range(pa, pa + size, 8))


def words() -> dict[int, int]:
    w = {
        L0 + 8 * 256: L1 | 0b11,
        L1 + 8 * 0: L2 | 0b11,
        L1 + 8 * 1: 0x8000_0000 | NORMAL | 0b01,            # 1G block
        L2 + 8 * 0: 0x4020_0000 | NORMAL | 0b01,            # 2M block
        L2 + 8 * 1: 0x4040_0000 | NORMAL | 0b01,            # 2M block, contiguous
        L2 + 8 * 3: L3 | 0b11,
        L3 + 8 * 5: 0x4300_5000 | NORMAL | RO | 0b11,       # page, other attributes
        L3 + 8 * 7: 0x0900_0000 | DEVICE | 0b11,            # device page
        L3 + 8 * 8: 0x4300_8000 | NORMAL | 0b01,            # level 3 bits[1:0]=01: invalid
    }
    for i in range(4):                                      # a run of four pages
        w[L3 + 8 * i] = (0x4300_0000 + 0x1000 * i) | NORMAL | 0b11
    return w


def state() -> LiveState:
    regs = sysreg_defaults()
    regs.update({
        "HCR_EL2": 1 << 34 | 1 << 27 | 1 << 31,
        "SCTLR_EL2": 0x30C5_0838 | 1 | 1 << 2,
        # T0SZ = T1SZ = 16, TG0 4KB, TG1 4KB (0b10), IPS 40 bits
        "TCR_EL2": 16 | 16 << 16 | 0b10 << 30 | 2 << 32,
        "TTBR0_EL2": EMPTY,
        "TTBR1_EL2": L0,
        "MAIR_EL2": 0x04FF,
    })
    return LiveState(el=2, pan=False, pc=VA_L1, sysregs=regs, id_regs=ID_REGS, vbar=0)
