"""QEMU target throughput: boot to first probe, step and batch probes/s."""

from __future__ import annotations

import time

from xcheck.machine import RAM_BASE, AtOp, MachineSetup, Probe, sysreg_defaults
from xcheck.target.guest import QemuTarget
from xcheck.target.profile import load_profile


def _setup(n: int) -> MachineSetup:
    ops = (AtOp.S1E1R, AtOp.S1E1W, AtOp.S12E1R, AtOp.S1E2R)
    probes = tuple(
        Probe(ops[k % 4], RAM_BASE + 0x1000 * (k % 4096), 2 if k % 3 else 1) for k in range(n)
    )
    probes = tuple(p if p.el == 2 or p.op.min_el == 1 else Probe(p.op, p.va, 2) for p in probes)
    return MachineSetup(sysreg_defaults(), {}, probes)


def bench_target() -> dict[str, float]:
    profile = load_profile()
    t0 = time.perf_counter()
    target = QemuTarget(profile)
    try:
        target.start()
        target.run(_setup(1))
        boot = time.perf_counter() - t0
        step = _setup(200)
        t = time.perf_counter()
        target.run(step, "step")
        step_rate = len(step.probes) / (time.perf_counter() - t)
        batch = _setup(4000)
        t = time.perf_counter()
        for _ in range(3):
            target.run(batch)
        batch_rate = 3 * len(batch.probes) / (time.perf_counter() - t)
    finally:
        target.close()
    return {
        "boot_to_first_probe_s": boot,
        "step_probes_per_s": step_rate,
        "target_batch_probes_per_s": batch_rate,
    }
