"""A GDB/MI session with gdb-multiarch, connected to QEMU's stub.

Every command carries an MI token and is read until its own result record:
no fixed sleeps, a timeout on every command. ``-exec-*`` commands answer
``^running`` and end with a ``*stopped`` record, which :meth:`Gdb.resume`
waits for. Lines are parsed with pygdbmi's MI parser, but for the
``*stopped`` record of every stop (see :func:`_stopped_payload`).
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pygdbmi import gdbmiparser

from xcheck.target.elfimage import elf_image
from xcheck.target.errors import GdbTimeout, QemuLaunchError, TargetError
from xcheck.target.process import spawn, stop

Record = dict[str, Any]

REGISTER_ALIASES = {"SCTLR_EL1": "SCTLR"}
"""Other names QEMU's stub gives some system registers (up to 10.0 it calls
SCTLR_EL1 SCTLR). An ``*_EL12`` name the stub lacks (11.x describes none)
reads its ``*_EL1`` register: the stub reads registers, not instructions,
so nothing is redirected by HCR_EL2.E2H."""

MAX_WRITE = 1 << 16
"""Bytes per -data-write-memory-bytes (gdb splits further into stub packets)."""
RESTORE_MIN = 1 << 10
"""A block from this size, or several blocks, go through a file and gdb's
``restore``: gdb reads its MI input a byte at a time, so the hex of a large
block costs more than the stub's packets (measured on 7.2 under load: 64 KiB
449 ms as hex, 23 ms restored from a file; 1 KiB 3.2 ms and 1.2 ms; 30
blocks of 8 B to 3 KB 34 ms one by one, 22 ms in one restore)."""


UNUSED = (b"(gdb)", b"=", b"&", b"@", b"*running")
"""Output lines nobody reads (prompts, notifications such as a breakpoint's
new hit count, logs, target output, ``*running``): skipped unparsed, since
pygdbmi's parser costs 10 to 400 us a line. Console lines (``~``) are kept
as they come and parsed only by :meth:`Gdb.console_command`: a breakpoint
stop prints two."""

TOP_FRAME_UNWINDER = """\
import gdb.unwinder
class FrameId:
    def __init__(self, sp, pc):
        self.sp, self.pc = sp, pc
class TopFrame(gdb.unwinder.Unwinder):
    def __init__(self):
        super().__init__("xcheck top frame")
    def __call__(self, pending):
        if pending.level() != 0:
            return None
        sp = pending.read_register("sp")
        return pending.create_unwind_info(FrameId(sp, sp))
gdb.unwinder.register_unwinder(None, TopFrame(), replace=True)
"""
"""A Python frame unwinder (run in gdb) that claims the frame gdb stops in,
from the registers it has already read: otherwise, at every stop, gdb's
epilogue and stub unwinders read the instructions at and before the PC
from the stub (three memory packets a stop, about 0.1 ms of gdb's CPU and
as much of QEMU's). Its frame has no caller (no register saved), which no
command of xcheck's needs. Its id is the SP alone (as code address too: gdb
refuses a plain 0 there): with the PC in it every instruction would be a
new frame, and a single step (-exec-step-instruction, the teardown's) never
ends, gdb taking it for a step into a subroutine."""


class GdbError(TargetError):
    """gdb answered ^error."""


class Gdb:
    """One gdb-multiarch process driving one QEMU's stub over MI3."""

    def __init__(self, binary: str, timeout: float) -> None:
        self.binary = binary
        self.timeout = timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._buf = b""
        self._token = 0
        self._sel = selectors.DefaultSelector()
        self._console: list[bytes] = []
        """The console lines (raw) since the last command was sent."""
        self.stopped: list[Record] = []
        self.version = ""
        self._regnums: dict[str, int] | None = None
        self.watch: Callable[[], str] | None = None
        """Called while waiting: a non-empty answer (why the other end is
        gone, e.g. QEMU died) ends the wait at once with a TargetError."""
        self._files: Path | None = None
        """A private folder for the files that write_blocks restores."""

    # --- process -------------------------------------------------------
    def start(self) -> None:
        try:
            self._proc = spawn(
                [self.binary, "--nx", "--quiet", "--interpreter=mi3"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        except FileNotFoundError:
            raise QemuLaunchError(
                f"{self.binary} not found (install gdb-multiarch: apt-get install gdb-multiarch)"
            ) from None
        assert self._proc.stdout is not None
        os.set_blocking(self._proc.stdout.fileno(), False)
        self._sel.register(self._proc.stdout, selectors.EVENT_READ)
        self._wait_prompt()
        for setting in (
            "mi-async on",
            "pagination off",
            "confirm off",
            "architecture aarch64",
            "code-cache off",
            "stack-cache off",
            "remotetimeout 10",
            "max-value-size unlimited",
            "print elements 0",
            # breakpoints sent to the stub once, not inserted at every resume
            # and removed at every stop (two packets a breakpoint a stop)
            "breakpoint always-inserted on",
        ):
            self.command(f"-gdb-set {setting}")
        with contextlib.suppress(GdbError):  # a gdb without Python sniffs as before
            self.console_command(f"python exec({TOP_FRAME_UNWINDER!r})")
        out = self.console_command("show version")
        self.version = out.splitlines()[0].rsplit(" ", 1)[-1] if out else ""

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None and self._proc.stdin:
            try:
                self._proc.stdin.write(b"-gdb-exit\n")
                self._proc.stdin.flush()
                self._proc.wait(timeout=1.0)
            except (OSError, subprocess.TimeoutExpired):
                pass
        stop(self._proc, grace=0.5)
        self._proc = None
        if self._files is not None:
            shutil.rmtree(self._files, ignore_errors=True)
            self._files = None
        with contextlib.suppress(OSError, ValueError):
            self._sel.close()

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # --- I/O -------------------------------------------------------------
    def _lines(self, deadline: float) -> list[bytes]:
        """At least one complete output line, or GdbTimeout at ``deadline``."""
        assert self._proc is not None and self._proc.stdout is not None
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise GdbTimeout("gdb gave no answer in time")
            if not self._sel.select(min(left, 0.2)):
                if self._proc.poll() is not None:
                    raise TargetError(f"gdb exited with status {self._proc.returncode}")
                gone = self.watch() if self.watch is not None else ""
                if gone:
                    raise TargetError(gone)
                continue
            chunk = self._proc.stdout.read(1 << 16)
            if not chunk:
                if self._proc.poll() is not None or chunk == b"":
                    raise TargetError("gdb closed its output (it exited)")
            else:
                self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        return lines

    def _wait_prompt(self) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            for line in self._lines(deadline):
                if line.startswith(b"(gdb)"):
                    return

    def _send(self, text: str) -> int:
        assert self._proc is not None and self._proc.stdin is not None
        self._token += 1
        self._console.clear()
        try:
            self._proc.stdin.write(f"{self._token}{text}\n".encode())
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise TargetError("gdb is gone (broken pipe)") from None
        return self._token

    def _read_until(self, token: int, deadline: float, want_stop: bool) -> Record:
        """Read records until the result for ``token`` and, when ``want_stop``
        (an -exec-* command answered ``^running``), a ``*stopped`` record."""
        result: Record | None = None
        while True:
            for raw in self._lines(deadline):
                if not raw.strip() or raw.startswith(UNUSED):
                    continue
                if raw.startswith(b"~"):
                    self._console.append(raw)
                    continue
                rec = _parse(raw)
                kind = rec.get("type")
                if kind == "notify" and rec.get("message") == "stopped":
                    self.stopped.append(rec)
                elif kind == "result" and rec.get("token") == token:
                    if rec.get("message") == "error":
                        msg = (rec.get("payload") or {}).get("msg", "")
                        raise GdbError(f"gdb: {msg}")
                    result = rec
            if result is None:
                continue
            if not want_stop or self.stopped or result.get("message") not in ("running", "done"):
                return result

    # --- commands ----------------------------------------------------------
    def command(self, cmd: str, timeout: float | None = None) -> Record:
        """Run an MI command; return its result record (payload in ``payload``)."""
        token = self._send(cmd)
        return self._read_until(
            token, time.monotonic() + (timeout or self.timeout), want_stop=False
        )

    def console_command(self, cmd: str, timeout: float | None = None) -> str:
        """Run a CLI command through MI; return what it printed."""
        escaped = cmd.replace("\\", "\\\\").replace('"', '\\"')
        self.command(f'-interpreter-exec console "{escaped}"', timeout)
        return "".join(str(_parse(raw).get("payload") or "") for raw in self._console)

    def connect(self, socket: Path) -> None:
        self._regnums = None
        self.command(f"-target-select remote {socket}")

    def resume(self, cmd: str, timeout: float) -> Record:
        """Run an -exec-* command and wait for the target to stop; on
        timeout interrupt it and raise GdbTimeout."""
        self.stopped.clear()
        token = self._send(cmd)
        deadline = time.monotonic() + timeout
        try:
            self._read_until(token, deadline, want_stop=True)
        except GdbTimeout:
            self.interrupt()
            raise GdbTimeout(f"the guest did not stop within {timeout:g}s") from None
        return self.stopped[-1]

    def interrupt(self) -> None:
        """Stop a running guest (after a timeout)."""
        self.stopped.clear()
        token = self._send("-exec-interrupt")
        try:
            self._read_until(token, time.monotonic() + self.timeout, want_stop=True)
        except GdbTimeout:
            raise GdbTimeout("the guest did not stop when interrupted") from None

    # --- registers and memory -------------------------------------------------
    def register_numbers(self) -> dict[str, int]:
        """gdb's register numbers by name (from the target description QEMU
        sends), read once per connection."""
        if self._regnums is None:
            names = self.command("-data-list-register-names")["payload"]["register-names"]
            self._regnums = {str(n): i for i, n in enumerate(names) if n}
        return self._regnums

    def _number(self, name: str) -> int:
        numbers = self.register_numbers()
        el1 = name.removesuffix("_EL12") + "_EL1" if name.endswith("_EL12") else name
        num = next((numbers[n] for n in (name, REGISTER_ALIASES.get(name, ""), el1,
                                          REGISTER_ALIASES.get(el1, "")) if n in numbers), -1)
        if num < 0:
            raise GdbError(f"gdb has no register ${name} (QEMU's stub does not describe it)")
        return num

    def read_reg(self, name: str) -> int:
        """The raw value of a register (see :meth:`read_regs`)."""
        return self.read_regs((name,))[name]

    def read_regs(self, names: Sequence[str]) -> dict[str, int]:
        """The raw values of registers, by number, with one MI command: not
        gdb's typed view, which differs between QEMU versions (QEMU 11's stub
        gives cpsr a flags type that gdb prints as ``[ SP EL=2 ... ]``)."""
        nums = {name: self._number(name) for name in names}
        listed = " ".join(str(n) for n in dict.fromkeys(nums.values()))
        rec = self.command(f"-data-list-register-values --skip-unavailable x {listed}")
        got = {int(v["number"]): str(v["value"])
               for v in rec["payload"].get("register-values") or []}
        out: dict[str, int] = {}
        for name, num in nums.items():
            if num not in got:
                raise GdbError(f"register ${name} is unavailable")
            try:
                out[name] = int(got[num], 0) & ((1 << 64) - 1)
            except ValueError:
                raise GdbError(
                    f"gdb reads register ${name} as {got[num]!r}, not a number") from None
        return out

    def write_regs(self, values: Mapping[str, int]) -> None:
        """Write several registers, by number, with one MI command. It takes
        half the time of assigning them in an expression (``$x0=...``: about
        0.6 ms a register on QEMU 7.2) and works for every type QEMU 7.2 to
        11.x give, flags-typed cpsr included."""
        pairs = " ".join(f"{self._number(n)} 0x{v & ((1 << 64) - 1):x}"
                         for n, v in values.items())
        self.command(f"-data-write-register-values x {pairs}")

    def write_reg(self, name: str, value: int) -> None:
        """Write a register through gdb."""
        self.write_regs({name: value})

    def write_memory(self, addr: int, data: bytes) -> None:
        """Write ``data`` at ``addr``."""
        self.write_blocks([(addr, data)])

    def write_blocks(self, blocks: Sequence[tuple[int, bytes]]) -> None:
        """Write each ``(addr, data)`` block: all with one ``restore`` of an
        ELF file (elfimage), or, for one block under RESTORE_MIN bytes, one
        MI request per 64 KiB."""
        if not blocks:
            return
        if len(blocks) > 1 or len(blocks[0][1]) >= RESTORE_MIN:
            if self._files is None:
                self._files = Path(tempfile.mkdtemp(prefix="xcheck-gdb-"))
            image = self._files / "blocks.elf"
            if not any(c.isspace() for c in str(image)):  # restore takes no quotes
                image.write_bytes(elf_image(blocks))
                try:
                    self.console_command(f"restore {image}")
                finally:
                    image.unlink()  # a new file each time: rewriting one waits for the disk
                return
        for addr, data in blocks:
            for off in range(0, len(data), MAX_WRITE):
                part = data[off : off + MAX_WRITE]
                self.command(f"-data-write-memory-bytes 0x{addr + off:x} {part.hex()}")

    def read_memory(self, addr: int, size: int) -> bytes:
        rec = self.command(f"-data-read-memory-bytes 0x{addr:x} {size}")
        blocks = rec["payload"]["memory"]
        out = bytearray(size)
        got = 0
        for b in blocks:
            start = int(b["begin"], 16) - addr + int(b.get("offset", "0x0"), 16)
            data = bytes.fromhex(b["contents"])
            out[start : start + len(data)] = data
            got += len(data)
        if got < size:
            raise TargetError(f"read {got} of {size} bytes at 0x{addr:x}")
        return bytes(out)

    def packet(self, text: str) -> str:
        """Send a raw remote packet (``maintenance packet``); return the reply."""
        out = self.console_command(f"maintenance packet {text}")
        marker = 'received: "'
        i = out.rfind(marker)
        return out[i + len(marker) :].split('"', 1)[0] if i >= 0 else ""


STOPPED = "*stopped,"
_MI_LEXEME = re.compile(r'([A-Za-z_][\w-]*)=|"([^"\\]*)"|([{}\[\],])')
"""One lexeme of MI results: ``name=``, a c-string without escapes, or
punctuation."""


def _parse(raw: bytes) -> Record:
    """One MI output line, parsed: a ``*stopped`` record (one at every stop;
    pygdbmi's parser takes about 200 us for it) by :func:`_stopped_payload`
    where it can, everything else (and what it declines) by pygdbmi."""
    line = raw.decode(errors="replace").rstrip("\r")
    if line.startswith(STOPPED):
        payload = _stopped_payload(line)
        if payload is not None:
            return {"type": "notify", "message": "stopped", "payload": payload, "token": None}
    return gdbmiparser.parse_response(line)


def _stopped_payload(line: str) -> dict[str, Any] | None:
    """The results of a ``*stopped`` line as pygdbmi gives them, for the
    shapes gdb prints at a stop (c-strings, tuples, lists of values); None
    for anything else (an escape in a string, a repeated name, a list of
    results), which pygdbmi then parses."""
    root: dict[str, Any] = {}
    stack: list[dict[str, Any] | list[Any]] = [root]
    key: str | None = None
    pos = len(STOPPED)
    for m in _MI_LEXEME.finditer(line, pos):
        if m.start() != pos:
            return None
        pos = m.end()
        name, text, punct = m.groups()
        if name is not None:
            if key is not None:
                return None
            key = name
            continue
        if punct == ",":
            if key is not None:
                return None
            continue
        if punct in ("}", "]"):
            if key is not None or len(stack) == 1 or \
                    isinstance(stack[-1], dict) != (punct == "}"):
                return None
            stack.pop()
            continue
        value: Any = text if punct is None else ({} if punct == "{" else [])
        top = stack[-1]
        if isinstance(top, dict):
            if key is None or key in top:
                return None
            top[key] = value
        elif key is None:
            top.append(value)
        else:
            return None
        key = None
        if punct is not None:
            stack.append(value)
    return root if pos == len(line) and len(stack) == 1 and key is None and root else None
