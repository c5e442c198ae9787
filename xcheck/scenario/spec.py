"""What a scenario asks the builder for, validated and with its lines.

The loader fills these records from the YAML; the builder turns them into
a MachineSetup. Everything is immutable and hashable, so a build can be
cached per (layout, probes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xcheck.scenario.gpt import GptSpec

BASE_REGS: tuple[str, ...] = ("TTBR0_EL1", "TTBR1_EL1", "TTBR0_EL2", "TTBR1_EL2", "VTTBR_EL2",
                              "TTBR0_EL3", "VSTTBR_EL2")
"""The registers whose tables a scenario may describe under ``tables:``."""
S2_BASES = ("VTTBR_EL2", "VSTTBR_EL2")
"""Stage 2 base registers: VSTTBR_EL2 for the Secure IPA space (FEAT_SEL2)."""
S2_CONTROL = {"VTTBR_EL2": "VTCR_EL2", "VSTTBR_EL2": "VSTCR_EL2"}
"""The register that sizes each stage 2 tree (TG0, T0SZ, SL0, SL2)."""

DEFAULT_RAM_SIZE = 128 << 20
"""RAM of the default QEMU profile, when the scenario's profile does not say."""


@dataclass(frozen=True)
class TableAttrs:
    """Hierarchical attributes (APTable, PXNTable, UXNTable/XNTable, NSTable,
    bits [63:59]) for the table descriptor at ``level`` on the mapping's
    walk (None: the one pointing at the leaf's table)."""

    line: int
    level: int | None
    bits: int


@dataclass(frozen=True)
class MapEntry:
    """One entry of ``tables.<base>``: a leaf descriptor to write.

    ``bits`` holds the leaf's attribute bits other than the output address,
    bits [1:0] and SH (which the builder adds unless TCR.DS == 1)."""

    base: str
    n: int
    line: int
    va: int
    pa: int | None
    size: int | None
    level: int | None
    raw: int | None
    force: bool
    bits: int
    sh: int | None
    table: TableAttrs | None
    key_lines: tuple[tuple[str, int], ...] = ()

    @property
    def field(self) -> str:
        return f"tables.{self.base}[{self.n}]"

    def line_of(self, key: str) -> int:
        return dict(self.key_lines).get(key, self.line)

    @property
    def stage(self) -> int:
        return 2 if self.base in S2_BASES else 1


@dataclass(frozen=True)
class RawBlock:
    """``memory:``: 64-bit little-endian words stored from ``addr``."""

    n: int
    line: int
    addr: int
    words: tuple[int, ...]

    @property
    def end(self) -> int:
        return self.addr + 8 * len(self.words)


@dataclass(frozen=True)
class Override:
    """``descriptors:``: a word written over a built table entry, chosen by
    level and either an index (in the only table at that level) or a VA (the
    table that VA's walk reads at that level)."""

    n: int
    line: int
    base: str
    level: int
    index: int | None
    va: int | None
    value: int


@dataclass(frozen=True)
class Layout:
    """Registers, tables and memory of a scenario, for the builder."""

    path: Path
    sysregs: tuple[tuple[str, int], ...]
    reg_lines: tuple[tuple[str, int], ...]
    table_lines: tuple[tuple[str, int], ...]
    mappings: tuple[MapEntry, ...]
    memory: tuple[RawBlock, ...]
    overrides: tuple[Override, ...]
    ram_size: int = DEFAULT_RAM_SIZE
    requires: tuple[str, ...] = ()
    regs_line: int = 1
    gpt: GptSpec | None = None
    """``gpt:``: granule protection (FEAT_RME), written by the builder."""

    def reg(self, name: str) -> int:
        return dict(self.sysregs)[name]

    def reg_line(self, name: str) -> int:
        return dict(self.reg_lines).get(name, self.regs_line)

    def table_line(self, base: str) -> int:
        return dict(self.table_lines).get(base, self.regs_line)
