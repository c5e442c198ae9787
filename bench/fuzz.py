"""Fuzzing throughput, end to end on one QEMU: generate, load and build
each case, run the model and QEMU, compare, count coverage (targets:
fuzz_probes_per_s >= 2000, fuzz_cases_per_s >= 100). Shrinking is off: it
is not throughput. The cases are drawn by the default drawing processes,
one more than the cores (xcheck.fuzz.drawers); fuzz_draws_per_s is what
one such process draws alone: cases generated, loaded, built and run on the model per second, no
QEMU. fuzz_cpu_ms_per_case is the CPU time a case costs in every process
(the fuzzer, its drawers, the target's process, QEMU, gdb);
fuzz_cpu_bound_cases_per_s the rate the machine's cores allow at that
cost, whatever the overlap.

A case has at most generate.MAX_PROBES (96) probes, 90 on average for
seed 1 on QEMU 7.2 (fuzz_probes_per_case is printed beside the rates), over
2 to 20 mappings per regime: the rates count whole cases, not empty ones."""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from xcheck.fuzz.case import make_case
from xcheck.fuzz.knobs import KNOBS
from xcheck.fuzz.session import Fuzzer, FuzzOptions
from xcheck.target.profile import load_profile

TARGET = ">= 2000"
CASES = 400
DRAWS = 60


def bench_fuzz() -> dict[str, float]:
    with TemporaryDirectory() as tmp:
        opts = FuzzOptions(seed=1, count=CASES, allowed=frozenset(KNOBS), out=Path(tmp),
                           shrink=False)
        children0 = _children_cpu()
        with Fuzzer(load_profile(), opts) as fz:
            cpu0 = time.process_time()
            fz.run()
            cpu = time.process_time() - cpu0
            t0 = time.monotonic()
            for index in range(DRAWS):
                make_case(opts.seed, index, fz.knobs, fz.ram_size)
            draw_seconds = time.monotonic() - t0
        # the drawers, reaped at the end of the run, and the target's process,
        # QEMU and gdb, reaped at close (their start included)
        cpu += _children_cpu() - children0
    print(f"# target: fuzz_probes_per_s {TARGET}, fuzz_cases_per_s >= 100 "
          "(fuzz_draws_per_s: one process drawing the same cases, without QEMU)")
    return {
        "fuzz_probes_per_s": fz.stats.probes_per_s,
        "fuzz_cases_per_s": fz.stats.cases / fz.stats.fuzz_seconds,
        "fuzz_draws_per_s": DRAWS / draw_seconds,
        "fuzz_probes_per_case": fz.stats.probes / max(1, fz.stats.cases),
        "fuzz_cpu_ms_per_case": 1000 * cpu / max(1, fz.stats.cases),
        "fuzz_cpu_bound_cases_per_s": (os.cpu_count() or 1) * fz.stats.cases / cpu,
    }


def _children_cpu() -> float:
    """CPU seconds of this process's reaped children and their reaped children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
