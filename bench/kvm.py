"""Nested-KVM target: boot to the agent's READY, and AT probes per second
(4000 probes per setup, at vEL2 and vEL1, VHE and nVHE guest hypervisors,
shared out over the profile's vcpus)."""

from __future__ import annotations

import time

from xcheck.machine import RAM_BASE, AtOp, MachineSetup, Probe, sysreg_defaults
from xcheck.target.errors import QemuLaunchError
from xcheck.target.kvm.target import KvmTarget
from xcheck.target.profile import load_profile

HCR_E2H = 1 << 34
OPS = (AtOp.S1E1R, AtOp.S1E1W, AtOp.S12E1R, AtOp.S1E2R, AtOp.S1E0R, AtOp.S1E1RP)


def _setup(n: int, e2h: int) -> MachineSetup:
    probes = tuple(
        Probe(op, RAM_BASE + 0x1000 * (k % 4096), 1 if op.min_el == 1 and k % 3 == 0 else 2)
        for k, op in ((k, OPS[k % len(OPS)]) for k in range(n))
    )
    regs = sysreg_defaults() | {"HCR_EL2": (1 << 31) | e2h * HCR_E2H}
    return MachineSetup(regs, {}, probes)


def _one_kind(op: AtOp, el: int, n: int) -> MachineSetup:
    regs = sysreg_defaults() | {"HCR_EL2": (1 << 31) | HCR_E2H}
    return MachineSetup(regs, {}, tuple(Probe(op, RAM_BASE + 0x1000 * k, el) for k in range(n)))


def _vcpu_rate(target: KvmTarget, setup: MachineSetup) -> float:
    """Probes per second of the vCPUs' run time for one setup (its jobs run
    at once on the guest's CPUs: the longest run counts)."""
    v0 = target.vcpu_seconds
    target.run(setup)
    return len(setup.probes) / max(target.vcpu_seconds - v0, 1e-9)


def bench_kvm() -> dict[str, float]:
    """kvm_boot_s: QEMU start to the agent ready (kernel boot included);
    kvm_probes_per_s: end to end, job sent to PARs decoded;
    kvm_vcpu_probes_per_s: the same probes over the vCPUs' run time alone
    (the programs running, their ATs trapping to KVM; of the jobs run at once
    on kvm_vcpus CPUs, the longest), the limit that moving jobs and results
    faster cannot pass; kvm_trapped_at_per_s and kvm_untrapped_at_per_s: AT
    S1E1R at vEL2 (trapped to the guest's KVM and emulated) and at vEL1
    (executed by the CPU), vCPU time alone, 2000 a setup: what the vCPU limit
    is made of."""
    t0 = time.perf_counter()
    target = KvmTarget(load_profile("kvm-nested"))
    try:
        target.start()
    except QemuLaunchError as err:
        print(f"# kvm-nested unavailable (run `make kvm`): {str(err).splitlines()[0]}")
        return {}
    try:
        boot = time.perf_counter() - t0
        setups = [_setup(4000, 1), _setup(4000, 0)]
        t = time.perf_counter()
        vcpu0 = target.vcpu_seconds
        for s in setups:
            target.run(s)
        n = sum(len(s.probes) for s in setups)
        rate = n / (time.perf_counter() - t)
        limit = n / max(target.vcpu_seconds - vcpu0, 1e-9)
        trapped = _vcpu_rate(target, _one_kind(AtOp.S1E1R, 2, 2000))
        untrapped = _vcpu_rate(target, _one_kind(AtOp.S1E1R, 1, 2000))
    finally:
        target.close()
    return {"kvm_boot_s": boot, "kvm_probes_per_s": rate, "kvm_vcpu_probes_per_s": limit,
            "kvm_trapped_at_per_s": trapped, "kvm_untrapped_at_per_s": untrapped,
            "kvm_vcpus": float(target.options.vcpus)}
