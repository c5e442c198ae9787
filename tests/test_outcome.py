"""Exit codes follow `git bisect run`: 0 good, 1 bad, 125 skip, 2 usage."""

from xcheck.outcome import ExitCode, Kind, Outcome, exit_code


def o(kind: Kind) -> Outcome:
    return Outcome(scenario="s", path="scenarios/x/s.yaml", kind=kind, op="S1E1R", label="p")


def test_all_matching_is_zero() -> None:
    assert exit_code([o(Kind.MATCH), o(Kind.KNOWN), o(Kind.SKIPPED)]) == ExitCode.OK


def test_any_failure_is_one() -> None:
    for kind in (Kind.MISMATCH, Kind.EXPECT_FAILED, Kind.TARGET_ERROR):
        assert exit_code([o(Kind.MATCH), o(kind)]) == ExitCode.FAILED


def test_scenario_error_wins() -> None:
    assert exit_code([o(Kind.MISMATCH), o(Kind.INVALID)]) == ExitCode.USAGE


def test_could_not_test_is_125_unless_scenarios_are_bad() -> None:
    assert exit_code([o(Kind.MATCH)], could_not_test=True) == ExitCode.CANNOT_TEST
    assert exit_code([o(Kind.INVALID)], could_not_test=True) == ExitCode.USAGE


def test_json_carries_the_required_keys() -> None:
    j = Outcome(
        scenario="s", path="p", kind=Kind.MISMATCH, op="S1E1R", va=0x1000, el=1,
        par_target=0x800, par_model=0x880,
    ).to_json()
    for key in ("scenario", "op", "va", "el", "outcome", "par_qemu", "par_model", "fields"):
        assert key in j
    assert j["outcome"] == "mismatch"
    assert j["par_model"] == "0x0000000000000880"
