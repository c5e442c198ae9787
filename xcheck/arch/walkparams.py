"""Translation table walk parameters, decoded once from the system registers.

Arm ARM DDI 0487, J1.1.4: AArch64.S1TTWParamsEL10 / EL2 / EL20,
AArch64.NSS2TTWParams, AArch64.SS2TTWParams, AArch64.SS2InitialTTWState,
AArch64.SS2OutputPASpace, AArch64.S1MinTxSZ, AArch64.S2MinTxSZ,
AArch64.MaxTxSZ, AArch64.S1TxSZFaults / S2TxSZFaults, AArch64.S1StartLevel,
AArch64.S2StartLevel, AArch64.S2InvalidSL, AArch64.S2InconsistentSL,
AArch64.S1TTBaseAddress / S2TTBaseAddress, AArch64.PhysicalAddressSize.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from xcheck.arch.features import PARANGE_BITS, Features
from xcheck.arch.gpc import GpcParams
from xcheck.arch.regime import HcrState, Regime
from xcheck.arch.regs import (
    HCRX,
    SCR_EL3,
    SCTLR,
    TCR,
    TCR2,
    TCR_EL2,
    VSTCR,
    VTCR,
    bit,
    field,
    ttbr_base,
)
from xcheck.machine import SecurityState

FINAL_LEVEL = 3


@dataclass(frozen=True)
class ImpDef:
    """IMPLEMENTATION DEFINED choices the ASL leaves open (each defaults to
    the non-faulting choice; a scenario can set what its CPU does)."""

    fault_txsz_below_min: bool = False
    """"Fault on TxSZ value below minimum" (used when FEAT_LVA / FEAT_LPA is absent)."""
    fault_txsz_above_max: bool = False
    """"Fault on TxSZ value above maximum"."""
    granule: int = 12
    """log2 of the granule a reserved or unimplemented TGx encoding selects
    (12, 14 or 16), where that granule is implemented; else the first
    implemented one."""


def _granule_bits(tg: int, encoding: dict[int, int], supported: dict[int, bool],
                  prefer: int) -> tuple[int, str]:
    """AArch64.S1DecodeTG0/TG1, S2DecodeTG0: a reserved value, or a granule
    size that is not implemented, is treated as "an IMPLEMENTATION DEFINED
    choice of the sizes that has been implemented" (D24.2 TCR_EL1.TG0,
    TCR_EL1.TG1, VTCR_EL2.TG0); ``prefer`` is that choice."""
    g = encoding.get(tg)
    if g is not None and supported[g]:
        return g, ""
    order = (prefer, *(c for c in (12, 14, 16) if c != prefer))
    for choice in order:
        if supported[choice]:
            return choice, (f"TG encoding 0b{tg:02b} is reserved or not implemented: the "
                            f"granule is an IMPLEMENTATION DEFINED choice among the "
                            f"implemented ones; here {1 << (choice - 10)}KB "
                            f"(D24.2 TCR_EL1.TG0; AArch64.S1DecodeTG0)")
    return 12, "no granule implemented"


TG0_BITS = {0b00: 12, 0b01: 16, 0b10: 14}
TG1_BITS = {0b10: 12, 0b11: 16, 0b01: 14}


def max_txsz(granule_bits: int, features: Features) -> int:
    """AArch64.MaxTxSZ: 39, or with FEAT_TTST 48 (4KB, 16KB) / 47 (64KB)."""
    if features.ttst:
        return 47 if granule_bits == 16 else 48
    return 39


def start_level(iasize: int, granule_bits: int) -> int:
    """AArch64.S1StartLevel: FINAL_LEVEL - ((iasize - 1 - granulebits) DIV stride)."""
    return FINAL_LEVEL - ((iasize - 1 - granule_bits) // (granule_bits - 3))


def oa_size(ps: int, granule_bits: int, ds: bool, features: Features) -> int:
    """AArch64.PhysicalAddressSize: min(PS, 48, PAMax), or min(PS, 52, PAMax)
    with FEAT_LPA and (64KB granule or DS == 1)."""
    cap = 52 if features.lpa and (granule_bits == 16 or ds) else 48
    return min(PARANGE_BITS[ps], cap, features.pa_range_bits)


def table_base(ttbr: int, iasize: int, level: int, granule_bits: int, ps: int, ds: bool,
               features: Features) -> int:
    """AArch64.S1TTBaseAddress / S2TTBaseAddress: the TTBR base aligned to
    the size of the initial table (at least 64 bytes with 52-bit BADDR)."""
    stride = granule_bits - 3
    levels = FINAL_LEVEL - level
    tsize = iasize - (levels * stride + granule_bits) + 3
    lpa_format = ds or (granule_bits == 16 and ps == 0b110 and features.lpa)
    if lpa_format:
        tsize = max(tsize, 6)
    return ttbr_base(ttbr, lpa_format) & ~((1 << tsize) - 1)


@dataclass(frozen=True, slots=True)
class S1TTWParams:
    """Stage 1 walk parameters for one VA range of one regime (S1TTWParams)."""

    regime: Regime
    varange: str
    """"lower" (TTBR0) or "upper" (TTBR1); "lower" for the one-range EL2 regime."""
    granule_bits: int
    txsz: int
    """Effective TxSZ after the AArch64.S1TxSZFaults clamp."""
    txsz_fault: bool
    iasize: int
    start_level: int
    ttbr: int
    base: int
    ps: int
    oasize: int
    addrtop: int
    e0pd: bool
    epd: bool
    hpd: bool
    ha: bool
    hd: bool
    ds: bool
    sh: int
    mair: int
    ee: bool
    pa52_64k: bool
    """Descriptor bits [15:12] are OA[51:48] (64KB granule, PAMax >= 52)."""
    notes: tuple[str, ...]
    aie: bool = False
    """FEAT_AIE with TCR2_ELx.AIE effective: AttrIndx[3] is descriptor bit 59."""
    mair2: int = 0
    """MAIR2_ELx: the attributes of AttrIndx 8 to 15."""

    @property
    def summary(self) -> str:
        return (f"{self.varange} range, {1 << (self.granule_bits - 10)}KB granule, "
                f"TxSZ={self.txsz}, start level {self.start_level}, OA size {self.oasize} bits")


@dataclass(frozen=True, slots=True)
class S1RegimeParams:
    """A regime's stage 1 controls: enable, cacheability, permissions
    controls, and the walk parameters of each VA range."""

    regime: Regime
    enabled: bool
    """AArch64.S1Enabled: SCTLR_ELx.M, and for EL1&0 HCR_EL2.{DC,TGE} == {0,0}."""
    disabled_by: str
    """The control that disables stage 1 ("" when enabled)."""
    sctlr_c: bool
    dc: bool
    wxn: bool
    epan: bool
    pamax: int
    lower: S1TTWParams
    upper: S1TTWParams | None
    pie: bool = False
    """FEAT_S1PIE with TCR2_ELx.PIE effective: Indirect permissions."""
    pir: int = 0
    """PIR_ELx: the privileged permission of each PIIndex."""
    pire0: int = 0
    """PIRE0_ELx: the unprivileged permission of each PIIndex (two-range
    regimes)."""
    secure: bool = False
    """A Secure regime: walks start in the Secure PA space, NSTable and NS
    take effect (D8.4.6, AArch64.S1Walk)."""
    root: bool = False
    """The EL3 regime with FEAT_RME (the Root state): walks start in the Root
    PA space, bit 63 is RES0 (no NSTable), a leaf's NSE (bit 11) and NS (bit
    5) select one of four output PA spaces (AArch64.S1Walk, DecodePASpace)."""
    realm: bool = False
    """A Realm regime (FEAT_RME): walks in the Realm PA space, NSTable without
    effect; a leaf's NS selects the Non-secure output in the Realm EL2 and
    EL2&0 regimes only (AArch64.S1NextWalkStateLeaf)."""
    root_secure: bool = True
    """{NSE, NS} = 00 is the Secure PA space (FEAT_SEL2), else Non-secure."""
    gpc: GpcParams | None = None
    """FEAT_RME: the granule protection check every walk access passes (D9)."""

    def params(self, va: int) -> S1TTWParams:
        """AArch64.GetVARange: VA bit 55 selects TTBR1 in a two-range regime."""
        if self.upper is not None and (va >> 55) & 1:
            return self.upper
        return self.lower


def _s1_params(regime: Regime, varange: str, tcr: int, ttbr: int, mair: int, sctlr: int,
               features: Features, impdef: ImpDef) -> S1TTWParams:
    notes: list[str] = []
    supported = {12: features.tgran4, 14: features.tgran16, 16: features.tgran64}
    upper = varange == "upper"
    if regime in (Regime.EL2, Regime.EL3):  # TCR_EL3 has TCR_EL2's E2H == 0 layout
        tg, txsz = field(tcr, TCR_EL2.TG0), field(tcr, TCR_EL2.T0SZ)
        ps, sh, tbi = field(tcr, TCR_EL2.PS), field(tcr, TCR_EL2.SH0), bit(tcr, TCR_EL2.TBI[0])
        hpd, ha = bit(tcr, TCR_EL2.HPD[0]), bit(tcr, TCR_EL2.HA[0])
        hd, ds_bit = bit(tcr, TCR_EL2.HD[0]), bit(tcr, TCR_EL2.DS[0])
        e0pd = epd = False
        g, note = _granule_bits(tg, TG0_BITS, supported, impdef.granule)
    else:
        tg = field(tcr, TCR.TG1 if upper else TCR.TG0)
        txsz = field(tcr, TCR.T1SZ if upper else TCR.T0SZ)
        ps, sh = field(tcr, TCR.IPS), field(tcr, TCR.SH1 if upper else TCR.SH0)
        tbi = bit(tcr, (TCR.TBI1 if upper else TCR.TBI0)[0])
        hpd = bit(tcr, (TCR.HPD1 if upper else TCR.HPD0)[0])
        ha, hd, ds_bit = bit(tcr, TCR.HA[0]), bit(tcr, TCR.HD[0]), bit(tcr, TCR.DS[0])
        e0pd = features.e0pd and bit(tcr, (TCR.E0PD1 if upper else TCR.E0PD0)[0])
        epd = bit(tcr, (TCR.EPD1 if upper else TCR.EPD0)[0])
        g, note = _granule_bits(tg, TG1_BITS if upper else TG0_BITS, supported,
                                impdef.granule)
    if note:
        notes.append(note)
    ha = features.hafdbs >= 1 and ha
    hd = ha and features.hafdbs >= 2 and hd
    hpd = features.hpds >= 1 and hpd
    ds = features.lpa2 and g in (12, 14) and ds_bit
    # AArch64.S1MinTxSZ: 12 with FEAT_LVA and the 64KB granule, or with DS == 1
    mintxsz = 12 if (features.lva and g == 16) or ds else 16
    maxtxsz = max_txsz(g, features)
    txsz_fault = False
    if txsz < mintxsz:
        txsz_fault = features.lva or impdef.fault_txsz_below_min
        notes.append(f"TxSZ={txsz} is below the minimum {mintxsz}: "
                     + ("Translation fault, level 0" if txsz_fault else f"treated as {mintxsz}")
                     + " (AArch64.S1TxSZFaults, AArch64.S1MinTxSZ)")
        txsz = mintxsz
    elif txsz > maxtxsz:
        txsz_fault = impdef.fault_txsz_above_max
        notes.append(f"TxSZ={txsz} is above the maximum {maxtxsz}: IMPLEMENTATION DEFINED "
                     + ("Translation fault, level 0" if txsz_fault else f"treated as {maxtxsz}")
                     + " (AArch64.S1TxSZFaults, AArch64.MaxTxSZ)")
        txsz = maxtxsz
    iasize = 64 - txsz
    level = start_level(iasize, g)
    return S1TTWParams(
        regime=regime, varange=varange, granule_bits=g, txsz=txsz, txsz_fault=txsz_fault,
        iasize=iasize, start_level=level, ttbr=ttbr,
        base=table_base(ttbr, iasize, level, g, ps, ds, features),
        ps=ps, oasize=oa_size(ps, g, ds, features), addrtop=55 if tbi else 63,
        e0pd=e0pd, epd=epd, hpd=hpd, ha=ha, hd=hd, ds=ds, sh=sh, mair=mair,
        ee=bit(sctlr, SCTLR.EE), pa52_64k=g == 16 and features.pa_range_bits >= 52,
        notes=tuple(notes),
    )


def tcr2_enabled(regime: Regime, sysregs: Mapping[str, int], features: Features,
                 el2_enabled: bool = True) -> bool:
    """IsTCR2EL1Enabled / IsTCR2EL2Enabled: FEAT_TCR2, and for the EL1&0
    regime of a Security state where EL2 is enabled (EL2Enabled()) FEAT_HCX
    with HCRX_EL2.TCR2En == 1; without it TCR2_EL1 is treated as 0 (D24.2
    TCR2_EL1, HCRX_EL2.TCR2En). Where EL2 is not enabled (the Secure state
    without Secure EL2) HCRX_EL2 does not apply. SCR_EL3.{TCR2En, HXEn} are 1
    whenever the CPU has the feature (the harness sets them, target/el3.py)."""
    if not features.tcr2:
        return False
    if regime is Regime.EL10 and el2_enabled:
        return features.hcx and bit(sysregs.get("HCRX_EL2", 0), HCRX.TCR2En)
    return True


SUFFIX = {Regime.EL10: "EL1", Regime.EL2: "EL2", Regime.EL20: "EL2", Regime.EL3: "EL3"}
"""The registers of each regime: SCTLR_<sfx>, TCR_<sfx>, TTBR0_<sfx>, MAIR_<sfx>."""


def secure_el2_enabled(sysregs: Mapping[str, int], features: Features) -> bool:
    """EL2Enabled() in the Secure state: FEAT_SEL2 and SCR_EL3.EEL2 == 1 (D24.2
    SCR_EL3.EEL2 is RES0 without FEAT_SEL2; EL2 is implemented here)."""
    return features.sel2 and bit(sysregs.get("SCR_EL3", 0), SCR_EL3.EEL2)


NO_HCR = HcrState(False, False, False, False, False, False, False, False)
"""HCR_EL2 where EL2 is not enabled: no control of it has an effect."""


def s1_regime_params(regime: Regime, sysregs: Mapping[str, int], hcr: HcrState,
                     features: Features, impdef: ImpDef,
                     space: SecurityState = SecurityState.NONSECURE) -> S1RegimeParams:
    """AArch64.GetS1TTWParams for ``regime`` in Security state ``space`` and
    both VA ranges; with TCR2_ELx effective, PIE (FEAT_S1PIE) and AIE
    (FEAT_AIE) from it (AArch64.S1TTWParamsEL10/EL2/EL20). A Secure regime
    walks from the Secure PA space and honours NSTable and NS (D8.4.6); in
    the Secure state HCR_EL2 takes effect only where EL2 is enabled
    (secure_el2_enabled). The EL3 regime is Secure, or Root with FEAT_RME.
    A Realm regime uses the same registers (they are not banked by Security
    state) with EL2 always enabled."""
    root = regime is Regime.EL3 and features.rme >= 1
    secure = (space is SecurityState.SECURE or regime is Regime.EL3) and not root
    realm = space is SecurityState.REALM and regime is not Regime.EL3
    el2_on = not (root or regime is Regime.EL3
                  or (secure and not secure_el2_enabled(sysregs, features)))
    if not el2_on:
        hcr = NO_HCR
    sfx = SUFFIX[regime]
    tcr, sctlr = sysregs.get(f"TCR_{sfx}", 0), sysregs.get(f"SCTLR_{sfx}", 0)
    mair = sysregs.get(f"MAIR_{sfx}", 0)
    tcr2 = sysregs.get(f"TCR2_{sfx}", 0) if tcr2_enabled(regime, sysregs, features,
                                                          el2_on) else 0
    pie = features.s1pie and bit(tcr2, TCR2.PIE)
    aie = features.aie and bit(tcr2, TCR2.AIE)
    mair2 = sysregs.get(f"MAIR2_{sfx}", 0) if aie else 0
    lower = _s1_params(regime, "lower", tcr, sysregs.get(f"TTBR0_{sfx}", 0), mair, sctlr,
                       features, impdef)
    upper = None
    if regime.two_ranges:
        upper = _s1_params(regime, "upper", tcr, sysregs.get(f"TTBR1_{sfx}", 0), mair, sctlr,
                           features, impdef)
    if aie:
        lower = replace(lower, aie=True, mair2=mair2)
        upper = None if upper is None else replace(upper, aie=True, mair2=mair2)
    disabled_by = "" if bit(sctlr, SCTLR.M) else f"SCTLR_{sfx}.M == 0"
    if regime is Regime.EL10 and not disabled_by:
        disabled_by = ("HCR_EL2.TGE == 1" if hcr.tge else "HCR_EL2.DC == 1" if hcr.dc else "")
    return S1RegimeParams(
        regime=regime, enabled=not disabled_by, disabled_by=disabled_by,
        sctlr_c=bit(sctlr, SCTLR.C),
        dc=regime is Regime.EL10 and hcr.dc, wxn=bit(sctlr, SCTLR.WXN),
        epan=features.pan >= 3 and bit(sctlr, SCTLR.EPAN), pamax=features.pa_range_bits,
        lower=lower, upper=upper, pie=pie,
        pir=sysregs.get(f"PIR_{sfx}", 0) if pie else 0,
        pire0=sysregs.get(f"PIRE0_{sfx}", 0) if pie and regime.two_ranges else 0,
        secure=secure, root=root, realm=realm, root_secure=features.sel2,
        gpc=gpc_params(sysregs, features),
    )


def gpc_params(sysregs: Mapping[str, int], features: Features) -> GpcParams | None:
    """GPCCR_EL3/GPTBR_EL3 with FEAT_RME and GPCCR_EL3.GPC == 1, else None."""
    if not features.rme:
        return None
    p = GpcParams.from_sysregs(sysregs, features.pa_range_bits)
    return p if p.enabled else None


_S2_SL0_4K = {0b000: 2, 0b001: 1, 0b010: 0, 0b011: 3, 0b100: -1}
_S2_SL0_16K_64K = {0b00: 3, 0b01: 2, 0b10: 1, 0b11: 0}


@dataclass(frozen=True, slots=True)
class S2TTWParams:
    """Stage 2 walk parameters (AArch64.NSS2TTWParams) with the checks that
    depend only on the registers resolved (``config_fault``)."""

    enabled: bool
    """HCR_EL2.VM OR HCR_EL2.DC (effective values)."""
    granule_bits: int
    txsz: int
    iasize: int
    start_level: int
    config_fault: str
    """Non-empty: every stage 2 translation faults (Translation, level 0)."""
    base: int
    ps: int
    oasize: int
    ha: bool
    hd: bool
    ds: bool
    sh: int
    fwb: bool
    ptw: bool
    ee: bool
    pa52_64k: bool
    notes: tuple[str, ...]
    s2pie: bool = False
    """VTCR_EL2.S2PIE with FEAT_S2PIE: stage 2 Indirect permissions (D8.4.2,
    R_JMGVS; AArch64.NSS2TTWParams)."""
    s2pir: int = 0
    """S2PIR_EL2 (AArch64.NSS2TTWParams: read with FEAT_S2PIE)."""
    ttbr_name: str = "VTTBR_EL2"
    """The base register: VSTTBR_EL2 for a Secure IPA (AArch64.S2Walk)."""
    walk_ns: bool = True
    """The stage 2 tables are in the Non-secure PA space (AArch64.SS2InitialTTWState:
    VSTCR_EL2.SW for a Secure IPA, VTCR_EL2.NSW for a Non-secure one; always
    from the Non-secure state)."""
    out_ns: bool = True
    """The output is in the Non-secure PA space (AArch64.SS2OutputPASpace;
    always from the Non-secure state)."""
    space_why: str = ""
    """The registers that chose ``walk_ns`` and ``out_ns`` (Secure state only)."""
    realm: bool = False
    """Realm stage 2 (AArch64.RLS2TTWParams: the Non-secure parameters): tables
    in the Realm PA space (AArch64.S2InitialTTWState), the output in the
    Non-secure PA space when the leaf's NS (bit 55) is 1, else Realm
    (AArch64.S2NextWalkStateLeaf); ``walk_ns`` and ``out_ns`` do not apply."""
    gpc: GpcParams | None = None
    """FEAT_RME: the granule protection check every walk access passes (D9),
    in the PA space ``walk_ns`` says."""


def s2_params(sysregs: Mapping[str, int], hcr: HcrState, features: Features,
              impdef: ImpDef, space: SecurityState = SecurityState.NONSECURE,
              secure_ipa: bool = False) -> S2TTWParams:
    """AArch64.NSS2TTWParams, or in the Secure state AArch64.SS2TTWParams for
    the IPA space (``secure_ipa``), plus the register-only checks of
    AArch64.S2Translate. A Secure IPA takes TG0, T0SZ, SL0 (and SL2, with
    VTCR_EL2.DS) from VSTCR_EL2 and its base from VSTTBR_EL2; every other
    control (PS, SH0, HA, HD, DS, ...) comes from VTCR_EL2 for both IPA spaces.
    VSTCR_EL2.{SW, SA} and VTCR_EL2.{NSW, NSA} place the walk and the output
    (AArch64.SS2InitialTTWState, AArch64.SS2OutputPASpace); a stage 2
    descriptor has no NS bit in the Secure state (AArch64.S2NextWalkStateLeaf
    reads bit 55 as NS only for the Realm state; here it is one of the bits
    [58:55] reserved for software use). In the Realm state
    (AArch64.RLS2TTWParams) the parameters are the Non-secure ones, and
    VTCR_EL2.{NSW, NSA} (read by AArch64.SS2TTWParams only) have no effect."""
    vtcr = sysregs.get("VTCR_EL2", 0)
    vstcr = sysregs.get("VSTCR_EL2", 0) if features.sel2 else 0
    tcr_name, ttbr_name = ("VSTCR_EL2", "VSTTBR_EL2") if secure_ipa else ("VTCR_EL2", "VTTBR_EL2")
    sized = vstcr if secure_ipa else vtcr
    vttbr = sysregs.get(ttbr_name, 0)
    notes: list[str] = []
    supported = {12: features.tgran4_2, 14: features.tgran16_2, 16: features.tgran64_2}
    g, note = _granule_bits(field(sized, VTCR.TG0), TG0_BITS, supported, impdef.granule)
    if note:
        notes.append(note)
    ds = features.lpa2 and g in (12, 14) and bit(vtcr, VTCR.DS[0])
    sl2 = int(g == 12 and features.lpa2 and ds and bit(sized, VTCR.SL2[0]))
    sl0 = field(sized, VTCR.SL0)
    ps = field(vtcr, VTCR.PS)
    pamax = features.pa_range_bits
    ips = (52 if g == 16 or ds else 48) if pamax >= 52 else pamax
    mintxsz, maxtxsz = 64 - ips, max_txsz(g, features)
    txsz = field(sized, VTCR.T0SZ)
    fault = ""
    if txsz < mintxsz:
        if features.lpa or impdef.fault_txsz_below_min:
            fault = f"{tcr_name}.T0SZ={txsz} is below the minimum {mintxsz} (AArch64.S2TxSZFaults)"
        else:
            notes.append(f"{tcr_name}.T0SZ={txsz} is below the minimum {mintxsz}: treated as "
                         f"{mintxsz} (AArch64.S2TxSZFaults, IMPLEMENTATION DEFINED)")
        txsz = mintxsz
    elif txsz > maxtxsz:
        if impdef.fault_txsz_above_max:
            fault = f"{tcr_name}.T0SZ={txsz} is above the maximum {maxtxsz} (AArch64.S2TxSZFaults)"
        else:
            notes.append(f"{tcr_name}.T0SZ={txsz} is above the maximum {maxtxsz}: treated as "
                         f"{maxtxsz} (AArch64.S2TxSZFaults, IMPLEMENTATION DEFINED)")
        txsz = maxtxsz
    iasize = 64 - txsz
    level = (_S2_SL0_4K.get((sl2 << 2) | sl0, 99) if g == 12 else _S2_SL0_16K_64K[sl0])
    if not fault:
        fault = _s2_invalid_sl(g, sl2, sl0, ds, level, iasize, features, tcr_name)
    if fault:
        level = 0
    walk_ns = out_ns = True
    space_why = ""
    if space is SecurityState.SECURE:
        sw, sa = bit(vstcr, VSTCR.SW), bit(vstcr, VSTCR.SA)
        nsw, nsa = bit(vtcr, VTCR.NSW), bit(vtcr, VTCR.NSA)
        walk_ns = sw if secure_ipa else nsw
        out_ns = sw or sa if secure_ipa else sw or sa or nsw or nsa
        space_why = (f"VSTCR_EL2.{{SW,SA}} = {{{sw:d},{sa:d}}}" if secure_ipa else
                     f"VSTCR_EL2.{{SW,SA}} = {{{sw:d},{sa:d}}}, VTCR_EL2.{{NSW,NSA}} = "
                     f"{{{nsw:d},{nsa:d}}}")
    return S2TTWParams(
        enabled=hcr.vm or hcr.dc, granule_bits=g, txsz=txsz, iasize=iasize, start_level=level,
        config_fault=fault,
        base=0 if fault else table_base(vttbr, iasize, level, g, ps, ds, features),
        ps=ps, oasize=oa_size(ps, g, ds, features),
        ha=features.hafdbs >= 1 and bit(vtcr, VTCR.HA[0]),
        hd=features.hafdbs >= 2 and bit(vtcr, VTCR.HA[0]) and bit(vtcr, VTCR.HD[0]),
        ds=ds, sh=field(vtcr, VTCR.SH0), fwb=hcr.fwb, ptw=hcr.ptw,
        ee=bit(sysregs.get("SCTLR_EL2", 0), SCTLR.EE),
        pa52_64k=g == 16 and features.pa_range_bits >= 52, notes=tuple(notes),
        s2pie=features.s2pie and bit(vtcr, VTCR.S2PIE[0]),
        s2pir=sysregs.get("S2PIR_EL2", 0) if features.s2pie else 0,
        ttbr_name=ttbr_name, walk_ns=walk_ns, out_ns=out_ns, space_why=space_why,
        realm=space is SecurityState.REALM, gpc=gpc_params(sysregs, features),
    )


def _s2_invalid_sl(g: int, sl2: int, sl0: int, ds: bool, level: int, iasize: int,
                   features: Features, tcr_name: str = "VTCR_EL2") -> str:
    """AArch64.S2InvalidSL and AArch64.S2InconsistentSL ("" when consistent)."""
    pamax = features.pa_range_bits
    sl = f"{tcr_name}.SL0=0b{sl0:02b}" + (f" SL2={sl2}" if sl2 else "")
    if g == 12:
        code = (sl2 << 2) | sl0
        invalid = (code & 0b101 == 0b101 or code & 0b110 == 0b110
                   or (code == 0b100 and pamax < 52) or (code == 0b010 and pamax < 44)
                   or (code == 0b011 and not features.ttst))
    elif g == 14:
        invalid = (sl0 == 0b11 and (not ds or pamax < 52)) or (sl0 == 0b10 and pamax < 42)
    else:
        invalid = sl0 == 0b11 or (sl0 == 0b10 and pamax < 44)
    if invalid:
        return f"{sl} is invalid for a {1 << (g - 10)}KB granule (AArch64.S2InvalidSL)"
    stride = g - 3
    sl_min = (FINAL_LEVEL - level) * stride + g + 1
    sl_max = sl_min + (stride - 1) + 4
    if not sl_min <= iasize <= sl_max:
        return (f"{sl} (start level {level}) is inconsistent with a {iasize}-bit IPA space: "
                f"needs {sl_min}..{sl_max} bits (AArch64.S2InconsistentSL)")
    return ""
