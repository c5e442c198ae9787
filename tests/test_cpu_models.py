"""The shipped scenarios on QEMU's named CPU models (real QEMU and gdb): a CPU
without VHE and without the 16KB granule (cortex-a57), one with a 40-bit PA
(cortex-a76), and the same on QEMU 11.1 when it is installed. Every probe
either agrees with the model, is a recorded QEMU bug (`known`, some only on
CPUs that lack a feature) or is skipped with the reason the harness cannot run
it there; none is a target error or a broken expectation."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest
from rich.console import Console

from xcheck.matrix import run_matrix
from xcheck.outcome import ExitCode
from xcheck.target.profile import Profile, load_profile

SUITE = Path(__file__).resolve().parent.parent / "scenarios"
FOLDERS = ("el2", "permissions", "stage2", "vhe")
FINE = {"match", "known", "skipped"}


def _run(tmp_path: Path, config: str, cpus: list[str],
         paths: list[Path]) -> tuple[int, list[dict[str, str]]]:
    out = tmp_path / f"{config}.jsonl"
    code = run_matrix(
        paths, configs=[config], qemus=[], cpus=cpus, keyword=None, jobs=2, shard=None,
        json_path=out, junit_path=None, html_path=None, mode="batch", verbose=False,
        console=Console(file=io.StringIO(), width=200),
    )
    return code, [json.loads(x) for x in out.read_text().splitlines()]


def _not_fine(lines: list[dict[str, str]]) -> list[str]:
    return [f'{d["target"]} {d["path"]} {d["probe"]}: {d["outcome"]} {d["detail"]}'
            for d in lines if d["outcome"] not in FINE]


@pytest.fixture(scope="module")
def qemu11(qemu_profile: Profile) -> str:
    q11 = load_profile("qemu11").executable
    if not Path(q11).is_file():
        pytest.skip(f"QEMU 11.1 is not installed at {q11} (run `make qemu11`)")
    return "qemu11"


@pytest.mark.qemu
def test_cpus_without_vhe_16kb_or_48bit_pa_end_explained(
    qemu_profile: Profile, tmp_path: Path
) -> None:
    code, lines = _run(tmp_path, "tcg-max", ["cortex-a57", "cortex-a76"],
                       [SUITE / f for f in FOLDERS])
    assert not _not_fine(lines)
    assert code == ExitCode.OK
    targets = {d["target"] for d in lines}
    assert targets == {"tcg-max/cortex-a57", "tcg-max/cortex-a76"}
    # hpd*.yaml: QEMU honours TCR.HPD without FEAT_HPDS (a `known` with lacks: [HPDS])
    hpd = [d for d in lines if d["path"].endswith("permissions/hpd0.yaml")]
    assert {d["outcome"] for d in hpd if d["target"].endswith("a57")} >= {"known"}
    assert "known" not in {d["outcome"] for d in hpd if d["target"].endswith("a76")}


@pytest.mark.qemu
def test_a_harness_the_cpu_cannot_run_is_skipped_with_the_reason(
    qemu_profile: Profile, tmp_path: Path
) -> None:
    """E2H is RES0 without FEAT_VHE (D24.2 HCR_EL2): the EL2&0 scenario's
    harness runs in the EL2 regime, where it is not executable; every probe
    is skipped before QEMU runs it, saying so."""
    code, lines = _run(tmp_path, "tcg-max", ["cortex-a57"], [SUITE / "vhe" / "e2h-tge0.yaml"])
    assert code != ExitCode.FAILED
    assert lines and {d["outcome"] for d in lines} == {"skipped"}
    assert all("EL2 regime" in d["detail"] for d in lines)
    assert all(d["par_qemu"] is None for d in lines)


@pytest.mark.qemu
def test_qemu11_cpu_models_end_explained(qemu11: str, tmp_path: Path) -> None:
    code, lines = _run(tmp_path, qemu11, ["cortex-a57", "cortex-a710"],
                       [SUITE / f for f in ("permissions", "stage2")])
    assert not _not_fine(lines)
    assert code == ExitCode.OK
    assert {d["target_version"].split(".")[0] for d in lines} == {"11"}


@pytest.mark.qemu
def test_cpu_all_lists_the_aarch64_models_the_virt_machine_takes(qemu_profile: Profile) -> None:
    from xcheck.target.qemu import cpu_models

    models = cpu_models(qemu_profile.executable)
    assert {"max", "cortex-a57", "a64fx"} <= set(models)
    assert not {"cortex-a15", "cortex-m3", "arm926"} & set(models)  # no AArch64 state
    q11 = load_profile("qemu11").executable
    if Path(q11).is_file():  # 11.1 lists cortex-a78ae, which the virt machine refuses
        assert "cortex-a78ae" not in cpu_models(q11) and "cortex-a710" in cpu_models(q11)


@pytest.mark.qemu
def test_cpu_all_writes_its_device_trees_to_a_private_folder(
    qemu_profile: Profile, monkeypatch: pytest.MonkeyPatch
) -> None:
    """QEMU writes ``dumpdtb`` by renaming a new file over the path: run as
    root with /dev/null there, it replaced the device by a regular file. Each
    check writes into a folder of its own, gone afterwards."""
    from xcheck.target import qemu

    paths: list[Path] = []
    real_run = subprocess.run

    def run(argv: list[str], **kw: object) -> object:
        spec = next((a for a in argv if "dumpdtb=" in a), "")
        if spec:
            paths.append(Path(spec.split("dumpdtb=", 1)[1].split(",", 1)[0]))
        return real_run(argv, **kw)  # type: ignore[call-overload]

    monkeypatch.setattr(qemu.subprocess, "run", run)
    assert "max" in qemu.cpu_models(qemu_profile.executable)
    assert paths and all(p.parent != Path("/dev") and not p.parent.exists() for p in paths)
