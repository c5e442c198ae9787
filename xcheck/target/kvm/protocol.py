"""The agent's line protocol: jobs as lines, answers parsed back.

The grammar (agent/xcheck-agent.c has the agent's side):

    JOB <id> <vhe|nvhe>      a job: a new VM (this EL2, a vGICv3), zeroed RAM
    MEM <addr> <hex>         bytes stored into guest RAM before the run
    MEMS <addr> <len>        the next <len> bytes of the shared memory, likewise
    REG x<n>|sp_el1 <value>  a core register set before the run
    ENTRY <pc>               where the vCPU starts (PSTATE = EL2h, DAIF masked)
    READ <addr> <len>        a RAM range sent back after the run
    QUEUE                    close the job unrun: it runs with the next RUN
    RUN <timeout_ms>         create the VM, run until done, fault or timeout;
                             the queued jobs run at the same time, job k of
                             the group in its own VM on the guest's CPU k

    RESULT <id> ok <k=v ...> | RESULT <id> error <reason>
    OUT <offset> <value>     a store the program made to the exit page
    DATA <addr> <hex>        part of a READ range (runs of zeros are left out)
    SDATA <addr> <len> <off> a whole READ range, at <off> in the shared memory
    KLOG <level> <text>      a kernel warning (or worse) logged during the job
    END <id>

With shared memory (an ivshmem-plain device the agent maps, its banner says
``INFO shm <size>``) the job's memory goes there, one block after another from
offset 0, and the READ ranges come back there: the console, about 8 KB/s under
TCG, then carries only the short lines. The jobs of one RUN (a group) are
answered in the order they were sent; their memory blocks follow each other in
the shared memory, and so do their READ ranges. Everything here is pure (no
I/O), so it is tested without QEMU.
"""

from __future__ import annotations

import mmap
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

GUEST_RAM_BASE = 0x4000_0000
GUEST_RAM_SIZE = 128 << 20
"""RAM of the VM the agent creates for a job (agent: RAM_BASE, RAM_SIZE)."""
EXIT_PA = 0x0F00_0000
"""The agent's exit page, outside guest RAM: a store of zero at +0 ends a job."""
EXIT_DONE = 0x00
EXIT_EXCEPTION = 0x08
"""Offsets the agent gives a meaning; a program's own values go at EXIT_FREE."""
EXIT_FREE = 0x100
MEM_CHUNK = 4096
"""Bytes per MEM line (the agent takes lines up to 16 KiB)."""
ZERO_RUN = 64
"""Runs of at least this many zero bytes are not sent: job RAM starts zeroed."""
MAX_READS = 16
MAX_READ_TOTAL = 4 << 20
"""READ ranges per job and their bytes in all (agent: MAX_READS, MAX_READ_TOTAL)."""
MAX_GROUP = 8
"""Jobs one RUN runs at once (agent: MAX_GROUP)."""
MODES = ("vhe", "nvhe")
_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")


class ProtocolError(Exception):
    """A job that cannot be encoded, or an answer that does not parse."""


@dataclass(frozen=True)
class Job:
    """One run of a fresh VM: memory, entry point, what to send back."""

    id: str
    mode: str
    memory: Sequence[tuple[int, bytes]]
    entry: int
    reads: Sequence[tuple[int, int]] = ()
    timeout_ms: int = 30_000
    regs: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    """What the agent said about one job."""

    id: str
    error: str
    """Empty when the program ran to its exit store."""
    stats: Mapping[str, int]
    out: Mapping[int, int]
    """Exit-page offset -> value stored there."""
    data: Mapping[int, bytes]
    """READ address -> its bytes (zeros where no DATA line covered them)."""
    klog: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.error


def _nonzero_runs(addr: int, data: bytes) -> Iterable[tuple[int, bytes]]:
    """(address, bytes) pieces of ``data`` without its long runs of zeros."""
    zeros = b"\0" * ZERO_RUN
    i, n = 0, len(data)
    while i < n:
        while i < n and data[i] == 0:
            i += 1
        if i == n:
            return
        z = data.find(zeros, i)
        j = n if z < 0 else z
        yield addr + i, data[i:j]
        i = j


def job_lines(job: Job) -> list[str]:
    """The lines that send ``job`` (each without its newline), its memory as
    MEM lines of hex."""
    return group_lines([job])[0]


def shared_job_lines(job: Job, capacity: int) -> tuple[list[str], bytes]:
    """The lines that send ``job`` with its memory in the shared memory
    (MEMS lines), and the bytes to put there first, from offset 0."""
    return group_lines([job], capacity)


def group_lines(jobs: Sequence[Job], capacity: int | None = None) -> tuple[list[str], bytes]:
    """The lines that send ``jobs`` to run at once: each but the last closed by
    QUEUE, the last by RUN with its timeout. Their memory goes as MEM lines of
    hex, or, given the ``capacity`` of the shared memory, as MEMS blocks that
    follow each other from offset 0: then also the bytes to put there first."""
    if not 1 <= len(jobs) <= MAX_GROUP:
        raise ProtocolError(f"{len(jobs)} jobs at once: the agent runs 1 to {MAX_GROUP}")
    lines: list[str] = []
    blob = bytearray()
    for k, job in enumerate(jobs):
        lines.append(_job_line(job))
        for a, piece in _pieces(job):
            if capacity is not None:
                lines.append(f"MEMS 0x{a:x} {len(piece)}")
                blob += piece
            else:
                lines += [f"MEM 0x{a + i:x} {piece[i : i + MEM_CHUNK].hex()}"
                          for i in range(0, len(piece), MEM_CHUNK)]
        lines += _run_lines(job, last=k == len(jobs) - 1)
    if capacity is not None and len(blob) > capacity:
        raise ProtocolError(f"the jobs' memory ({len(blob)} bytes) exceeds the shared "
                            f"memory ({capacity} bytes)")
    return lines, bytes(blob)


def _job_line(job: Job) -> str:
    if not _ID.match(job.id):
        raise ProtocolError(f"job id {job.id!r}: 1-64 letters, digits, '-', '_' or '.'")
    if job.mode not in MODES:
        raise ProtocolError(f"job mode {job.mode!r}: expected one of {', '.join(MODES)}")
    return f"JOB {job.id} {job.mode}"


def _pieces(job: Job) -> Iterable[tuple[int, bytes]]:
    """The job's memory without its long runs of zeros (job RAM starts zeroed)."""
    end = GUEST_RAM_BASE + GUEST_RAM_SIZE
    for addr, data in job.memory:
        if addr < GUEST_RAM_BASE or addr + len(data) > end:
            raise ProtocolError(
                f"memory at 0x{addr:x} (+{len(data)} bytes) is outside the VM's RAM "
                f"0x{GUEST_RAM_BASE:x}-0x{end:x}"
            )
        yield from _nonzero_runs(addr, bytes(data))


def fit_reads(ranges: Sequence[tuple[int, int]], limit: int) -> list[tuple[int, int]]:
    """At most ``limit`` (>= 1) (address, length) ranges that cover ``ranges``: the
    smallest gaps between neighbours are bridged first, so the fewest extra
    bytes are read (what a gap holds comes back too, and is ignored)."""
    spans = sorted(ranges)
    if len(spans) <= limit:
        return spans
    gaps = sorted(range(1, len(spans)),
                  key=lambda i: spans[i][0] - (spans[i - 1][0] + spans[i - 1][1]))
    bridged = set(gaps[: len(spans) - limit])
    out = [spans[0]]
    for i in range(1, len(spans)):
        addr, size = spans[i]
        if i in bridged:
            start = out[-1][0]
            out[-1] = (start, max(out[-1][0] + out[-1][1], addr + size) - start)
        else:
            out.append((addr, size))
    return out


def _run_lines(job: Job, last: bool) -> list[str]:
    total = sum(size for _, size in job.reads)
    if len(job.reads) > MAX_READS or total > MAX_READ_TOTAL:
        raise ProtocolError(
            f"{len(job.reads)} READ ranges of {total} bytes: the agent takes at most "
            f"{MAX_READS} ranges of {MAX_READ_TOTAL} bytes in all"
        )
    lines = [f"REG {name} 0x{value:x}" for name, value in job.regs.items()]
    lines.append(f"ENTRY 0x{job.entry:x}")
    lines += [f"READ 0x{addr:x} {size}" for addr, size in job.reads]
    lines.append(f"RUN {job.timeout_ms}" if last else "QUEUE")
    return lines


def _int(text: str, line: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise ProtocolError(f"not a number in agent line {line!r}") from None


def parse_answer(
    job_id: str, lines: Iterable[str], reads: Sequence[tuple[int, int]] = (),
    shared: bytes | bytearray | mmap.mmap | None = None,
) -> Answer:
    """Parse the lines from ``RESULT`` to ``END`` of the job that asked for
    ``reads`` (other lines, e.g. kernel console noise, are ignored);
    ``shared``: the shared memory, where SDATA lines point."""
    error: str | None = None
    stats: dict[str, int] = {}
    out: dict[int, int] = {}
    pieces: list[tuple[int, bytes]] = []
    klog: list[str] = []
    for raw in lines:
        line = raw.strip()
        word, _, rest = line.partition(" ")
        if word == "RESULT":
            parts = rest.split(" ", 2)
            if len(parts) < 2 or parts[0] != job_id or parts[1] not in ("ok", "error"):
                raise ProtocolError(f"unexpected agent line {line!r} (job {job_id})")
            tail = parts[2] if len(parts) > 2 else ""
            if parts[1] == "ok":
                error = ""
                for kv in tail.split():
                    k, _, v = kv.partition("=")
                    stats[k] = _int(v, line)
            else:
                error = tail or "unspecified error"
        elif word == "OUT":
            off, _, value = rest.partition(" ")
            out[_int(off, line)] = _int(value, line)
        elif word == "DATA":
            where, _, hexdata = rest.partition(" ")
            try:
                pieces.append((_int(where, line), bytes.fromhex(hexdata)))
            except ValueError:
                raise ProtocolError(f"bad hex in agent line {line[:80]!r}") from None
        elif word == "SDATA":
            words = rest.split()
            if len(words) != 3:
                raise ProtocolError(f"unexpected agent line {line!r}")
            addr, length, start = (_int(w, line) for w in words)
            if shared is None or start + length > len(shared):
                raise ProtocolError(f"agent line {line!r} points outside the shared memory")
            pieces.append((addr, bytes(shared[start : start + length])))
        elif word == "KLOG":
            klog.append(rest)
    if error is None:
        raise ProtocolError(f"the agent answered job {job_id} without a RESULT line")
    buffers = {addr: bytearray(size) for addr, size in reads}
    for at, piece in pieces:
        home = [a for a, size in reads if a <= at and at + len(piece) <= a + size]
        if not home:
            raise ProtocolError(
                f"agent DATA at 0x{at:x} (+{len(piece)}) lies outside every READ range"
            )
        pos = at - home[0]
        buffers[home[0]][pos : pos + len(piece)] = piece
    data = {addr: bytes(buf) for addr, buf in buffers.items()}
    return Answer(job_id, error, stats, out, data, tuple(klog))
