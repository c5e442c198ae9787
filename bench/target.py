"""QEMU target throughput: boot to first probe, step and batch probes/s.

Step mode stops the guest once a probe (a breakpoint after each probe's
result is stored; one MI command a probe), and is measured beside the bare
gdb step loop, which also stops it once a probe (a single step) but needs
two more MI commands around the stop. A stop costs the same either way
(docs/target.md), so the two are about equal: the figure to watch is that
step mode stays at or above 0.9 of the bare loop."""

from __future__ import annotations

import statistics
import time

from xcheck.machine import HARNESS_PA, RAM_BASE, AtOp, MachineSetup, Probe, sysreg_defaults
from xcheck.target import isa
from xcheck.target.guest import QemuTarget
from xcheck.target.profile import load_profile


def _setup(n: int) -> MachineSetup:
    ops = (AtOp.S1E1R, AtOp.S1E1W, AtOp.S12E1R, AtOp.S1E2R)
    probes = tuple(
        Probe(ops[k % 4], RAM_BASE + 0x1000 * (k % 4096), 2 if k % 3 else 1) for k in range(n)
    )
    probes = tuple(p if p.el == 2 or p.op.min_el == 1 else Probe(p.op, p.va, 2) for p in probes)
    return MachineSetup(sysreg_defaults(), {}, probes)


def bare_step_loop(target: QemuTarget, n: int) -> float:
    """The reference for step mode: per probe the least a gdb driver that
    steps each AT can do (one MI command setting x0 and the PC on an AT
    instruction, one single step, one register read of PAR_EL1), with
    nothing of xcheck's around it: no setup, no exception handling, no
    read back."""
    g = target.gdb
    at = HARNESS_PA + 0x8000
    g.write_memory(at, isa.at(AtOp.S1E1R, 0).to_bytes(4, "little"))
    regs = g.register_numbers()
    par, x0, pc = regs["PAR_EL1"], regs["x0"], regs["pc"]
    t = time.perf_counter()
    for k in range(n):
        g.command(f"-data-write-register-values x {x0} 0x{RAM_BASE + 0x1000 * k:x} {pc} 0x{at:x}")
        g.resume("-exec-step-instruction", 5)
        g.command(f"-data-list-register-values x {par}")
    return n / (time.perf_counter() - t)


ROUNDS = 5
"""Step mode and the bare loop are measured in alternation, ROUNDS times
each, and the median of each is kept: on a machine shared with other work,
load falls on both alike, and one lucky or unlucky round does not decide."""


def bench_target() -> dict[str, float]:
    profile = load_profile()
    t0 = time.perf_counter()
    target = QemuTarget(profile)
    try:
        target.start()
        target.run(_setup(1))
        boot = time.perf_counter() - t0
        step = _setup(200)
        step_rates, bare_rates = [], []
        for _ in range(ROUNDS):
            t = time.perf_counter()
            target.run(step, "step")
            step_rates.append(len(step.probes) / (time.perf_counter() - t))
            bare_rates.append(bare_step_loop(target, 200))
        target.restart()
        batch = _setup(4000)
        t = time.perf_counter()
        for _ in range(ROUNDS):
            target.run(batch)
        batch_rate = ROUNDS * len(batch.probes) / (time.perf_counter() - t)
    finally:
        target.close()
    return {
        "boot_to_first_probe_s": boot,
        "step_probes_per_s": statistics.median(step_rates),
        "bare_gdb_step_loop_per_s": statistics.median(bare_rates),
        "target_batch_probes_per_s": batch_rate,
    }
