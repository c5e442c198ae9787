"""CPUs to generate for in the fuzz tests: QEMU 7.2's and 10.0's "max"
(their ID registers, as `xcheck doctor` reads them) and a plain one."""

from __future__ import annotations

from dataclasses import replace

from xcheck.arch.features import Features
from xcheck.fuzz.knobs import Knobs

QEMU72_MAX = Features.from_id_regs({
    "ID_AA64MMFR0_EL1": 0x0000032310201126, "ID_AA64MMFR1_EL1": 0x0000011010211122,
    "ID_AA64MMFR2_EL1": 0x1021011010011011, "ID_AA64PFR0_EL1": 0x1201001120110222,
})
QEMU10_MAX = Features(pa_range_bits=52, lpa=True, lpa2=True, lva=True, pan=3, hafdbs=2,
                      hpds=2, xnx=True, ttst=True, nv=2, e0pd=True, s2fwb=True)
QEMU11_MAX = Features(pa_range_bits=52, lpa=True, lpa2=True, lva=True, pan=3, hafdbs=2,
                      hpds=2, xnx=True, ttst=True, nv=2, e0pd=True, s2fwb=True, hcx=True,
                      tcr2=True, sctlr2=True, s1pie=True, s2pie=True, aie=True, ats1a=True)
"""QEMU 11.1's "max": ID_AA64MMFR3_EL1 TCRX, SCTLRX, S1PIE, S2PIE, AIE; ATS1A."""
PLAIN = Features(pa_range_bits=40, tgran16=False, tgran16_2=False)
"""No PAN, no LPA2, no 16KB granule, 40-bit PAs."""

SECURE = replace(QEMU72_MAX, el3=True, sel2=True)
"""QEMU 7.2's "max" on `-machine virt,secure=on` (profile secure): EL3, FEAT_SEL2."""
RME = replace(QEMU11_MAX, el3=True, sel2=True, rme=1)
"""QEMU 11.1's "max,x-rme=on" on `secure=on` (profile rme): EL3, FEAT_SEL2, FEAT_RME."""

CPUS = {"qemu72": QEMU72_MAX, "qemu10": QEMU10_MAX, "qemu11": QEMU11_MAX, "plain": PLAIN,
        "secure": SECURE, "rme": RME}


def knobs(name: str = "qemu72") -> Knobs:
    """The knobs of CPU ``name``; one with EL3 starts there (as QEMU's virt
    machine with secure=on does)."""
    return Knobs(CPUS[name], starts_el3=CPUS[name].el3)
