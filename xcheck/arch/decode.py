"""The translation registers of one setup, each regime decoded when an AT
first reads it.

Arm ARM DDI 0487, J1.1.4: AArch64.GetS1TTWParams and AArch64.GetS2TTWParams
decode the registers of the regime (and stage 2) an AT translates in; an AT
reads no other regime, so the others need not be decoded at all. A decode
is kept once made: the registers are copied when the decoder is made, so a
kept decode is always that of these registers.
"""

from __future__ import annotations

from collections.abc import Mapping

from xcheck.arch.features import Features
from xcheck.arch.regime import HcrState, Regime
from xcheck.arch.walkparams import ImpDef, S1RegimeParams, S2TTWParams, s1_regime_params, s2_params
from xcheck.machine import SecurityState


class RegisterDecode:
    """The system registers of one setup with one set of IMPLEMENTATION
    DEFINED choices; ``s1`` and ``s2`` decode a regime on first use."""

    __slots__ = ("_s1", "_s2", "_sysregs", "features", "hcr", "impdef")

    def __init__(self, sysregs: Mapping[str, int], features: Features, impdef: ImpDef) -> None:
        self._sysregs = dict(sysregs)
        self.features = features
        self.impdef = impdef
        self.hcr = HcrState.decode(self._sysregs.get("HCR_EL2", 0), features)
        self._s1: dict[tuple[Regime, SecurityState], S1RegimeParams] = {}
        self._s2: dict[tuple[SecurityState, bool], S2TTWParams] = {}

    def s1(self, regime: Regime, space: SecurityState) -> S1RegimeParams:
        """AArch64.GetS1TTWParams for ``regime`` of Security state ``space``
        (Non-secure, Secure or Realm; the EL3 regime has one instance)."""
        key = (regime, space)
        params = self._s1.get(key)
        if params is None:
            params = self._s1[key] = s1_regime_params(regime, self._sysregs, self.hcr,
                                                      self.features, self.impdef, space)
        return params

    def s2(self, space: SecurityState, secure_ipa: bool) -> S2TTWParams:
        """AArch64.GetS2TTWParams: the stage 2 of Security state ``space``
        (Non-secure, Secure or Realm) for the Secure IPA space
        (``secure_ipa``) or the Non-secure one."""
        key = (space, secure_ipa)
        params = self._s2.get(key)
        if params is None:
            params = self._s2[key] = s2_params(self._sysregs, self.hcr, self.features,
                                               self.impdef, space, secure_ipa)
        return params
