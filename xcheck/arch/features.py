"""CPU features the model needs, decoded from the ID registers.

Field positions: Arm ARM DDI 0487, D24.2 (ID_AA64MMFR0_EL1, ID_AA64MMFR1_EL1,
ID_AA64MMFR2_EL1, ID_AA64MMFR3_EL1, ID_AA64ISAR2_EL1, ID_AA64PFR0_EL1).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace

PARANGE_BITS = {0: 32, 1: 36, 2: 40, 3: 42, 4: 44, 5: 48, 6: 52, 7: 56}
"""ID_AA64MMFR0_EL1.PARange (and TCR.{I}PS, VTCR.PS) encodings, in bits."""


FIELDS_READ: dict[str, int] = {
    "ID_AA64MMFR0_EL1": 0xFFF0_000F | 0xFFF << 32,
    "ID_AA64MMFR1_EL1": 0xF0F0_FF0F | 0xF << 40,
    "ID_AA64MMFR2_EL1": 0xF << 60 | 0xF << 40 | 0xFF << 24 | 0xF << 16,
    "ID_AA64MMFR3_EL1": 0xF00_FFFF,
    "ID_AA64PFR0_EL1": 0xFF00 | 0xF << 36 | 0xF << 52,
    "ID_AA64ISAR2_EL1": 0xF << 60,
}
"""The ID register bits :meth:`Features.from_id_regs` reads: two CPUs equal
in these decode to the same Features (a standalone test checks them)."""


def _f(value: int, lsb: int) -> int:
    return (value >> lsb) & 0xF


@dataclass(frozen=True)
class Features:
    """What the PE implements, as far as address translation cares.

    ``pa_range_bits`` is AArch64.PAMax() (ID_AA64MMFR0_EL1.PARange).
    Stage 2 granule support (``tgran*_2``) is resolved: TGranX_2 == 0 means
    "as stage 1" (FEAT_GTG absent).
    """

    pa_range_bits: int = 48
    tgran4: bool = True
    tgran16: bool = True
    tgran64: bool = True
    tgran4_2: bool = True
    tgran16_2: bool = True
    tgran64_2: bool = True
    lpa: bool = False
    """FEAT_LPA: 52-bit PA with the 64KB granule (PARange == 0b0110)."""
    lpa2: bool = False
    """FEAT_LPA2: 52-bit OA with 4KB/16KB granules when TCR.DS == 1."""
    lva: bool = False
    """FEAT_LVA: 52-bit VA (ID_AA64MMFR2_EL1.VARange == 1)."""
    vh: bool = True
    """FEAT_VHE: HCR_EL2.E2H is implemented."""
    pan: int = 0
    """0 none, 1 FEAT_PAN, 2 FEAT_PAN2 (AT S1E1RP/WP), 3 FEAT_PAN3 (EPAN)."""
    hafdbs: int = 0
    """0 none, 1 hardware Access flag, 2 Access flag and dirty state."""
    hpds: int = 0
    """0 none, 1 FEAT_HPDS (TCR.HPD), 2 FEAT_HPDS2."""
    xnx: bool = False
    ttst: bool = False
    """FEAT_TTST: small translation tables (ID_AA64MMFR2_EL1.ST)."""
    nv: int = 0
    """0 none, 1 FEAT_NV, 2 FEAT_NV2."""
    e0pd: bool = False
    s2fwb: bool = False
    el2: bool = True
    el3: bool = False
    hcx: bool = False
    """FEAT_HCX: HCRX_EL2 (ID_AA64MMFR1_EL1.HCX)."""
    tcr2: bool = False
    """FEAT_TCR2: TCR2_EL1/EL2 (ID_AA64MMFR3_EL1.TCRX)."""
    sctlr2: bool = False
    """FEAT_SCTLR2: SCTLR2_EL1/EL2 (ID_AA64MMFR3_EL1.SCTLRX)."""
    s1pie: bool = False
    """FEAT_S1PIE: stage 1 Indirect permissions, PIR_ELx/PIRE0_ELx
    (ID_AA64MMFR3_EL1.S1PIE)."""
    aie: bool = False
    """FEAT_AIE: AttrIndx[3] and MAIR2_ELx (ID_AA64MMFR3_EL1.AIE)."""
    sel2: bool = False
    """FEAT_SEL2: Secure EL2 (ID_AA64PFR0_EL1.SEL2)."""
    rme: int = 0
    """0 none, 1 FEAT_RME, 2 and 3 with the GPC2 and GPC3 additions
    (ID_AA64PFR0_EL1.RME)."""
    s2pie: bool = False
    """FEAT_S2PIE: stage 2 Indirect permissions, S2PIR_EL2 (ID_AA64MMFR3_EL1.S2PIE)."""
    ats1a: bool = False
    """FEAT_ATS1A: AT S1E1A/S1E2A, stage 1 without permission checks
    (ID_AA64ISAR2_EL1.ATS1A)."""

    @property
    def fwb(self) -> bool:
        return self.s2fwb

    def has(self, name: str) -> bool:
        """Whether the PE has the feature ``name`` (a key of PREDICATES;
        unknown names count as lacking)."""
        test = PREDICATES.get(name)
        return test is not None and test(self)

    def upgraded(self) -> Features:
        """This PE with every feature the model knows added, 52-bit PAs and
        VAs among them: the CPU a scenario's expectations are written for."""
        best = replace(Features.everything(), pa_range_bits=52, lpa=True, lva=True)
        return Features(**{
            f.name: max(getattr(self, f.name), getattr(best, f.name)) for f in fields(self)
        })

    def lacking(self, other: Features) -> list[tuple[str, str, Features]]:
        """For each feature ``other`` has beyond this PE: the Features field,
        the feature's name as in PREDICATES (a PA size as PAnn, each level of
        a leveled feature on its own, lowest first), and this PE with that
        one feature added."""
        out: list[tuple[str, str, Features]] = []
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if not theirs > mine:
                continue
            changes: dict[str, object]
            if f.name == "pa_range_bits":
                for bits in sorted(set(PARANGE_BITS.values())):
                    if mine < bits <= theirs:
                        # PARange 0b0110 (52 bits) is FEAT_LPA (D24.2
                        # ID_AA64MMFR0_EL1.PARange), as from_id_regs decodes it
                        out.append((f.name, f"PA{bits}", replace(
                            self, pa_range_bits=bits, lpa=self.lpa or bits >= 52)))
            elif isinstance(mine, bool):
                changes = {f.name: True}
                out.append((f.name, FIELD_NAMES[f.name], replace(self, **changes)))  # type: ignore[arg-type]
            else:
                for level in range(mine + 1, theirs + 1):
                    changes = {f.name: level}
                    out.append((f.name, LEVEL_NAMES[f.name][level],
                                replace(self, **changes)))  # type: ignore[arg-type]
        return out

    def without(self, name: str) -> Features | None:
        """This PE without the feature ``name`` (a key of PREDICATES): its
        boolean field cleared, a leveled field set to the level below the
        name's, the PA size to the next smaller one (FEAT_LPA goes with 52
        bits, both ways); None when it lacks ``name`` or the name is unknown."""
        if not self.has(name):
            return None
        if name.startswith("PA") and name[2:].isdigit():
            smaller = [b for b in PARANGE_BITS.values() if b < int(name[2:])]
            if not smaller:
                return None
            bits = max(smaller)
            return replace(self, pa_range_bits=bits, lpa=self.lpa and bits >= 52)
        if name == "LPA":  # PARange 0b0110 (52 bits) is FEAT_LPA, as from_id_regs decodes it
            return replace(self, lpa=False, pa_range_bits=min(self.pa_range_bits, 48))
        for field_name, named in FIELD_NAMES.items():
            if named == name:
                return replace(self, **{field_name: False})
        for field_name, levels in LEVEL_NAMES.items():
            for level, named in levels.items():
                if named == name:
                    return replace(self, **{field_name: level - 1})  # type: ignore[arg-type]
        return None

    @classmethod
    def everything(cls) -> Features:
        """A CPU with every feature the model knows and a 48-bit PA, for
        explaining a scenario without an emulator to ask."""
        return cls(
            lpa2=True, pan=3, hafdbs=2, hpds=2, xnx=True, ttst=True, nv=2, e0pd=True,
            s2fwb=True, hcx=True, tcr2=True, sctlr2=True, s1pie=True, aie=True, el3=True,
            sel2=True, s2pie=True,
            ats1a=True,
        )

    @classmethod
    def from_id_regs(cls, id_regs: Mapping[str, int]) -> Features:
        """Decode ``ID_AA64MMFR0_EL1`` to ``ID_AA64MMFR3_EL1`` and
        ``ID_AA64PFR0_EL1`` (absent registers read as zero)."""
        mmfr0 = id_regs.get("ID_AA64MMFR0_EL1", 0)
        mmfr1 = id_regs.get("ID_AA64MMFR1_EL1", 0)
        mmfr2 = id_regs.get("ID_AA64MMFR2_EL1", 0)
        mmfr3 = id_regs.get("ID_AA64MMFR3_EL1", 0)
        pfr0 = id_regs.get("ID_AA64PFR0_EL1", 0)
        mmfr3 = id_regs.get("ID_AA64MMFR3_EL1", 0)
        isar2 = id_regs.get("ID_AA64ISAR2_EL1", 0)
        parange = PARANGE_BITS.get(_f(mmfr0, 0), 48)
        tgran16, tgran64, tgran4 = _f(mmfr0, 20), _f(mmfr0, 24), _f(mmfr0, 28)
        has4, has16, has64 = tgran4 != 0xF, tgran16 != 0, tgran64 != 0xF

        def stage2(field: int, stage1: bool) -> bool:
            return stage1 if field == 0 else field >= 2

        return cls(
            pa_range_bits=parange,
            tgran4=has4,
            tgran16=has16,
            tgran64=has64,
            tgran4_2=stage2(_f(mmfr0, 40), has4),
            tgran16_2=stage2(_f(mmfr0, 32), has16),
            tgran64_2=stage2(_f(mmfr0, 36), has64),
            lpa=parange >= 52,
            lpa2=tgran4 == 1 or tgran16 == 2,
            lva=_f(mmfr2, 16) >= 1,
            vh=_f(mmfr1, 8) >= 1,
            pan=min(_f(mmfr1, 20), 3),
            hafdbs=min(_f(mmfr1, 0), 2),
            hpds=min(_f(mmfr1, 12), 2),
            xnx=_f(mmfr1, 28) >= 1,
            ttst=_f(mmfr2, 28) >= 1,
            nv=min(_f(mmfr2, 24), 2),
            e0pd=_f(mmfr2, 60) >= 1,
            s2fwb=_f(mmfr2, 40) >= 1,
            el2=_f(pfr0, 8) != 0,
            el3=_f(pfr0, 12) != 0,
            hcx=_f(mmfr1, 40) >= 1,
            tcr2=_f(mmfr3, 0) >= 1,
            sctlr2=_f(mmfr3, 4) >= 1,
            s1pie=_f(mmfr3, 8) >= 1,
            aie=_f(mmfr3, 24) >= 1,
            sel2=_f(pfr0, 36) >= 1,
            rme=min(_f(pfr0, 52), 3),
            s2pie=_f(mmfr3, 12) >= 1,
            ats1a=_f(isar2, 60) >= 1,
        )


PREDICATES: dict[str, Callable[[Features], bool]] = {
    "PAN": lambda f: f.pan >= 1,
    "PAN2": lambda f: f.pan >= 2,
    "PAN3": lambda f: f.pan >= 3,
    "VHE": lambda f: f.vh,
    "NV": lambda f: f.nv >= 1,
    "HAFDBS": lambda f: f.hafdbs >= 1,
    "HAFDBS_DIRTY": lambda f: f.hafdbs >= 2,
    "LPA": lambda f: f.lpa,
    "LPA2": lambda f: f.lpa2,
    "LVA": lambda f: f.lva,
    "TGRAN4": lambda f: f.tgran4,
    "TGRAN16": lambda f: f.tgran16,
    "TGRAN64": lambda f: f.tgran64,
    "TGRAN4_S2": lambda f: f.tgran4_2,
    "TGRAN16_S2": lambda f: f.tgran16_2,
    "TGRAN64_S2": lambda f: f.tgran64_2,
    "S2FWB": lambda f: f.s2fwb,
    "E0PD": lambda f: f.e0pd,
    "HPDS": lambda f: f.hpds >= 1,
    "TTST": lambda f: f.ttst,
    "XNX": lambda f: f.xnx,
    "RME_GPC2": lambda f: f.rme >= 2,
    "RME_GPC3": lambda f: f.rme >= 3,
    "EL3": lambda f: f.el3,
    "HCX": lambda f: f.hcx,
    "TCR2": lambda f: f.tcr2,
    "SCTLR2": lambda f: f.sctlr2,
    "S1PIE": lambda f: f.s1pie,
    "AIE": lambda f: f.aie,
    "SEL2": lambda f: f.sel2,
    "RME": lambda f: f.rme >= 1,
    "S2PIE": lambda f: f.s2pie,
    "ATS1A": lambda f: f.ats1a,
    "PA40": lambda f: f.pa_range_bits >= 40,
    "PA44": lambda f: f.pa_range_bits >= 44,
    "PA48": lambda f: f.pa_range_bits >= 48,
    "PA52": lambda f: f.pa_range_bits >= 52,
}
"""Every feature name a scenario may list under ``requires:``, with its test."""

FIELD_NAMES = {
    "tgran4": "TGRAN4", "tgran16": "TGRAN16", "tgran64": "TGRAN64",
    "tgran4_2": "TGRAN4_S2", "tgran16_2": "TGRAN16_S2", "tgran64_2": "TGRAN64_S2",
    "lpa": "LPA", "lpa2": "LPA2", "lva": "LVA", "vh": "VHE", "xnx": "XNX", "ttst": "TTST",
    "e0pd": "E0PD", "s2fwb": "S2FWB", "el2": "EL2", "el3": "EL3", "hcx": "HCX",
    "tcr2": "TCR2", "sctlr2": "SCTLR2", "s1pie": "S1PIE", "aie": "AIE",
    "sel2": "SEL2",
    "s2pie": "S2PIE", "ats1a": "ATS1A",
}
"""The feature name each boolean Features field stands for."""

LEVEL_NAMES = {
    "pan": {1: "PAN", 2: "PAN2", 3: "PAN3"},
    "hafdbs": {1: "HAFDBS", 2: "HAFDBS_DIRTY"},
    "hpds": {1: "HPDS", 2: "HPDS2"},
    "nv": {1: "NV", 2: "NV2"},
    "rme": {1: "RME", 2: "RME_GPC2", 3: "RME_GPC3"},
}
"""The feature name of each level of the leveled Features fields."""
