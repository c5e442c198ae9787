"""A fuzz case's memory image without its runs of zero bytes."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from xcheck.machine import chunks

BLOCK = 512
SPAN = 8 * BLOCK
"""Pieces are looked at SPAN bytes at a time first: most of a table is zero."""
_ZERO = bytes(SPAN)


def sparse(memory: Mapping[int, bytes]) -> dict[int, bytes]:
    """The same image without its runs of zero bytes (what the builder
    writes is mostly empty table entries). By the MachineSetup contract RAM
    no block covers reads as zero, so the image means the same; the target
    has far fewer bytes to write and to clear. The image is looked at in
    BLOCK-byte pieces: runs of non-zero pieces are kept, less the zero
    64-bit words at their ends, so blocks are whole aligned words and zero
    runs shorter than a piece stay."""
    out: dict[int, bytes] = {}
    for addr, data in chunks(memory):
        start = end = -1
        for off in (*_nonzero_pieces(data), -1):
            if off == end:
                end += BLOCK
                continue
            if start >= 0:
                first = data[start:start + BLOCK]
                last = data[end - BLOCK:end]
                lo = start + ((len(first) - len(first.lstrip(b"\0"))) & ~7)
                hi = end - BLOCK + ((len(last.rstrip(b"\0")) + 7) & ~7)
                out[addr + lo] = data[lo:hi]
            start, end = off, off + BLOCK
    return out


def _nonzero_pieces(data: bytes) -> Iterator[int]:
    """The offsets of the BLOCK-byte pieces of ``data`` that hold a non-zero
    byte, in order (a SPAN that is all zero is skipped with one comparison)."""
    for span in range(0, len(data), SPAN):
        part = data[span:span + SPAN]
        if part == _ZERO[:len(part)]:
            continue
        for off in range(0, len(part), BLOCK):
            piece = part[off:off + BLOCK]
            if piece != _ZERO[:len(piece)]:
                yield span + off
