"""What `xcheck export` does, apart from argument parsing.

qemu-tcg: each scenario becomes one test folder under --out (named after the
scenario), and --out gets a Makefile that runs them all. kvm-selftest: each
scenario becomes --out/arm64/xcheck_<name>.c, built against --linux-src when
given and run under the nested-KVM target with --run. The CPUs the answers
are computed for are read from each profile's target (its ID registers, as
`xcheck run` reads them); nothing is written when a probe is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from xcheck.check import load_all, select
from xcheck.export import kvm_selftest, qemu_tcg
from xcheck.export.answers import Cpu, Refusal, expected
from xcheck.keyword import KeywordError, compile_keyword
from xcheck.machine import MachineSetup
from xcheck.outcome import ExitCode
from xcheck.scenario.loader import ScenarioError
from xcheck.scenario.scenario import Scenario
from xcheck.target.errors import ProfileError, QemuLaunchError
from xcheck.target.factory import make_target
from xcheck.target.profile import Profile, load_profile, with_overrides

KIND = {"qemu-tcg": "qemu", "kvm-selftest": "kvm-nested"}
"""Format: the kind of target its answers are computed for."""
FORMATS = tuple(KIND)
DEFAULT_CONFIG = {"qemu-tcg": None, "kvm-selftest": "kvm-nested"}


def _same_machine(profiles: Sequence[Profile]) -> str:
    """Why the profiles cannot share one test ("" when they can)."""
    keys = ("machine", "cpu", "memory", "extra_args")
    for k in keys:
        values = {str(getattr(p, k)) for p in profiles}
        if len(values) > 1:
            return f"the profiles differ in {k} ({', '.join(sorted(values))})"
    return ""


class _Cpus:
    """The ID registers of each profile's target, read once per profile."""

    def __init__(self, fmt: str) -> None:
        self._fmt = fmt
        self._seen: dict[Profile, Cpu] = {}

    def of(self, profile: Profile) -> Cpu:
        if profile not in self._seen:
            kind = KIND[self._fmt]
            if profile.kind != kind:
                raise ProfileError(f"profile {profile.name} is a {profile.kind} target; "
                                   f"--format {self._fmt} needs {kind} profiles")
            target = make_target(profile)
            target.start()
            try:
                self._seen[profile] = Cpu(profile.name, target.version, dict(target.id_regs),
                                          target.ram_size)
            finally:
                target.close()
        return self._seen[profile]


def _kvm_file(s: Scenario, setup: MachineSetup, cpu: Cpu
              ) -> tuple[dict[str, str], list[Refusal]]:
    rejected = kvm_selftest.refusals(setup, cpu)
    if rejected:
        return {}, rejected
    cpu = kvm_selftest.cpu_for(cpu, kvm_selftest.flavour_of(setup, cpu))
    answers, rejected = expected(setup, [cpu])
    if rejected:
        return {}, rejected
    name = kvm_selftest.source_name(s.name)
    text = kvm_selftest.test_c(s.name, s.path.name, s.about, setup, answers, cpu)
    return {f"arm64/{name}.c": text}, []


def export_command(
    paths: Sequence[Path],
    *,
    fmt: str,
    out: Path,
    configs: Sequence[str],
    qemu: str | None,
    keyword: str | None,
    console: Console,
    linux_src: Path | None = None,
    run: bool = False,
) -> int:
    """Write one test per scenario; 2 when a probe is refused or the input
    is bad, 125 when a profile's target cannot be started. kvm-selftest with
    ``linux_src``: 1 when a test does not build; with ``run``, the exit
    status of the run (selftest_run.run_command)."""
    if fmt not in FORMATS:
        console.print(f"[red]error:[/] unknown format {fmt!r}; known: {', '.join(FORMATS)}")
        return ExitCode.USAGE
    if fmt != "kvm-selftest" and (linux_src or run):
        console.print("[red]error:[/] --linux-src and --run are for --format kvm-selftest")
        return ExitCode.USAGE
    if run and linux_src is None:
        console.print("[red]error:[/] --run needs --linux-src (the tree to build the tests in)")
        return ExitCode.USAGE
    missing = [p for p in paths if not p.exists()]
    if linux_src is not None and not linux_src.is_dir():
        missing.append(linux_src)
    if missing:
        console.print(f"[red]error:[/] no such file or folder: {missing[0]}")
        return ExitCode.USAGE
    if linux_src is not None:
        from xcheck.linux_source import SelftestBuildError, tree_of

        try:
            tree_of(linux_src)
        except SelftestBuildError as err:
            console.print("[red]error:[/]", escape(str(err)))
            return ExitCode.USAGE
    if fmt == "kvm-selftest" and len(configs) > 1:
        console.print("[red]error:[/] --format kvm-selftest takes one --config (the nested-KVM "
                      "target whose guest hypervisor's CPU the answers are for)")
        return ExitCode.USAGE
    try:
        keep = compile_keyword(keyword or "")
        names: Sequence[str | None] = configs or [DEFAULT_CONFIG[fmt]]
        profiles = [load_profile(c, qemu=qemu) for c in names]
    except (KeywordError, ProfileError) as err:
        console.print(f"[red]error:[/] {err}")
        return ExitCode.USAGE
    scenarios, bad = load_all(paths)
    for o in bad:
        console.print("[red]error:[/]", escape(o.detail))
    scenarios = select(scenarios, keep)
    if bad or not scenarios:
        if not bad:
            console.print("[red]error:[/] no scenario (or no probe) selected")
        return ExitCode.USAGE
    cpus = _Cpus(fmt)
    tests: dict[str, dict[str, str]] = {}
    refused: list[tuple[str, Refusal]] = []
    for s in scenarios:
        try:
            wanted = [with_overrides(p, s.profile_overrides) for p in profiles]
            differ = _same_machine(wanted)
            if differ:
                raise ProfileError(differ)
            setup = s.build()
            if fmt == "kvm-selftest":
                content, rejected = _kvm_file(s, setup, cpus.of(wanted[0]))
            else:
                content, rejected = {}, qemu_tcg.refusals(setup)
                if not rejected:
                    exported = [cpus.of(p) for p in wanted]
                    answers, rejected = expected(setup, exported)
                if not rejected:
                    content = qemu_tcg.files(s.name, s.path.name, setup, answers, exported,
                                             wanted[0])
        except (ScenarioError, ProfileError) as err:
            console.print("[red]error:[/]", escape(f"{s.path}: {err}"))
            return ExitCode.USAGE
        except QemuLaunchError as err:
            console.print("[red]could not read the CPU's ID registers:[/]", escape(str(err)))
            return ExitCode.CANNOT_TEST
        refused += [(str(s.path), r) for r in rejected]
        if rejected:
            continue
        if s.name in tests:
            console.print("[red]error:[/] two scenarios are named", escape(s.name))
            return ExitCode.USAGE
        tests[s.name] = content
    if refused:
        for path, r in refused:
            console.print(f"refused: {path}: {r.label}: {r.reason}", markup=False,
                          highlight=False)
        console.print(f"[red]{len(refused)} probe(s) refused[/]; nothing written (select "
                      "the others with -k)")
        return ExitCode.USAGE
    if fmt == "kvm-selftest":
        for content in tests.values():
            for fname, text in content.items():
                (out / fname).parent.mkdir(parents=True, exist_ok=True)
                (out / fname).write_text(text)
        return _selftests_written(out, tests, profiles[0], linux_src, run, console)
    for name, content in tests.items():
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for fname, text in content.items():
            (folder / fname).write_text(text)
    (out / "Makefile").write_text(qemu_tcg.top_makefile(sorted(tests)))
    console.print(f"wrote {len(tests)} test(s) to {out}; run: make -C {out} "
                  "QEMU=/path/to/qemu-system-aarch64", highlight=False)
    return ExitCode.OK


def _selftests_written(out: Path, tests: dict[str, dict[str, str]], profile: Profile,
                       linux_src: Path | None, run: bool, console: Console) -> int:
    """Say what was written; build the tests against ``linux_src`` and run
    them under the nested-KVM target when asked."""
    names = sorted(Path(f).stem for content in tests.values() for f in content)
    console.print(f"wrote {len(names)} selftest(s) to {out}/arm64; in a Linux tree, copy them "
                  "to tools/testing/selftests/kvm/arm64/ and add to its Makefile.kvm:",
                  highlight=False)
    for n in names:
        console.print(f"  TEST_GEN_PROGS_arm64 += arm64/{n}", highlight=False)
    if linux_src is None:
        return ExitCode.OK
    from xcheck.export.selftest_run import run_command
    from xcheck.linux_source import SelftestBuildError, build_selftests

    try:
        binaries = build_selftests(linux_src, out, names)
    except SelftestBuildError as err:
        console.print("[red]the selftests do not build:[/]", escape(str(err)))
        return ExitCode.FAILED
    console.print(f"built against {linux_src}: {', '.join(str(b) for b in binaries)}",
                  highlight=False)
    return run_command(binaries, profile, console) if run else ExitCode.OK
