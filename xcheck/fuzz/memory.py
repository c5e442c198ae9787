"""A fuzz case's memory image without its runs of zero bytes."""

from __future__ import annotations

from collections.abc import Mapping

from xcheck.machine import chunks

BLOCK = 512
_ZERO = bytes(BLOCK)


def sparse(memory: Mapping[int, bytes]) -> dict[int, bytes]:
    """The same image without its runs of zero bytes (what the builder
    writes is mostly empty table entries). By the MachineSetup contract RAM
    no block covers reads as zero, so the image means the same; the target
    has far fewer bytes to write and to clear. The image is looked at in
    BLOCK-byte pieces (a comparison each): runs of non-zero pieces are kept,
    less the zero 64-bit words at their ends, so blocks are whole aligned
    words and zero runs shorter than a piece stay."""
    out: dict[int, bytes] = {}
    for addr, data in chunks(memory):
        start = None
        for off in range(0, len(data) + BLOCK, BLOCK):
            piece = data[off:off + BLOCK]
            if piece and piece != _ZERO[:len(piece)]:
                if start is None:
                    start = off
                continue
            if start is not None:
                run = data[start:off]
                lo = start + ((len(run) - len(run.lstrip(b"\0"))) & ~7)
                hi = start + ((len(run.rstrip(b"\0")) + 7) & ~7)
                out[addr + lo] = bytes(data[lo:hi])
                start = None
    return out
