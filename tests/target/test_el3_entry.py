"""The EL3 entry of the harness, read back with capstone (no QEMU).

SCR_EL3 fields: Arm ARM D24.2 SCR_EL3 (NS bit 0, RES1 bits [5:4], HCE 8,
RW 10, APK 16, API 17, FGTEn 27, HXEn 38, EnTP2 41, TCR2En 43, SCTLR2En 44,
PIEn 45, AIEn 46); an enable exists only with its feature.
"""

from __future__ import annotations

import pytest
from test_harness import PROBES, listing, table_ats

from xcheck.machine import HARNESS_PA, AtOp, MachineSetup, Probe, SecurityState, sysreg_defaults
from xcheck.target import el3, harness

QEMU72_MAX = {
    "ID_AA64ISAR1_EL1": 0x0011111101211012,
    "ID_AA64MMFR0_EL1": 0x0000032310201126,
    "ID_AA64MMFR1_EL1": 0x0000011010211122,
    "ID_AA64MMFR3_EL1": 0,
    "ID_AA64PFR1_EL1": 0x0000000001000021,
}
"""-cpu max of QEMU 7.2 as `xcheck doctor --config secure` reads it."""


def test_scr_el3_without_optional_features_is_ns_hce_rw_and_res1() -> None:
    assert el3.scr_el3({}) == 1 | 0b11 << 4 | 1 << 8 | 1 << 10


def test_scr_el3_sets_the_enables_of_the_features_the_cpu_has() -> None:
    scr = el3.scr_el3(QEMU72_MAX)
    # PAuth (ISAR1.APA = 1), FGT (MMFR0[59:56] = 0), HCX (MMFR1[43:40] = 1), SME (PFR1[27:24] = 1)
    assert scr & (1 << 16 | 1 << 17) == 1 << 16 | 1 << 17
    assert not scr & 1 << 27
    assert scr & 1 << 38 and scr & 1 << 41
    assert not scr & (0xF << 43)  # no TCR2, SCTLR2, PIE, AIE on 7.2
    assert not scr & (1 << 18 | 1 << 62 | 1 << 7)  # EEL2, NSE, SMD stay 0


def test_scr_el3_tcr2_pie_aie_follow_id_aa64mmfr3() -> None:
    scr = el3.scr_el3({"ID_AA64MMFR3_EL1": 0x1000000011001111})  # QEMU 11.1 -cpu max
    assert scr >> 43 & 0xF == 0xF
    assert el3.scr_el3({"ID_AA64MMFR3_EL1": 0x1000}) >> 45 & 1  # S2PIE alone


def test_program_starts_at_el3_drops_to_el2_and_ends_by_smc() -> None:
    scr = el3.scr_el3(QEMU72_MAX)
    p = harness.assemble(MachineSetup(sysreg_defaults(), {}, PROBES), scr_el3=scr)
    seg_e3 = listing(p, p.entry, p.entry + 0x100)
    seg_e3 = seg_e3[: seg_e3.index("eret") + 1]
    msrs = [line.split()[1].rstrip(",") for line in seg_e3 if line.startswith("msr")]
    assert msrs == ["vbar_el3", "scr_el3", "cptr_el3", "sctlr_el2", "tcr_el3", "ttbr0_el3",
                    "mair_el3", "vsttbr_el2", "vstcr_el2", "sctlr_el3", "spsr_el3",
                    "elr_el3"]  # SCTLR_EL3 after the TLBI; Secure stage 2 (FEAT_SEL2) at EL3
    assert seg_e3.index("tlbi alle3") < seg_e3.index("msr sctlr_el3, x1")
    assert "mov x1, #0x3c9" in seg_e3  # SPSR_EL3.M = EL2h
    tail = listing(p, p.end, len(p.code))
    tail = tail[: tail.index(f"b #0x{p.stop:x}") + 1]  # to the stop, at EL3 with VA = PA
    assert "smc #0" in tail and "msr sctlr_el3, x1" in tail
    assert tail.index("msr sctlr_el3, x1") < len(tail) - 1
    assert p.stop == HARNESS_PA + harness.HALT
    assert listing(p, harness.HALT, harness.HALT + 8) == ["isb", f"b #0x{p.stop + 4:x}"]
    assert len(table_ats(p)) == len(PROBES)


def test_el3_vectors_branch_to_a_handler_that_takes_smc_from_el2_to_x24() -> None:
    p = harness.assemble(MachineSetup(sysreg_defaults(), {}, PROBES), scr_el3=0x531)
    slot8 = listing(p, harness.VEC_EL3 + 8 * 0x80, harness.VEC_EL3 + 8 * 0x80 + 8)
    assert slot8[0] == "mov x27, #8" and slot8[1].startswith("b #")
    handler = int(slot8[1].split("#")[1], 16) - HARNESS_PA
    body = listing(p, handler, handler + 40)
    assert body[0] == "mrs x25, esr_el3"
    assert "cmp x26, #0x17" in body and "br x24" in body


def test_without_el3_the_program_is_unchanged_and_stops_at_el2() -> None:
    setup = MachineSetup(sysreg_defaults(), {}, PROBES)
    p = harness.assemble(setup)
    assert p.stop == p.el2_base + harness.HALT
    assert set(listing(p, harness.VEC_EL3, harness.PROGRAM)) == {"nop"}
    assert "smc #0" not in listing(p, p.resume, len(p.code))


def test_exit_store_is_refused_with_el3() -> None:
    with pytest.raises(ValueError, match="without EL3"):
        harness.assemble(
            MachineSetup(sysreg_defaults(), {}, (Probe(AtOp.S1E1R, 0, 2),)),
            scr_el3=0x531, exit_store=0x0F00_0000,
        )


def test_el3_groups_are_entered_by_smc_and_secure_ones_clear_scr_ns() -> None:
    probes = (Probe(AtOp.S1E3R, 0x1000, 3),
              Probe(AtOp.S1E1R, 0x2000, 3, space=SecurityState.SECURE),
              Probe(AtOp.S1E1W, 0x3000, 2))
    p = harness.assemble(MachineSetup(sysreg_defaults(), {}, probes), scr_el3=0x531)
    assert [(g.el, g.space.value) for g in p.groups] == [(3, "nonsecure"), (3, "secure"),
                                                    (2, "nonsecure")]
    body = listing(p, p.resume, p.end)
    assert body.count("smc #0") == 2 and body.count("eret") == 2
    assert table_ats(p) == ["at s1e3r, x0", "at s1e1r, x0", "at s1e1w, x0"]
    loops = [k for k, ln in enumerate(body) if ln == "blr x1"]  # one per group
    secure = body[loops[0]:loops[1]]
    assert "mov x1, #0x530" in secure and "msr scr_el3, x1" in secure  # NS = 0 for the AT
    assert "mrs x17, elr_el3" in secure and "msr elr_el3, x17" in body


def test_probes_at_el3_need_a_cpu_that_starts_there() -> None:
    with pytest.raises(ValueError, match="EL3"):
        harness.assemble(MachineSetup(sysreg_defaults(), {}, (Probe(AtOp.S1E3R, 0, 3),)))
