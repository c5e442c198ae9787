"""Failure signatures: what makes two failing probes the same finding.

A signature is the AT operation, which PAR fields differ (or which side
raised an exception instead of writing PAR), and the rule the model's
trace ended in, with its numbers blanked. One bug found many times is
one signature, shrunk and reported once.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from xcheck.arch.at import AtResult
from xcheck.arch.trace import Summarized, TraceStep
from xcheck.machine import ProbeResult, TargetException
from xcheck.outcome import Kind, Outcome

_HEX = re.compile(r"0x[0-9a-fA-F_]+|0b[01_]+")
_NUM = re.compile(r"(?<![A-Za-z_\d])\d+")
_PERM_NAME = re.compile(r"((?:entry |Perm=)#) \((?:[^()]|\([^()]*\))*\)")
"""The name of a blanked permission encoding (``S2BasePerm=# (RW+puX)``,
``PIR entry # (RX (overlay))``): one rule whatever the encoding."""


@lru_cache(maxsize=4096)
def normalize(text: str) -> str:
    """``text`` with addresses and numbers blanked (``#``), letters kept:
    "VA[63:39] not all zeros" and "VA[63:48] not all zeros" are one rule;
    so are the names of the permission encodings (_PERM_NAME)."""
    return _PERM_NAME.sub(r"\1 (#)", _NUM.sub("#", _HEX.sub("#", text))).strip()


def last_rule(trace: tuple[TraceStep, ...]) -> str:
    """The rule of the last trace step that names one (else its kind).

    The way there is added: why stage 1 was disabled (SCTLR_ELx.M,
    HCR_EL2.TGE or DC), and for a successful translation (always ending in
    AArch64.EncodePAR) whether stage 1 was walked, SCTLR_ELx.C = 0 made
    Normal memory Non-cacheable, stage 2 applied to the output, with
    HCR_EL2.FWB. Two causes of one rule are two findings."""
    rule = ""
    off: str | Summarized | None = None
    attrs = s2 = fwb = False
    # one pass over the steps, unpacked (a NamedTuple's fields by name cost more)
    for stage, what, text, _, _, _, _, _, step_rule, _ in trace:
        if step_rule:
            rule = step_rule
        if what == "disabled":
            off = text if off is None else off
        elif what == "attrs":
            attrs = True
        elif what == "fwb":
            fwb = True
        elif stage == 2 and what == "start" and str(text).startswith("IPA"):
            s2 = True
    if not rule:
        return normalize(trace[-1].what) if trace else ""
    rule = normalize(rule)
    path = [] if off is None else [f"S1 off ({_cause(off)})"]
    if trace[-1].what == "output":
        path = path or ["S1 walk"]
        if attrs:
            path.append("C=0")
        if s2:
            path.append("S2 FWB" if fwb else "S2")
    return f"{rule} [{', '.join(path)}]" if path else rule


def _cause(step_text: str | Summarized) -> str:
    """The control named in a "stage 1 disabled" step's text: "...disabled (X): ..."."""
    text = str(step_text)
    return normalize(text[text.find("(") + 1:text.find(")")]) if "(" in text else ""


@dataclass(frozen=True, order=True)
class Signature:
    """One kind of failure."""

    kind: str
    """"mismatch", "expect-failed" or "target-error"."""
    op: str
    fields: tuple[str, ...]
    rule: str
    acts_as: str = ""
    """The recorded bug whose ``acts_as`` explained the failure (its
    scenario's name and register values), else empty: a failure so
    explained is another finding than the same signature unexplained."""

    def describe(self) -> str:
        if self.kind == "target-error":
            return f"target error: {self.rule}"
        what = ", ".join(self.fields) or "no field"
        at = "AT" if self.op == "*" else f"AT {self.op}"
        seen = f"; the target acts as {self.acts_as}" if self.acts_as else ""
        return f"{at}: {what} differ; the model's trace ends in: {self.rule}{seen}"

    @property
    def slug(self) -> str:
        """A file name: op, fields, and a short hash of the whole."""
        digest = hashlib.sha1(self.key().encode()).hexdigest()[:8]
        parts = [] if self.op == "*" else [self.op.lower()]
        parts += [re.sub(r"[^a-z0-9]+", "", f.lower()) for f in self.fields]
        head = "target-error" if self.kind == "target-error" else "-".join(parts)
        return f"{head[:60]}-{digest}"

    @property
    def family(self) -> Signature:
        """The signature without its op: the failures shrunk once, whatever
        AT operation shows them (their ops are listed with the finding)."""
        return Signature(self.kind, "*", self.fields, self.rule, self.acts_as)

    def key(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)

    def to_json(self) -> dict[str, Any]:
        out = {"kind": self.kind, "op": self.op, "fields": list(self.fields),
               "rule": self.rule}
        return {**out, "acts_as": self.acts_as} if self.acts_as else out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Signature:
        return cls(str(data["kind"]), str(data["op"]), tuple(map(str, data["fields"])),
                   str(data["rule"]), str(data.get("acts_as", "")))


def signature(outcome: Outcome, got: ProbeResult, model: AtResult) -> Signature | None:
    """The signature of one failing probe (None when it did not fail)."""
    if outcome.kind not in (Kind.MISMATCH, Kind.EXPECT_FAILED):
        return None
    if isinstance(got, TargetException):
        ec = (got.esr >> 26) & 0x3F
        fields: tuple[str, ...] = (f"target:exception EC=0x{ec:02x}",)
        if model.kind != "par":
            fields += (f"model:{model.kind}",)
    elif model.kind != "par":
        fields = (f"model:{model.kind}",)
    else:
        fields = tuple(f.name for f in outcome.fields)
    return Signature(outcome.kind.value, outcome.op, fields, last_rule(model.trace))


_ASSERTION = re.compile(r"(\w+): Assertion (.+) failed")
_ESR = re.compile(r"ESR=(0x[0-9a-fA-F]+)")
ABORT_ECS = (0x20, 0x21, 0x24, 0x25)
"""ESR_ELx.EC of Instruction and Data Aborts (lower, same EL): ISS[5:0] is
the fault status code (IFSC/DFSC, D24.2 ESR_EL2)."""


def target_error_signature(message: str) -> Signature:
    """A whole case the target could not run (a crash, a hang): the first
    line of the error, and the assertion QEMU printed when it aborted on
    one (the same signal is many bugs, one assertion is one). An exception
    the harness took keeps its exception class and, for an abort, its fault
    status code (the kind of fault and its level): an instruction fetch
    that a stage 2 Translation fault at level 0 stops is not one that a
    Permission fault stops."""
    lines = message.splitlines() if message else ["target error"]
    head = lines[0]
    failed = next((m for m in map(_ASSERTION.search, reversed(lines)) if m), None)
    if failed:
        head += f": {failed.group(1)}: Assertion {failed.group(2)} failed"
    rule = normalize(head)
    esr = _ESR.search(head)
    if esr:
        value = int(esr.group(1), 16)
        ec = value >> 26 & 0x3F
        fsc = f", FSC=0x{value & 0x3F:02x}" if ec in ABORT_ECS else ""
        rule = rule.replace("(EC=#)", f"(EC=0x{ec:02x}{fsc})", 1)
    return Signature("target-error", "*", (), rule[:160])
