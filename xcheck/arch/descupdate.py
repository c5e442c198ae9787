"""What an AT may change in memory: the descriptors its walks read, and the
hardware updates the architecture permits in them.

Arm ARM DDI 0487, D8.5 "Hardware updates of the translation tables" and the
descriptor update of AArch64.S1Translate / AArch64.S2Translate:

- with hardware Access flag management (TCR_ELx.HA, VTCR_EL2.HA == 1) a walk
  that reaches a Block or Page descriptor with AF == 0 may set AF, when it
  does not fault or faults with a Permission fault
  (AArch64.SettingAccessFlagPermitted; CONSTRAINED UNPREDICTABLE in the
  second case). An AT is permitted, not required, to do so;
- an AT never updates the dirty state (R_ZYGHJ; in the ASL the update
  excludes ``AccessType_AT``): AP[2] of a writable-clean descriptor stays 1;
- the Access flag write to a stage 1 descriptor is itself a write through
  stage 2 (CreateAccDescTTEUpdate), which may set the stage 2 dirty state
  (S2AP[1]) of the page holding the descriptor;
- Table descriptors are never updated (hardware AF in Table descriptors is
  FEAT_HAFT, not modelled).

Everything else the walks read must be unchanged after the AT.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from xcheck.arch.memory import PhysMem
from xcheck.arch.trace import TraceStep

AF_BIT = 1 << 10
"""Descriptor bit 10: AF, the Access flag (stage 1 and stage 2)."""
S2_DIRTY_BIT = 1 << 7
"""Stage 2 descriptor bit 7: S2AP[1], write permission / the dirty state with DBM."""

DESCRIPTOR_KINDS = frozenset({"table", "block", "page", "invalid", "invalid block"})
"""TraceStep.what of a descriptor fetch (walk.py, DecodeDescriptorType)."""


class PermittedUpdate(NamedTuple):
    """A walk may set ``bits`` (as stored in memory: byte order applied) in
    the 64-bit word at PA ``pa``; ``why`` cites the rule."""

    pa: int
    bits: int
    why: str


class DescriptorWord(NamedTuple):
    """A descriptor an AT's walks read: its PA, its value as stored before
    the AT, and the bits the AT may set in it (0: it must stay as it was).
    A NamedTuple: every AT makes several."""

    pa: int
    value: int
    may_set: int = 0

    def permits(self, got: int) -> bool:
        """Whether ``got`` is a value the word may hold after the AT."""
        return (got ^ self.value) & ~self.may_set == 0

    def nearest(self, got: int) -> int:
        """The permitted value closest to ``got``: the permitted bits as the
        target set them, every other bit as it was."""
        return (got & self.may_set) | (self.value & ~self.may_set)


def descriptor_words(trace: Sequence[TraceStep], updates: Iterable[PermittedUpdate],
                     mem: PhysMem) -> tuple[DescriptorWord, ...]:
    """Every descriptor word the walks of ``trace`` read (stage 1 and stage 2,
    tables and leaves, each once, as stored in ``mem``) with the updates
    permitted in it."""
    may: dict[int, int] = {}
    for u in updates:
        may[u.pa] = may.get(u.pa, 0) | u.bits
    words: dict[int, DescriptorWord] = {}
    read64 = mem.read64
    for step in trace:
        if step.what in DESCRIPTOR_KINDS and step.desc is not None:
            pa = step.addr
            if pa is not None and pa not in words and (value := read64(pa)) is not None:
                # tuple.__new__: a NamedTuple's own __new__ is Python code,
                # and every AT makes a word a level
                words[pa] = tuple.__new__(DescriptorWord, (pa, value, may.get(pa, 0)))
    return tuple(words.values())


def permitted_together(words: Iterable[DescriptorWord]) -> dict[int, DescriptorWord]:
    """Per PA, what several ATs may leave in a word: the union of the bits
    each may set (the order they ran in does not matter, they only set bits)."""
    out: dict[int, DescriptorWord] = {}
    for w in words:
        seen = out.get(w.pa)
        out[w.pa] = w if seen is None else DescriptorWord(w.pa, seen.value,
                                                          seen.may_set | w.may_set)
    return out
