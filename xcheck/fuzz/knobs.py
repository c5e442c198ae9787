"""What the fuzzer may generate: optional features, gated by the CPU.

Each knob names a part of the translation machinery a generated case may
switch on. A knob is available when the CPU implements what it needs
(read from its ID registers, xcheck.arch.features) and the user did not
leave it out with ``--features``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property

from xcheck.arch.features import Features

KNOBS: dict[str, tuple[str, Callable[[Features], bool]]] = {
    "stage2": ("stage 2 (HCR_EL2.VM, VTCR_EL2, VTTBR_EL2 tables)", lambda f: f.el2),
    "el2": ("the EL2 regime (SCTLR_EL2.M, TTBR0_EL2)", lambda f: f.el2),
    "vhe": ("HCR_EL2.E2H: the EL2&0 regime, TTBR1_EL2", lambda f: f.vh),
    "tge": ("HCR_EL2.TGE", lambda f: f.el2),
    "ttbr1": ("TTBR1 (upper VA range) tables", lambda f: True),
    "el1": ("probes executed at EL1 (the harness mapped at EL1)", lambda f: True),
    "pan": ("PSTATE.PAN and AT S1E1RP/WP (FEAT_PAN2)", lambda f: f.pan >= 2),
    "epan": ("SCTLR_ELx.EPAN (FEAT_PAN3)", lambda f: f.pan >= 3),
    "wxn": ("SCTLR_ELx.WXN", lambda f: True),
    "tbi": ("TCR_ELx.TBI0/TBI1 and tagged VAs", lambda f: True),
    "epd": ("TCR_ELx.EPD0/EPD1", lambda f: True),
    "e0pd": ("TCR_ELx.E0PD0/E0PD1 (FEAT_E0PD)", lambda f: f.e0pd),
    "hpd": ("TCR_ELx.HPD (FEAT_HPDS)", lambda f: f.hpds >= 1),
    "table-attrs": ("APTable, PXNTable, UXNTable on table descriptors", lambda f: True),
    "ha": ("TCR_ELx.HA / VTCR_EL2.HA (hardware Access flag)", lambda f: f.hafdbs >= 1),
    "hd": ("TCR_ELx.HD with DBM (hardware dirty state)", lambda f: f.hafdbs >= 2),
    "ds": ("TCR_ELx.DS / VTCR_EL2.DS (FEAT_LPA2, 52-bit OA)", lambda f: f.lpa2),
    "lpa": ("52-bit PAs with the 64KB granule (FEAT_LPA)", lambda f: f.lpa),
    "fwb": ("HCR_EL2.FWB (FEAT_S2FWB)", lambda f: f.s2fwb),
    "ptw": ("HCR_EL2.PTW", lambda f: f.el2),
    "dc": ("HCR_EL2.DC", lambda f: f.el2),
    "nv": ("HCR_EL2.NV and HCR_EL2.AT (traps, FEAT_NV)", lambda f: f.nv >= 1),
    "ee": ("SCTLR_EL1.EE: big-endian EL1&0 tables (probes at EL2)", lambda f: True),
    "mmu-off": ("stage 1 disabled", lambda f: True),
    "malformed": ("malformed descriptors: forced blocks, raw words, reserved bits, "
                  "AF = 0, output addresses beyond the OA size", lambda f: True),
    "raw-tables": ("hand-made tables in raw memory and table descriptor overrides",
                   lambda f: True),
    "undefined": ("AT operations at an EL where they are UNDEFINED", lambda f: True),
    "tcr2": ("HCRX_EL2.TCR2En = 0: TCR2_EL1 without effect in the EL1&0 regime (FEAT_TCR2)",
             lambda f: f.tcr2 and f.hcx),
    "s1pie": ("TCR2_ELx.PIE: PIR_ELx, PIRE0_ELx and the descriptors' PIIndex (FEAT_S1PIE)",
              lambda f: f.s1pie and f.tcr2),
    "s2pie": ("VTCR_EL2.S2PIE: S2PIR_EL2 and the stage 2 PIIndex (FEAT_S2PIE)",
              lambda f: f.s2pie and f.el2),
    "aie": ("TCR2_ELx.AIE: MAIR2_ELx and AttrIndx 8 to 15 (FEAT_AIE)",
            lambda f: f.aie and f.tcr2),
    "ats1a": ("AT S1E1A and AT S1E2A (FEAT_ATS1A)", lambda f: f.ats1a),
    "secure": ("probes at EL3: the Secure state (SCR_EL3.NS = 0), AT S1E3* with the EL3 "
               "regime (SCTLR_EL3, TCR_EL3, TTBR0_EL3, MAIR_EL3), NS, NSTable and NSE bits",
               lambda f: f.el3),
    "sel2": ("SCR_EL3.EEL2: Secure EL2, the Secure stage 2 (VSTTBR_EL2, VSTCR_EL2.SW/SA, "
             "VTCR_EL2.NSW/NSA; FEAT_SEL2)", lambda f: f.el3 and f.sel2),
    "realm": ("probes at EL3 in the Realm state (SCR_EL3.{NSE, NS} = {1, 1}) and the stage 2 "
              "NS bit (FEAT_RME)", lambda f: f.el3 and f.rme >= 1),
    "gpc": ("granule protection: GPCCR_EL3 and a GPT with regions of every GPI over tables "
            "and outputs (FEAT_RME)", lambda f: f.el3 and f.rme >= 1),
}
"""Knob name: (what it switches on, whether the CPU supports it)."""
AT_EL3 = frozenset({"secure", "sel2", "realm", "gpc"})
"""Knobs that need the harness to start at EL3 (a CPU with EL3 that starts
there: every probe at EL3 and every EL3 register is written from there)."""


class KnobError(ValueError):
    """A --features value names no knob."""


def parse_features(spec: Iterable[str]) -> frozenset[str]:
    """The knobs ``--features`` selects: comma-separated names; ``all`` (the
    default) selects every knob, ``-NAME`` leaves one out."""
    names = [n.strip() for part in spec for n in part.split(",") if n.strip()]
    chosen: set[str] = set(KNOBS) if not names or names[0].startswith("-") else set()
    for n in names:
        drop = n.startswith("-")
        key = n.lstrip("-+")
        if key == "all":
            if drop:
                chosen.clear()
            else:
                chosen.update(KNOBS)
            continue
        if key not in KNOBS:
            raise KnobError(f"unknown feature {key!r}: expected all or one of "
                            + ", ".join(KNOBS))
        if drop:
            chosen.discard(key)
        else:
            chosen.add(key)
    return frozenset(chosen)


@dataclass(frozen=True)
class Knobs:
    """The CPU's features and the knobs the fuzzer may turn on."""

    features: Features
    allowed: frozenset[str] = frozenset(KNOBS)
    starts_el3: bool = False
    """The target starts each program at EL3 (QemuTarget.scr_el3 is set):
    probes at EL3 and the EL3 registers can run."""
    l0gptsz: int = 30
    """GPCCR_EL3.L0GPTSZ in bits, read-only: the CPU's (QEMU: 30)."""

    def on(self, name: str) -> bool:
        """May a case use ``name`` (chosen by the user, supported by the CPU
        and, for the EL3 knobs, by where the target starts)?"""
        return name in self._on

    @cached_property
    def _on(self) -> frozenset[str]:
        """The knobs :meth:`on` allows (decided once: the generator asks
        a few hundred times a case)."""
        return frozenset(name for name in self.allowed if name in KNOBS
                         and KNOBS[name][1](self.features)
                         and (name not in AT_EL3 or self.starts_el3))

    def available(self) -> list[str]:
        return [k for k in KNOBS if self.on(k)]
