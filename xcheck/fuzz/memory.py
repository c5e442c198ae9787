"""A fuzz case's memory image without its runs of zero bytes."""

from __future__ import annotations

import re
from collections.abc import Mapping

from xcheck.machine import chunks

GAP = 512
_RUNS = re.compile(rb"[^\x00](?:\x00{0,%d}[^\x00])*" % (GAP - 1))
"""Runs of bytes holding no stretch of GAP zero bytes, from a non-zero byte
to a non-zero byte."""


def sparse(memory: Mapping[int, bytes]) -> dict[int, bytes]:
    """The same image without its runs of zero bytes (what the builder
    writes is mostly empty table entries). By the MachineSetup contract RAM
    no block covers reads as zero, so the image means the same; the target
    has far fewer bytes to write and to clear. Zero runs shorter than
    GAP stay, to keep the number of blocks low; blocks are whole
    aligned 64-bit words."""
    out: dict[int, bytes] = {}
    for addr, data in chunks(memory):
        for m in _RUNS.finditer(data):
            lo = max((addr + m.start()) & ~7, addr)
            hi = min((addr + m.end() + 7) & ~7, addr + len(data))
            out[lo] = bytes(data[lo - addr:hi - addr])
    return out
