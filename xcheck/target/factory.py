"""Make the target a profile names (its ``kind``)."""

from __future__ import annotations

from typing import Protocol

from xcheck.machine import MachineSetup, ProbeResult, Readback
from xcheck.target.profile import Profile


class Target(Protocol):
    """What the runner needs of a target: start/close, identity, run, and
    the setup's watched words as each :meth:`run` read them back."""

    version: str
    id_regs: dict[str, int]
    ram_size: int
    readbacks: list[Readback]

    def start(self) -> None: ...

    def close(self) -> None: ...

    def run(self, setup: MachineSetup, mode: str = "batch") -> list[ProbeResult]: ...


def make_target(profile: Profile) -> Target:
    """A QemuTarget, or the nested-KVM target, for ``profile`` (not started)."""
    if profile.kind == "kvm-nested":
        from xcheck.target.kvm.target import KvmTarget

        return KvmTarget(profile)
    from xcheck.target.guest import QemuTarget

    return QemuTarget(profile)
