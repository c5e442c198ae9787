"""Scenario feature requirements (`requires:`), evaluated on the CPU's ID
registers as the model decodes them (xcheck.arch.features)."""

from __future__ import annotations

from collections.abc import Iterable

from xcheck.arch.features import PREDICATES, Features

FEATURE_NAMES: tuple[str, ...] = tuple(PREDICATES)


def missing_features(required: Iterable[str], features: Features) -> list[str]:
    """The required features this CPU lacks (unknown names count as lacking)."""
    return [name for name in required if not features.has(name)]
