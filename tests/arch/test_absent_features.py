"""What the Arm ARM requires of a CPU that lacks a feature (no QEMU).

A control field of an unimplemented feature is RES0 (D24.2, each field's
"Otherwise" clause): the PE behaves as if it were 0, whatever was written.
A TGx encoding of an unimplemented granule is "an IMPLEMENTATION DEFINED
choice of the sizes that has been implemented" (D24.2 TCR_EL1.TG0, VTCR_EL2.TG0).
"""

from __future__ import annotations

import dataclasses

from archtables import LEAF, MAIR, MAX, SCTLR_ON, TCR_4K_48, Tables, at, regs

from xcheck.arch.features import PREDICATES, Features
from xcheck.arch.par import decode_par
from xcheck.arch.walkparams import oa_size
from xcheck.machine import RAM_BASE, AtOp, MachineSetup, Probe
from xcheck.model import run_model

VA = 0x0000_0012_3456_7000
PA = RAM_BASE + 0x0123_4000
TG0_16K = 0b10 << 14
HPD0 = 1 << 41
HA = 1 << 39
E0PD0 = 1 << 55
APTABLE_NO_EL0 = 1 << 61  # APTable[0]: no EL0 access below this table


def el1(t: Tables, tcr: int = TCR_4K_48) -> dict[str, int]:
    return regs(SCTLR_EL1=SCTLR_ON, TCR_EL1=tcr, TTBR0_EL1=t.root, MAIR_EL1=MAIR)


def fault(par: int) -> tuple[int, int]:
    f = decode_par(par)
    assert f["F"] == 1, f"expected a fault, got {par:#x}"
    return f["FST"] >> 2, f["FST"] & 3


def test_tcr_hpd_is_res0_without_hpds() -> None:
    """FEAT_HPDS: TCR_EL1.HPD0 disables APTable. Without it the bit is RES0,
    so APTable still forbids EL0 (D8.4.2 hierarchical permissions)."""
    t = Tables()
    t.map(VA, PA, table_flags=APTABLE_NO_EL0, flags=LEAF | 1 << 6)  # AP[1]: EL0 RW
    sysregs = el1(t, TCR_4K_48 | HPD0)
    with_hpds = at(AtOp.S1E0R, VA, sysregs, t.image())
    without = at(AtOp.S1E0R, VA, sysregs, t.image(), features=dataclasses.replace(MAX, hpds=0))
    assert decode_par(with_hpds.par)["F"] == 0
    assert fault(without.par) == (0b0011, 3)  # Permission fault, level 3


def test_tcr_ha_is_res0_without_hafdbs() -> None:
    """FEAT_HAFDBS: with TCR.HA = 1 an AF = 0 descriptor is not a fault.
    Without it HA is RES0: Access flag fault (D8.5.1)."""
    t = Tables()
    t.map(VA, PA, flags=LEAF & ~(1 << 10))
    sysregs = el1(t, TCR_4K_48 | HA)
    assert decode_par(at(AtOp.S1E1R, VA, sysregs, t.image()).par)["F"] == 0
    none = at(AtOp.S1E1R, VA, sysregs, t.image(), features=dataclasses.replace(MAX, hafdbs=0))
    assert fault(none.par) == (0b0010, 3)


def test_tcr_e0pd_is_res0_without_e0pd() -> None:
    """FEAT_E0PD: TCR.E0PD0 = 1 makes EL0 accesses to the lower range fault
    at level 0. Without it the bit is RES0 and the walk proceeds."""
    t = Tables()
    t.map(VA, PA, flags=LEAF | 1 << 6)
    sysregs = el1(t, TCR_4K_48 | E0PD0)
    assert fault(at(AtOp.S1E0R, VA, sysregs, t.image()).par) == (0b0001, 0)
    none = at(AtOp.S1E0R, VA, sysregs, t.image(), features=dataclasses.replace(MAX, e0pd=False))
    assert decode_par(none.par)["F"] == 0


def test_an_unimplemented_granule_is_any_implemented_one() -> None:
    """TG0 = 16KB on a CPU without the 16KB granule: the model answers with
    its default choice and carries the other implemented granule's answer as
    a permitted alternative; with tables built for 4KB, the 4KB choice
    translates and the 64KB choice does not reach the same PA."""
    t = Tables()  # 4KB tables, 48-bit VA
    t.map(VA, PA)
    image = {a: v.to_bytes(8, "little") for a, v in t.words.items()}
    sysregs = el1(t, (TCR_4K_48 & ~(0b11 << 14)) | TG0_16K)
    no16 = dataclasses.replace(MAX, tgran16=False)
    setup = MachineSetup(sysregs, image, (Probe(AtOp.S1E1R, VA, el=1),))
    (res,) = run_model(setup, no16, 128 << 20)
    answers = [res, *res.alternatives]
    pas = {decode_par(a.par).get("PA", 0) << 12 for a in answers if not a.par & 1}
    assert PA in pas  # the 4KB choice
    assert len(answers) >= 2  # the 64KB choice answers differently
    assert any("IMPLEMENTATION DEFINED choice" in n for _, n in res.mask_notes)
    # with 16KB implemented, TG0 = 16KB is 16KB: no alternative from the granule
    (full,) = run_model(setup, MAX, 128 << 20)
    assert not any("granule" in n for a in full.alternatives for _, n in a.mask_notes)


def test_lacking_names_each_missing_feature() -> None:
    cpu = Features(pa_range_bits=40, pan=1, vh=False, tgran16=False, s2fwb=False)
    more = {name: f for _, name, f in cpu.lacking(cpu.upgraded())}
    assert {"PA42", "PA48", "PA52", "TGRAN16", "VHE", "PAN2", "PAN3", "S2FWB"} <= set(more)
    assert "PA40" not in more and "PAN" not in more
    assert more["PA48"].pa_range_bits == 48 and more["PA48"].vh is False
    assert more["PAN2"].pan == 2
    assert MAX.upgraded().lacking(MAX.upgraded()) == []


def test_a_52_bit_pa_range_added_is_feat_lpa() -> None:
    # PARange 0b0110 is FEAT_LPA (D24.2 ID_AA64MMFR0_EL1.PARange): with DS = 1
    # and IPS = 52 bits, a 52-bit OA is in range on that CPU (AArch64.PhysicalAddressSize),
    # an Address size fault on this 48-bit one (a nested-KVM guest hypervisor's view)
    cpu = Features(pa_range_bits=48, lpa2=True)
    more = {name: f for _, name, f in cpu.lacking(cpu.upgraded())}
    assert more["PA52"].lpa and more["PA52"].pa_range_bits == 52
    assert oa_size(0b110, 14, True, more["PA52"]) == 52 and oa_size(0b110, 14, True, cpu) == 48


def test_a_pe_without_a_feature_lacks_that_one_only() -> None:
    full = Features.everything()
    for name in ("S1PIE", "TCR2", "EL3", "HAFDBS_DIRTY", "PA48"):
        less = full.without(name)
        assert less is not None and not less.has(name), name
        assert {n for n in PREDICATES if full.has(n) and not less.has(n)} == {name}, name
    # a leveled feature keeps the levels below (PAN3 goes with PAN2); a PA size
    # goes to the next smaller one
    assert full.without("PAN2") == dataclasses.replace(full, pan=1)
    assert full.without("PA48") == dataclasses.replace(full, pa_range_bits=44)
    assert full.without("RME") is None  # not implemented: nothing to take away
    # PARange 0b0110 (52 bits) is FEAT_LPA (D24.2 ID_AA64MMFR0_EL1.PARange)
    big = dataclasses.replace(full, pa_range_bits=52, lpa=True)
    assert big.without("LPA") == full and big.without("PA52") == full
