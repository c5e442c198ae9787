"""`-k` expressions select probe ids as pytest users expect."""

import pytest

from xcheck.keyword import KeywordError, compile_keyword

IDS = [
    "scenarios/pan/a.yaml::pan2::S1E1RP va=0x8000_0000 el=1 pan=1",
    "scenarios/pan/a.yaml::pan2::S1E1R va=0x8000_0000 el=1 pan=0",
    "scenarios/el2/b.yaml::el2-basic::S1E2R va=0x4000_0000 el=2 pan=0",
]


@pytest.mark.parametrize(
    ("expr", "picked"),
    [
        ("", [0, 1, 2]),
        ("s1e1rp", [0]),
        ("S1E1R", [0, 1]),
        ("S1E1R and not S1E1RP", [1]),
        ("pan=1 or el2", [0, 2]),
        ("not (pan and S1E1RP)", [1, 2]),
        ("el=2 and (S1E2R or S12)", [2]),
    ],
)
def test_selects(expr: str, picked: list[int]) -> None:
    keep = compile_keyword(expr)
    assert [i for i, s in enumerate(IDS) if keep(s)] == picked


@pytest.mark.parametrize("expr", ["(", "a and", "a )", "or b", "not"])
def test_bad_expressions_are_errors(expr: str) -> None:
    with pytest.raises(KeywordError):
        compile_keyword(expr)
