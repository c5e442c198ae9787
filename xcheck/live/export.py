"""A live mismatch (or known divergence) as a standalone scenario file.

The scenario holds the registers as read from the halted kernel (raw
values), its PSTATE (EL, PAN), the RAM size, every descriptor word the
model's walk of that VA read (``memory:``, at the kernel's own physical
addresses) and the one probe. ``xcheck run`` reproduces the translation
without the kernel: the walk reads the same words at the same addresses. A
known divergence (live/known.py) is exported with its ``known:`` entry.

The harness must run in the exported machine too: the scenario builder maps
it under TTBR0 of the regime it runs in (docs/scenario-format.md), so the
exported TTBR0 of that regime points to the builder's tables. A mismatch
in the TTBR1 range (the kernel's own) is unaffected; one in the TTBR0 range
is exported with a warning in its ``about``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from xcheck.live.physmem import RecordingMem
from xcheck.live.sweep import Sweep
from xcheck.machine import ARENA_PA, TRANSLATION_SYSREGS, AtOp
from xcheck.outcome import Outcome


class ExportError(Exception):
    """The mismatch cannot be written as a scenario (with the reason)."""


def _hex(v: int) -> str:
    return f"0x{v:x}"


def _blocks(words: dict[int, int]) -> list[tuple[int, list[int]]]:
    out: list[tuple[int, list[int]]] = []
    for addr in sorted(words):
        if out and out[-1][0] + 8 * len(out[-1][1]) == addr:
            out[-1][1].append(words[addr])
        else:
            out.append((addr, [words[addr]]))
    return out


def scenario_text(sweep: Sweep, outcome: Outcome, *, kernel: str, ram: str) -> str:
    """The YAML text of the scenario reproducing ``outcome``."""
    op = AtOp(outcome.op)
    rec = RecordingMem(sweep.mem)
    sweep.model(op, outcome.va, rec)
    words = {a: v for a, v in rec.words.items() if a % 8 == 0}
    low = [a for a in words if a < ARENA_PA]
    if low:
        raise ExportError(f"descriptor at PA 0x{min(low):x} lies below 0x{ARENA_PA:x}, in the "
                          "region the harness and the device tree use")
    if any(a % 8 for a in rec.words):
        raise ExportError("the walk read an unaligned descriptor")
    st = sweep.state
    fields = ", ".join(f"{f.name} qemu=0x{f.target:x} model=0x{f.model:x}"
                       for f in outcome.fields) or outcome.detail
    ttbr0 = outcome.extra.get("range") == "TTBR0"
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"live-{kernel}-{op.value}-{outcome.va:x}")
    about = (f"Exported by xcheck live from {kernel} halted at EL{st.el} "
             f"({st.regime.value} regime) on QEMU {outcome.target_version}: {op.value} "
             f"va=0x{outcome.va:x} ({outcome.extra.get('why', '')}) differed: {fields}.")
    if ttbr0:
        about += (" The VA is in the TTBR0 range, whose table base the scenario builder "
                  "replaces with the harness's tables: this file may not reproduce it.")
    lines = [
        f"name: {name}",
        "about: >-",
        *(f"  {chunk}" for chunk in _wrap(about, 90)),
        f"profile: {{memory: {ram}}}",
        "regs:",
        *(f"  {r}: {_hex(st.sysregs[r])}" for r in TRANSLATION_SYSREGS),
        f"pstate: {{EL: {st.el}, PAN: {int(st.pan)}}}",
        "memory:",
    ]
    for addr, ws in _blocks(words):
        lines.append(f"  - {{addr: {_hex(addr)}, words: [{', '.join(map(_hex, ws))}]}}")
    lines += ["probes:", f"  - {{op: {op.value}, va: {_hex(outcome.va)}}}"]
    known = outcome.extra.get("known")
    if isinstance(known, dict):
        lines += ["known:", f"  - {{op: {op.value}, va: {_hex(outcome.va)}, "
                  f"qemu: {json.dumps(known['qemu'])},",
                  f"     why: {json.dumps(known['why'])},",
                  f"     link: {json.dumps(known['link'])}}}"]
    lines.append("")
    return "\n".join(lines)


def _wrap(text: str, width: int) -> list[str]:
    out: list[str] = []
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            out.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*out, line] if line else out


def export(sweep: Sweep, outcome: Outcome, dest: Path, *, kernel: str, ram: str) -> Path:
    """Write the scenario for ``outcome`` into ``dest``; its path."""
    text = scenario_text(sweep, outcome, kernel=kernel, ram=ram)
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / (text.split("\n", 1)[0].removeprefix("name: ") + ".yaml")
    path.write_text(text)
    return path


__all__ = ["ExportError", "export", "scenario_text"]
