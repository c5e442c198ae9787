"""Every file in malformed/ fails to load with the error its first line names,
at the line marked ``# <-``, in the form ``FILE:LINE: FIELD: message``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from xcheck.scenario.loader import ScenarioError, load_scenario

CORPUS = sorted((Path(__file__).parent / "malformed").glob("*.yaml"))


def _expected(path: Path) -> tuple[str, int]:
    lines = path.read_text().splitlines()
    m = re.match(r"# error: (.+)$", lines[0])
    assert m, f"{path.name}: the first line must be '# error: <substring>'"
    marked = [i + 1 for i, text in enumerate(lines) if text.rstrip().endswith("# <-")]
    assert len(marked) == 1, f"{path.name}: mark exactly one line with '# <-'"
    return m.group(1).strip(), marked[0]


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 25


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_malformed(path: Path) -> None:
    substring, line = _expected(path)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}:{line}: "), msg
    assert substring in msg, msg
    assert info.value.line == line
    assert "Traceback" not in msg
