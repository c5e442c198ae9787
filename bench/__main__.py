"""Run every benchmark and print `name: value` lines (the last lines of output).

Each figure with a target (2-core machine) is first printed beside it, the
bound worked out from the same run where it depends on another figure; they
are goals, not assertions: benchmarks never fail a build.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

BENCHES: list[tuple[str, str]] = [
    ("bench.model", "bench_walks"),
    ("bench.target", "bench_target"),
    ("bench.suite", "bench_suite"),
    ("bench.live", "bench_live"),
    ("bench.fuzz", "bench_fuzz"),
    ("bench.kvm", "bench_kvm"),
]

TARGETS: dict[str, tuple[str, float, str]] = {
    # name: (comparison, bound, figure of the same run the bound multiplies, or "")
    "walks_per_s": (">=", 50000, ""),
    "step_probes_per_s": (">=", 0.9, "bare_gdb_step_loop_per_s"),
    "batch_probes_per_s": (">=", 5000, ""),
    "target_batch_probes_per_s": (">=", 100000, ""),
    "boot_to_first_probe_s": ("<=", 0.5, ""),
    "suite_wall_s": ("<=", 60, ""),
    "kvm_boot_s": ("<=", 15, ""),
    "kvm_probes_per_s": (">=", 5000, ""),
    "fuzz_cases_per_s": (">=", 100, ""),
}
NOTES = {
    "batch_probes_per_s": "end to end",
    "kvm_probes_per_s": "the limit of the kvm_vcpus guest CPUs: kvm_vcpu_probes_per_s",
}


def verdict(name: str, figures: dict[str, float]) -> str:
    """``name``'s figure beside its target, the bound worked out from this
    run's figures where it depends on one."""
    cmp, bound, ref = TARGETS[name]
    limit = bound * figures[ref] if ref else bound
    ok = figures[name] >= limit if cmp == ">=" else figures[name] <= limit
    of = f" ({bound:g} x {ref})" if ref else ""
    note = f"; {NOTES[name]}" if name in NOTES else ""
    return (f"# {name} {figures[name]:.6g} {cmp} {limit:.6g}{of}: "
            f"{'met' if ok else 'NOT met'}{note}")


def main(argv: list[str]) -> int:
    only = set(argv)
    figures: dict[str, float] = {}
    for module, func in BENCHES:
        if only and module.rsplit(".", 1)[-1] not in only:
            continue
        bench: Callable[[], dict[str, float]] = getattr(importlib.import_module(module), func)
        print(f"# {module}.{func}", flush=True)
        figures.update(bench())
    for name in TARGETS:
        if name in figures and TARGETS[name][2] in ("", *figures):
            print(verdict(name, figures))
    for name, value in figures.items():
        print(f"{name}: {value:.6g}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
