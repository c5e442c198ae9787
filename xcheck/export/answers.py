"""The PAR values the Arm ARM permits for each probe, on the CPUs a test is
exported for.

A standalone test carries, per probe, every PAR the model accepts (its
answer and the answers of the other IMPLEMENTATION DEFINED choices,
model.run_model) with the mask of the bits the architecture determines.
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
from xcheck.check import EC_DABT_LOWER, EC_DABT_SAME, EC_SYS_TRAP, EC_UNKNOWN
from xcheck.machine import MachineSetup, Probe
from xcheck.model import run_model


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


ANY_EL = 3
"""Answer.exception_el for an exception to whichever EL takes it."""
ESR_EC = 0x3F << 26
ESR_S1PTW = 1 << 7
ESR_CM = 1 << 8
ESR_DFSC = 0x3F


@dataclass(frozen=True)
class Answer:
    """A permitted result: with ``exception_el`` 0 a PAR_EL1 (compare the
    bits in ``mask``); else an exception to that EL (ANY_EL: any) whose
    ESR, in the bits of ``mask``, is ``par``."""

    par: int
    mask: int
    exception_el: int = 0

    def describe(self) -> str:
        if not self.exception_el:
            return describe_par(self.par)
        el = "any EL" if self.exception_el == ANY_EL else f"EL{self.exception_el}"
        return f"an exception to {el} with ESR & 0x{self.mask:x} == 0x{self.par:x}"


def _exception(res: AtResult) -> tuple[Answer, ...]:
    """The exceptions that agree with a non-PAR answer, as check.py accepts
    them: UNDEFINED is EC 0 (Unknown reason); a trap is EC 0x18 to EL2; an
    abort is a Data Abort (from a lower or the same EL) whose DFSC is the
    fault's status code, whose S1PTW is its stage-2-on-walk flag (AArch64.AT)
    and whose CM is 1 (an address translation instruction's abort)."""
    if res.kind == "undefined":
        return (Answer(EC_UNKNOWN << 26, ESR_EC, ANY_EL),)
    if res.kind == "trap":
        return (Answer(EC_SYS_TRAP << 26, ESR_EC, 2),)
    if res.kind == "abort" and res.fault is not None:
        iss = ESR_CM | res.fault.fst | (ESR_S1PTW if res.fault.s2fs1walk else 0)
        mask = ESR_EC | ESR_CM | ESR_S1PTW | ESR_DFSC
        return tuple(Answer(ec << 26 | iss, mask, ANY_EL) for ec in (EC_DABT_LOWER, EC_DABT_SAME))
    return ()


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
    if res.kind != "par":
        return _exception(res)
    out: list[Answer] = []
    for r in (res, *res.alternatives):
        a = Answer(r.par & r.mask, r.mask)
        if r.kind == "par" and a not in out:
            out.append(a)
    return tuple(out)


def _show(answers: tuple[Answer, ...]) -> str:
    return " or ".join(a.describe() for a in answers)


def expected(
    setup: MachineSetup, cpus: Sequence[Cpu]
) -> tuple[list[Expected], list[Refusal]]:
    """The permitted PARs of every probe of ``setup``, the same on every CPU
    in ``cpus`` (a PAR, or the exception an UNDEFINED, trapped or aborted AT
    takes); probes whose answer differs between the CPUs, or is an
    exception the test cannot recognise, are refused."""
    per_cpu = [run_model(setup, cpu.features, cpu.ram_size) for cpu in cpus]
    out: list[Expected] = []
    refused: list[Refusal] = []
    for i, probe in enumerate(setup.probes):
        results = [rs[i] for rs in per_cpu]
        answers = [_answers(r) for r in results]
        if not all(answers):
            odd = results[[bool(a) for a in answers].index(False)]
            refused.append(Refusal(probe.label, f"no result to check: {odd.kind} ({odd.detail})"))
            continue
        if any(set(a) != set(answers[0]) for a in answers):
            refused.append(Refusal(probe.label, "the answer depends on the CPU: " + "; ".join(
                f"{cpu.name}: {_show(a)}" for cpu, a in zip(cpus, answers, strict=True))))
            continue
        out.append(Expected(probe, answers[0]))
    return out, refused
