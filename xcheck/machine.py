"""What the model and the target share: AT operations, probes, a machine setup.

This module is the only contract between the two sides of a cross-check
(see the data flow in the README). The scenario builder produces a
:class:`MachineSetup`; the target loads it into an emulator and executes the
probes; the model reads the same setup and walks the same memory image.
Nothing here decodes a register or a descriptor.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from xcheck import sysregs

# --- The guest's physical memory map (QEMU "virt") ---------------------------

RAM_BASE = 0x4000_0000
"""First byte of RAM on the virt machine."""

RESERVED_LOW = 0x0020_0000
"""Bytes at the bottom of RAM left alone: QEMU puts the device tree there."""

HARNESS_PA = RAM_BASE + RESERVED_LOW
"""xcheck's own code, vectors, stack and result buffer (the harness)."""

HARNESS_SIZE = 0x0020_0000
"""2 MiB: the first half is code and vectors, the second half data."""

HARNESS_CODE_SIZE = 0x0010_0000
"""Code and vector tables: mapped read-only and executable at EL1/EL2."""

HARNESS_DATA_PA = HARNESS_PA + HARNESS_CODE_SIZE
"""Result buffer and stacks: mapped read/write and execute-never at EL1/EL2."""

ARENA_PA = HARNESS_PA + HARNESS_SIZE
"""Start of the region where the scenario builder places translation tables."""

ARENA_SIZE = 0x0100_0000
"""16 MiB of table arena. The target clears what a previous setup wrote here."""

TRANSLATION_SYSREGS: tuple[str, ...] = tuple(r.name for r in sysregs.TABLE)
"""Registers every setup gives a value for, so that no state leaks from an
earlier setup into a later one. Both sides read exactly these values (the
target writes those the CPU implements: xcheck.sysregs)."""


class IdentityEnum(enum.Enum):
    """An Enum hashed by identity: its members are singletons, and
    object.__hash__ runs in C (Enum's own hashes the name in Python code,
    and the model looks members up in dicts per AT)."""

    __hash__ = object.__hash__


class AtOp(IdentityEnum):
    """The AT (address translate) operations, by their assembler names.

    Arm ARM DDI 0487, C5.5 "A64 system instructions for address translation".
    """

    S1E0R = "S1E0R"
    S1E0W = "S1E0W"
    S1E1R = "S1E1R"
    S1E1W = "S1E1W"
    S1E1RP = "S1E1RP"
    S1E1WP = "S1E1WP"
    S1E2R = "S1E2R"
    S1E2W = "S1E2W"
    S12E0R = "S12E0R"
    S12E0W = "S12E0W"
    S12E1R = "S12E1R"
    S12E1W = "S12E1W"
    S1E3R = "S1E3R"
    S1E3W = "S1E3W"
    S1E1A = "S1E1A"
    S1E2A = "S1E2A"
    """FEAT_ATS1A: stage 1 without permission checks (C5.4.7, C5.4.12)."""

    is_write: bool
    """S1E*W, S1E1WP, S12E*W: the AT checks write permission."""
    checks_permissions: bool
    """False for AT S1E*A (CreateAccDescAT with ATAccess_Any: neither a
    read nor a write, so no permission check decides it)."""
    min_el: int
    """The lowest EL at which the instruction is not UNDEFINED."""

    def __init__(self, name: str) -> None:
        # worked out once per member: the model asks them per AT, and an
        # Enum's ``value`` is a Python-level descriptor
        self.is_write = name.endswith(("W", "WP"))
        self.checks_permissions = not name.endswith("A")
        self.min_el = 3 if name.startswith("S1E3") else 2 if name.startswith(("S1E2", "S12")) else 1


class SecurityState(IdentityEnum):
    """A Security state (Arm ARM D1.3, the ASL's SecurityState; a probe's
    ``space:``). EL3 runs in Root with FEAT_RME (else Secure); for a probe at
    EL3 the state is the one SCR_EL3.{NSE, NS} selects for the EL1 and EL2
    AT operations."""

    NONSECURE = "nonsecure"
    SECURE = "secure"
    REALM = "realm"
    ROOT = "root"

    @property
    def scr_ns(self) -> bool:
        """SCR_EL3.NS for this state (D24.2 SCR_EL3: {NSE, NS} = 01 Non-secure,
        00 Secure, 11 Realm)."""
        return self in (SecurityState.NONSECURE, SecurityState.REALM)


@dataclass(frozen=True)
class Probe:
    """One AT instruction to execute: op on va, at exception level ``el``
    with PSTATE.PAN = ``pan``. ``label`` names it in reports. ``space``: the
    Security state the AT runs in; at EL3 the one SCR_EL3.{NSE, NS} selects
    for AT S1E1*/S1E0*/S12*/S1E2* (C5.4: SECURE makes them translate the
    Secure regimes; at EL1 and EL2 the harness runs Non-secure)."""

    op: AtOp
    va: int
    el: int = 1
    pan: bool = False
    label: str = ""
    space: SecurityState = SecurityState.NONSECURE


@dataclass(frozen=True)
class MachineSetup:
    """Everything loaded into the machine before probes run.

    ``sysregs`` holds a value for every name in TRANSLATION_SYSREGS (and may
    hold more). ``memory`` maps a physical address to the bytes stored from
    there; RAM that no block covers reads as zero (the target clears what it
    wrote before). ``code_va`` gives, per regime name ("EL10", "EL2",
    "EL20"), the virtual address at which the harness is mapped when that
    regime's stage 1 is enabled; absent means identity (VA = HARNESS_PA).
    ``watch`` lists the physical addresses of 64-bit words the target reads
    back after each batch and after each probe in step mode (the
    descriptors the model's walks read): :class:`Readback`.
    """

    sysregs: Mapping[str, int]
    memory: Mapping[int, bytes]
    probes: tuple[Probe, ...]
    code_va: Mapping[str, int] = field(default_factory=dict)
    watch: tuple[int, ...] = ()


@dataclass(frozen=True)
class Readback:
    """The watched words as the target held them after the probes ``ran``
    (indices into the setup's probes, in the order they ran) had run on
    memory loaded fresh before the first of them."""

    ran: tuple[int, ...]
    words: Mapping[int, int]


SPAN_GAP = 0x400
"""Watched words closer than this are read back in one stub read: a read
through QEMU's stub costs about 1.8 ms plus 1.3 us a byte (QEMU 10.0),
so reading a KiB between two words costs less than a second read."""


def word_spans(watch: tuple[int, ...]) -> list[tuple[int, int]]:
    """The (address, length) ranges that cover the watched words, as few as
    reading at most SPAN_GAP bytes between two words allows."""
    spans: list[tuple[int, int]] = []
    for pa in sorted(set(watch)):
        if spans and pa - (spans[-1][0] + spans[-1][1]) < SPAN_GAP:
            spans[-1] = (spans[-1][0], pa + 8 - spans[-1][0])
        else:
            spans.append((pa, 8))
    return spans


def words_in(spans: Mapping[int, bytes], watch: tuple[int, ...]) -> dict[int, int]:
    """The watched words out of the bytes read back per span start."""
    out: dict[int, int] = {}
    for addr, data in spans.items():
        for pa in watch:
            if addr <= pa and pa + 8 <= addr + len(data):
                out[pa] = int.from_bytes(data[pa - addr : pa - addr + 8], "little")
    return out


@dataclass(frozen=True)
class TargetException:
    """An exception the harness did not expect, taken while running a probe."""

    esr: int
    elr: int
    far: int
    el: int
    """The EL the exception was taken to."""

    def describe(self) -> str:
        ec = (self.esr >> 26) & 0x3F
        return (f"unexpected exception to EL{self.el}: ESR=0x{self.esr:x} "
                f"(EC=0x{ec:02x}) ELR=0x{self.elr:x} FAR=0x{self.far:x}")


ProbeResult = int | TargetException
"""What a target reports for one probe: the PAR_EL1 value, or an exception."""


def sysreg_defaults() -> dict[str, int]:
    """Reset-like values: every stage of translation off, EL1 in AArch64, RES1
    bits set (xcheck.sysregs.TABLE)."""
    return {r.name: r.reset for r in sysregs.TABLE}


def chunks(memory: Mapping[int, bytes]) -> list[tuple[int, bytes]]:
    """The memory image as sorted (address, bytes) blocks, adjacent ones merged."""
    runs: list[tuple[int, list[bytes]]] = []
    end = None
    for addr in sorted(memory):
        data = memory[addr]
        if addr == end:
            runs[-1][1].append(data)
        else:
            runs.append((addr, [data]))
        end = addr + len(data)
    return [(addr, b"".join(parts)) for addr, parts in runs]
