"""Plain-text rendering of one outcome: the PAR of both sides decoded, the
differing fields, and the model's trace. Shared by the terminal report,
JUnit failures, the pytest plugin and `xcheck explain`."""

from __future__ import annotations

from xcheck.arch.par import describe_par
from xcheck.outcome import Kind, Outcome


def par_line(who: str, par: int | None) -> str:
    if par is None:
        return f"  {who:<6} -"
    return f"  {who:<6} 0x{par:016x}  {describe_par(par)}"


def outcome_text(o: Outcome) -> str:
    """Everything a reader needs to judge one outcome, as plain text."""
    head = f"{o.kind.value}: {o.scenario} {o.label}".rstrip()
    where = f"{o.path}:{o.line}" if o.line else o.path
    lines = [head, f"  at {where}"]
    if o.kind in (Kind.SKIPPED, Kind.INVALID, Kind.TARGET_ERROR):
        lines.append(f"  {o.detail}")
        return "\n".join(lines)
    tv = f" {o.target_version}" if o.target_version else ""
    lines.append(par_line(o.target, o.par_target) + (f"  ({o.target}{tv})" if tv else ""))
    lines.append(par_line("model", o.par_model))
    if o.fields:
        width = max(len(f.name) for f in o.fields)
        lines.append("  differing fields:")
        for f in o.fields:
            lines.append(f"    {f.name:<{width}}  {o.target}=0x{f.target:x}  model=0x{f.model:x}")
    if o.detail:
        lines.append(f"  {o.detail}")
    if o.trace:
        lines.append("  model trace:")
        lines.extend("    " + t for t in o.trace.splitlines())
    return "\n".join(lines)
