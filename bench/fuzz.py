"""Fuzzing throughput, end to end on one worker: generate, load and build
each case, run the model and QEMU, compare, count coverage (target:
fuzz_probes_per_s >= 2000). Shrinking is off: it is not throughput."""

from __future__ import annotations

from pathlib import Path
from tempfile import TemporaryDirectory

from xcheck.fuzz.knobs import KNOBS
from xcheck.fuzz.session import Fuzzer, FuzzOptions
from xcheck.target.profile import load_profile

TARGET = ">= 2000"


def bench_fuzz() -> dict[str, float]:
    with TemporaryDirectory() as tmp:
        opts = FuzzOptions(seed=1, count=60, allowed=frozenset(KNOBS), out=Path(tmp),
                           shrink=False)
        with Fuzzer(load_profile(), opts) as fz:
            fz.run()
    print(f"# target: fuzz_probes_per_s {TARGET}")
    return {
        "fuzz_probes_per_s": fz.stats.probes_per_s,
        "fuzz_cases_per_s": fz.stats.cases / fz.stats.fuzz_seconds,
    }
