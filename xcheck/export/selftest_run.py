"""Run exported KVM selftests as the nested-KVM target's userspace.

The static test binaries go into an initramfs (a small /init that mounts
devtmpfs, proc and sysfs, runs each test in /tests and powers off), which
the nested-KVM profile's QEMU boots with its kernel (Debian's arm64 Linux,
kvm-arm.mode=nested; docs/kvm-target.md). The tests' TAP output comes back
on the serial console: one PASS or FAIL line per probe here, with the
test's diagnostics for a failure. A kernel warning logged while a test runs
fails it (as it is a target error for the nested-KVM target).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from xcheck.outcome import ExitCode
from xcheck.target.errors import ProfileError, QemuLaunchError
from xcheck.target.kvm.artifacts import KERNEL_ARGS, KvmOptions, locate
from xcheck.target.kvm.build import (
    CFLAGS,
    CROSS_GCC,
    S_IFCHR,
    S_IFDIR,
    S_IFREG,
    CpioEntry,
    newc_archive,
)
from xcheck.target.kvm.target import kernel_complaint
from xcheck.target.profile import Profile

BOOT_S = 90
"""Seconds for QEMU to boot the guest kernel and power off, beside the tests' own time."""
TEST_S = 300
"""Seconds each test may take: its program has a 30 s alarm, but creating and
destroying its VMs (the library's constructor makes one too) takes a minute
or more of guest time under TCG, several when a vCPU ran at vEL1."""
CROSS_STRIP = "aarch64-linux-gnu-strip"
KSFT_SKIP = 4
"""A kselftest's exit status when it cannot check here (kselftest.h)."""
TAP = re.compile(r"^(ok|not ok) \d+ (.*?)\s*$")
KLOG = re.compile(r"^\[\s*(\d+\.\d+)\] (.*)$")
LOGLEVEL = "loglevel=5"
"""After quiet: the console shows kernel warnings (KERN_WARNING) and worse."""


@dataclass
class TestRun:
    """What one selftest printed: its TAP results and diagnostics, its exit status."""

    name: str
    results: list[tuple[bool, str, list[str]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    klog: list[str] = field(default_factory=list)
    """Kernel warnings logged while the test ran."""
    status: int | None = None


def parse_console(text: str) -> list[TestRun]:
    """The tests' results from the guest's console output (init's
    XCHECK-START/XCHECK-EXIT lines around each test's TAP output)."""
    runs: list[TestRun] = []
    pending: list[str] = []
    for raw in text.splitlines():
        line = raw.rstrip("\r")
        if line.startswith("XCHECK-START "):
            runs.append(TestRun(line.split()[1]))
            pending = []
        elif line.startswith("XCHECK-EXIT ") and runs:
            runs[-1].status = int(line.split()[2])
        elif runs and runs[-1].status is None and (k := KLOG.match(line)):
            runs[-1].klog.append(f"{k.group(1)} {k.group(2)}")
        elif runs and runs[-1].status is None:
            m = TAP.match(line)
            if m:
                runs[-1].results.append((m.group(1) == "ok", m.group(2), pending))
                pending = []
            elif line.startswith("# "):
                pending.append(line[2:])
                runs[-1].notes.append(line[2:])
    return runs


def _init_binary(work: Path) -> bytes:
    source = work / "init.c"
    source.write_text((resources.files("xcheck.export") / "templates" / "kvm_selftest"
                       / "init.c").read_text())
    out = work / "init"
    cmd = [CROSS_GCC, *CFLAGS, "-o", str(out), str(source)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise QemuLaunchError(f"{' '.join(cmd)} failed:\n{proc.stderr.strip()}")
    return out.read_bytes()


def _stripped(binary: Path, work: Path) -> bytes:
    """The binary without its debug information (the guest unpacks the
    initramfs at a few hundred KB/s under TCG)."""
    out = work / binary.name
    cmd = [CROSS_STRIP, "-o", str(out), str(binary)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise QemuLaunchError(f"{' '.join(cmd)} failed:\n{proc.stderr.strip()}")
    return out.read_bytes()


def initramfs(binaries: Sequence[Path], work: Path) -> Path:
    """A newc archive: /init, /dev/console, mount points, /tests/<each binary>."""
    entries = [
        CpioEntry("dev", S_IFDIR | 0o755),
        CpioEntry("dev/console", S_IFCHR | 0o600, rdev=(5, 1)),
        CpioEntry("proc", S_IFDIR | 0o555),
        CpioEntry("sys", S_IFDIR | 0o555),
        CpioEntry("tests", S_IFDIR | 0o755),
        CpioEntry("init", S_IFREG | 0o755, _init_binary(work)),
        *(CpioEntry(f"tests/{b.name}", S_IFREG | 0o755, _stripped(b, work)) for b in binaries),
    ]
    path = work / "initramfs.cpio"
    path.write_bytes(newc_archive(entries))
    return path


def boot(binaries: Sequence[Path], profile: Profile) -> tuple[str, bool]:
    """Boot the nested-KVM target's kernel with the tests as its userspace;
    the console output and whether init finished (False: QEMU was stopped
    after its time ran out). QemuLaunchError when the tests did not start."""
    opts = KvmOptions.from_profile(profile)
    art = locate(profile, opts)
    timeout = BOOT_S + TEST_S * len(binaries)
    with tempfile.TemporaryDirectory(prefix="xcheck-selftest-") as tmp:
        work = Path(tmp)
        append = " ".join(filter(None, (KERNEL_ARGS, LOGLEVEL, "panic=-1", opts.kernel_args)))
        argv = [art.qemu, "-nodefaults", "-no-reboot", "-machine", profile.machine,
                "-cpu", profile.cpu, "-smp", "1", "-m", profile.memory, "-display", "none",
                "-monitor", "none", "-serial", "stdio", "-kernel", str(art.kernel),
                "-initrd", str(initramfs(binaries, work)), "-append", append,
                *profile.extra_args]
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, errors="replace") as proc:
            try:
                out, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
    if "XCHECK-START" not in out:
        tail = "\n".join((out + err).strip().splitlines()[-15:])
        raise QemuLaunchError(f"the guest did not run the tests (QEMU exit {proc.returncode}); "
                              f"command: {' '.join(argv)}\n{tail}")
    return out, "XCHECK-DONE" in out


def run_command(binaries: Sequence[Path], profile: Profile, console: Console) -> int:
    """Run the tests under the nested-KVM target; one line per probe; 0 when
    every probe passes, 1 when one fails, 125 when the target cannot boot or
    a test skips (KVM without nested virtualisation, other CPU features)."""
    try:
        text, finished = boot(binaries, profile)
    except (QemuLaunchError, ProfileError) as err:
        console.print("[red]cannot run the selftests:[/]", escape(str(err)))
        return ExitCode.CANNOT_TEST
    worst = ExitCode.OK
    for run in parse_console(text):
        if run.status is None:
            console.print(f"test {run.name} did not finish: QEMU was stopped after "
                          f"{BOOT_S + TEST_S * len(binaries)} s", highlight=False)
            run.status = 1
        else:
            console.print(f"test {run.name} (exit {run.status})", highlight=False)
        for ok, label, notes in run.results:
            console.print(f"{'PASS' if ok else 'FAIL'} {label}", highlight=False)
            for note in notes if not ok else []:
                console.print(f"    {note}", highlight=False)
        if not run.results:
            for note in run.notes:
                console.print(f"    {note}", highlight=False)
        if run.klog:
            console.print(f"FAIL {kernel_complaint(run.klog)}", highlight=False)
            run.status = run.status or 1
        passed = sum(ok for ok, _, _ in run.results)
        verdict = {0: "PASS", KSFT_SKIP: "SKIP"}.get(run.status or 0, "FAIL")
        console.print(f"RESULT: {verdict} {passed}/{len(run.results)} probes passed",
                      highlight=False)
        if verdict == "FAIL":
            worst = ExitCode.FAILED
        elif verdict == "SKIP" and worst == ExitCode.OK:
            worst = ExitCode.CANNOT_TEST
    if not finished:
        done = {run.name for run in parse_console(text)}
        for b in binaries:
            if b.name not in done:
                console.print(f"test {b.name} did not start", highlight=False)
        worst = ExitCode.FAILED
    return worst
