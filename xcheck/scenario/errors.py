"""ScenarioError: what was wrong in a scenario file, and where."""

from __future__ import annotations

from pathlib import Path


class ScenarioError(Exception):
    """A scenario that does not load or build.

    ``str(err)`` reads ``FILE:LINE: FIELD: what was wrong, what was expected``,
    e.g. ``pan/x.yaml:12: tables.TTBR0_EL1[1].ap: 'RW_ALL' is not one of
    RW_EL1, RO_EL1, RW_ANY, RO_ANY``.
    """

    def __init__(self, path: Path | str, line: int, field: str, message: str) -> None:
        self.path = Path(path)
        self.line = max(1, line)
        self.field = field
        self.message = message
        super().__init__(f"{path}:{self.line}: {field}: {message}")


class Located(Exception):
    """An error found where the file name is not known; the loader adds it."""

    def __init__(self, line: int, field: str, message: str) -> None:
        self.line = line
        self.field = field
        self.message = message
        super().__init__(f"{line}: {field}: {message}")

    def at(self, path: Path | str) -> ScenarioError:
        return ScenarioError(path, self.line, self.field, self.message)
