"""Live mode on a real kernel: Debian 12's arm64 Linux 6.1 under QEMU.

Boots the kernel to its panic, sweeps more than 1,000 VAs with the regime's
AT ops, and checks that the injection leaves no trace, that a mismatch
exported as a scenario reproduces without the kernel, and that the kernel
runs on afterwards. Skips, saying why, when the package cannot be fetched
and is not in the per-user cache.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from xcheck.check import check_scenario
from xcheck.debfetch import DebFetchError
from xcheck.live.boot import LiveVm
from xcheck.live.command import (
    LiveOptions,
    debian_kernel,
    kernel_append,
    make_sweep,
    prepare,
    prove_running,
)
from xcheck.live.export import scenario_text
from xcheck.live.inject import Injection, read_core
from xcheck.outcome import Kind
from xcheck.scenario.loader import load_scenario
from xcheck.target import isa
from xcheck.target.errors import TargetError
from xcheck.target.guest import QemuTarget
from xcheck.target.profile import Profile, with_overrides

pytestmark = [pytest.mark.qemu, pytest.mark.slow]
SAMPLES = 1200
PAR_SH = 0b11 << 7
UDF = 0x0000_0000
"""UDF #0: permanently UNDEFINED (Arm ARM C6.2 UDF)."""


@pytest.fixture(scope="module")
def bookworm_kernel() -> Path:
    try:
        return debian_kernel("bookworm")
    except DebFetchError as err:
        pytest.skip(f"Debian 12's arm64 kernel cannot be fetched and is not cached: {err}")


def _sh_fixed_in(version: str) -> bool:
    """QEMU reports PAR_EL1.SH = 0b10 for Device and Normal Non-cacheable
    memory (PAREncodeShareability) from 8.2 on ("target/arm: Adjust PAR_EL1.SH for
    Device and Normal-NC memory types", August 2023); 7.2 reports the descriptor's SH."""
    major, minor = (int(x) for x in version.split(".")[:2])
    return (major, minor) >= (8, 2)


def test_sweep_of_debian12_kernel(qemu_profile: Profile, bookworm_kernel: Path,
                                  tmp_path: Path) -> None:
    opts = LiveOptions(kernel=bookworm_kernel, samples=SAMPLES, resume=True, seed=5)
    with LiveVm(qemu_profile, bookworm_kernel, append=kernel_append(opts),
                memory=opts.memory) as vm:
        vm.boot(timeout=80)
        assert vm.console().count("Booting Linux") == 1, "halted in the first boot's panic"
        g = vm.gdb
        prep = prepare(vm, opts, ())
        assert prep.state.el == 2 and prep.state.e2h, "Debian's kernel runs at EL2 with VHE"
        assert len(prep.picks) == SAMPLES
        sweep = make_sweep(vm, prep, "debian12")
        buf = sweep.choose_buffer()
        core, par = read_core(g), g.read_reg("PAR_EL1")
        data = g.read_memory(buf.pa, buf.size)
        g.packet("Qqemu.PhyMemMode:0")
        code = g.read_memory(sweep.code_va, 512)
        g.packet("Qqemu.PhyMemMode:1")
        with sweep:
            outcomes = list(sweep.run(prep.picks))
        # Nothing the program touched is left changed.
        assert read_core(g) == core and g.read_reg("PAR_EL1") == par
        assert g.read_memory(buf.pa, buf.size) == data
        g.packet("Qqemu.PhyMemMode:0")
        assert g.read_memory(sweep.code_va, 512) == code
        g.packet("Qqemu.PhyMemMode:1")

        assert len(outcomes) == SAMPLES * 4
        assert {o.op for o in outcomes} == {"S1E2R", "S1E2W", "S1E0R", "S1E0W"}
        kinds = {o.kind for o in outcomes}
        assert kinds <= {Kind.MATCH, Kind.KNOWN}, [o.detail for o in outcomes
                                                   if o.kind not in (Kind.MATCH, Kind.KNOWN)][:3]
        faults = sum(1 for o in outcomes if o.par_model is not None and o.par_model & 1)
        assert 0 < faults < len(outcomes), "holes fault, mapped pages translate"
        for o in outcomes:
            if o.kind is Kind.KNOWN:
                # The one known QEMU divergence on this kernel (QEMU < 8.2).
                assert not _sh_fixed_in(vm.version), o.label
                assert [f.name for f in o.fields] == ["SH"] and o.par_model is not None
                assert o.par_model & PAR_SH == 0b10 << 7

        # An exception taken by injected code stops at the kernel's vector and is
        # reported; the exception registers are restored with everything else.
        esr = g.read_reg("ESR_EL2")
        with pytest.raises(TargetError, match=r"took an exception: .*EC=0x00"), \
                Injection(g, sweep.code_va, [UDF, isa.b(0)], 4, el=2, vbar=prep.state.vbar,
                          timeout=10) as inj:
            inj.run({})
        assert read_core(g) == core and g.read_reg("PAR_EL1") == par
        assert g.read_reg("ESR_EL2") == esr

        pick = next((o for o in outcomes if o.kind is Kind.KNOWN),
                    next(o for o in outcomes if o.extra["why"] == "block-first"))
        path = tmp_path / "exported.yaml"
        path.write_text(scenario_text(sweep, pick, kernel="debian12", ram=opts.memory))
        # Booted with panic=2: resumed, the kernel restarts and panics again.
        assert prove_running(vm, opts).startswith("resumed")

    scenario = load_scenario(path)
    with QemuTarget(with_overrides(qemu_profile, scenario.profile_overrides)) as target:
        again = check_scenario(target, scenario)
    assert len(again) == 1
    assert again[0].kind is pick.kind and again[0].par_target == pick.par_target
    assert again[0].par_model == pick.par_model

