"""The registers decoded per regime on first use (xcheck.arch.decode) give
what decoding every regime up front gives (AArch64.GetS1TTWParams,
AArch64.GetS2TTWParams for each regime, Security state and IPA space)."""

from __future__ import annotations

from dataclasses import replace

from archtables import MAX
from hypothesis import given, settings
from hypothesis import strategies as st

from xcheck.arch.at import ArchState
from xcheck.arch.features import Features
from xcheck.arch.regime import HcrState, Regime
from xcheck.arch.walkparams import ImpDef, s1_regime_params, s2_params
from xcheck.machine import SecurityState
from xcheck.model import IMPDEF_VARIANTS, PARTS, decides_a_choice, part_differs

REGISTERS = (
    "SCTLR_EL1", "TCR_EL1", "TTBR0_EL1", "TTBR1_EL1", "MAIR_EL1", "TCR2_EL1", "PIR_EL1",
    "PIRE0_EL1", "MAIR2_EL1", "SCTLR_EL2", "TCR_EL2", "TTBR0_EL2", "TTBR1_EL2", "MAIR_EL2",
    "TCR2_EL2", "PIR_EL2", "PIRE0_EL2", "MAIR2_EL2", "HCR_EL2", "HCRX_EL2", "VTCR_EL2",
    "VTTBR_EL2", "VSTCR_EL2", "VSTTBR_EL2", "S2PIR_EL2", "SCR_EL3", "SCTLR_EL3", "TCR_EL3",
    "TTBR0_EL3", "MAIR_EL3",
)
CPUS = (
    MAX,
    replace(MAX, pa_range_bits=52, lpa=True, lpa2=True, lva=True, ttst=True, tgran16=False,
            tcr2=True, hcx=True, s1pie=True, s2pie=True, aie=True, el3=True, sel2=True),
    replace(MAX, pa_range_bits=40, tgran4=False, tgran4_2=False, vh=False, el3=True),
)
CHOICES = (ImpDef(), ImpDef(fault_txsz_below_min=True, fault_txsz_above_max=True),
           ImpDef(granule=14), ImpDef(granule=16))
SPACES = (SecurityState.NONSECURE, SecurityState.SECURE, SecurityState.REALM)
words = st.integers(0, (1 << 64) - 1) | st.sampled_from((0, 1, 0x3F, 0x8000_0000_0000_0001))


@settings(max_examples=60, deadline=None)
@given(sysregs=st.fixed_dictionaries({name: words for name in REGISTERS}),
       feats=st.sampled_from(CPUS), impdef=st.sampled_from(CHOICES))
def test_a_regime_decoded_on_first_use_is_the_eager_decode(
        sysregs: dict[str, int], feats: Features, impdef: ImpDef) -> None:
    state = ArchState.from_sysregs(sysregs, feats, 1, False, impdef)
    hcr = HcrState.decode(sysregs["HCR_EL2"], feats)
    # in reverse order of the eager decode, and each twice: the first use decides nothing
    for space in reversed(SPACES):
        for regime in reversed(Regime):
            eager = s1_regime_params(regime, sysregs, hcr, feats, impdef,
                                     SecurityState.NONSECURE if regime is Regime.EL3 else space)
            assert state.regime(regime, space) == eager
            assert state.regime(regime, space) is state.regime(regime, space)
    for space, ipa_ns, secure_ipa in ((SecurityState.REALM, True, False),
                                      (SecurityState.SECURE, False, True),
                                      (SecurityState.SECURE, True, False),
                                      (SecurityState.NONSECURE, True, False)):
        eager2 = s2_params(sysregs, hcr, feats, impdef, space, secure_ipa)
        assert state.stage2(space, ipa_ns) == eager2
    assert state.s2 == s2_params(sysregs, hcr, feats, impdef)


def test_a_decode_is_of_the_registers_it_was_made_from() -> None:
    """The registers are copied: changing the mapping afterwards changes no
    decode, made before or after; a state with other PSTATE shares it."""
    sysregs = {"SCTLR_EL1": 1, "TCR_EL1": 16 | (0b101 << 32), "TTBR0_EL1": 0x4000_0000}
    state = ArchState.from_sysregs(sysregs, MAX, 1, False)
    before = state.regime(Regime.EL10)
    sysregs["TCR_EL1"] = 25
    sysregs["TTBR0_EL1"] = 0x5000_0000
    assert state.regime(Regime.EL10) is before and before.lower.txsz == 16
    assert state.regime(Regime.EL10, SecurityState.SECURE).lower.ttbr == 0x4000_0000
    other = state.with_pstate(2, True)
    assert other.regime(Regime.EL10) is before
    assert ArchState.from_sysregs(sysregs, MAX, 1, False).regime(Regime.EL10).lower.txsz == 25


@settings(max_examples=80, deadline=None)
@given(sysregs=st.fixed_dictionaries({name: words for name in REGISTERS}),
       feats=st.sampled_from(CPUS))
def test_a_choice_decodes_differently_only_where_the_default_noted_one(
        sysregs: dict[str, int], feats: Features) -> None:
    """model.decides_a_choice: every IMPLEMENTATION DEFINED choice of the
    decode leaves a note (a reserved or unimplemented TGx: D24.2 TCR_EL1.TG0;
    a TxSZ out of range: AArch64.S1TxSZFaults, S2TxSZFaults), so a part
    without one decodes alike under every choice and run_model need not
    decode it again."""
    base = ArchState.from_sysregs(sysregs, feats, 1, False)
    others = [ArchState.from_sysregs(sysregs, feats, 1, False, choice)
              for choice in IMPDEF_VARIANTS]
    for part in PARTS:
        if not decides_a_choice(base, part):
            assert not any(part_differs(base, other, part) for other in others), part
