"""Fuzzing throughput, end to end on one worker: generate, load and build
each case, run the model and QEMU, compare, count coverage (targets:
fuzz_probes_per_s >= 2000, fuzz_cases_per_s >= 100). Shrinking is off: it
is not throughput. fuzz_draws_per_s is the limit the Python side sets:
cases generated, loaded, built and run on the model per second, no QEMU.

A case has at most generate.MAX_PROBES (96) probes, 90 on average for
seed 1 on QEMU 7.2 (fuzz_probes_per_case is printed beside the rates), over
2 to 20 mappings per regime: the rates count whole cases, not empty ones."""

from __future__ import annotations

import time
from pathlib import Path
from tempfile import TemporaryDirectory

from xcheck.fuzz.case import make_case
from xcheck.fuzz.knobs import KNOBS
from xcheck.fuzz.session import Fuzzer, FuzzOptions
from xcheck.target.profile import load_profile

TARGET = ">= 2000"
CASES = 60


def bench_fuzz() -> dict[str, float]:
    with TemporaryDirectory() as tmp:
        opts = FuzzOptions(seed=1, count=CASES, allowed=frozenset(KNOBS), out=Path(tmp),
                           shrink=False)
        with Fuzzer(load_profile(), opts) as fz:
            fz.run()
            t0 = time.monotonic()
            for index in range(CASES):
                make_case(opts.seed, index, fz.knobs, fz.ram_size)
            draw_seconds = time.monotonic() - t0
    print(f"# target: fuzz_probes_per_s {TARGET}, fuzz_cases_per_s >= 100 "
          "(limit: fuzz_draws_per_s, the same cases without QEMU)")
    return {
        "fuzz_probes_per_s": fz.stats.probes_per_s,
        "fuzz_cases_per_s": fz.stats.cases / fz.stats.fuzz_seconds,
        "fuzz_draws_per_s": CASES / draw_seconds,
        "fuzz_probes_per_case": fz.stats.probes / max(1, fz.stats.cases),
    }
