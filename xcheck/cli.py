"""The xcheck command line: run, explain, doctor, schema, qemu, bisect."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import click
from rich.console import Console

from xcheck.outcome import ExitCode

DEFAULT_SUITE = Path(__file__).resolve().parent.parent / "scenarios"


def _console() -> Console:
    return Console(stderr=False, highlight=False)


def _parse_shard(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        k, n = (int(x) for x in value.split("/"))
    except ValueError:
        raise click.BadParameter(f"expected K/N, e.g. 1/4, got {value!r}") from None
    if not (n >= 1 and 1 <= k <= n):
        raise click.BadParameter(f"need 1 <= K <= N, got {value!r}")
    return k, n


def _report_file(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """A report file is checked before the run, so that a run is not lost
    to a typo in its folder."""
    if value is None:
        return None
    folder = value.parent
    if value.is_dir():
        raise click.BadParameter(f"{value} is a folder, not a file")
    if not folder.is_dir():
        raise click.BadParameter(f"no such folder: {folder}")
    if not os.access(folder, os.W_OK) or (value.exists() and not os.access(value, os.W_OK)):
        raise click.BadParameter(f"cannot write {value}")
    return value


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="xcheck")
def main() -> None:
    """Cross-check Arm address translation (AT, PAR_EL1) in QEMU against a
    model of the Arm architecture (Arm ARM, DDI 0487).

    \b
    Examples:
      xcheck doctor
      xcheck run scenarios/ --junit out.xml
      xcheck explain scenarios/pan/pan2-el1.yaml --probe 'S1E1RP and pan=1'
    """


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--config", "configs", metavar="PROFILE", multiple=True,
              help="QEMU profile (name in qemu_configs/ or a YAML path). Repeat for a matrix run.")
@click.option("--target", "targets", metavar="NAME", multiple=True,
              help="Same as --config NAME (e.g. --target tcg-max --target kvm-nested).")
@click.option("--qemu", "qemus", metavar="BINARY", multiple=True,
              help="Use this qemu-system-aarch64 instead of the profile's. Repeat for a "
                   "matrix run.")
@click.option("--cpu", "cpus", metavar="MODEL", multiple=True,
              help="CPU model instead of the profile's; repeat for a matrix run; `all`: every "
                   "AArch64 model the QEMU offers.")
@click.option("-k", "keyword", metavar="EXPR",
              help="Only probes whose id matches EXPR (substrings with and/or/not).")
@click.option("--jobs", "-j", default=1, show_default=True,
              help="Worker processes, each with its own QEMU.")
@click.option("--shard", metavar="K/N",
              help="Run the K-th of N deterministic slices of the scenario files.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), callback=_report_file,
              metavar="FILE",
              help="Stream one JSON object per probe to FILE.")
@click.option("--junit", "junit_path", type=click.Path(path_type=Path), callback=_report_file,
              metavar="FILE",
              help="Write JUnit XML to FILE.")
@click.option("--html", "html_path", type=click.Path(path_type=Path), callback=_report_file,
              metavar="FILE",
              help="Write one self-contained HTML page to FILE: probe x target, coloured, "
                   "with filters and each failing probe in full.")
@click.option("--mode", type=click.Choice(["batch", "step"]), default="batch", show_default=True)
@click.option("-v", "--verbose", is_flag=True, help="Also show known divergences in full.")
def run(
    paths: Sequence[Path],
    configs: Sequence[str],
    targets: Sequence[str],
    qemus: Sequence[str],
    cpus: Sequence[str],
    keyword: str | None,
    jobs: int,
    shard: str | None,
    json_path: Path | None,
    junit_path: Path | None,
    html_path: Path | None,
    mode: str,
    verbose: bool,
) -> None:
    """Run scenarios on QEMU and on the model and compare every probe.

    PATHS are scenario files or folders (default: the shipped suite).
    Exit status: 0 all good, 1 a mismatch, failed expectation or QEMU error
    on a probe, 2 a usage or scenario error, 125 QEMU could not be used
    (suits `git bisect run`).

    Several --config/--target/--qemu values make a matrix run: the same
    probes on each target, then a table probe x target with the
    differences marked. One target per --config/--target value and one per
    --qemu (on the only --config given, else on the default profile), each
    on every --cpu model given (`--cpu all`: every AArch64 model). Exit
    status of a matrix run: the worst over targets; a target that cannot be
    used is a failure (1) while another one could be, 125 only when none
    could.

    \b
    Examples:
      xcheck run                                # the shipped suite
      xcheck run scenarios/pan -k 'S1E1RP and not el=2' --json out.jsonl
      xcheck run --qemu ~/qemu/build/qemu-system-aarch64 --shard 2/4 --junit j.xml
      xcheck run --config tcg-max --config qemu10 scenarios   # QEMU 7.2 vs 10.0
      xcheck run --config tcg-max --config qemu10 --html report.html  # to look at
      xcheck run --qemu build-a/qemu-system-aarch64 --qemu build-b/qemu-system-aarch64
      xcheck run --cpu cortex-a57 --cpu neoverse-n1 scenarios/stage2
      xcheck run --config qemu10 --cpu all       # every CPU model of QEMU 10.0
    """
    configs = [*configs, *targets]
    if len(configs) > 1 or len(qemus) > 1 or len(cpus) > 1 or "all" in cpus:
        from xcheck.matrix import run_matrix

        sys.exit(
            run_matrix(
                list(paths) or [DEFAULT_SUITE],
                configs=configs,
                qemus=qemus,
                cpus=cpus,
                keyword=keyword,
                jobs=jobs,
                shard=_parse_shard(shard),
                json_path=json_path,
                junit_path=junit_path,
                html_path=html_path,
                mode=mode,
                verbose=verbose,
                console=_console(),
            )
        )
    from xcheck.commands import run_command

    sys.exit(
        run_command(
            list(paths) or [DEFAULT_SUITE],
            config=configs[0] if configs else None,
            qemu=qemus[0] if qemus else None,
            cpu=cpus[0] if cpus else None,
            keyword=keyword,
            jobs=jobs,
            shard=_parse_shard(shard),
            json_path=json_path,
            junit_path=junit_path,
            html_path=html_path,
            mode=mode,
            verbose=verbose,
            console=_console(),
        )
    )


@main.command()
@click.argument("scenario", type=click.Path(path_type=Path))
@click.option("--probe", "selector", metavar="EXPR", help="Only probes matching EXPR (as -k).")
@click.option("--config", "config", metavar="PROFILE", help="QEMU profile.")
@click.option("--qemu", "qemu", metavar="BINARY", help="qemu-system-aarch64 to use.")
@click.option("--cpu", "cpu", metavar="MODEL",
              help="CPU model instead of the profile's (see `qemu-system-aarch64 -cpu help`).")
@click.option("--model-only", is_flag=True,
              help="Do not start QEMU; explain the model's answer only.")
def explain(
    scenario: Path, selector: str | None, config: str | None, qemu: str | None,
    cpu: str | None, model_only: bool
) -> None:
    """Show the model's trace for each probe next to QEMU's PAR, decoded.

    \b
    Example:
      xcheck explain scenarios/stage2/s2-fault-on-s1-walk.yaml --probe S12E1R
    """
    from xcheck.commands import explain_command

    sys.exit(
        explain_command(
            scenario,
            selector=selector,
            config=config,
            qemu=qemu,
            cpu=cpu,
            model_only=model_only,
            console=_console(),
        )
    )


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--format", "fmt", default="qemu-tcg", show_default=True,
              help="qemu-tcg (bare-metal tests for QEMU) or kvm-selftest (KVM selftests).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output folder.")
@click.option("--config", "configs", metavar="PROFILE", multiple=True,
              help="Compute the answers for this profile's CPU (repeat for several QEMUs).")
@click.option("--qemu", "qemu", metavar="BINARY", help="qemu-system-aarch64 to use.")
@click.option("-k", "keyword", metavar="EXPR", help="Only probes matching EXPR.")
@click.option("--linux-src", type=click.Path(path_type=Path), metavar="DIR",
              help="kvm-selftest: build the tests against this Linux tree's selftests.")
@click.option("--run", "run_tests", is_flag=True,
              help="kvm-selftest: run the built tests under the nested-KVM target.")
def export(paths: tuple[Path, ...], fmt: str, out: Path, configs: tuple[str, ...],
           qemu: str | None, keyword: str | None, linux_src: Path | None,
           run_tests: bool) -> None:
    """Export scenarios as standalone tests (no xcheck, gdb or Python needed
    to run them): one folder per scenario under --out, and a Makefile.
    Exit status: 0 written, 2 a probe refused (nothing written) or bad input,
    125 a profile's QEMU did not start. kvm-selftest (one file per scenario
    under --out/arm64, answers for the nested-KVM target's CPU): 1 when a
    test does not build against --linux-src; with --run, 0 every probe
    passes, 1 one fails, 125 the target cannot run them. See docs/upstream.md.

    \b
    Example:
      xcheck export tests/bisect/sh-mmu-off.yaml --config tcg-max --config qemu10 --out t/
      make -C t QEMU=qemu-system-aarch64
      xcheck export scenarios/pan --format kvm-selftest --out k/ \\
          --linux-src ~/.cache/xcheck/linux-source-7.3.4 --run
    """
    from xcheck.export.command import export_command

    sys.exit(export_command(paths, fmt=fmt, out=out, configs=configs, qemu=qemu,
                            keyword=keyword, console=_console(), linux_src=linux_src,
                            run=run_tests))


@main.command()
@click.option("--config", "config", metavar="PROFILE", help="QEMU profile.")
@click.option("--qemu", "qemu", metavar="BINARY", help="qemu-system-aarch64 to use.")
@click.option("--cpu", "cpu", metavar="MODEL",
              help="CPU model instead of the profile's (see `qemu-system-aarch64 -cpu help`).")
def doctor(config: str | None, qemu: str | None, cpu: str | None) -> None:
    """QEMU and gdb versions, stub capabilities and the CPU's translation
    features (for the nested-KVM target: the ID registers read at vEL2, the
    CPU KVM shows its guest hypervisor). Exit 0 when usable, 125 when the
    target cannot be started.

    \b
    Examples:
      xcheck doctor --config tcg-max
      xcheck doctor --config qemu10 --cpu cortex-a710
      xcheck doctor --config kvm-nested
    """
    from xcheck.target.doctor import doctor as run_doctor
    from xcheck.target.errors import ProfileError
    from xcheck.target.profile import load_profile

    console = _console()
    try:
        profile = load_profile(config, qemu=qemu, cpu=cpu)
    except ProfileError as err:
        console.print(f"[red]error:[/] {err}")
        sys.exit(ExitCode.USAGE)
    sys.exit(run_doctor(profile, console))


@main.command()
@click.option("-o", "--output", type=click.File("w"), default="-",
              help="Write to FILE (default stdout).")
def schema(output: IO[str]) -> None:
    """Print the JSON Schema of scenario files (for editors).

    \b
    Example:
      xcheck schema > xcheck-scenario.schema.json
    """
    from xcheck.scenario.schema import json_schema

    json.dump(json_schema(), output, indent=2)
    output.write("\n")


@main.group()
def qemu() -> None:
    """QEMUs side by side: install Debian's newer QEMU beside the system's,
    list the profiles with the version each binary reports.

    \b
    Examples:
      xcheck qemu fetch                          # QEMU 10.0 from bookworm-backports
      xcheck qemu fetch --suite trixie-backports # QEMU 11.1, with its own libraries
      xcheck qemu list
      xcheck run --config tcg-max --config qemu10 --config qemu11 scenarios
    """


@qemu.command("fetch")
@click.option("--suite", default="bookworm-backports", show_default=True,
              help="Debian suite to take qemu-system-arm from.")
def qemu_fetch(suite: str) -> None:
    """Install Debian's qemu-system-arm from SUITE into the per-user cache,
    beside the system QEMU (the system's apt state is not touched). SUITE may
    be any Debian suite with a QEMU (bookworm-backports, trixie,
    trixie-backports, forky, sid): a QEMU built for a newer Debian than this
    one is run with its own suite's libraries through their dynamic loader.
    Same as `make qemu10` (bookworm-backports) and `make qemu11`
    (trixie-backports). Exit 1 when fetching or running it fails.

    \b
    Examples:
      xcheck qemu fetch --suite bookworm-backports
      xcheck qemu fetch --suite sid
    """
    from xcheck.qemus import fetch_command

    sys.exit(fetch_command(suite, _console()))


@qemu.command("list")
def qemu_list() -> None:
    """The profiles in qemu_configs/, their binaries and the version each
    binary reports (what `known` ranges compare against). Exit 1 when a
    profile's binary does not run.

    \b
    Example:
      xcheck qemu list
    """
    from xcheck.qemus import list_command

    sys.exit(list_command(_console()))


def _bisect_options(f: Any) -> Any:
    """Options shared by `bisect` and `bisect-step`."""
    for opt in reversed([
        click.option("--qemu-src", "qemu_src", required=True, metavar="DIR",
                     type=click.Path(path_type=Path), help="QEMU git source tree."),
        click.option("--build-dir", "build_dir", metavar="DIR", type=click.Path(path_type=Path),
                     help="Build directory kept across steps [default: DIR/build-xcheck]."),
        click.option("--crash-is", "crash_is", type=click.Choice(["bad", "skip"]),
                     default="bad", show_default=True,
                     help="What a QEMU crash on a probe makes a commit."),
        click.option("--config", "config", metavar="PROFILE",
                     help="Profile whose machine, CPU and timeouts the built QEMU runs with."),
        click.option("-k", "keyword", metavar="EXPR", help="Only probes matching EXPR."),
        click.option("--jobs", "-j", default=1, show_default=True, help="Worker processes."),
    ]):
        f = opt(f)
    return f


@main.command()
@click.argument("scenarios", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--good", required=True, metavar="REV", help="A commit where the probes pass.")
@click.option("--bad", required=True, metavar="REV", help="A commit where a probe fails.")
@_bisect_options
def bisect(
    scenarios: Sequence[Path], good: str, bad: str, qemu_src: Path, build_dir: Path | None,
    crash_is: str, config: str | None, keyword: str | None, jobs: int,
) -> None:
    """Find the QEMU commit where SCENARIOS started to fail: `git bisect
    run` in the QEMU source tree, building aarch64-softmmu at each step
    (configure + ninja, ccache when installed, a reusable build dir) and
    running SCENARIOS with the binary built. A step is good (0) when no
    probe fails, bad (1) on a mismatch, failed expectation or target error,
    skipped (125) when the build fails or QEMU does not boot. A QEMU crash
    on a probe is bad unless --crash-is skip. Ends by naming the first bad
    commit and the probes that flipped, and resets the bisection.

    Exit status: 0 found, 1 inconclusive, 2 usage error.

    \b
    Example:
      xcheck bisect --good v8.0.0 --bad v8.1.0 --qemu-src ~/src/qemu \\
          --build-dir ~/build/qemu-bisect scenarios/pan/pan3-el1-epan.yaml
    """
    from xcheck.bisect import BisectError, check_plan
    from xcheck.bisect import bisect as run_bisect

    console = _console()
    try:
        plan = check_plan(good, bad, qemu_src, build_dir, scenarios, config=config,
                          keyword=keyword, jobs=jobs, crash_is=crash_is)
    except BisectError as err:
        console.print(f"error: {err}", markup=False, highlight=False)
        sys.exit(ExitCode.USAGE)
    sys.exit(run_bisect(plan, console))


@main.command("bisect-step", hidden=True)
@click.argument("scenarios", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--record-dir", "record_dir", type=click.Path(path_type=Path),
              help="Write this commit's verdict there as COMMIT.json.")
@_bisect_options
def bisect_step(
    scenarios: Sequence[Path], qemu_src: Path, build_dir: Path | None, crash_is: str,
    config: str | None, keyword: str | None, jobs: int, record_dir: Path | None,
) -> None:
    """One step of `xcheck bisect`, as `git bisect run` executes it: build
    the checked-out commit, run SCENARIOS, exit 0 good, 1 bad, 125 skip,
    128 abort.

    \b
    Example:
      git bisect run xcheck bisect-step --qemu-src . -- ~/my-scenario.yaml
    """
    from xcheck.bisect import step_command

    src = qemu_src.resolve()
    sys.exit(step_command(
        src, (build_dir or src / "build-xcheck").resolve(), [p.resolve() for p in scenarios],
        config=config, keyword=keyword, jobs=jobs, crash_is=crash_is,
        record_dir=record_dir, console=_console(),
    ))


@main.command()
@click.option("--kernel", "kernel", type=click.Path(path_type=Path), metavar="VMLINUZ",
              help="Boot this arm64 kernel image.")
@click.option("--kernel-deb", "kernel_deb", metavar="PACKAGE",
              help="Fetch Debian's arm64 kernel PACKAGE (cached per user); 'current' = the "
              "suite's linux-image-arm64.")
@click.option("--suite", default="bookworm", show_default=True,
              help="Debian suite for --kernel-deb.")
@click.option("--append", default="", metavar="ARGS", help="Extra kernel command line.")
@click.option("--initrd", type=click.Path(path_type=Path), help="An initramfs to load.")
@click.option("--at-panic", "at_panic", is_flag=True,
              help="Halt when the console shows the kernel's panic (the default).")
@click.option("--after", "after", type=float, metavar="SECONDS",
              help="Instead, halt this long after starting the kernel.")
@click.option("--samples", default=2000, show_default=True, metavar="N",
              help="VAs to check (each with every op).")
@click.option("--seed", default=0, show_default=True, help="Seed of the VA sample.")
@click.option("--ops", metavar="OP,...", help="AT ops (default: the kernel's regime: "
              "S1E2R,S1E2W,S1E0R,S1E0W at EL2 with VHE; S1E1R,S1E1W,S1E0R,S1E0W at EL1).")
@click.option("--config", "config", metavar="PROFILE", help="QEMU profile.")
@click.option("--qemu", "qemu", metavar="BINARY", help="qemu-system-aarch64 to use.")
@click.option("--cpu", "cpu", metavar="MODEL",
              help="CPU model instead of the profile's (see `qemu-system-aarch64 -cpu help`).")
@click.option("--memory", default="512M", show_default=True, help="Guest RAM.")
@click.option("--resume", is_flag=True, help="Afterwards let the kernel run on and check it "
              "still prints its panic (at the panic: boots with panic=2, so it restarts).")
@click.option("--export", "export_dir", type=click.Path(path_type=Path), metavar="DIR",
              help="Write each mismatch as a standalone scenario into DIR.")
@click.option("--json", "json_path", type=click.Path(path_type=Path),
              help="Stream one JSON object per check to FILE.")
@click.option("--junit", "junit_path", type=click.Path(path_type=Path),
              help="Write JUnit XML to FILE.")
@click.option("--boot-timeout", default=120.0, show_default=True, metavar="SECONDS")
@click.option("-v", "--verbose", is_flag=True, help="Also show known divergences in full.")
def live(
    kernel: Path | None, kernel_deb: str | None, suite: str, append: str,
    initrd: Path | None, at_panic: bool, after: float | None, samples: int, seed: int,
    ops: str | None, config: str | None, qemu: str | None, cpu: str | None, memory: str,
    resume: bool,
    export_dir: Path | None, json_path: Path | None, junit_path: Path | None,
    boot_timeout: float, verbose: bool,
) -> None:
    """Cross-check AT on a real Linux kernel's own page tables.

    Boots the kernel, halts it at its panic (no root file system: the
    console shows "Kernel panic"), reads its translation registers, walks
    its tables to find what is mapped, and runs the AT ops of its regime on
    many VAs in QEMU (injected code, undone afterwards) and in the model.
    Exit status as for `xcheck run`.

    \b
    Examples:
      xcheck live --kernel-deb current --suite bookworm
      xcheck live --kernel vmlinuz --append kvm-arm.mode=nvhe --export out/
      xcheck live --kernel vmlinuz --after 1.5 --resume --json live.jsonl
    """
    from xcheck.live.command import LiveOptions, live_command

    if at_panic and after is not None:
        raise click.UsageError("give --at-panic or --after SECONDS, not both")
    if after is not None and after < 0:
        raise click.BadParameter(f"{after:g} is negative", param_hint="--after")
    opts = LiveOptions(
        kernel=kernel, kernel_deb=kernel_deb, suite=suite, append=append, initrd=initrd,
        at_panic=after is None, after=after or 0.0, samples=samples, seed=seed,
        ops=[o for o in (ops or "").split(",") if o.strip()], config=config, qemu=qemu,
        cpu=cpu, memory=memory, resume=resume, export_dir=export_dir, json_path=json_path,
        junit_path=junit_path, boot_timeout=boot_timeout, verbose=verbose,
    )
    sys.exit(live_command(opts, _console()))


@main.group(invoke_without_command=True)
@click.option("--seed", type=int, help="Seed of the generator (default: one from the clock, "
              "printed). The same seed and profile give the same cases.")
@click.option("--count", type=int, help="Generate N cases [default: 100].")
@click.option("--time", "duration", metavar="T", help="Generate cases for T (90s, 10m, 1h) "
              "instead of a count; shrinking does not use up T.")
@click.option("--features", multiple=True, metavar="LIST",
              help="What cases may use: comma-separated names (all, stage2, vhe, pan, "
                   "malformed, ...; -NAME leaves one out). See docs/fuzzing.md.")
@click.option("--config", "config", metavar="PROFILE", help="QEMU profile.")
@click.option("--qemu", "qemu", metavar="BINARY", help="qemu-system-aarch64 to use.")
@click.option("--cpu", "cpu", metavar="MODEL",
              help="CPU model instead of the profile's (see `qemu-system-aarch64 -cpu help`).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("fuzz-findings"),
              show_default=True, help="Where shrunk failing scenarios are written.")
@click.option("--known", "known_dirs", multiple=True, type=click.Path(path_type=Path),
              help="Folders of recorded findings (every scenario file under them): their "
                   "signatures are not new, not shrunk again [default: scenarios and --out].")
@click.option("--json", "json_path", type=click.Path(path_type=Path),
              help="Write findings and the final summary (with coverage) as JSON lines.")
@click.option("--no-shrink", is_flag=True, help="Report failures without shrinking them.")
@click.option("--shrink-runs", default=300, show_default=True,
              help="At most this many target runs to shrink one finding.")
@click.option("--max-shrinks", type=click.IntRange(min=0),
              help="Shrink at most N new findings; later ones are reported, not shrunk "
                   "(slow targets such as nested KVM) [default: every one].")
@click.option("--shard", metavar="K/N",
              help="Run the K-th of N slices of the campaign (case numbers K-1 modulo N; "
                   "needs --seed); `xcheck fuzz merge` joins the N --out folders.")
@click.option("--drawers", type=click.IntRange(min=1), metavar="N",
              help="Processes that draw, run on the model and judge the cases; what a "
                   "run finds does not depend on N [default: one more than the cores, at most 4].")
@click.pass_context
def fuzz(
    ctx: click.Context, seed: int | None, count: int | None, duration: str | None,
    features: tuple[str, ...], config: str | None, qemu: str | None, cpu: str | None,
    out: Path, known_dirs: tuple[Path, ...], json_path: Path | None, no_shrink: bool,
    shrink_runs: int, max_shrinks: int | None, shard: str | None, drawers: int | None,
) -> None:
    """Differential fuzzing: random translation setups (within what the CPU
    implements) run on QEMU and on the model; each new kind of failure is
    shrunk to a minimal scenario file in --out that `xcheck run` loads as
    is. Ends with a coverage summary. Exit status: 0 nothing new failed,
    1 a new finding, 2 usage error, 125 QEMU could not be started.

    \b
    Examples:
      xcheck fuzz --seed 1 --count 200
      xcheck fuzz --time 10m --config qemu10 --out findings/ --json fuzz.jsonl
      xcheck fuzz --features stage2,pan,malformed --count 50
      xcheck fuzz --seed 7 --count 4000 --shard 2/8 --out shard-2/
      xcheck fuzz merge shard-*/ --out findings/
    """
    if ctx.invoked_subcommand is not None:
        return
    from xcheck.fuzz.command import fuzz_command

    known = known_dirs or ((DEFAULT_SUITE,) if DEFAULT_SUITE.is_dir() else ())
    sys.exit(fuzz_command(
        seed=seed, count=count, duration=duration, features=features, config=config,
        qemu=qemu, cpu=cpu, out=out, known_dirs=tuple(known), json_path=json_path,
        do_shrink=not no_shrink, shrink_runs=shrink_runs, max_shrinks=max_shrinks,
        console=_console(),
        shard=_parse_shard(shard), drawers=drawers,
    ))


@fuzz.command("merge")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path),
              help="Copy each finding's scenario file here (one per signature).")
@click.option("--json", "json_path", type=click.Path(path_type=Path),
              help="Write the merged summary (findings, coverage) as one JSON line.")
def fuzz_merge(paths: tuple[Path, ...], out: Path | None, json_path: Path | None) -> None:
    """Merge the --out folders (or fuzz-summary*.json files) of a campaign's
    shards into one report: findings by signature, coverage added up, the
    rules never reached, and shards run twice or missing. Exit status: 0
    no new finding, 1 a new finding, 2 a summary missing or unreadable.

    \b
    Examples:
      xcheck fuzz merge shard-1/ shard-2/ shard-3/ shard-4/
      xcheck fuzz merge artifacts/*/ --out findings/ --json campaign.json
    """
    from xcheck.fuzz.command import merge_command

    sys.exit(merge_command(paths, out, json_path, _console()))


if __name__ == "__main__":
    main()
