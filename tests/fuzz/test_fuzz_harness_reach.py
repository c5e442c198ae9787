"""The fuzzer skips what the harness cannot run, as `xcheck run` does
(xcheck.needs); real QEMU on the `rme` profile (marker qemu)."""

from __future__ import annotations

from pathlib import Path

import pytest
from qemuprofiles import installed_profile

from xcheck.fuzz.case import model_results
from xcheck.fuzz.knobs import KNOBS
from xcheck.fuzz.session import Fuzzer, FuzzOptions
from xcheck.scenario.loader import parse_scenario

pytestmark = pytest.mark.qemu

# With FEAT_RME, EL3 is the Root state, and no GPT here puts the harness's
# mapping in the Secure PA space: an instruction fetch at EL3 from outside
# the Root PA space is a Permission fault (D9, AArch64.S1CheckPermissions),
# so the harness could not run (it looped in its vectors before).
NO_ROOT_CODE = """
name: no-root-code
about: the EL3 regime maps the harness's code outside the Root PA space
regs:
  SCTLR_EL3: {M: 1}
  TCR_EL3: {T0SZ: 33}
probes:
  - {op: S1E1RP, va: 0x311_4002_0000, el: 3, space: secure}
"""


def test_a_case_the_harness_cannot_run_is_skipped_with_the_reason(tmp_path: Path) -> None:
    s = parse_scenario(NO_ROOT_CODE, Path("no-root-code.yaml"))
    setup = s.build()
    opts = FuzzOptions(seed=1, count=0, allowed=frozenset(KNOBS), out=tmp_path)
    with Fuzzer(installed_profile("rme"), opts) as fz:
        res = fz.check(s, setup, model_results(setup, fz.features, fz.ram_size))
    assert res.target_error is None and not res.failures
    assert res.skipped is not None and "is not executable" in res.skipped
