"""Granule protection checks (FEAT_RME): the GPT walk and the GPI check.

Arm ARM DDI 0487, chapter D9 "The Granule Protection Check" and its ASL:
AArch64.GranuleProtectionCheck, GPCRegistersConsistent, AArch64.GPTWalk,
the level 0 (GPTL0) and level 1 (GPTL1) descriptor formats, GPICheck,
and the registers GPCCR_EL3 and GPTBR_EL3 (D24.2). A check either passes
or gives a GPCFRecord (``GpcFault``): the kind (GPCF_AddressSize, GPCF_Walk,
GPCF_EABT, GPCF_Fail) and the GPT level it arose at. GPT fetches are made to
the Root PA space and are not themselves checked (D24.2 GPCCR_EL3.GPC).
Not modelled: the FEAT_RME_GPC2/GPC3 additions (GPCCR_EL3.NSO, SPAD, NSPAD,
RLPAD, APPSAA, GPCBW: RES0 without them; a scenario leaves them 0).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from xcheck.arch.memory import PhysMem
from xcheck.arch.rules import Rule
from xcheck.arch.trace import TraceStep


class PASpace(enum.Enum):
    """The physical address spaces (PASpace, D9.1), named as the Arm ARM does."""

    SECURE = "Secure"
    NONSECURE = "Non-secure"
    ROOT = "Root"
    REALM = "Realm"


class Gpcf(enum.Enum):
    """GPCF: why a granule protection check failed."""

    ADDRESS_SIZE = "GPT address size"
    WALK = "GPT walk"
    EABT = "external abort on GPT fetch"
    FAIL = "granule protection fault"


@dataclass(frozen=True, slots=True)
class GpcFault:
    """GPCFRecord: the kind and the GPT level (0 or 1); ``rule`` cites it."""

    gpf: Gpcf
    level: int
    rule: Rule

    def describe(self) -> str:
        return f"{self.gpf.value} at GPT level {self.level}"


GPI_NO_ACCESS = 0b0000
GPI_SECURE = 0b1000
GPI_NONSECURE = 0b1001
GPI_ROOT = 0b1010
GPI_REALM = 0b1011
GPI_ALL = 0b1111
GPI_PERMITS: dict[int, frozenset[PASpace]] = {
    GPI_NO_ACCESS: frozenset(),
    GPI_SECURE: frozenset({PASpace.SECURE}),
    GPI_NONSECURE: frozenset({PASpace.NONSECURE}),
    GPI_ROOT: frozenset({PASpace.ROOT}),
    GPI_REALM: frozenset({PASpace.REALM}),
    GPI_ALL: frozenset(PASpace),
}
"""GPICheck: the PA spaces each Granule Protection Information value permits
(D9.5 "GPI encoding"); every other value is reserved, a GPT walk fault."""
GPI_NAMES = {GPI_NO_ACCESS: "no access", GPI_SECURE: "Secure", GPI_NONSECURE: "Non-secure",
             GPI_ROOT: "Root", GPI_REALM: "Realm", GPI_ALL: "all access"}

PPS_BITS = {0b000: 32, 0b001: 36, 0b010: 40, 0b011: 42, 0b100: 44, 0b101: 48, 0b110: 52}
"""GPCCR_EL3.PPS: the protected physical address size."""
PGS_BITS = {0b00: 12, 0b01: 16, 0b10: 14}
"""GPCCR_EL3.PGS: the physical granule size of the GPT (0b11 reserved)."""
L0GPTSZ_BITS = {0b0000: 30, 0b0100: 34, 0b0110: 36, 0b1001: 39}
"""GPCCR_EL3.L0GPTSZ (read-only): the PA bits one level 0 GPT entry covers."""
CONTIG_BYTES = {0b01: 2 << 20, 0b10: 32 << 20, 0b11: 512 << 20}
"""A level 1 Contiguous descriptor's Contig field (bits [9:8]); 0b00 reserved."""

GPCCR_GPC = 1 << 16
GPCCR_PPS_SHIFT, GPCCR_IRGN_SHIFT, GPCCR_ORGN_SHIFT = 0, 8, 10
GPCCR_SH_SHIFT, GPCCR_PGS_SHIFT, GPCCR_L0GPTSZ_SHIFT = 12, 14, 20
GPTBR_BADDR_MASK = (1 << 40) - 1
"""GPTBR_EL3.BADDR, bits [39:0]: bits [51:12] of the level 0 GPT address."""


@dataclass(frozen=True, slots=True)
class GpcParams:
    """GPCCR_EL3 and GPTBR_EL3 decoded once (D24.2)."""

    enabled: bool
    consistent: str
    """Why GPCRegistersConsistent() is FALSE ("" when the registers are)."""
    pps: int
    pgs: int
    l0gptsz: int
    base: int
    """The level 0 GPT address, its low bits treated as zero (GPTBR_EL3)."""

    @classmethod
    def decode(cls, gpccr: int, gptbr: int, pa_range_bits: int) -> GpcParams:
        pps_field = gpccr >> GPCCR_PPS_SHIFT & 7
        pgs_field = gpccr >> GPCCR_PGS_SHIFT & 3
        sh = gpccr >> GPCCR_SH_SHIFT & 3
        cacheable = (gpccr >> GPCCR_IRGN_SHIFT & 3) or (gpccr >> GPCCR_ORGN_SHIFT & 3)
        pps = PPS_BITS.get(pps_field, 0)
        l0 = L0GPTSZ_BITS.get(gpccr >> GPCCR_L0GPTSZ_SHIFT & 0xF, 30)
        why = ""
        if not pps or pps > pa_range_bits:
            why = (f"GPCCR_EL3.PPS = 0b{pps_field:03b} is reserved or above the implemented "
                   f"{pa_range_bits}-bit PA size")
        elif pgs_field not in PGS_BITS:
            why = "GPCCR_EL3.PGS = 0b11 is reserved"
        elif sh == 0b01:
            why = "GPCCR_EL3.SH = 0b01 is reserved"
        elif not cacheable and sh != 0b10:
            why = ("GPCCR_EL3.{IRGN, ORGN} Non-cacheable needs SH = 0b10 (Outer "
                   "Shareable)")
        pgs = PGS_BITS.get(pgs_field, 12)
        # GPTBR_EL3.BADDR: bits [x:0] treated as zero, x = max(pps - l0gptsz + 2, 11)
        align = max(pps - l0 + 3, 12) if pps else 12
        base = ((gptbr & GPTBR_BADDR_MASK) << 12) & ~((1 << align) - 1)
        return cls(bool(gpccr & GPCCR_GPC), why, pps, pgs, l0, base)

    @classmethod
    def from_sysregs(cls, sysregs: Mapping[str, int], pa_range_bits: int) -> GpcParams:
        return cls.decode(sysregs.get("GPCCR_EL3", 0), sysregs.get("GPTBR_EL3", 0),
                          pa_range_bits)

    @property
    def summary(self) -> str:
        return (f"GPC on: PPS {self.pps} bits, PGS {1 << (self.pgs - 10)}KB, L0GPTSZ "
                f"{self.l0gptsz} bits, level 0 GPT at 0x{self.base:x}")


def _fault(gpf: Gpcf, level: int, why: str, rule: Rule, stage: int,
           trace: list[TraceStep]) -> GpcFault:
    trace.append(TraceStep(stage, "GPC fault", f"{gpf.value}, GPT level {level}: {why}",
                           rule="AArch64.GranuleProtectionCheck", cites=rule))
    return GpcFault(gpf, level, rule)


def granule_protection_check(p: GpcParams, pa: int, space: PASpace, mem: PhysMem,
                             trace: list[TraceStep], stage: int = 1) -> GpcFault | None:
    """AArch64.GranuleProtectionCheck of an access to ``pa`` in ``space``:
    None when it passes. The trace gets one step per GPT descriptor read and
    the decision (``stage`` labels the steps with the walk they belong to)."""
    if not p.enabled:
        return None
    if p.consistent:
        return _fault(Gpcf.WALK, 0, p.consistent + " (GPCRegistersConsistent)",
                      Rule.GPC_CONFIG_INVALID, stage, trace)
    if pa >> p.pps:
        if space is PASpace.NONSECURE:
            trace.append(TraceStep(stage, "GPC", f"PA 0x{pa:x} above the {p.pps}-bit PPS in the "
                                   "Non-secure PA space: permitted",
                                   rule="AArch64.GranuleProtectionCheck",
                                   cites=Rule.GPC_ABOVE_PPS_NONSECURE))
            return None
        return _fault(Gpcf.FAIL, 0, f"PA 0x{pa:x} above the {p.pps}-bit PPS in the "
                      f"{space.value} PA space (GPCCR_EL3.PPS; D24.2 GPCCR_EL3.APPSAA == 0)",
                      Rule.GPC_ABOVE_PPS, stage, trace)
    if p.base >> p.pps:
        return _fault(Gpcf.ADDRESS_SIZE, 0, f"level 0 GPT 0x{p.base:x} above the {p.pps}-bit "
                      "PPS (GPTBR_EL3)", Rule.GPT_BASE_ADDRESS_SIZE, stage, trace)
    found = gpt_walk(p, pa, mem, trace, stage)
    if isinstance(found, GpcFault):
        return found
    gpi, level = found
    name = GPI_NAMES[gpi]
    if space not in GPI_PERMITS[gpi]:
        return _fault(Gpcf.FAIL, level, f"GPI 0b{gpi:04b} ({name}) does not permit the "
                      f"{space.value} PA space (GPICheck)", Rule.GPC_GPI_DENIES, stage, trace)
    trace.append(TraceStep(stage, "GPC", f"PA 0x{pa:x} in the {space.value} PA space: GPI "
                           f"0b{gpi:04b} ({name}) permits it", rule="GPICheck",
                           cites=Rule.GPC_GPI_PERMITS))
    return None


def gpt_walk(p: GpcParams, pa: int, mem: PhysMem, trace: list[TraceStep],
             stage: int = 1) -> tuple[int, int] | GpcFault:
    """AArch64.GPTWalk: (GPI, GPT level) for ``pa`` below the PPS, or the
    fault of the walk (GPCF_Walk for an invalid descriptor or a reserved GPI,
    GPCF_EABT for a fetch with no memory)."""
    l0_index = (pa >> p.l0gptsz) & ((1 << max(p.pps - p.l0gptsz, 0)) - 1)
    addr = p.base + 8 * l0_index
    desc = mem.read64(addr)
    if desc is None:
        return _fault(Gpcf.EABT, 0, f"no memory at 0x{addr:x}", Rule.GPT_EXTERNAL_ABORT,
                      stage, trace)
    kind = desc & 0xF
    if kind == 0b0001:
        gpi = desc >> 4 & 0xF
        trace.append(TraceStep(stage, "GPT block", f"GPI 0b{gpi:04b}", 0, p.base, l0_index,
                               addr, desc, rule="GPTL0 Block descriptor",
                               cites=Rule.GPT_L0_BLOCK))
        if desc >> 8 or gpi not in GPI_PERMITS:
            return _fault(Gpcf.WALK, 0, "level 0 Block descriptor with RES0 bits [63:8] set "
                          "or a reserved GPI", Rule.GPT_L0_INVALID, stage, trace)
        return gpi, 0
    # a level 1 table holds 2^(l0gptsz - pgs - 4) entries and is aligned to its size
    l1_bits = p.l0gptsz - p.pgs - 4
    table = desc & ~0xFFF
    if kind != 0b0011 or table >> p.pps or table & ((1 << (l1_bits + 3)) - 1) or desc & 0xFF0:
        trace.append(TraceStep(stage, "GPT invalid", "", 0, p.base, l0_index, addr, desc))
        return _fault(Gpcf.WALK, 0, "level 0 descriptor neither a Block (0b0001) nor a valid "
                      "Table (0b0011, RES0 bits zero, a level 1 table aligned to its size "
                      "below the PPS)", Rule.GPT_L0_INVALID, stage, trace)
    trace.append(TraceStep(stage, "GPT table", f"level 1 GPT at 0x{table:x}", 0, p.base,
                           l0_index, addr, desc, rule="GPTL0 Table descriptor",
                           cites=Rule.GPT_L0_TABLE))
    l1_index = (pa >> (p.pgs + 4)) & ((1 << l1_bits) - 1)
    addr = table + 8 * l1_index
    desc = mem.read64(addr)
    if desc is None:
        return _fault(Gpcf.EABT, 1, f"no memory at 0x{addr:x}", Rule.GPT_EXTERNAL_ABORT,
                      stage, trace)
    if desc & 0xF == 0b0001:
        gpi, contig = desc >> 4 & 0xF, desc >> 8 & 3
        trace.append(TraceStep(stage, "GPT contiguous", f"GPI 0b{gpi:04b}, Contig 0b{contig:02b}",
                               1, table, l1_index, addr, desc, rule="GPTL1 Contiguous descriptor",
                               cites=Rule.GPT_L1_CONTIGUOUS))
        if desc >> 10 or contig == 0 or gpi not in GPI_PERMITS:
            return _fault(Gpcf.WALK, 1, "level 1 Contiguous descriptor with RES0 bits [63:10] "
                          "set, Contig = 0b00 or a reserved GPI", Rule.GPT_L1_INVALID, stage,
                          trace)
        return gpi, 1
    gpi = desc >> (4 * ((pa >> p.pgs) & 0xF)) & 0xF
    trace.append(TraceStep(stage, "GPT granules", f"GPI[{(pa >> p.pgs) & 0xF}] = 0b{gpi:04b}", 1,
                           table, l1_index, addr, desc, rule="GPTL1 Granules descriptor",
                           cites=Rule.GPT_L1_GRANULES))
    if gpi not in GPI_PERMITS:
        return _fault(Gpcf.WALK, 1, "the granule's GPI is reserved",
                      Rule.GPT_L1_INVALID, stage, trace)
    return gpi, 1


def report_as_gpc_exception(fault: GpcFault, el: int, scr_gpf: bool) -> bool:
    """ReportAsGPCException: GPT faults (address size, walk, external abort)
    are always Granule Protection Check exceptions to EL3; a granule
    protection fault is one when SCR_EL3.GPF == 1 below EL3, else it is
    reported in the translation regime (D9.3, "GPC faults")."""
    if fault.gpf is Gpcf.FAIL:
        return scr_gpf and el != 3
    return True
