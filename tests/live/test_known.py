"""Live known divergences: recognised by the shape of the difference."""

from __future__ import annotations

import pytest

from xcheck.live.known import classify
from xcheck.outcome import FieldDelta, Kind, Outcome


def _mismatch(attr: int, fields: tuple[str, ...], version: str, sh: int = 0b10) -> Outcome:
    par = attr << 56 | sh << 7 | 0x4000_0000
    return Outcome(scenario="k", path="k/TTBR1/sample", kind=Kind.MISMATCH, op="S1E2R",
                   va=0xFFFF_0000_0000_0000, target_version=version, par_model=par,
                   par_target=par ^ (1 << 7), fields=tuple(FieldDelta(f, 3, 2) for f in fields))


@pytest.mark.parametrize("attr", [0x00, 0x04, 0x0C, 0x44])
def test_sh_forced_to_outer_shareable_is_known_before_8_2(attr: int) -> None:
    out = classify(_mismatch(attr, ("SH",), "7.2.22"))
    assert out.kind is Kind.KNOWN and "PAREncodeShareability" in out.detail
    assert out.extra["known"]["qemu"] == "<8.2"


@pytest.mark.parametrize(("attr", "fields", "version", "sh"), [
    (0x04, ("SH",), "8.2.0", 0b10),      # fixed there: a real mismatch
    (0x04, ("SH",), "10.0.2", 0b10),
    (0xFF, ("SH",), "7.2.22", 0b11),     # Normal Write-Back: SH is the descriptor's
    (0x04, ("SH", "PA"), "7.2.22", 0b10),  # something else differs too
])
def test_other_differences_stay_mismatches(attr: int, fields: tuple[str, ...], version: str,
                                           sh: int) -> None:
    assert classify(_mismatch(attr, fields, version, sh)).kind is Kind.MISMATCH


def test_matches_are_left_alone() -> None:
    m = _mismatch(0x04, (), "7.2.22")
    m = Outcome(**{**m.__dict__, "kind": Kind.MATCH})
    assert classify(m) is m
