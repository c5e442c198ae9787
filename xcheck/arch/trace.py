"""The walk trace: every step the model took, renderable as text.

A step is one of: a decision about the regime or configuration (``what`` =
"regime", "config", "output"...), or one descriptor fetch (``what`` = the
decoded descriptor type: "table", "block", "page", "invalid"), with the
table base, index, descriptor address and value. ``rule`` cites the Arm ARM
rule or ASL function that decided, in words with the numbers of this walk;
``cites`` names it in the registry (xcheck.arch.rules).
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from xcheck.arch.rules import Rule


class Summarized(Protocol):
    """A record that describes itself; rendered only when the trace is shown."""

    @property
    def summary(self) -> str: ...


class TraceStep(NamedTuple):
    """One step (an immutable record; a NamedTuple because walks make many)."""

    stage: int
    what: str
    text: str | Summarized = ""
    level: int | None = None
    table: int | None = None
    idx: int | None = None
    addr: int | None = None
    desc: int | None = None
    rule: str = ""
    cites: Rule | None = None

    def render(self) -> str:
        text = self.text if isinstance(self.text, str) else self.text.summary
        head = f"S{self.stage}" if self.stage else "AT"
        if self.addr is None:
            line = f"{head} {self.what}: {text}"
        else:
            desc = "no memory" if self.desc is None else f"0x{self.desc:016x}"
            line = (f"{head} L{self.level} table 0x{self.table or 0:x}[{self.idx}] "
                    f"@0x{self.addr:x} = {desc} -> {self.what}")
            if text:
                line += f" ({text})"
        if self.rule:
            line += f"  [{self.rule}]"
        return line


def render_trace(steps: tuple[TraceStep, ...]) -> str:
    return "\n".join(s.render() for s in steps)
