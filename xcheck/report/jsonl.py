"""JSON lines: one object per probe, written and flushed as it arrives, so an
interrupted run keeps every finished result."""

from __future__ import annotations

import json
from typing import IO

from xcheck.outcome import Outcome


class JsonLinesReport:
    """Streams outcomes to a file, one JSON object per line."""

    def __init__(self, stream: IO[str], *, extra: dict[str, str] | None = None) -> None:
        self._stream = stream
        self._extra = extra or {}

    def add(self, outcome: Outcome) -> None:
        obj = outcome.to_json()
        obj.update(self._extra)
        self._stream.write(json.dumps(obj, sort_keys=False) + "\n")
        self._stream.flush()
