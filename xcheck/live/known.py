"""Known QEMU divergences that live sweeps meet on every kernel.

A live probe is not written by hand, so the scenario ``known:`` selectors
(op, VA) do not apply; a live known divergence is recognised by the shape of
the difference instead. Each entry gives the QEMU version range, the rule
and where it was fixed; a probe it covers is reported KNOWN, not MISMATCH.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from xcheck.arch.attrs import decode_attr
from xcheck.outcome import Kind, Outcome
from xcheck.scenario.versions import parse_range

PAR_SH_SHIFT = 7
PAR_ATTR_SHIFT = 56


@dataclass(frozen=True)
class LiveKnown:
    qemu: str
    why: str
    link: str
    matches: Callable[[Outcome], bool]

    def applies(self, outcome: Outcome) -> bool:
        return (outcome.kind is Kind.MISMATCH and parse_range(self.qemu).contains(
            outcome.target_version) and self.matches(outcome))


def _sh_forced_to_osh(o: Outcome) -> bool:
    """Only PAR.SH differs, and the model reports 0b10 because the memory is
    Device or Normal Inner and Outer Non-cacheable."""
    if [f.name for f in o.fields] != ["SH"] or o.par_model is None:
        return False
    d = decode_attr(o.par_model >> PAR_ATTR_SHIFT & 0xFF, feat_xs=True)
    return (o.par_model >> PAR_SH_SHIFT & 3) == 0b10 and d is not None and d.forces_osh


KNOWN = (
    LiveKnown(
        qemu="<8.2",
        why="PAR_EL1.SH must read 0b10 for Device and for Normal Inner and Outer "
            "Non-cacheable memory (D24.2 PAR_EL1.SH; PAREncodeShareability); QEMU before "
            "8.2 reports the descriptor's SH",
        link="https://lore.kernel.org/qemu-devel/"
             "20230824092836.2239644-28-peter.maydell@linaro.org/",
        matches=_sh_forced_to_osh,
    ),
)


def classify(outcome: Outcome) -> Outcome:
    """The outcome, KNOWN when a known divergence covers it."""
    for k in KNOWN:
        if k.applies(outcome):
            extra = {**outcome.extra, "known": {"qemu": k.qemu, "why": k.why, "link": k.link}}
            return replace(outcome, kind=Kind.KNOWN, detail=f"{k.why} ({k.link})", extra=extra)
    return outcome
