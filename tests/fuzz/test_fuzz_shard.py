"""Sharded campaigns: `--shard K/N` splits the cases of a seed, `xcheck fuzz
merge` joins the shards' summaries (model only, and one real-QEMU run)."""

from __future__ import annotations

import json
from itertools import takewhile
from pathlib import Path

import pytest
from click.testing import CliRunner
from fuzzcpu import knobs

from xcheck.cli import main
from xcheck.fuzz.coverage import Coverage
from xcheck.fuzz.merge import MergeError, merge, read_summaries, summary_name
from xcheck.fuzz.session import Fuzzer, FuzzOptions, shard_indices
from xcheck.target.profile import Profile, load_profile

COUNT = 11


def _cases(tmp_path: Path, shard: tuple[int, int] | None) -> list[tuple[int, str]]:
    """(case number, scenario text) of each case the run would generate."""
    fz = Fuzzer(load_profile(), FuzzOptions(seed=9, count=COUNT, out=tmp_path, shard=shard))
    fz.knobs = knobs()
    return [(c.index, c.text) for c in map(fz.case, fz.case_numbers())]


def test_shard_numbers_partition_the_campaign() -> None:
    for n in (1, 2, 3, 7):
        numbers = [i for k in range(1, n + 1)
                   for i in takewhile(lambda i: i < COUNT, shard_indices((k, n)))]
        assert sorted(numbers) == list(range(COUNT))


@pytest.mark.parametrize("n", [2, 3])
def test_n_shards_generate_exactly_the_cases_of_the_whole_run(tmp_path: Path, n: int) -> None:
    whole = _cases(tmp_path, None)
    parts = [c for k in range(1, n + 1) for c in _cases(tmp_path, (k, n))]
    assert len(whole) == COUNT
    assert sorted(parts) == whole  # same numbers, same scenario text


def _summary(tmp_path: Path, name: str, shard: tuple[int, int] | None,
             cases: int, coverage: Coverage, findings: list[dict[str, object]]) -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / summary_name(shard)).write_text(json.dumps({
        "type": "summary", "seed": 9, "shard": shard, "profile": "tcg-max", "qemu": "7.2",
        "cases": cases, "probes": coverage.probes, "fuzz_seconds": 1.0, "target_errors": 0,
        "findings": findings, "coverage": coverage.to_json()}))
    return d


def _coverage(tmp_path: Path, shard: tuple[int, int] | None) -> Coverage:
    fz = Fuzzer(load_profile(), FuzzOptions(seed=9, count=COUNT, out=tmp_path, shard=shard))
    fz.knobs = knobs()
    cov = Coverage()
    for case in map(fz.case, fz.case_numbers()):
        cov.add_case(case.tags)
        cov.add(case.setup.probes, case.model)
    return cov


def _finding(first: int, count: int, file: str | None = None) -> dict[str, object]:
    return {"signature": {"kind": "mismatch", "op": "*", "fields": ["SH"], "rule": "r"},
            "count": count, "ops": {"S1E1R": count}, "cases": [first], "first_case": first,
            "file": file, "known_file": None}


def test_merged_shards_have_the_coverage_of_the_whole_run(tmp_path: Path) -> None:
    whole = _coverage(tmp_path, None)
    dirs = [_summary(tmp_path, f"s{k}", (k, 2), len(range(k - 1, COUNT, 2)),
                     _coverage(tmp_path, (k, 2)), [_finding(k - 1, k)]) for k in (1, 2)]
    (dirs[1] / "sh-1234.yaml").write_text("name: x\n")
    dirs[1].joinpath(summary_name((2, 2))).write_text(
        dirs[1].joinpath(summary_name((2, 2))).read_text().replace('"file": null',
                                                                   '"file": "x/sh-1234.yaml"'))
    m = merge(read_summaries(dirs))
    assert m.problems == []
    assert m.cases == COUNT and m.coverage.to_json() == whole.to_json()
    [f] = m.findings.values()
    assert f.count == 3 and f.ops["S1E1R"] == 3 and f.cases == {(9, 0), (9, 1)}
    assert f.first == (9, 0) and f.file == dirs[1] / "sh-1234.yaml"
    m.copy_findings(tmp_path / "all")
    assert (tmp_path / "all" / "sh-1234.yaml").read_text() == "name: x\n"


def test_merge_names_missing_and_repeated_shards(tmp_path: Path) -> None:
    a = _summary(tmp_path, "a", (1, 3), 2, Coverage(), [])
    b = _summary(tmp_path, "b", (1, 3), 2, Coverage(), [])
    problems = merge(read_summaries([a, b])).problems
    assert any("ran twice" in p for p in problems)
    assert any("shard 2/3, 3/3 missing" in p for p in problems)


def test_merge_refuses_what_is_not_a_summary(tmp_path: Path) -> None:
    with pytest.raises(MergeError, match="no fuzz-summary"):
        read_summaries([tmp_path])
    (tmp_path / "fuzz-summary.json").write_text("{}")
    with pytest.raises(MergeError, match="not a summary"):
        read_summaries([tmp_path])
    res = CliRunner().invoke(main, ["fuzz", "merge", str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and "no such file or folder" in res.output


def test_a_shard_needs_a_seed() -> None:
    res = CliRunner().invoke(main, ["fuzz", "--shard", "1/2", "--count", "2"])
    assert res.exit_code == 2 and "--shard needs --seed" in res.output
    res = CliRunner().invoke(main, ["fuzz", "--seed", "1", "--shard", "3/2"])
    assert res.exit_code == 2 and "1 <= K <= N" in res.output


@pytest.mark.qemu
def test_two_shards_on_qemu_merge_into_the_whole_run(qemu_profile: Profile,
                                                      tmp_path: Path) -> None:
    def run(name: str, *extra: str) -> dict[str, object]:
        out = tmp_path / name
        res = CliRunner().invoke(main, ["fuzz", "--seed", "4", "--count", "5", "--no-shrink",
                                        "--out", str(out), "--known", str(tmp_path / "none"),
                                        *extra])
        assert res.exit_code in (0, 1), res.output
        [summary] = out.glob("fuzz-summary*.json")
        data: dict[str, object] = json.loads(summary.read_text())
        return data

    whole = run("whole")
    run("s1", "--shard", "1/2")
    run("s2", "--shard", "2/2")
    res = CliRunner().invoke(main, ["fuzz", "merge", str(tmp_path / "s1"), str(tmp_path / "s2"),
                                    "--json", str(tmp_path / "m.json")])
    assert res.exit_code in (0, 1), res.output
    merged = json.loads((tmp_path / "m.json").read_text())
    assert merged["cases"] == whole["cases"] == 5 and merged["problems"] == []
    assert merged["coverage"] == whole["coverage"]
    fams = {json.dumps(f["signature"], sort_keys=True): f["count"]
            for f in merged["findings"]}
    assert fams == {json.dumps(f["signature"], sort_keys=True): f["count"]  # type: ignore
                    for f in whole["findings"]}  # type: ignore[attr-defined]
    assert (res.exit_code == 1) == any(f["known_file"] is None for f in merged["findings"])
