"""The result of one probe's cross-check, and the exit code of a whole run."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


class Kind(enum.Enum):
    """What happened to one probe (see the README, "Outcomes")."""

    MATCH = "match"
    MISMATCH = "mismatch"
    KNOWN = "known"
    EXPECT_FAILED = "expect-failed"
    TARGET_ERROR = "target-error"
    SKIPPED = "skipped"
    INVALID = "invalid"


FAILING = frozenset({Kind.MISMATCH, Kind.EXPECT_FAILED, Kind.TARGET_ERROR})


@dataclass(frozen=True)
class FieldDelta:
    """One PAR field that differs: its Arm ARM name and both values."""

    name: str
    target: int
    model: int


@dataclass(frozen=True)
class Outcome:
    """One probe of one scenario, cross-checked (or why it was not)."""

    scenario: str
    path: str
    kind: Kind
    op: str = ""
    va: int = 0
    el: int = 0
    pan: bool = False
    label: str = ""
    line: int = 0
    space: str = "nonsecure"
    """The probe's Security state (xcheck.machine.SecurityState value)."""
    target: str = "qemu"
    target_version: str = ""
    par_target: int | None = None
    par_model: int | None = None
    mask: int | None = None
    fields: tuple[FieldDelta, ...] = ()
    detail: str = ""
    """Why: the known divergence, the failed expectation, the target error..."""
    trace: str = ""
    """The model's explanation, rendered (mismatches and failed expectations)."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def probe_id(self) -> str:
        """A stable, readable id: scenario name and probe label."""
        return f"{self.scenario}::{self.label}" if self.label else self.scenario

    def to_json(self) -> dict[str, Any]:
        def hx(v: int | None) -> str | None:
            return None if v is None else f"0x{v:016x}"

        return {
            "scenario": self.scenario,
            "path": self.path,
            "line": self.line,
            "probe": self.label,
            "op": self.op,
            "va": f"0x{self.va:x}",
            "el": self.el,
            "pan": int(self.pan),
            "space": self.space,
            "outcome": self.kind.value,
            "target": self.target,
            "target_version": self.target_version,
            "par_qemu": hx(self.par_target),
            "par_model": hx(self.par_model),
            "mask": hx(self.mask),
            "fields": [
                {"name": f.name, "qemu": f.target, "model": f.model} for f in self.fields
            ],
            "detail": self.detail,
            **self.extra,
        }


def target_version(outcomes: Iterable[Outcome]) -> str:
    """The version the target reported, from the first outcome that has it."""
    return next((o.target_version for o in outcomes if o.target_version), "")


class ExitCode(enum.IntEnum):
    """Exit codes chosen for `git bisect run`."""

    OK = 0
    FAILED = 1
    USAGE = 2
    CANNOT_TEST = 125


def exit_code(outcomes: Iterable[Outcome], *, could_not_test: bool = False) -> ExitCode:
    """0 all good, 1 any mismatch / expect-failed / target error, 2 a scenario
    error, 125 when the target could not be used at all."""
    kinds = {o.kind for o in outcomes}
    if Kind.INVALID in kinds:
        return ExitCode.USAGE
    if could_not_test:
        return ExitCode.CANNOT_TEST
    if kinds & FAILING:
        return ExitCode.FAILED
    return ExitCode.OK
