"""Memory blocks as an ELF file, for gdb's ``restore`` to write them all in
one command (gdb writes each allocated section at its address).

The file is ELF64 little-endian for AArch64 (System V gABI, "ELF Header"
and "Sections"): the header, the blocks' bytes, the section name table,
then the section headers: a null one, one SHT_PROGBITS/SHF_ALLOC section per
block with sh_addr = its address, and .shstrtab. No program headers: without
them a section's load address is its sh_addr.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_IDENT = b"\x7fELF\x02\x01\x01"  # magic, ELFCLASS64, ELFDATA2LSB, EV_CURRENT
ET_EXEC, EM_AARCH64 = 2, 183
SHT_PROGBITS, SHT_STRTAB, SHF_ALLOC = 1, 3, 2


def elf_image(blocks: Sequence[tuple[int, bytes]]) -> bytes:
    """An ELF file with one loadable section per ``(address, bytes)`` block."""
    names = bytearray(b"\0.shstrtab\0")
    body = bytearray()
    headers = [bytes(_SHDR.size)]
    for i, (addr, data) in enumerate(blocks):
        headers.append(_SHDR.pack(len(names), SHT_PROGBITS, SHF_ALLOC, addr,
                                  _EHDR.size + len(body), len(data), 0, 0, 1, 0))
        names += f".m{i}\0".encode()
        body += data
    headers.append(_SHDR.pack(1, SHT_STRTAB, 0, 0, _EHDR.size + len(body), len(names),
                              0, 0, 1, 0))
    end = _EHDR.size + len(body) + len(names)
    shoff = (end + 7) & ~7
    head = _EHDR.pack(_IDENT.ljust(16, b"\0"), ET_EXEC, EM_AARCH64, 1, 0, 0, shoff, 0,
                      _EHDR.size, 0, 0, _SHDR.size, len(headers), len(headers) - 1)
    return head + bytes(body) + bytes(names) + bytes(shoff - end) + b"".join(headers)
