"""Scenario documents (plain dicts) written as scenario YAML.

The writer knows the scenario format's shape: registers, mappings, probes
and memory blocks one per line as flow mappings, addresses in hex. The
output is deterministic (key order as inserted) and loads with
xcheck.scenario.loader as is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

Doc = dict[str, Any]
"""A scenario document: what a scenario YAML file holds, as Python values."""

HEX_KEYS = frozenset({"va", "pa", "ipa", "addr", "value", "raw", "words"})
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$|^\d+[KMGT]$|^\d+bit$")
_RESERVED = frozenset({"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"})
ORDER = ("name", "about", "requires", "profile", "regs", "pstate", "tables", "memory",
         "descriptors", "probes", "expect", "known")


def hexnum(n: int) -> str:
    """0x-prefixed hex with an underscore every four digits: 0x4000_0000."""
    digits = f"{n:x}"
    groups = []
    while digits:
        groups.append(digits[-4:])
        digits = digits[:-4]
    return "0x" + "_".join(reversed(groups))


def scalar(value: Any, key: str = "") -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        if key in HEX_KEYS or key.startswith("Attr"):
            return hexnum(value)
        return str(value)
    if isinstance(value, str):
        if _PLAIN.match(value) and value.lower() not in _RESERVED:
            return value
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(scalar(v, key) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {scalar(v, k)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} in a scenario document")


def dump(doc: Doc, comments: Iterable[str] = ()) -> str:
    """The scenario YAML text of ``doc``, with ``comments`` as # lines first."""
    out = [f"# {c}".rstrip() for c in comments]
    for key in sorted(doc, key=lambda k: ORDER.index(k) if k in ORDER else len(ORDER)):
        value = doc[key]
        if key == "about":
            out.append(f"about: {json.dumps(value)}")
        elif key in ("regs", "tables"):
            out.append(f"{key}:")
            for name, inner in value.items():
                if isinstance(inner, list):
                    if not inner:
                        out.append(f"  {name}: []")
                        continue
                    out.append(f"  {name}:")
                    out.extend(f"    - {scalar(item)}" for item in inner)
                else:
                    out.append(f"  {name}: {scalar(inner, name)}")
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            out.append(f"{key}:")
            out.extend(f"  - {scalar(item)}" for item in value)
        else:
            out.append(f"{key}: {scalar(value, key)}")
    return "\n".join(out) + "\n"
