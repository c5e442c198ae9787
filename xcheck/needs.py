"""What a probe needs of the CPU, derived from its setup rather than declared.

A scenario's ``requires:`` names features by hand; a probe also needs things
nobody wrote down. The harness runs in the EL2 regime, and for probes at EL1
in the EL1&0 regime with stage 2: on a CPU without a granule, a PA size or
FEAT_VHE that a scenario's tables assume, the harness's own code and data may
not translate to where they are, and the program cannot run at all. This
module asks the model (with the CPU's features and every IMPLEMENTATION
DEFINED choice it permits) where the harness's addresses go, so that such
probes are skipped with the reason before anything runs.
"""

from __future__ import annotations

from collections.abc import Sequence

from xcheck.arch.at import ArchState, translate
from xcheck.arch.fault import FaultRecord
from xcheck.arch.features import Features
from xcheck.arch.gpc import PASpace, granule_protection_check
from xcheck.arch.memory import MemoryImage
from xcheck.arch.par import decode_par, describe_par
from xcheck.arch.perms import S1Access
from xcheck.arch.regime import Regime
from xcheck.arch.walk import Access, s1_translate
from xcheck.machine import (
    HARNESS_CODE_SIZE,
    HARNESS_DATA_PA,
    HARNESS_PA,
    RAM_BASE,
    AtOp,
    MachineSetup,
    SecurityState,
)
from xcheck.model import ImpDefStates, reads, regime_reads
from xcheck.target.harness import el2_regime

REGIMES = {"EL10": "EL1&0", "EL2": "EL2", "EL20": "EL2&0", "EL3": "EL3"}
"""code_va's regime keys, as xcheck.arch.regime.Regime values."""


class _Asker:
    """What the questions about one setup share: its memory image, and its
    registers decoded with every IMPLEMENTATION DEFINED choice
    (model.ImpDefStates: each regime decoded once, and what each choice
    decodes differently worked out once, whatever the PSTATE asked from)."""

    def __init__(self, setup: MachineSetup, features: Features, ram_size: int,
                 choices: ImpDefStates | None) -> None:
        self.setup = setup
        self.features = features
        self.mem = MemoryImage(setup.memory, RAM_BASE, ram_size)
        self.choices = ImpDefStates(setup, features, 2, False) if choices is None else choices


def _reaches(ask: _Asker, el: int, space: SecurityState = SecurityState.NONSECURE) -> str:
    """"" when the harness's code and data translate to their physical
    addresses under every permitted decoding of the setup's registers, in the
    regime it runs in at ``el`` (EL1: the EL1&0 regime and stage 2, asked from
    EL2; EL3: the EL3 regime, at VA = PA), else why not. In the Secure or
    Realm ``space`` the question is asked from EL3 in that state (the same
    regime as at ``el``, AArch64.AT), and the code must also be fetchable
    from the PA space it lands in (GPC included)."""
    setup, mem = ask.setup, ask.mem
    regime = {1: "EL10", 3: "EL3"}.get(el) or el2_regime(setup.sysregs, ask.features)
    base = setup.code_va.get(regime, HARNESS_PA)
    read, write = {1: (AtOp.S12E1R, AtOp.S12E1W), 3: (AtOp.S1E3R, AtOp.S1E3W)}.get(
        el, (AtOp.S1E2R, AtOp.S1E2W))
    where = "the EL1&0 regime and stage 2" if el == 1 else f"the {regime} regime"
    lower = space is not SecurityState.NONSECURE and el != 3
    if lower:
        where = f"the {space.value} state's {where.removeprefix('the ')}"
    # the data half is read (the probe table) and written (the results)
    ats = ((read, base, HARNESS_PA, "code"),
           (read, base + HARNESS_CODE_SIZE, HARNESS_DATA_PA, "data"),
           (write, base + HARNESS_CODE_SIZE, HARNESS_DATA_PA, "data"))
    choices = ask.choices
    asked = (3, space) if lower else (max(el, 2), SecurityState.NONSECURE)
    default = choices.with_pstate(0, asked[0], False, asked[1])
    # a choice that decodes nothing these ATs and the code fetch read answers
    # as the default does
    parts = regime_reads(default, Regime(REGIMES[regime]), asked[1], base, regime == "EL10")
    parts = parts.union(*(reads(default, op, va) for op, va, _, _ in ats))
    for state in (default, *(choices.with_pstate(i, asked[0], False, asked[1])
                             for i in choices.differing(parts))):
        for op, va, pa, what in ats:
            res = translate(op, va, state, mem)
            if res.kind != "par":
                return f"the harness's {what} at VA 0x{va:x} cannot be reached ({res.kind})"
            fields = decode_par(res.par)
            if fields.get("F") or fields.get("PA", 0) << 12 != pa:
                return (f"on this CPU, {where} does not map the harness's {what} at VA 0x{va:x} "
                        f"to PA 0x{pa:x}: AT {op.value} gives {describe_par(res.par)}")
            if lower:
                gpf = _gpc_denied(state, regime, space, pa, bool(fields.get("NS")), mem)
                if gpf:
                    return f"the harness's {what} at PA 0x{pa:x} in {where} {gpf}"
        denied = _fetch_denied(state, regime, base, mem, space if lower else None)
        if denied:
            return f"on this CPU, the harness's code at VA 0x{base:x} in {where} {denied}"
    return ""


def _fetch_denied(state: ArchState, regime: str, va: int, mem: MemoryImage,
                  space: SecurityState | None = None) -> str:
    """Why stage 1 of ``regime`` (of the Security state ``space``, else
    Non-secure) does not let its own EL fetch code at ``va`` ("" when it
    does). A regime's descriptors read differently in another regime: bit 54
    is UXN in EL2&0 and XN in EL2 (D8.4.1.3)."""
    ss = space or SecurityState.NONSECURE
    rp = state.regime(Regime(REGIMES[regime]), ss)
    el = {"EL10": 1, "EL3": 3}.get(regime, 2)
    acc = Access(S1Access(el=el, write=False, pan_op=False, fetch=True), False, False,
                 state.features.pan)
    el2_on = ss is not SecurityState.SECURE or state.eel2
    s2_on = regime == "EL10" and state.s2.enabled and el2_on
    s2 = state.stage2(ss, True) if s2_on else None
    s2_secure = state.stage2(ss, False) if s2_on and ss is SecurityState.SECURE else None
    out = s1_translate(rp, va, acc, s2, mem, [], None, s2_secure)
    if isinstance(out, FaultRecord):
        return f"is not executable: {out.describe()}"
    return ""


def _gpc_denied(state: ArchState, regime: str, space: SecurityState, pa: int, ns: bool,
                mem: MemoryImage) -> str:
    """Why the granule protection check refuses an access to ``pa`` in the
    PA space a Secure or Realm regime's PAR reports (NS: Non-secure, else the
    state's own; AArch64.GranuleProtectionCheck), "" when it passes."""
    rp = state.regime(Regime(REGIMES[regime]), space)
    if rp.gpc is None:
        return ""
    own = PASpace.SECURE if space is SecurityState.SECURE else PASpace.REALM
    gpf = granule_protection_check(rp.gpc, pa, PASpace.NONSECURE if ns else own, mem, [])
    return f"is refused by the GPT: {gpf.describe()}" if gpf else ""


def unrunnable(setup: MachineSetup, features: Features, ram_size: int,
               choices: ImpDefStates | None = None) -> Sequence[str]:
    """Per probe of ``setup``: "" when the harness can run it on a CPU with
    ``features``, else the reason it cannot. ``choices``: the setup's
    registers as the model already decoded them for its probes (run_model),
    if at hand."""
    ask = _Asker(setup, features, ram_size, choices)
    el2 = _reaches(ask, 2)
    # On a CPU with EL3 every program starts and ends there (harness.py, segment E3).
    el3 = _reaches(ask, 3) if features.el3 else ""
    el1: str | None = None
    lower: dict[tuple[int, SecurityState], str] = {}
    out = []
    pan = features.has("PAN")
    for p in setup.probes:
        if p.pan and not pan:
            out.append("PSTATE.PAN = 1 needs FEAT_PAN, which this CPU lacks")
        elif p.el == 3 and not features.el3:
            out.append("probes at EL3 need a CPU with EL3 that starts there (a machine with "
                       "secure=on: --config secure)")
        elif p.space is SecurityState.ROOT and not features.rme:
            out.append("space: root is the Security state of EL3 with FEAT_RME, which this "
                       "CPU lacks (without it EL3 is Secure: use space: secure)")
        elif p.space is SecurityState.REALM and not features.rme:
            out.append("space: realm needs FEAT_RME (SCR_EL3.NSE), which this CPU lacks")
        elif p.el != 3 and p.space is not SecurityState.NONSECURE and not features.el3:
            out.append(f"probes at EL{p.el} in the {p.space.value} state are entered from EL3: "
                       "they need a CPU that starts at EL3 (--config secure)")
        elif el3 or el2:
            out.append(el3 or el2)
        elif p.el != 3 and p.space is not SecurityState.NONSECURE:
            key = (p.el, p.space)
            if key not in lower:
                lower[key] = _reaches(ask, p.el, p.space)
            out.append(lower[key])
        elif p.el == 1:
            if el1 is None:
                el1 = _reaches(ask, 1)
            out.append(el1)
        else:
            out.append("")
    return out
