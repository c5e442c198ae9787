"""What `xcheck live` does, apart from argument parsing.

Boot the kernel, halt it, read its state, enumerate its tables, pick VAs,
sweep (target and model), report like `xcheck run`, export mismatches, and
optionally resume the kernel to show that it runs on.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from xcheck.debfetch import (
    DebFetchError,
    cache_root,
    cached_versions,
    fetch_kernel,
    kernel_package,
)
from xcheck.live.boot import PANIC, LiveVm
from xcheck.live.export import ExportError, export
from xcheck.live.physmem import GdbPhysMem
from xcheck.live.pick import Pick, pick_vas
from xcheck.live.state import LiveState, NotTranslating, read_state
from xcheck.live.sweep import Sweep, check_ops
from xcheck.live.tables import TableMap, ranges, walk_tables
from xcheck.machine import RAM_BASE, AtOp
from xcheck.outcome import ExitCode, Kind, Outcome, exit_code
from xcheck.report.jsonl import JsonLinesReport
from xcheck.report.junit import write_junit
from xcheck.report.terminal import TerminalReport
from xcheck.target.errors import ProfileError, TargetError
from xcheck.target.profile import Profile, load_profile, parse_size

RESUME_PANIC = "panic=2"
"""Added to the command line for --resume: after a panic the kernel restarts
two seconds later (the halt comes within them), boots again and panics again
on the console."""


@dataclass
class LiveOptions:
    kernel: Path | None = None
    kernel_deb: str | None = None
    suite: str = "bookworm"
    append: str = ""
    initrd: Path | None = None
    at_panic: bool = True
    after: float = 0.0
    samples: int = 2000
    seed: int = 0
    ops: Sequence[str] = ()
    config: str | None = None
    qemu: str | None = None
    cpu: str | None = None
    memory: str = "512M"
    resume: bool = False
    export_dir: Path | None = None
    json_path: Path | None = None
    junit_path: Path | None = None
    boot_timeout: float = 120.0
    verbose: bool = False


@dataclass
class LiveRun:
    """What a sweep produced, for callers other than the command (tests, bench)."""

    state: LiveState | None = None
    maps: list[TableMap] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    vas: int = 0
    boot_s: float = 0.0
    sweep_s: float = 0.0
    exported: list[Path] = field(default_factory=list)
    qemu: str = ""
    resumed: str = ""
    """How the kernel went on after --resume ("" when not asked)."""


def resolve_kernel(opts: LiveOptions, console: Console) -> Path:
    """The vmlinuz to boot: --kernel, or the Debian package's (fetched, cached)."""
    if opts.kernel is not None:
        if not opts.kernel.is_file():
            raise FileNotFoundError(f"--kernel {opts.kernel}: no such file")
        return opts.kernel
    assert opts.kernel_deb is not None
    package = opts.kernel_deb
    if package == "current":
        package = kernel_package(opts.suite)
    console.print(f"fetching {package} from Debian {opts.suite} (cached per user)...")
    return fetch_kernel(package, opts.suite)


def _natural(p: Path) -> list[int | str]:
    """Sort key: vmlinuz-6.1.0-9 before vmlinuz-6.1.0-50."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]


def debian_kernel(suite: str = "bookworm", *, prefer_cache: bool = True) -> Path:
    """An arm64 kernel of ``suite``: with ``prefer_cache``, the newest one
    already in the per-user cache (bookworm's linux-image-6.1.0-*-arm64 only);
    else, or when there is none, the suite's current one, fetched.
    DebFetchError when neither is possible."""
    entries = cache_root().glob("linux-image-6.1.0-*-arm64-*") if suite == "bookworm" else []
    cached = sorted((p for e in entries if cached_versions(e) for p in e.glob("boot/vmlinuz-*")),
                    key=_natural)
    if cached and prefer_cache:
        return cached[-1]
    try:
        return fetch_kernel(kernel_package(suite), suite)
    except DebFetchError:
        if cached:
            return cached[-1]
        raise


def kernel_label(kernel: Path) -> str:
    """A readable name: the file name, or the release directory of a bare
    ``.../modules/<release>/vmlinuz`` (Debian 13 kernels)."""
    if kernel.name == "vmlinuz" and kernel.parent.name:
        return f"vmlinuz-{kernel.parent.name}"
    return kernel.name


def parse_ops(names: Sequence[str]) -> tuple[AtOp, ...]:
    ops = []
    for name in names:
        try:
            ops.append(AtOp(name.strip().upper()))
        except ValueError:
            known = ", ".join(o.value for o in AtOp)
            raise ValueError(f"--ops: {name!r} is not an AT operation ({known})") from None
    return tuple(ops)


def kernel_append(opts: LiveOptions) -> str:
    """The kernel command line: with --resume, panic=2 is added (unless the
    user chose a panic= of their own), so that a kernel halted at or after
    its panic restarts when resumed and prints its panic again."""
    if opts.resume and "panic=" not in opts.append:
        return f"{opts.append} {RESUME_PANIC}".strip()
    return opts.append


@dataclass
class Prepared:
    """The halted kernel's state, its tables, the ops and the VAs to check."""

    state: LiveState
    ops: tuple[AtOp, ...]
    maps: list[TableMap]
    picks: list[Pick]
    mem: GdbPhysMem


def prepare(vm: LiveVm, opts: LiveOptions, ops: Sequence[AtOp]) -> Prepared:
    """Read the state of the halted ``vm``, enumerate its tables, pick VAs.
    ValueError: an op cannot run at the kernel's EL (a usage error)."""
    state = read_state(vm.gdb, vm.profile.timeouts.command)
    arch = state.arch_state()
    ops = tuple(ops) or state.default_ops
    problem = check_ops(state, arch, ops)
    if problem:
        raise ValueError(problem)
    rp = arch.regime(state.regime)
    if not rp.enabled:
        raise NotTranslating(f"the kernel was halted with stage 1 of its {state.regime.value} "
                             "regime off (early in boot?): no tables to check")
    mem = GdbPhysMem(vm.gdb, RAM_BASE, vm.profile.ram_size())
    params = [rp.lower] if rp.upper is None else [rp.lower, rp.upper]
    maps = [walk_tables(p, mem) for p in params if not (rp.upper and p.epd)]
    return Prepared(state, tuple(ops), maps, pick_vas(maps, opts.samples, opts.seed), mem)


HALT_RETRIES = 25
RETRY_RUN_S = 0.2


def prepare_halted(vm: LiveVm, opts: LiveOptions, ops: Sequence[AtOp]) -> Prepared:
    """prepare(); with --after, a kernel halted where it does not translate
    (stage 1 off while it restarts, say) runs on briefly and is halted again."""
    for _ in range(HALT_RETRIES if not opts.at_panic else 0):
        try:
            return prepare(vm, opts, ops)
        except NotTranslating:
            vm.resume()
            time.sleep(RETRY_RUN_S)
            vm.halt()
    return prepare(vm, opts, ops)


def make_sweep(vm: LiveVm, prep: Prepared, name: str) -> Sweep:
    return Sweep(vm.gdb, prep.state, prep.mem, prep.ops, maps=prep.maps,
                 timeout=vm.profile.timeouts.batch, target_version=vm.version, name=name)


def live_sweep(vm: LiveVm, opts: LiveOptions, name: str) -> tuple[LiveRun, Sweep]:
    """Prepare and sweep a halted kernel (for tests and the benchmark)."""
    prep = prepare(vm, opts, parse_ops(opts.ops))
    run = LiveRun(state=prep.state, maps=prep.maps, vas=len(prep.picks), boot_s=vm.booted_s)
    t0 = time.perf_counter()
    with make_sweep(vm, prep, name) as sweep:
        run.outcomes = list(sweep.run(prep.picks))
    run.sweep_s = time.perf_counter() - t0
    return run, sweep


def prove_running(vm: LiveVm, opts: LiveOptions) -> str:
    """Resume the kernel and wait for a panic printed after that point: the
    first one (halted earlier, with --after) or the one after its restart
    (halted at the panic, booted with panic=2). Raises TargetError if none
    comes within the boot timeout."""
    mark = len(vm.console())
    vm.resume()
    if vm.wait_for(PANIC, timeout=opts.boot_timeout, after=mark):
        vm.halt()
        again = " again, after restarting" if "Booting Linux" in vm.console()[mark:] else ""
        return f"resumed: the kernel ran on and printed its panic{again}"
    tail = "\n".join(vm.console()[mark:].splitlines()[-5:])
    vm.halt()
    raise TargetError(f"after resuming, the kernel printed no panic within "
                      f"{opts.boot_timeout:g}s; console since: {tail!r}")


def live_command(opts: LiveOptions, console: Console) -> int:
    """The `xcheck live` command; returns the exit code."""
    if (opts.kernel is None) == (opts.kernel_deb is None):
        console.print("[red]error:[/] give exactly one of --kernel VMLINUZ or "
                      "--kernel-deb PACKAGE")
        return ExitCode.USAGE
    if opts.samples < 1:
        console.print("[red]error:[/] --samples must be at least 1")
        return ExitCode.USAGE
    try:
        ops = parse_ops(opts.ops)
        profile: Profile = load_profile(opts.config, qemu=opts.qemu, cpu=opts.cpu)
    except (ValueError, ProfileError) as err:
        console.print(f"[red]error:[/] {err}")
        return ExitCode.USAGE
    try:
        parse_size(opts.memory)
    except ProfileError:
        console.print(f"[red]error:[/] --memory {opts.memory!r} is not a size like 512M or 1G")
        return ExitCode.USAGE
    try:
        kernel = resolve_kernel(opts, console)
    except FileNotFoundError as err:
        console.print(f"[red]error:[/] {err}")
        return ExitCode.USAGE
    except DebFetchError as err:
        console.print(f"[red]could not test:[/] cannot fetch the kernel: {err}")
        return ExitCode.CANNOT_TEST
    name = kernel_label(kernel)
    run = LiveRun()
    failed_resume = False
    with ExitStack() as stack:
        jsonl = None
        if opts.json_path is not None:
            jsonl = JsonLinesReport(stack.enter_context(opts.json_path.open("w")),
                                    extra={"kernel": name})
        try:
            vm = stack.enter_context(LiveVm(profile, kernel, append=kernel_append(opts),
                                            initrd=opts.initrd, memory=opts.memory))
            vm.boot(at_panic=opts.at_panic, after=opts.after, timeout=opts.boot_timeout)
            run.boot_s, run.qemu = vm.booted_s, vm.version
            console.print(f"{name}: halted after {vm.booted_s:.1f}s on QEMU {vm.version}")
            prep = prepare_halted(vm, opts, ops)
        except ValueError as err:
            console.print(f"[red]error:[/] {err}")
            return ExitCode.USAGE
        except TargetError as err:
            console.print(f"[red]could not test:[/] {err}")
            return ExitCode.CANNOT_TEST
        run.state, run.maps, run.vas = prep.state, prep.maps, len(prep.picks)
        sweep = make_sweep(vm, prep, name)
        t0 = time.perf_counter()
        try:
            with TerminalReport(console, len(prep.picks) * len(prep.ops),
                                verbose=opts.verbose) as term, sweep:
                for o in sweep.run(prep.picks):
                    run.outcomes.append(o)
                    term.add(o)
                    if jsonl:
                        jsonl.add(o)
        except TargetError as err:
            console.print(f"[red]could not test:[/] {err}")
            return ExitCode.CANNOT_TEST
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]: results so far are kept")
            if opts.junit_path is not None:
                write_junit(run.outcomes, opts.junit_path)
            return 130
        run.sweep_s = time.perf_counter() - t0
        _describe(console, run)
        if opts.export_dir is not None:
            for o in run.outcomes:
                if o.kind in (Kind.MISMATCH, Kind.KNOWN):
                    try:
                        run.exported.append(export(sweep, o, opts.export_dir, kernel=name,
                                                   ram=opts.memory))
                    except ExportError as err:
                        console.print(f"[yellow]not exported[/] {o.label}: {err}")
            console.print(f"exported {len(run.exported)} mismatch(es) and known divergence(s) "
                          f"to {opts.export_dir}")
        if opts.resume:
            try:
                run.resumed = prove_running(vm, opts)
                console.print(run.resumed)
            except TargetError as err:
                failed_resume = True
                console.print(f"[red]resume failed:[/] {err}")
    if opts.junit_path is not None:
        write_junit(run.outcomes, opts.junit_path)
    console.print(f"{name} on {profile.name} (QEMU {run.qemu})")
    term.summary(run.outcomes, title="xcheck live")
    code = exit_code(run.outcomes)
    if failed_resume and code == ExitCode.OK:
        code = ExitCode.FAILED
    console.print(f"exit {int(code)} ({code.name.lower().replace('_', ' ')})")
    return int(code)


def _describe(console: Console, run: LiveRun) -> None:
    st = run.state
    if st is None:
        return
    sfx = "EL2" if st.el == 2 else "EL1"
    regs = ("HCR_EL2", *(f"{r}_{sfx}" for r in ("SCTLR", "TCR", "TTBR0", "TTBR1", "MAIR")))
    console.print(", ".join(f"{r}=0x{st.sysregs[r]:x}" for r in regs))
    console.print(f"EL{st.el}, {st.regime.value} regime, PSTATE.PAN={int(st.pan)}; "
                  + ", ".join(f"{m.name}: {len(m.leaves)} leaves in {len(ranges(m.leaves))} "
                              f"ranges, {len(m.tables)} tables" for m in run.maps))
    checks = len(run.outcomes)
    rate = checks / run.sweep_s if run.sweep_s else 0.0
    console.print(f"{run.vas} VAs x {checks // max(run.vas, 1)} ops = {checks} checks in "
                  f"{run.sweep_s:.2f}s ({rate:.0f}/s)")
