"""The xcheck command line: run, explain, doctor, schema."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="xcheck")
def main() -> None:
    """Cross-check Arm address translation (AT, PAR_EL1) in QEMU against a
    model of the Arm architecture (Arm ARM, DDI 0487).

    \b
    Examples:
      xcheck doctor
      xcheck run scenarios/ --junit out.xml
      xcheck explain scenarios/pan/pan2-matrix.yaml --probe 'S1E1RP and pan=1'
    """


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--config", "config", metavar="PROFILE", help="QEMU profile (name in qemu_configs/ or a YAML path).")
@click.option("--qemu", "qemu", metavar="BINARY", help="Use this qemu-system-aarch64 instead of the profile's.")
@click.option("-k", "keyword", metavar="EXPR", help="Only probes whose id matches EXPR (substrings with and/or/not).")
@click.option("--jobs", "-j", default=1, show_default=True, help="Worker processes, each with its own QEMU.")
@click.option("--shard", metavar="K/N", help="Run the K-th of N deterministic slices of the scenario files.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Stream one JSON object per probe to FILE.")
@click.option("--junit", "junit_path", type=click.Path(path_type=Path), help="Write JUnit XML to FILE.")
@click.option("--mode", type=click.Choice(["batch", "step"]), default="batch", show_default=True)
@click.option("-v", "--verbose", is_flag=True, help="Also show known divergences in full.")
def run(
    paths: Sequence[Path],
    config: str | None,
    qemu: str | None,
    keyword: str | None,
    jobs: int,
    shard: str | None,
    json_path: Path | None,
    junit_path: Path | None,
    mode: str,
    verbose: bool,
) -> None:
    """Run scenarios on QEMU and on the model and compare every probe.

    PATHS are scenario files or folders (default: the shipped suite).
    Exit status: 0 all good, 1 a mismatch, failed expectation or QEMU error
    on a probe, 2 a usage or scenario error, 125 QEMU could not be used
    (suits `git bisect run`).

    \b
    Examples:
      xcheck run                                # the shipped suite
      xcheck run scenarios/pan -k 'S1E1RP and not el=2' --json out.jsonl
      xcheck run --qemu ~/qemu/build/qemu-system-aarch64 --shard 2/4 --junit j.xml
    """
    from xcheck.commands import run_command

    sys.exit(
        run_command(
            list(paths) or [DEFAULT_SUITE],
            config=config,
            qemu=qemu,
            keyword=keyword,
            jobs=jobs,
            shard=_parse_shard(shard),
            json_path=json_path,
            junit_path=junit_path,
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
@click.option("--model-only", is_flag=True, help="Do not start QEMU; explain the model's answer only.")
def explain(
    scenario: Path, selector: str | None, config: str | None, qemu: str | None, model_only: bool
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
            model_only=model_only,
            console=_console(),
        )
    )


@main.command()
@click.option("--config", "config", metavar="PROFILE", help="QEMU profile.")
@click.option("--qemu", "qemu", metavar="BINARY", help="qemu-system-aarch64 to use.")
def doctor(config: str | None, qemu: str | None) -> None:
    """QEMU and gdb versions, stub capabilities and the CPU's translation
    features. Exit 0 when usable, 125 when QEMU cannot be started.

    \b
    Example:
      xcheck doctor --config tcg-max
    """
    from xcheck.target.doctor import doctor as run_doctor
    from xcheck.target.errors import ProfileError
    from xcheck.target.profile import load_profile

    console = _console()
    try:
        profile = load_profile(config, qemu=qemu)
    except ProfileError as err:
        console.print(f"[red]error:[/] {err}")
        sys.exit(ExitCode.USAGE)
    sys.exit(run_doctor(profile, console))


@main.command()
@click.option("-o", "--output", type=click.File("w"), default="-", help="Write to FILE (default stdout).")
def schema(output: IO[str]) -> None:
    """Print the JSON Schema of scenario files (for editors).

    \b
    Example:
      xcheck schema > xcheck-scenario.schema.json
    """
    from xcheck.scenario.schema import json_schema

    json.dump(json_schema(), output, indent=2)
    output.write("\n")


if __name__ == "__main__":
    main()
