"""A fuzz case's memory image without its runs of zero bytes."""

from __future__ import annotations

import re
from collections.abc import Mapping

from xcheck.machine import chunks

MASK64 = (1 << 64) - 1
_NONZERO = re.compile(rb"[^\x00]+")


def sparse(memory: Mapping[int, bytes], gap: int = 512) -> dict[int, bytes]:
    """The same image without its runs of zero bytes (what the builder
    writes is mostly empty table entries). By the MachineSetup contract RAM
    no block covers reads as zero, so the image means the same; the target
    has far fewer bytes to write and to clear. Zero runs shorter than
    ``gap`` stay, to keep the number of blocks low; blocks are whole
    aligned 64-bit words."""
    out: dict[int, bytes] = {}
    for addr, data in chunks(memory):
        runs: list[list[int]] = []
        for m in _NONZERO.finditer(data):
            lo = (addr + m.start()) & ~7
            hi = (addr + m.end() + 7) & ~7
            if runs and lo - runs[-1][1] < gap:
                runs[-1][1] = hi
            else:
                runs.append([lo, hi])
        for lo, hi in runs:
            lo, hi = max(lo, addr), min(hi, addr + len(data))
            out[lo] = bytes(data[lo - addr:hi - addr])
    return out
