"""`xcheck doctor`: can this QEMU be used, and what does its CPU implement?"""

from __future__ import annotations

import shutil
import time
from dataclasses import fields

from rich.console import Console
from rich.table import Table

from xcheck.arch.features import Features
from xcheck.machine import AtOp, MachineSetup, Probe, sysreg_defaults
from xcheck.outcome import ExitCode
from xcheck.target.errors import QemuLaunchError, TargetError
from xcheck.target.factory import Target, make_target
from xcheck.target.guest import QemuTarget
from xcheck.target.kvm.target import KvmTarget
from xcheck.target.profile import Profile

FEATURE_LABELS = {
    "pa_range_bits": "PA size (PARange), bits",
    "tgran4": "4KB granule, stage 1",
    "tgran16": "16KB granule, stage 1",
    "tgran64": "64KB granule, stage 1",
    "tgran4_2": "4KB granule, stage 2",
    "tgran16_2": "16KB granule, stage 2",
    "tgran64_2": "64KB granule, stage 2",
    "lpa": "FEAT_LPA (52-bit PA, 64KB)",
    "lpa2": "FEAT_LPA2 (52-bit OA, 4KB/16KB)",
    "lva": "FEAT_LVA (52-bit VA)",
    "vh": "FEAT_VHE (E2H)",
    "pan": "PAN level (1 PAN, 2 AT S1E1xP, 3 EPAN)",
    "hafdbs": "HAFDBS (1 AF, 2 AF+dirty)",
    "hpds": "HPDS (hierarchical permission disables)",
    "xnx": "FEAT_XNX",
    "ttst": "FEAT_TTST",
    "nv": "NV level (1 NV, 2 NV2)",
    "e0pd": "FEAT_E0PD",
    "s2fwb": "FEAT_S2FWB",
    "el2": "EL2",
    "el3": "EL3",
    "sel2": "FEAT_SEL2 (Secure EL2)",
    "rme": "RME level (1 FEAT_RME, 2 GPC2, 3 GPC3)",
    "s2pie": "FEAT_S2PIE (stage 2 Indirect permissions)",
    "ats1a": "FEAT_ATS1A (AT S1E1A/S1E2A)",
}

L0GPTSZ_BITS = {0b0000: 30, 0b0100: 34, 0b0110: 36, 0b1001: 39}
"""GPCCR_EL3.L0GPTSZ: the PA bits one level 0 GPT entry covers (D24.2 GPCCR_EL3)."""


def doctor(profile: Profile, console: Console) -> int:
    """Print versions, stub capabilities and the CPU features of the profile's
    target (for the nested-KVM target, those KVM shows its guest hypervisor);
    0 when usable, 125 when the target cannot be started or driven."""
    kvm = profile.kind == "kvm-nested"
    info = Table(title=f"xcheck doctor: profile {profile.name}", show_header=False)
    info.add_column("what", style="bold")
    info.add_column("value")
    info.add_row("profile file", profile.path or "(built in)")
    info.add_row(
        "QEMU binary", f"{profile.executable} ({shutil.which(profile.executable) or 'not on PATH'})"
    )
    info.add_row("machine / cpu / memory", f"{profile.machine} / {profile.cpu} / {profile.memory}")
    if not kvm:
        info.add_row("gdb", f"{profile.gdb} ({shutil.which(profile.gdb) or 'not found'})")
    at = "vEL2" if kvm else "EL2"
    target = make_target(profile)
    try:
        started = time.monotonic()
        target.start()
        try:
            for row in _identity(target, time.monotonic() - started):
                info.add_row(*row)
            for name, value in target.id_regs.items():
                info.add_row(f"{name} (at {at})" if kvm else name, f"0x{value:016x}")
            scr = getattr(target, "scr_el3", None)
            if scr is not None:
                info.add_row("CPU starts at", f"EL3: the harness drops to Non-secure EL2 with "
                             f"SCR_EL3 = 0x{scr:x}")
            probe = target.run(
                MachineSetup(sysreg_defaults(), {}, (Probe(AtOp.S1E1R, 0x4000_1000, 2),))
            )
        finally:
            target.close()
        info.add_row(
            f"AT S1E1R at {at}, MMU off",
            f"PAR_EL1 = {probe[0]!r}"
            if not isinstance(probe[0], int)
            else f"PAR_EL1 = 0x{probe[0]:016x}",
        )
        feats = Features.from_id_regs(target.id_regs)
    except (QemuLaunchError, TargetError) as err:
        console.print(info)
        console.print(f"[red]{'the nested-KVM target' if kvm else 'QEMU'} cannot be used:[/] {err}")
        return int(ExitCode.CANNOT_TEST)
    console.print(info)
    title = (
        "translation features the guest hypervisor sees (ID registers read at vEL2)"
        if kvm
        else "translation features (from the ID registers)"
    )
    table = Table(title=title)
    table.add_column("feature")
    table.add_column("value", justify="right")
    for f in fields(feats):
        value = getattr(feats, f.name)
        shown = ("yes" if value else "no") if isinstance(value, bool) else str(value)
        table.add_row(FEATURE_LABELS.get(f.name, f.name), shown)
    console.print(table)
    if feats.rme:
        console.print(_gpc(feats, target.id_regs.get("GPCCR_EL3", 0)))
    if feats.el3:
        console.print(reachable_states(feats))
    console.print("[green]usable[/]")
    return int(ExitCode.OK)


def _identity(target: Target, start_s: float) -> list[tuple[str, str]]:
    """Rows naming what runs: QEMU and gdb, or QEMU and the guest hypervisor's kernel."""
    if isinstance(target, KvmTarget):
        return [
            ("QEMU version", target.qemu_version),
            ("guest hypervisor's kernel", target.kernel_release),
            ("boot to the agent + ID registers", f"{start_s * 1000:.0f} ms"),
        ]
    assert isinstance(target, QemuTarget)
    return [
        ("QEMU version", target.version),
        ("gdb version", target.gdb_version),
        ("start + attach", f"{start_s * 1000:.0f} ms"),
        ("physical-memory mode (Qqemu.PhyMemMode)", "yes" if target.phys_mode else "no"),
    ]


def _gpc(feats: Features, gpccr: int) -> str:
    """The granule protection configurations the CPU supports: GPCCR_EL3.PGS
    takes the granules the CPU implements, GPCCR_EL3.PPS the PA sizes up to
    PARange, and L0GPTSZ is fixed (D24.2 GPCCR_EL3, D9.1 "Granule
    protection checks")."""
    l0 = gpccr >> 20 & 0xF
    size = f"{L0GPTSZ_BITS[l0]} bits" if l0 in L0GPTSZ_BITS else f"reserved value {l0:#x}"
    pgs = "/".join(g for g, ok in (("4KB", feats.tgran4), ("16KB", feats.tgran16),
                                   ("64KB", feats.tgran64)) if ok)
    return (f"granule protection: GPCCR_EL3 = 0x{gpccr:x}, level 0 GPT entry covers {size} "
            f"(L0GPTSZ), GPT granule (PGS) {pgs}, protected PA size (PPS) up to "
            f"{feats.pa_range_bits} bits")


def reachable_states(feats: Features) -> str:
    """The Security states probes reach at EL3 (``space:``): the harness runs
    EL1 and EL2 Non-secure and switches SCR_EL3.{NSE, NS} per group of EL3
    probes (xcheck.target.harness, D24.2 SCR_EL3)."""
    states = ["nonsecure (EL1, EL2, EL3)",
              "secure (EL3, SCR_EL3.NS = 0" + (", Secure EL2 with EEL2)" if feats.sel2 else
                                                ", no Secure EL2)")]
    if feats.rme:
        states += ["realm (EL3, SCR_EL3.{NSE, NS} = {1, 1}: Realm EL1&0 + stage 2, EL2, EL2&0)",
                   "root (EL3: AT S1E3*)"]
    return "Security states reached: " + "; ".join(states)
