"""Security states and granule protection in generated cases: only on a CPU
that has them and starts at EL3, deterministic, each left out by its knob
(no QEMU)."""

from __future__ import annotations

import functools
from dataclasses import replace

from fuzzcpu import CPUS, knobs

from xcheck.arch.rules import Rule
from xcheck.fuzz.case import Case, _gpt_blocks_harness, make_case
from xcheck.fuzz.knobs import Knobs, parse_features
from xcheck.fuzz.shape import size_bytes
from xcheck.machine import HARNESS_PA, HARNESS_SIZE, SecurityState

RAM = 128 << 20
N = 80


@functools.cache
def case(cpu: str, index: int, seed: int = 5) -> Case:
    return make_case(seed, index, knobs(cpu), RAM)


def uses(c: Case) -> set[str]:
    """What of EL3, Secure EL2, the Realm state and granule protection a case uses."""
    regs = c.doc.get("regs", {})
    out = {r for r in ("SCTLR_EL3", "TCR_EL3", "MAIR_EL3", "VSTCR_EL2") if r in regs}
    out |= {f"SCR_EL3.{f}" for f in regs.get("SCR_EL3", {})}
    out |= {f"VSTCR_EL2.{f}" for f in ("SW", "SA") if f in regs.get("VSTCR_EL2", {})}
    out |= {f"VTCR_EL2.{f}" for f in ("NSW", "NSA") if f in regs.get("VTCR_EL2", {})}
    tables = c.doc.get("tables", {})
    out |= {t for t in ("TTBR0_EL3", "VSTTBR_EL2") if t in tables}
    for base, maps in tables.items():
        stage = "s2" if base.startswith(("VTTBR", "VSTTBR")) else "s1"
        out |= {f"{stage}:{k}" for m in maps for k in ("ns", "nse") if k in m}
        out |= {"nstable" for m in maps if "nstable" in m.get("table", {})}
    out |= {f"space:{p.space.value}" for p in c.setup.probes
            if p.space is not SecurityState.NONSECURE}
    out |= {"el3" for p in c.setup.probes if p.el == 3}
    out |= {p.op.value for p in c.setup.probes} & {"S1E3R", "S1E3W"}
    if "gpt" in c.doc:
        out.add("gpt")
        out |= {f"gpi:{r['gpi']}" + (":table" if "table" in r else ":pa")
                for r in c.doc["gpt"]["regions"]}
    return out


def test_nothing_of_el3_without_a_cpu_that_starts_there() -> None:
    """Probes at EL3 and the EL3 registers need the harness at EL3: a CPU
    without EL3, and one with EL3 whose target does not start there
    (the nested-KVM vCPU), get none of them."""
    not_started = Knobs(CPUS["rme"])
    for index in range(40):
        assert uses(case("qemu11", index)) == set(), index
        assert uses(make_case(5, index, not_started, RAM)) == set(), index


def test_a_secure_cpu_gets_the_secure_state_and_no_rme() -> None:
    """Without FEAT_RME: the Secure state, Secure EL2, the EL3 regime (Secure),
    NS and NSTable; no Realm, no Root, no NSE, no GPT (D24.2: SCR_EL3.NSE,
    GPCCR_EL3 exist only with FEAT_RME)."""
    used: set[str] = set()
    for index in range(N):
        c = case("secure", index)
        u = uses(c)
        used |= u
        assert not u & {"space:realm", "space:root", "s1:nse", "gpt"}, index
        if "el3" in u:
            assert "EL3" in c.doc["requires"]
        if "SCR_EL3.EEL2" in u:
            assert "SEL2" in c.doc["requires"]
    assert used >= {"SCTLR_EL3", "TCR_EL3", "MAIR_EL3", "TTBR0_EL3", "SCR_EL3.EEL2",
                    "VSTCR_EL2", "VSTTBR_EL2", "VSTCR_EL2.SW", "VSTCR_EL2.SA", "VTCR_EL2.NSW",
                    "VTCR_EL2.NSA", "s1:ns", "nstable", "space:secure", "el3", "S1E3R",
                    "S1E3W"}


def test_an_rme_cpu_gets_realm_root_and_every_gpi() -> None:
    used: set[str] = set()
    for index in range(N):
        c = case("rme", index)
        u = uses(c)
        used |= u
        if u & {"space:realm", "space:root", "gpt"}:
            assert "RME" in c.doc["requires"]
    assert used >= {"space:realm", "space:root", "space:secure", "s1:nse", "s2:ns", "gpt"}
    for gpi in ("none", "secure", "nonsecure", "root", "realm", "all"):
        assert f"gpi:{gpi}:table" in used or f"gpi:{gpi}:pa" in used, gpi
    assert any(u.endswith(":table") for u in used)
    assert any(u.endswith(":pa") for u in used)


def test_the_cases_reach_the_security_rules() -> None:
    """The model's traces cite the rules of the Secure, Realm and Root
    regimes and of granule protection (coverage's never_reached shrinks)."""
    cited = {s.cites for index in range(N) for r in case("rme", index).model for s in r.trace}
    assert cited >= {Rule.REGIME_EL3, Rule.REGIME_EL10_SECURE, Rule.SECURE_EL2_ENABLED,
                     Rule.REALM_EL2_ENABLED, Rule.SS2_SECURE_IPA, Rule.RLS2_REALM,
                     Rule.S1_NSTABLE, Rule.S1_OUTPUT_PASPACE, Rule.S2_REALM_OUTPUT_PASPACE,
                     Rule.GPC_GPI_DENIES, Rule.AT_GPC_ON_WALK}


def test_the_harness_keeps_running() -> None:
    """Probes in another Security state are at EL3 (SCR_EL3 selects the
    state only there); the EL3 regime leaves the harness's VA = PA range to
    it; the GPT keeps the harness's code, data and walks to PA spaces it
    runs in (docs/scenario-format.md, the harness mappings)."""
    gpts = 0
    for index in range(N):
        c = case("rme", index)
        assert all(p.el == 3 for p in c.setup.probes if p.space is not SecurityState.NONSECURE)
        for m in c.doc.get("tables", {}).get("TTBR0_EL3", []):
            if c.setup.sysregs["SCTLR_EL3"] & 1 and "size" in m:
                end = m["va"] + size_bytes(m["size"])
                assert end <= HARNESS_PA or m["va"] >= HARNESS_PA + HARNESS_SIZE
        if "gpt" in c.doc:
            gpts += 1
            assert not _gpt_blocks_harness(c.setup, CPUS["rme"], RAM)
    assert gpts > 5


def test_the_same_seed_gives_the_same_cases() -> None:
    for index in range(8):
        assert make_case(9, index, knobs("rme"), RAM).text == \
            make_case(9, index, knobs("rme"), RAM).text


def test_the_knobs_leave_each_family_out() -> None:
    families = {
        "secure": {"space:secure", "S1E3R", "S1E3W", "TTBR0_EL3", "SCTLR_EL3"},
        "sel2": {"SCR_EL3.EEL2", "VSTCR_EL2", "VSTTBR_EL2"},
        "realm": {"space:realm", "s2:ns", "s1:nse"},
        "gpc": {"gpt"},
    }
    for name, family in families.items():
        k = replace(knobs("rme"), allowed=parse_features([f"-{name}"]))
        for index in range(30):
            assert not uses(make_case(5, index, k, RAM)) & family, (name, index)
    none = replace(knobs("rme"), allowed=parse_features(["-secure,-sel2,-realm,-gpc"]))
    for index in range(20):
        assert uses(make_case(5, index, none, RAM)) == set()
