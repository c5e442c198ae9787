"""The rule registry (xcheck.arch.rules): every rule is one the model cites
in a trace step (that each deciding step cites one: tests/fuzz)."""

from __future__ import annotations

import re
from pathlib import Path

from xcheck.arch.rules import DESCRIPTOR_RULES, Rule

ARCH = Path(__file__).resolve().parents[2] / "xcheck" / "arch"


def test_every_rule_is_cited_by_the_model() -> None:
    source = "\n".join(p.read_text() for p in ARCH.glob("*.py") if p.name != "rules.py")
    cited = set(re.findall(r"\bRule\.([A-Z0-9_]+)", source)) | {
        r.name for r in DESCRIPTOR_RULES.values()}
    assert {r.name for r in Rule} - cited == set()
    assert cited - {r.name for r in Rule} == set()
