"""Run every benchmark and print `name: value` lines (the last lines of output).

Targets (2-core machine) are printed beside each figure; they are goals, not
assertions: benchmarks never fail a build.
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

TARGETS = {
    "walks_per_s": ">= 50000",
    "step_probes_per_s": ">= 0.9 x bare_gdb_step_loop_per_s",
    "batch_probes_per_s": ">= 5000 end to end",
    "target_batch_probes_per_s": ">= 10000",
    "boot_to_first_probe_s": "<= 0.5",
    "suite_wall_s": "<= 60",
    "kvm_boot_s": "<= 15",
    "kvm_probes_per_s": ">= 5000 (limit: kvm_vcpu_probes_per_s)",
    "fuzz_cases_per_s": ">= 100",
}


def main(argv: list[str]) -> int:
    only = set(argv)
    figures: dict[str, float] = {}
    for module, func in BENCHES:
        if only and module.rsplit(".", 1)[-1] not in only:
            continue
        bench: Callable[[], dict[str, float]] = getattr(importlib.import_module(module), func)
        print(f"# {module}.{func}", flush=True)
        figures.update(bench())
    print("# targets: " + ", ".join(f"{k} {v}" for k, v in TARGETS.items() if k in figures))
    for name, value in figures.items():
        print(f"{name}: {value:.6g}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
