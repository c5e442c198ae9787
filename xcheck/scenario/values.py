"""Scalar values in a scenario: integers with underscores, sizes, choices.

Each parser takes the value, the field path and the line, and raises
Located with what was expected.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from xcheck.scenario.errors import Located
from xcheck.scenario.yamlsrc import YList, YMap

T = TypeVar("T")
MASK64 = (1 << 64) - 1

_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)
_UNITS = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}


def show(value: Any) -> str:
    """A value as the author wrote it, for messages."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:#_x}" if value > 9 else str(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    return repr(value)


def as_int(value: Any, field: str, line: int, lo: int = 0, hi: int = MASK64,
           what: str = "an integer") -> int:
    """An int, or a string such as ``"0x8000_0000"`` / ``"0b010"`` / ``"12"``."""
    n: int | None = None
    if isinstance(value, bool):
        n = int(value)
    elif isinstance(value, int):
        n = value
    elif isinstance(value, str):
        try:
            n = int(value.strip().replace("_", ""), 0)
        except ValueError:
            n = None
    if n is None:
        raise Located(line, field, f"{show(value)} is not {what}: expected a number "
                      "such as 42, 0x8000_0000 or 0b101")
    if not lo <= n <= hi:
        raise Located(line, field, f"{show(n)} is out of range: expected {what} "
                      f"from {show(lo)} to {show(hi)}")
    return n


def as_bool(value: Any, field: str, line: int) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise Located(line, field, f"{show(value)} is not a flag: expected 0, 1, true or false")


def as_str(value: Any, field: str, line: int) -> str:
    if isinstance(value, str):
        return value
    raise Located(line, field, f"{show(value)} is not text: expected a string")


def as_choice(value: Any, choices: Mapping[str, T], field: str, line: int) -> T:
    """One of ``choices`` by name (case-insensitive)."""
    if isinstance(value, str):
        for name, v in choices.items():
            if name.upper() == value.strip().upper():
                return v
    raise Located(line, field, f"{show(value)} is not one of {', '.join(choices)}")


def as_size(value: Any, field: str, line: int) -> int:
    """A size: ``4K``, ``2M``, ``1G``, ``512G``, ``4T`` or a byte count."""
    if isinstance(value, str):
        m = _SIZE.match(value.replace("_", ""))
        if m:
            return int(m.group(1)) << _UNITS[m.group(2).upper()]
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise Located(line, field, f"{show(value)} is not a size: expected e.g. 4K, 2M, 1G "
                  "or a number of bytes")


def as_map(value: Any, field: str, line: int, allowed: Sequence[str] | None = None,
           noun: str = "key") -> YMap:
    """A mapping whose keys are all in ``allowed`` (when given); ``noun``
    names what its keys are, for the message."""
    if not isinstance(value, YMap):
        raise Located(line, field, f"{show(value)} is not a mapping: expected "
                      + ("{" + ", ".join(allowed) + "}" if allowed else "key: value pairs"))
    if allowed is not None:
        for key in value:
            if key not in allowed:
                raise Located(value.at(key), f"{field}.{key}" if field else key,
                              f"unknown {noun}; expected one of {', '.join(allowed)}")
    return value


def as_list(value: Any, field: str, line: int) -> YList:
    if not isinstance(value, YList):
        raise Located(line, field, f"{show(value)} is not a list: expected a YAML list")
    return value


def one_or_many(value: Any) -> list[Any]:
    """A selector value: one item, or a list of them."""
    return list(value) if isinstance(value, list) else [value]


def hex_(n: int) -> str:
    """0x8000_0000: hex with an underscore every four digits."""
    return f"{n:#_x}"
