"""The PAR values the Arm ARM permits for each probe, on the CPUs a test is
exported for.

A standalone test carries, per probe, every PAR the model accepts (its
answer and the answers of the other IMPLEMENTATION DEFINED choices,
check.run_model) with the mask of the bits the architecture determines.
The answer depends on the CPU's features, so it is computed for each
exported CPU; a probe whose answers differ between them is refused, and the
test checks at run time that the CPU is one of them (arch.features.FIELDS_READ).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from xcheck.arch.at import AtResult
from xcheck.arch.features import Features
from xcheck.arch.par import describe_par
from xcheck.check import run_model
from xcheck.machine import MachineSetup, Probe


@dataclass(frozen=True)
class Cpu:
    """A CPU a test is exported for: its profile's name, the QEMU version
    that reported it, its ID registers and RAM size."""

    name: str
    version: str
    id_regs: Mapping[str, int]
    ram_size: int

    @property
    def features(self) -> Features:
        return Features.from_id_regs(self.id_regs)


@dataclass(frozen=True)
class Answer:
    """A permitted PAR_EL1: compare only the bits in ``mask``."""

    par: int
    mask: int


@dataclass(frozen=True)
class Expected:
    """One probe and the PARs that pass it."""

    probe: Probe
    answers: tuple[Answer, ...]


@dataclass(frozen=True)
class Refusal:
    """A probe a standalone test cannot check, and why."""

    label: str
    reason: str


def _answers(res: AtResult) -> tuple[Answer, ...]:
    out: list[Answer] = []
    for r in (res, *res.alternatives):
        a = Answer(r.par & r.mask, r.mask)
        if r.kind == "par" and a not in out:
            out.append(a)
    return tuple(out)


def _show(answers: tuple[Answer, ...]) -> str:
    return " or ".join(describe_par(a.par) for a in answers)


def expected(
    setup: MachineSetup, cpus: Sequence[Cpu]
) -> tuple[list[Expected], list[Refusal]]:
    """The permitted PARs of every probe of ``setup``, the same on every CPU
    in ``cpus``; probes whose answer is not a PAR (an UNDEFINED, trapped or
    aborted AT: an exception, not a PAR to compare) or differs between the
    CPUs are refused."""
    per_cpu = [run_model(setup, cpu.features, cpu.ram_size) for cpu in cpus]
    out: list[Expected] = []
    refused: list[Refusal] = []
    for i, probe in enumerate(setup.probes):
        results = [rs[i] for rs in per_cpu]
        odd = next((r for r in results if r.kind != "par"), None)
        if odd is not None:
            refused.append(Refusal(probe.label, f"the Arm ARM requires an exception here "
                                   f"({odd.kind}: {odd.detail}); the test checks PAR values"))
            continue
        answers = [_answers(r) for r in results]
        if any(set(a) != set(answers[0]) for a in answers):
            refused.append(Refusal(probe.label, "the answer depends on the CPU: " + "; ".join(
                f"{cpu.name}: {_show(a)}" for cpu, a in zip(cpus, answers, strict=True))))
            continue
        out.append(Expected(probe, answers[0]))
    return out, refused
