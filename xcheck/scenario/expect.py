"""Pinned expectations (``expect:``) and recorded divergences (``known:``).

Both select probes by op / va / el / pan (any subset; a list means any of
its values). An expectation states what the Arm ARM requires of the
selected probes; the model must meet it. A known divergence names the QEMU
versions that answer differently, and why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from xcheck.arch.at import AtResult
from xcheck.arch.fault import Fault, FaultRecord
from xcheck.arch.features import Features
from xcheck.arch.par import NS_BIT, decode_par, describe_par
from xcheck.arch.regs import HCR
from xcheck.machine import AtOp, Probe, SecurityState
from xcheck.scenario.regfields import layout, set_field
from xcheck.scenario.versions import VersionRange, split_target_version

FAULT_NAMES: dict[str, Fault] = {
    "translation": Fault.TRANSLATION,
    "address-size": Fault.ADDRESS_SIZE,
    "access-flag": Fault.ACCESS_FLAG,
    "permission": Fault.PERMISSION,
    "gpc-on-walk": Fault.GPCF_ON_WALK,
}
"""``fault:`` values in an expectation, as PAR_EL1.FST reports them."""

RESULTS = ("undefined", "trap", "abort")
"""``result:`` values: the AT does not write PAR_EL1 (see AtResult.kind)."""


@dataclass(frozen=True)
class Selector:
    """Which probes an entry applies to; an empty tuple selects any value."""

    ops: tuple[AtOp, ...] = ()
    vas: tuple[int, ...] = ()
    els: tuple[int, ...] = ()
    pans: tuple[bool, ...] = ()
    spaces: tuple[SecurityState, ...] = ()

    def matches(self, probe: Probe) -> bool:
        return ((not self.ops or probe.op in self.ops)
                and (not self.vas or probe.va in self.vas)
                and (not self.els or probe.el in self.els)
                and (not self.pans or probe.pan in self.pans)
                and (not self.spaces or probe.space in self.spaces))

    def describe(self) -> str:
        parts = []
        if self.ops:
            parts.append("op " + "|".join(o.value for o in self.ops))
        if self.vas:
            parts.append("va " + "|".join(f"{v:#_x}" for v in self.vas))
        if self.els:
            parts.append("el " + "|".join(str(e) for e in self.els))
        if self.pans:
            parts.append("pan " + "|".join(str(int(p)) for p in self.pans))
        if self.spaces:
            parts.append("space " + "|".join(s.value for s in self.spaces))
        return ", ".join(parts) or "every probe"


def _model_answer(model: AtResult) -> str:
    if model.kind != "par":
        return f"{model.kind}" + (f" ({model.detail})" if model.detail else "")
    if model.fault is not None:
        return model.fault.describe()
    return describe_par(model.par)


def _fault_problem(fault: FaultRecord, status: Fault | None, level: int | None,
                   stage: int | None, ptw: bool | None) -> list[str]:
    problems = []
    if status is not None and fault.statuscode is not status:
        problems.append(f"a {status.value} fault")
    if level is not None and fault.level != level:
        problems.append(f"level {level}")
    if stage is not None and fault.stage != stage:
        problems.append(f"stage {stage}")
    if ptw is not None and fault.s2fs1walk != ptw:
        problems.append("PTW=1 (a stage 2 fault on the stage 1 walk)" if ptw else "PTW=0")
    return problems


@dataclass(frozen=True)
class Expectation:
    """What the selected probes must produce in the model.

    Exactly one form: a fault (``fault`` with optional ``level``, ``stage``,
    ``ptw``), a successful translation (``pa`` with optional ``attr`` and
    ``sh`` and ``ns``), or a ``result`` that is not a PAR (undefined, trap, abort; an
    abort may also state its fault)."""

    line: int
    select: Selector
    fault: Fault | None = None
    level: int | None = None
    stage: int | None = None
    ptw: bool | None = None
    pa: int | None = None
    attr: int | None = None
    sh: int | None = None
    result: str | None = None
    ns: bool | None = None
    """PAR_EL1.NS, the output PA space of a Secure regime (1: Non-secure)."""

    def matches(self, probe: Probe) -> bool:
        return self.select.matches(probe)

    def check(self, model: AtResult) -> str:
        """"" when the model's answer meets the expectation, else what differed."""
        got = _model_answer(model)
        if self.result is not None:
            if model.kind != self.result:
                return f"expected {self.result}, model: {got}"
            if self.result == "abort" and model.fault is not None:
                wrong = _fault_problem(model.fault, self.fault, self.level, self.stage,
                                       self.ptw)
                if wrong:
                    return f"expected an abort with {', '.join(wrong)}, model: {got}"
            return ""
        if self.pa is not None:
            if model.kind != "par" or model.fault is not None:
                return f"expected PA {self.pa:#_x}, model: {got}"
            fields = decode_par(model.par)
            wrong = []
            if fields["PA"] != (self.pa >> 12) & ((1 << 44) - 1):
                wrong.append(f"PA {self.pa & ~0xFFF:#_x}")
            if self.attr is not None and fields["ATTR"] != self.attr:
                wrong.append(f"ATTR {self.attr:#04x}")
            if self.sh is not None and fields["SH"] != self.sh:
                wrong.append(f"SH 0b{self.sh:02b}")
            if self.ns is not None and (fields["NS"] != self.ns or not model.mask & NS_BIT):
                wrong.append(f"NS {int(self.ns)} (a Secure regime's output PA space)")
            return f"expected {', '.join(wrong)}, model: {got}" if wrong else ""
        if model.kind != "par" or model.fault is None:
            return f"expected {self.describe()}, model: {got}"
        wrong = _fault_problem(model.fault, self.fault, self.level, self.stage, self.ptw)
        return f"expected {', '.join(wrong)}, model: {got}" if wrong else ""

    def describe(self) -> str:
        if self.result is not None:
            return self.result
        if self.pa is not None:
            return f"PA {self.pa:#_x}"
        out = f"a {self.fault.value if self.fault else 'any'} fault"
        if self.level is not None:
            out += f", level {self.level}"
        if self.stage is not None:
            out += f", stage {self.stage}"
        if self.ptw is not None:
            out += f", PTW={int(self.ptw)}"
        return out


@dataclass(frozen=True)
class RegChange:
    """One field value of a known entry's ``acts_as:``."""

    reg: str
    field: str
    value: int

    def apply(self, sysregs: Mapping[str, int]) -> dict[str, int]:
        e2h = bool(sysregs.get("HCR_EL2", 0) >> HCR.E2H & 1)
        fields = layout(self.reg, e2h)
        out = dict(sysregs)
        if self.field in fields:
            out[self.reg] = set_field(out.get(self.reg, 0), fields[self.field], self.value)
        return out

    def describe(self) -> str:
        return f"{self.reg}.{self.field} = {self.value}"


@dataclass(frozen=True)
class KnownDivergence:
    """A recorded disagreement with the Arm ARM: the probes it covers, the
    QEMU versions (``qemu``), why, and a link to the upstream fix or report.
    With ``kvm`` (a guest kernel version range) it records a bug of KVM's AT
    emulation and applies to the nested-KVM target only; without, a QEMU bug,
    which can show through a KVM run too (QEMU runs the guest's ATs that KVM
    does not trap)."""

    line: int
    select: Selector
    qemu: VersionRange
    why: str
    link: str = ""
    kvm: VersionRange | None = None
    lacks: tuple[str, ...] = ()
    """Features the CPU must lack for the entry to apply (the bug shows only
    on such CPUs, e.g. a RES0 control honoured without its feature)."""
    acts_as: tuple[RegChange, ...] = ()
    """``acts_as:``: register field values under which the model answers as
    the target does (the bug's behaviour, e.g. HCR_EL2.TGE ignored). With
    them the entry covers a probe only where the target's answer is the
    model's under these values (xcheck.check.acts_as_explains), and the fuzzer
    knows the bug by that, whatever its signature."""

    def acting(self, sysregs: Mapping[str, int]) -> dict[str, int]:
        """``sysregs`` with the ``acts_as`` field values written in (the
        field layout of TCR_EL2 follows the registers' own HCR_EL2.E2H)."""
        out = dict(sysregs)
        for change in self.acts_as:
            out = change.apply(out)
        return out

    def describe_acts(self) -> str:
        return ", ".join(c.describe() for c in self.acts_as)

    def applies(self, probe: Probe, version: str, features: Features | None = None) -> bool:
        return self.select.matches(probe) and self.covers(version, features)

    def covers(self, version: str, features: Features | None = None) -> bool:
        """Does the entry hold for this target version and CPU, whatever
        the probe?"""
        qemu, kernel = split_target_version(version)
        if self.kvm is not None and (kernel is None or not self.kvm.contains(kernel)):
            return False
        if self.lacks and (features is None or any(features.has(n) for n in self.lacks)):
            return False
        return self.qemu.contains(qemu)
