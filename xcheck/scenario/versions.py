"""QEMU version ranges for known divergences: ``"<10.1"``, ``">=7.2,<8.1"``, ``"*"``.

Versions compare numerically, component by component, missing components
as zero: 7.2.22 < 10.0.2, and 8.1 == 8.1.0.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

Version = tuple[int, ...]

_OPS: dict[str, Callable[[Version, Version], bool]] = {
    "<=": operator.le, ">=": operator.ge, "==": operator.eq, "!=": operator.ne,
    "<": operator.lt, ">": operator.gt, "=": operator.eq,
}
_CLAUSE = re.compile(r"^(<=|>=|==|!=|<|>|=)?\s*(\d+(?:\.\d+)*)$")
_LEADING = re.compile(r"(\d+(?:\.\d+)*)")


def parse_version(text: str) -> Version | None:
    """The leading dotted number of a version string ("10.0.2 (Debian ...)")."""
    m = _LEADING.search(text)
    return tuple(int(p) for p in m.group(1).split(".")) if m else None


def _pad(a: Version, b: Version) -> tuple[Version, Version]:
    n = max(len(a), len(b))
    return a + (0,) * (n - len(a)), b + (0,) * (n - len(b))


@dataclass(frozen=True)
class VersionRange:
    """Comma-separated clauses that must all hold; ``*`` is every version."""

    text: str
    clauses: tuple[tuple[str, Version], ...]

    def contains(self, version: str) -> bool:
        """Does ``version`` fall in the range? An unparseable version does
        not, unless the range is ``*``."""
        if not self.clauses:
            return True
        v = parse_version(version)
        if v is None:
            return False
        for op, bound in self.clauses:
            a, b = _pad(v, bound)
            if not _OPS[op](a, b):
                return False
        return True


KVM_MARK = "/kvm-"
"""The nested-KVM target's version reads ``<QEMU version>/kvm-<kernel version>``."""


def split_target_version(version: str) -> tuple[str, str | None]:
    """(QEMU version, guest kernel version or None) of a target's version."""
    if KVM_MARK in version:
        qemu, kernel = version.split(KVM_MARK, 1)
        return qemu, kernel
    return version, None


def parse_range(text: str) -> VersionRange:
    """Parse a range; ValueError says what part was not understood."""
    t = text.strip()
    if t == "*":
        return VersionRange(t, ())
    clauses: list[tuple[str, Version]] = []
    for part in t.split(","):
        m = _CLAUSE.match(part.strip())
        if not m:
            raise ValueError(f"{part.strip()!r} is not a version clause: expected e.g. "
                             "\"<10.1\", \">=7.2,<8.1\", \"==9.0.2\" or \"*\"")
        clauses.append((m.group(1) or "==", tuple(int(p) for p in m.group(2).split("."))))
    return VersionRange(t, tuple(clauses))
