"""Scenario feature requirements (`requires:`), evaluated on the CPU's ID
registers as the model decodes them (xcheck.arch.features)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from xcheck.arch.features import Features

PREDICATES: dict[str, Callable[[Features], bool]] = {
    "PAN": lambda f: f.pan >= 1,
    "PAN2": lambda f: f.pan >= 2,
    "PAN3": lambda f: f.pan >= 3,
    "VHE": lambda f: f.vh,
    "NV": lambda f: f.nv >= 1,
    "HAFDBS": lambda f: f.hafdbs >= 1,
    "HAFDBS_DIRTY": lambda f: f.hafdbs >= 2,
    "LPA": lambda f: f.lpa,
    "LPA2": lambda f: f.lpa2,
    "LVA": lambda f: f.lva,
    "TGRAN4": lambda f: f.tgran4,
    "TGRAN16": lambda f: f.tgran16,
    "TGRAN64": lambda f: f.tgran64,
    "TGRAN4_S2": lambda f: f.tgran4_2,
    "TGRAN16_S2": lambda f: f.tgran16_2,
    "TGRAN64_S2": lambda f: f.tgran64_2,
    "S2FWB": lambda f: f.s2fwb,
    "E0PD": lambda f: f.e0pd,
    "HPDS": lambda f: f.hpds >= 1,
    "TTST": lambda f: f.ttst,
    "XNX": lambda f: f.xnx,
    "PA40": lambda f: f.pa_range_bits >= 40,
    "PA44": lambda f: f.pa_range_bits >= 44,
    "PA48": lambda f: f.pa_range_bits >= 48,
    "PA52": lambda f: f.pa_range_bits >= 52,
}
"""Every name a scenario may list under `requires:`."""

FEATURE_NAMES: tuple[str, ...] = tuple(PREDICATES)


def missing_features(required: Iterable[str], features: Features) -> list[str]:
    """The required features this CPU lacks (unknown names count as lacking)."""
    return [name for name in required if name not in PREDICATES or not PREDICATES[name](features)]
