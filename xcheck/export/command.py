"""What `xcheck export` does, apart from argument parsing.

Each scenario becomes one test folder under --out (named after the
scenario), and --out gets a Makefile that runs them all. The CPUs the
answers are computed for are read from each profile's QEMU (its ID
registers, as `xcheck run` reads them); nothing is written when a probe is
refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from xcheck.check import load_all, select
from xcheck.export import qemu_tcg
from xcheck.export.answers import Cpu, Refusal, expected
from xcheck.keyword import KeywordError, compile_keyword
from xcheck.outcome import ExitCode
from xcheck.scenario.loader import ScenarioError
from xcheck.target.errors import ProfileError, QemuLaunchError
from xcheck.target.guest import QemuTarget
from xcheck.target.profile import Profile, load_profile, with_overrides

FORMATS = ("qemu-tcg",)


def _same_machine(profiles: Sequence[Profile]) -> str:
    """Why the profiles cannot share one test ("" when they can)."""
    keys = ("machine", "cpu", "memory", "extra_args")
    for k in keys:
        values = {str(getattr(p, k)) for p in profiles}
        if len(values) > 1:
            return f"the profiles differ in {k} ({', '.join(sorted(values))})"
    return ""


class _Cpus:
    """The ID registers of each profile's QEMU, read once per profile."""

    def __init__(self) -> None:
        self._seen: dict[Profile, Cpu] = {}

    def of(self, profile: Profile) -> Cpu:
        if profile not in self._seen:
            if profile.kind != "qemu":
                raise ProfileError(f"profile {profile.name} is a {profile.kind} target; "
                                   "--format qemu-tcg needs QEMU profiles")
            with QemuTarget(profile) as target:
                self._seen[profile] = Cpu(profile.name, target.version, dict(target.id_regs),
                                          target.ram_size)
        return self._seen[profile]


def export_command(
    paths: Sequence[Path],
    *,
    fmt: str,
    out: Path,
    configs: Sequence[str],
    qemu: str | None,
    keyword: str | None,
    console: Console,
) -> int:
    """Write one test folder per scenario; 2 when a probe is refused or the
    input is bad, 125 when a profile's QEMU cannot be started."""
    if fmt not in FORMATS:
        console.print(f"[red]error:[/] unknown format {fmt!r}; known: {', '.join(FORMATS)}")
        return ExitCode.USAGE
    missing = [p for p in paths if not p.exists()]
    if missing:
        console.print(f"[red]error:[/] no such file or folder: {missing[0]}")
        return ExitCode.USAGE
    try:
        keep = compile_keyword(keyword or "")
        names: Sequence[str | None] = configs or [None]
        profiles = [load_profile(c, qemu=qemu) for c in names]
    except (KeywordError, ProfileError) as err:
        console.print(f"[red]error:[/] {err}")
        return ExitCode.USAGE
    scenarios, bad = load_all(paths)
    for o in bad:
        console.print(f"[red]error:[/] {o.detail}", markup=False)
    scenarios = select(scenarios, keep)
    if bad or not scenarios:
        if not bad:
            console.print("[red]error:[/] no scenario (or no probe) selected")
        return ExitCode.USAGE
    cpus = _Cpus()
    tests: dict[str, dict[str, str]] = {}
    refused: list[tuple[str, Refusal]] = []
    for s in scenarios:
        try:
            wanted = [with_overrides(p, s.profile_overrides) for p in profiles]
            differ = _same_machine(wanted)
            if differ:
                raise ProfileError(differ)
            setup = s.build()
            rejected = qemu_tcg.refusals(setup)
            if not rejected:
                exported = [cpus.of(p) for p in wanted]
                answers, rejected = expected(setup, exported)
        except (ScenarioError, ProfileError) as err:
            console.print(f"[red]error:[/] {s.path}: {err}", markup=False)
            return ExitCode.USAGE
        except QemuLaunchError as err:
            console.print(f"[red]could not read the CPU's ID registers:[/] {err}", markup=False)
            return ExitCode.CANNOT_TEST
        refused += [(str(s.path), r) for r in rejected]
        if rejected:
            continue
        if s.name in tests:
            console.print(f"[red]error:[/] two scenarios are named {s.name}", markup=False)
            return ExitCode.USAGE
        tests[s.name] = qemu_tcg.files(s.name, s.path.name, setup, answers, exported, wanted[0])
    if refused:
        for path, r in refused:
            console.print(f"refused: {path}: {r.label}: {r.reason}", markup=False,
                          highlight=False)
        console.print(f"[red]{len(refused)} probe(s) refused[/]; nothing written (select "
                      "the others with -k)")
        return ExitCode.USAGE
    for name, content in tests.items():
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for fname, text in content.items():
            (folder / fname).write_text(text)
    (out / "Makefile").write_text(qemu_tcg.top_makefile(sorted(tests)))
    console.print(f"wrote {len(tests)} test(s) to {out}; run: make -C {out} "
                  "QEMU=/path/to/qemu-system-aarch64", highlight=False)
    return ExitCode.OK
