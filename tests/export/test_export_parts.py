"""`xcheck export --format qemu-tcg` without QEMU: the generated program's
register order, the memory image, the CPU check's masks, bad input."""

from __future__ import annotations

import random
from pathlib import Path

from click.testing import CliRunner

from xcheck.arch.features import FIELDS_READ, Features
from xcheck.cli import main
from xcheck.export import qemu_tcg
from xcheck.machine import HARNESS_PA, AtOp, MachineSetup, Probe, sysreg_defaults

PROBES = (Probe(AtOp.S1E1R, 0x1000, el=2), Probe(AtOp.S1E1RP, 0x2000, el=1, pan=True),
          Probe(AtOp.S1E1W, 0x3000, el=2, pan=True))


def _setup(**regs: int) -> MachineSetup:
    return MachineSetup(sysregs={**sysreg_defaults(), **regs}, memory={}, probes=PROBES,
                        code_va={"EL10": 0x8000_0000})


def test_fields_read_cover_everything_features_decode() -> None:
    rng = random.Random(15)
    for _ in range(2000):
        regs = {r: rng.getrandbits(64) for r in FIELDS_READ}
        masked = {r: v & FIELDS_READ[r] for r, v in regs.items()}
        assert Features.from_id_regs(regs) == Features.from_id_regs(masked)


def test_registers_are_written_in_the_harness_order() -> None:
    """EL1 registers while HCR_EL2 = RW only (D5.8.4 redirection with E2H),
    then HCR_EL2, then the EL2 and stage 2 registers, SCTLR_EL2 last."""
    text = qemu_tcg.probes_s(_setup(HCR_EL2=1 << 34 | 1 << 31), PROBES, "x.yaml")
    msrs = [line.split()[1].rstrip(",") for line in text.splitlines()
            if line.strip().startswith("msr ") and "pan" not in line]
    assert msrs[0] == "hcr_el2" and msrs[1:6] == ["sctlr_el1", "tcr_el1", "ttbr0_el1",
                                                  "ttbr1_el1", "mair_el1"]
    assert msrs[6:8] == ["vbar_el1", "hcr_el2"]
    assert msrs.index("sctlr_el2") > msrs.index("vttbr_el2") > msrs.index("hcr_el2", 1)
    assert text.split("msr hcr_el2")[1].splitlines()[-2].strip() == "ldr x1, =0x480000000"


def test_el1_probes_run_after_an_eret_with_spsr_pan() -> None:
    text = qemu_tcg.probes_s(_setup(), PROBES, "x.yaml")
    el1 = text.split("group1_el1:")[1].split("group1_back:")[0]
    assert "at s1e1rp, x0" in el1 and el1.rstrip().endswith("hvc #0")
    assert "ldr x1, =0x4003c5" in text  # SPSR_EL2: EL1h, DAIF masked, PAN (bit 22)
    assert f"ldr x10, =0x{0x8000_0000 - HARNESS_PA:x}" in text
    assert text.count("msr pan, #1") == 1 and text.count("msr pan, #0") == 1


def test_memory_image_is_its_nonzero_words() -> None:
    mem = {0x4040_0000: bytes(8) + (0x4040_1003).to_bytes(8, "little"),
           0x4040_1003: b"\x07"}
    assert qemu_tcg.image_words(mem) == [(0x4040_0008, 0x4040_1003), (0x4040_1000, 0x07 << 24)]


def test_code_away_from_pa_at_el2_is_refused() -> None:
    setup = MachineSetup(sysregs={**sysreg_defaults(), "SCTLR_EL2": 0x30C5_0831},
                         memory={}, probes=PROBES, code_va={"EL2": 0x1_0000_0000})
    refused = qemu_tcg.refusals(setup)
    assert len(refused) == 3 and "VA 0x100000000 in the EL2 regime" in refused[0].reason


def test_bad_input_is_a_message_and_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["export", str(tmp_path / "none.yaml"), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "no such file" in res.output
    good = Path(__file__).parents[1] / "bisect" / "sh-mmu-off.yaml"
    res = runner.invoke(main, ["export", str(good), "--out", str(tmp_path), "--format", "x"])
    assert res.exit_code == 2 and "unknown format 'x'" in res.output
    res = runner.invoke(main, ["export", str(good), "--out", str(tmp_path), "--config", "nope"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert not list(tmp_path.iterdir())


def test_an_exported_abort_is_the_exception_xcheck_run_accepts() -> None:
    """The ESR value and mask an exported test checks an aborted AT by are
    what xcheck.check accepts: EC, DFSC, S1PTW and CM (D24.2 ESR_EL2)."""
    from dataclasses import replace

    from xcheck.check import agrees
    from xcheck.export.answers import _answers
    from xcheck.machine import TargetException
    from xcheck.model import run_model
    from xcheck.scenario.loader import load_scenario

    root = Path(__file__).resolve().parents[2]
    setup = load_scenario(root / "scenarios/stage2/s2-fault-on-s1-walk-el1.yaml").build()
    probe = next(p for p in setup.probes if p.va == 0x3_4000_0000)
    (model,) = run_model(replace(setup, probes=(probe,)), Features.everything(), 128 << 20)
    answers = _answers(model)
    assert model.kind == "abort" and model.fault is not None and answers
    fst = model.fault.fst
    for ec in (0x24, 0x25, 0x18):
        for iss in range(0, 1 << 9, 0x40):  # WnR, S1PTW, CM in every combination
            esr = ec << 26 | 1 << 25 | iss | fst
            exported = any(esr & a.mask == a.par for a in answers)
            assert exported is agrees(model, TargetException(esr, 0, probe.va, 2)), hex(esr)
