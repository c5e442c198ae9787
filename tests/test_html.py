"""The HTML report: its data without QEMU, and a real matrix run (QEMU 7.2
and 10.0) looked at in a real browser (Debian's chromium, headless, driven
through its chromedriver)."""

from __future__ import annotations

import io
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from xcheck.matrix import run_matrix
from xcheck.outcome import ExitCode, FieldDelta, Kind, Outcome
from xcheck.report.html import html_report, report_data
from xcheck.report.text import outcome_text
from xcheck.target.profile import Profile, load_profile

HERE = Path(__file__).resolve().parent
SH = HERE / "bisect" / "sh-mmu-off.yaml"
SH_KNOWN = HERE / "bisect" / "sh-mmu-off-known.yaml"
PAN = [HERE.parent / "scenarios" / "pan" / f"{name}.yaml"
       for name in ("pan2-el1", "pan2-el20", "pan3-el1-epan")]


def _mismatch(target: str, trace: str) -> Outcome:
    return Outcome(
        scenario="s", path="scenarios/f/s.yaml", kind=Kind.MISMATCH, op="S1E1R", el=1,
        label="S1E1R va=0x1000 el=1 pan=0", target=target, par_target=0x40001A00,
        par_model=0x40001B00, fields=(FieldDelta("SH", 0, 2),), trace=trace,
    )


def test_each_line_is_stored_once_and_traces_are_shared_between_targets() -> None:
    trace = "S1Walk: level 1 </script> block"
    runs = [(t, v, [_mismatch(t, trace)], None) for t, v in (("a", "7.2"), ("b", "10.0"))]
    data = report_data(runs)
    strings = data["strings"]
    assert len(strings) == len(set(strings))
    assert sum("S1Walk" in s for s in strings) == 1
    (row,) = data["rows"]
    assert row[6] == 0  # both targets answer the same: the row does not differ
    cell = row[8][0]
    assert data["kinds"][cell[0]] == "mismatch" and cell[1] == "40001a00"
    assert "\n".join(strings[i] for i in cell[2]) == outcome_text(runs[0][2][0])
    page = html_report(runs, title="t")
    assert "</script> block" not in page  # escaped inside the data element
    assert "{{" not in page
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)


def test_failing_and_unloadable_probes_come_first() -> None:
    ok = replace(_mismatch("a", ""), kind=Kind.MATCH, label="ok", fields=())
    bad = Outcome(scenario="broken", path="scenarios/f/broken.yaml", kind=Kind.INVALID,
                  target="a", detail="broken.yaml:3: op: S1E9R is not an AT operation")
    data = report_data([("a", "7.2", [ok, bad, _mismatch("a", "")], None)])
    strings, kinds = data["strings"], data["kinds"]
    assert [strings[r[2]] for r in data["rows"]] == ["broken", "s", "s"]
    assert [kinds[r[8][0][0]] for r in data["rows"]] == ["invalid", "mismatch", "match"]
    assert {kinds[k] for k in data["failing"]} == {
        "mismatch", "expect-failed", "target-error", "invalid"
    }


# -- a real run in a real browser ----------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless chromium through the system's chromedriver (given explicitly,
    so that nothing is downloaded); skipped, saying why, when missing."""
    lacking = [p for p in (CHROMIUM, CHROMEDRIVER) if shutil.which(p) is None]
    if lacking:
        pytest.skip(f"not installed: {', '.join(lacking)} (`make test` installs chromium "
                    "and chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed "
                                    "(pip install -e '.[dev]')")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def report(qemu_profile: Profile, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A matrix run, QEMU 7.2 and 10.0: a mismatch (SH with the MMU off, 7.2),
    the same recorded as known, and PAN scenarios (576 probes; PAN3 only on 10.0)."""
    q10 = load_profile("qemu10").executable
    if not Path(q10).is_file():
        pytest.skip(f"QEMU 10.0 is not installed at {q10} (run `make qemu10`)")
    out = tmp_path_factory.mktemp("html") / "report.html"
    code = run_matrix(
        [SH, SH_KNOWN, *PAN], configs=["tcg-max", "qemu10"], qemus=[], keyword=None, jobs=2,
        shard=None, json_path=None, junit_path=None, html_path=out, mode="batch",
        verbose=False, console=Console(file=io.StringIO()),
    )
    assert code == ExitCode.FAILED
    return out


def _shown(driver: Any) -> list[str]:
    return [str(e.text) for e in driver.find_elements("css selector", "tr.probe-row td.probe")]


@pytest.mark.qemu
def test_the_page_loads_filters_and_expands_a_failing_cell(browser: Any, report: Path) -> None:
    from selenium.webdriver.support.select import Select

    browser.get(report.as_uri())
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    data = json.loads(browser.find_element("id", "xcheck-data").get_attribute("textContent"))
    total = len(data["rows"])
    assert total == 578
    assert [t["label"] for t in data["targets"]] == ["tcg-max", "qemu10"]
    folders = [str(e.text) for e in browser.find_elements("css selector", "#folders td.folder")]
    assert folders == ["bisect", "pan"]

    outcome = Select(browser.find_element("id", "f-outcome"))
    # failing or differing: SH (mismatch, known on 7.2), and the PAN3 probes whose answer
    # differs between a CPU without FEAT_PAN3 (7.2's max: SCTLR.EPAN is RES0) and with it
    pan3 = [r for r in _shown(browser) if r.startswith("pan3-")]
    assert len(_shown(browser)) == 2 + len(pan3) and pan3
    assert all(" S1E1RP " in r or " S1E1WP " in r for r in pan3)
    outcome.select_by_visible_text("all")
    assert len(_shown(browser)) == 500  # drawn 500 at a time
    count = browser.find_element("id", "count").text
    assert count == f"{total} of {total} probes match the filters, the first 500 shown"
    browser.find_element("id", "more").click()
    assert len(_shown(browser)) == total
    outcome.select_by_visible_text("known")
    assert [s.split()[0] for s in _shown(browser)] == ["sh-mmu-off-known"]
    outcome.select_by_visible_text("all")
    Select(browser.find_element("id", "f-folder")).select_by_visible_text("bisect")
    assert sorted(s.split()[0] for s in _shown(browser)) == ["sh-mmu-off", "sh-mmu-off-known"]
    Select(browser.find_element("id", "f-target")).select_by_visible_text("qemu10")
    heads = [str(e.text) for e in browser.find_elements("css selector", "#probes thead th")]
    assert heads == ["probe", "qemu10 10.0.2", "model"]
    Select(browser.find_element("id", "f-target")).select_by_visible_text("all")
    outcome.select_by_visible_text("failing")
    assert [s.split()[0] for s in _shown(browser)] == ["sh-mmu-off"]

    assert browser.find_elements("css selector", "tr.detail") == []
    browser.find_element("css selector", "td.x.o-mismatch").click()
    detail = browser.find_element("css selector", "tr.detail pre").text
    assert detail.startswith("mismatch: sh-mmu-off S1E1R")
    assert re.search(r"SH\s+tcg-max=0x0\s+model=0x2", detail)
    assert "model trace:" in detail and "0x0000000040001a00" in detail
    browser.find_element("css selector", "td.x.o-mismatch").click()
    assert browser.find_elements("css selector", "tr.detail") == []
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
