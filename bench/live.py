"""Live mode throughput: AT checks (VA x op, QEMU and model) per second on
Debian 12's arm64 kernel halted at its panic, after boot."""

from __future__ import annotations

import time

from xcheck.debfetch import DebFetchError
from xcheck.live.boot import LiveVm
from xcheck.live.command import LiveOptions, debian_kernel, kernel_label, live_sweep
from xcheck.target.profile import load_profile

SAMPLES = 4000


def bench_live() -> dict[str, float]:
    try:
        kernel = debian_kernel("bookworm")
    except DebFetchError as err:
        print(f"live: skipped, no kernel: {err}")
        return {}
    opts = LiveOptions(kernel=kernel, samples=SAMPLES)
    t0 = time.perf_counter()
    with LiveVm(load_profile(), kernel, memory=opts.memory) as vm:
        vm.boot()
        boot = time.perf_counter() - t0
        t = time.perf_counter()
        run, _ = live_sweep(vm, opts, kernel_label(kernel))
        rate = len(run.outcomes) / (time.perf_counter() - t)
    return {"live_boot_to_panic_s": boot, "live_vas_per_s": rate}
