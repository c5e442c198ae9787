"""`xcheck qemu list` and `xcheck qemu fetch`: profiles with the version
their binary reports, and the fetch command's error path."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from xcheck import qemus
from xcheck.cli import main
from xcheck.debfetch import DebFetchError
from xcheck.target.profile import Profile


@pytest.mark.qemu
def test_profile_infos_report_each_binarys_version(qemu_profile: Profile, tmp_path: Path) -> None:
    (tmp_path / "sys.yaml").write_text(f"binary: {qemu_profile.binary}\n")
    (tmp_path / "gone.yaml").write_text(f"binary: {tmp_path}/no-such-qemu\n")
    (tmp_path / "bad.yaml").write_text("binary: [1, 2]\n")
    infos = {i.name: i for i in qemus.profile_infos(tmp_path)}
    assert infos["sys"].version.startswith("7.2") and not infos["sys"].problem
    assert infos["gone"].version == "" and "not found" in infos["gone"].problem
    assert infos["bad"].problem.startswith("bad profile:")


@pytest.mark.qemu
def test_qemu_list_prints_every_shipped_profile(qemu_profile: Profile) -> None:
    res = CliRunner().invoke(main, ["qemu", "list"], env={"COLUMNS": "200"})
    assert "tcg-max" in res.output and "qemu10" in res.output and "qemu11" in res.output
    assert "7.2." in res.output
    assert res.exit_code in (0, 1)  # 1 only when a profile's binary is not installed


def test_qemu_fetch_failure_is_one_line_of_error_and_exit_1(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fail(suite: str) -> Path:
        raise DebFetchError(f"package qemu-system-arm not found in: [x] {suite}")

    monkeypatch.setattr(qemus, "install_qemu", fail)
    out = io.StringIO()
    assert qemus.fetch_command("nowhere", Console(file=out, width=200)) == 1
    assert "error: package qemu-system-arm not found in: [x] nowhere" in out.getvalue()
    assert "Traceback" not in out.getvalue()


def test_qemu_fetch_names_the_profile_of_the_installed_binary(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    entry = tmp_path / "xcheck/qemu-10.0.2"
    binary = entry / "usr/bin/qemu-system-aarch64"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\necho 'QEMU emulator version 10.0.2 (Debian)'\n")
    binary.chmod(0o755)
    (entry / "qemu-system-aarch64").symlink_to("usr/bin/qemu-system-aarch64")
    (tmp_path / "xcheck/qemu-10.0").symlink_to("qemu-10.0.2")
    monkeypatch.setattr(qemus, "install_qemu", lambda suite: entry / "qemu-system-aarch64")
    out = io.StringIO()
    assert qemus.fetch_command("bookworm-backports", Console(file=out, width=200)) == 0
    text = out.getvalue()
    assert "version:   10.0.2" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("profile:"))
    assert "qemu10" in line and line.endswith("(xcheck run --config qemu10)")
