"""`xcheck live` usage errors: exit 2 with a message, before any QEMU starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from xcheck.cli import main
from xcheck.live.command import LiveOptions, kernel_append, kernel_label


@pytest.fixture
def image(tmp_path: Path) -> str:
    p = tmp_path / "vmlinuz-test"
    p.write_bytes(b"\0" * 64)
    return str(p)


@pytest.mark.parametrize(("args", "message"), [
    ([], "exactly one of --kernel"),
    (["--kernel", "K", "--kernel-deb", "linux-image-arm64"], "exactly one of --kernel"),
    (["--kernel", "/no/such/vmlinuz"], "no such file"),
    (["--kernel", "K", "--ops", "S1E2R,BOGUS"], "'BOGUS' is not an AT operation"),
    (["--kernel", "K", "--samples", "0"], "--samples must be at least 1"),
    (["--kernel", "K", "--config", "no-such-profile"], "no profile named"),
    (["--kernel", "K", "--memory", "lots"], "--memory 'lots' is not a size"),
    (["--kernel", "K", "--at-panic", "--after", "2"], "not both"),
])
def test_usage_errors_exit_2(args: list[str], message: str, image: str) -> None:
    args = [image if a == "K" else a for a in args]
    res = CliRunner().invoke(main, ["live", *args])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output


def test_help_has_an_example() -> None:
    res = CliRunner().invoke(main, ["live", "--help"])
    assert res.exit_code == 0 and "xcheck live --kernel-deb" in res.output


def test_resume_at_the_panic_makes_the_kernel_restart() -> None:
    assert kernel_append(LiveOptions(append="quiet", resume=True)) == "quiet panic=2"
    assert kernel_append(LiveOptions(append="panic=5", resume=True)) == "panic=5"
    assert kernel_append(LiveOptions(append="quiet", resume=True, at_panic=False)) == \
        "quiet panic=2"
    assert kernel_append(LiveOptions(append="quiet")) == "quiet"


def test_kernel_labels() -> None:
    assert kernel_label(Path("/c/boot/vmlinuz-6.1.0-50-arm64")) == "vmlinuz-6.1.0-50-arm64"
    assert kernel_label(Path("/c/modules/7.3.4+deb13-arm64/vmlinuz")) == \
        "vmlinuz-7.3.4+deb13-arm64"
