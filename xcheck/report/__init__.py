"""Reporters: terminal, JSON lines, JUnit XML, a self-contained HTML page."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) while one event's outcomes go into every
    report, so that an interrupted run's reports hold the same outcomes
    (the JSON lines as the HTML page and JUnit file)."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
