"""Matrix runs: one scenario on QEMU 7.2 and 10.0 in one command (real
QEMUs), and the parts that need none: target labels, the exit code over
targets, the probe x target rows."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from rich.console import Console

from xcheck.matrix import MatrixTarget, TargetRun, matrix_exit_code, plan_targets, run_matrix
from xcheck.outcome import ExitCode, FieldDelta, Kind, Outcome
from xcheck.report.matrix import rows
from xcheck.target.errors import ProfileError
from xcheck.target.profile import Profile, load_profile

HERE = Path(__file__).resolve().parent
SH = HERE / "bisect" / "sh-mmu-off.yaml"
SH_KNOWN = HERE / "bisect" / "sh-mmu-off-known.yaml"


@pytest.fixture(scope="module")
def qemu10(qemu_profile: Profile) -> None:
    q10 = load_profile("qemu10").executable
    if not Path(q10).is_file():
        pytest.skip(f"QEMU 10.0 is not installed at {q10} (run `make qemu10`)")


def _run(tmp_path: Path, *paths: Path) -> tuple[int, str, list[dict[str, object]], ET.Element]:
    out = io.StringIO()
    console = Console(file=out, width=200, highlight=False)
    code = run_matrix(
        list(paths), configs=["tcg-max", "qemu10"], qemus=[], keyword=None, jobs=1,
        shard=None, json_path=tmp_path / "o.jsonl", junit_path=tmp_path / "j.xml", html_path=None,
        mode="batch", verbose=False, console=console,
    )
    lines = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    return code, out.getvalue(), lines, ET.parse(tmp_path / "j.xml").getroot()


@pytest.mark.qemu
def test_matrix_shows_the_sh_difference_between_qemu_72_and_100(
    qemu10: None, tmp_path: Path
) -> None:
    code, text, lines, junit = _run(tmp_path, SH)
    assert code == ExitCode.FAILED
    row = next(ln for ln in text.splitlines() if "≠ sh-mmu-off" in ln)  # marked: differs
    assert "mismatch 0x40001a00" in row and "match 0x40001b00" in row
    assert row.rstrip(" │").endswith("tcg-max")  # fails on: tcg-max only
    assert "SH=0x0 (model 0x2)" in text
    assert "7.2.22" in text and "10.0.2" in text
    got = {(d["target"], d["target_version"], d["outcome"], d["par_qemu"]) for d in lines}
    assert got == {
        ("tcg-max", "7.2.22", "mismatch", "0x0000000040001a00"),
        ("qemu10", "10.0.2", "match", "0x0000000040001b00"),
    }
    names = sorted(c.get("name", "") for c in junit.iter("testcase"))
    assert names == [
        "S1E1R va=0x4000_1000 el=2 pan=0 [qemu10]",
        "S1E1R va=0x4000_1000 el=2 pan=0 [tcg-max]",
    ]
    assert junit.get("failures") == "1"


@pytest.mark.qemu
def test_a_known_divergence_before_82_passes_on_both(qemu10: None, tmp_path: Path) -> None:
    code, text, lines, _ = _run(tmp_path, SH_KNOWN)
    assert code == ExitCode.OK
    assert [d["outcome"] for d in lines] == ["known", "match"]
    assert "known 0x40001a00" in text


@pytest.mark.qemu
def test_a_target_that_cannot_start_fails_the_matrix_but_not_as_125(
    qemu_profile: Profile, tmp_path: Path
) -> None:
    out = io.StringIO()
    code = run_matrix(
        [SH_KNOWN], configs=[], qemus=[str(tmp_path / "no-qemu"), "qemu-system-aarch64"],
        keyword=None, jobs=1, shard=None, json_path=None, junit_path=None, html_path=None,
        mode="batch", verbose=False, console=Console(file=out, width=200),
    )
    assert code == ExitCode.FAILED
    assert "could not test no-qemu" in out.getvalue()


# -- no QEMU -------------------------------------------------------------------------------


def test_plan_targets_labels() -> None:
    assert [t.label for t in plan_targets(["tcg-max", "qemu10"], [])] == ["tcg-max", "qemu10"]
    assert [t.label for t in plan_targets(["tcg-max", "tcg-max"], [])] == [
        "tcg-max", "tcg-max#2"
    ]
    ts = plan_targets([], ["/q/build-a/qemu-system-aarch64", "/q/build-b/qemu-system-aarch64"])
    assert [t.label for t in ts] == ["build-a", "build-b"]
    assert ts[0].profile.binary == "/q/build-a/qemu-system-aarch64"
    ts = plan_targets(["qemu10"], ["/usr/bin/qemu-system-aarch64",
                                   "/o/usr/bin/qemu-system-aarch64"])
    assert [t.label for t in ts] == ["qemu10:/usr/bin/qemu-system-aarch64", "qemu10:o"]
    assert all(t.profile.cpu == "max" for t in ts)
    assert [t.label for t in plan_targets([], [])] == ["tcg-max"]
    with pytest.raises(ProfileError, match="no profile named 'nope'"):
        plan_targets(["tcg-max", "nope"], [])


def _out(kind: Kind, par: int | None = None, target: str = "a") -> Outcome:
    return Outcome(scenario="s", path="s.yaml", kind=kind, label="p", target=target,
                   par_target=par, mask=0xFFFF_FFFF_FFFF_F9FF,
                   fields=(FieldDelta("SH", 0, 2),) if kind == Kind.MISMATCH else ())


def _runs(*spec: tuple[list[Outcome], str | None]) -> list[TargetRun]:
    prof = load_profile("tcg-max")
    return [TargetRun(MatrixTarget(f"t{i}", prof), list(o), c) for i, (o, c) in enumerate(spec)]


def test_matrix_exit_code_is_the_worst_over_targets() -> None:
    ok, bad = [_out(Kind.MATCH)], [_out(Kind.MISMATCH)]
    assert matrix_exit_code(_runs((ok, None), (ok, None)), []) == ExitCode.OK
    assert matrix_exit_code(_runs((ok, None), (bad, None)), []) == ExitCode.FAILED
    assert matrix_exit_code(_runs((ok, None), ([], "no QEMU")), []) == ExitCode.FAILED
    assert matrix_exit_code(_runs(([], "no QEMU"), ([], "no")), []) == ExitCode.CANNOT_TEST
    invalid = [Outcome(scenario="x", path="x.yaml", kind=Kind.INVALID)]
    assert matrix_exit_code(_runs((ok, None)), invalid) == ExitCode.USAGE


def test_rows_differ_on_outcome_or_determined_par_bits_only() -> None:
    same = rows([("a", "1", [_out(Kind.MATCH, 0x40001b00)]),
                 ("b", "2", [_out(Kind.MATCH, 0x40001f00)])])  # bit 10: IMP DEF, masked
    assert len(same) == 1 and not same[0].differs()
    diff = rows([("a", "1", [_out(Kind.MISMATCH, 0x40001a00)]),
                 ("b", "2", [_out(Kind.MATCH, 0x40001b00)])])
    assert diff[0].differs() and diff[0].failing_on(["a", "b"]) == ["a"]
    missing = rows([("a", "1", [_out(Kind.MATCH, 1)]), ("b", "2", [])])
    assert missing[0].cells[1] is None and not missing[0].differs()


def test_cli_repeated_options_make_a_matrix_and_one_stays_a_single_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from click.testing import CliRunner

    import xcheck.commands
    import xcheck.matrix
    from xcheck.cli import main

    calls: list[tuple[str, object, object]] = []
    monkeypatch.setattr(xcheck.matrix, "run_matrix", lambda paths, **kw: calls.append(
        ("matrix", kw["configs"], kw["qemus"])) or 0)
    monkeypatch.setattr(xcheck.commands, "run_command", lambda paths, **kw: calls.append(
        ("single", kw["config"], kw["qemu"])) or 0)
    runner = CliRunner()
    for args in (["--target", "tcg-max", "--target", "kvm-nested"],
                 ["--config", "tcg-max", "--qemu", "a", "--qemu", "b"],
                 ["--config", "qemu10"], ["--qemu", "a"], []):
        assert runner.invoke(main, ["run", *args, str(SH)]).exit_code == 0
    assert calls == [
        ("matrix", ["tcg-max", "kvm-nested"], ()),
        ("matrix", ["tcg-max"], ("a", "b")),
        ("single", "qemu10", None),
        ("single", None, "a"),
        ("single", None, None),
    ]


def test_cli_matrix_with_an_unknown_profile_is_a_usage_error() -> None:
    from click.testing import CliRunner

    from xcheck.cli import main

    res = CliRunner().invoke(main, ["run", "--target", "tcg-max", "--target", "nope", str(SH)])
    assert res.exit_code == 2 and "no profile named 'nope'" in res.output
