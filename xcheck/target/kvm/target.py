"""KvmTarget: run a MachineSetup's probes in a nested KVM guest at vEL2.

QEMU (TCG) boots Debian's arm64 Linux with KVM in nested mode; the agent, its
/init, runs each job in a fresh VM whose vCPU starts at virtual EL2 with its
MMU off. A job is the program harness.assemble generates for the setup, with
two target options: the EL1 registers are written through their ``*_EL12``
names when the guest hypervisor is VHE (HCR_EL2.E2H fixed at 1), and the
program ends by turning the EL2 MMU off and storing to the agent's exit page
(a KVM_EXIT_MMIO), since nobody can stop it at a breakpoint. The AT
instructions trap to the host KVM, which emulates them (its at.c); the PARs
come back in the harness's result buffer.

What cannot run here is reported as :class:`Unsupported` (the runner skips
those probes with the reason): step mode, an EL2 regime that maps the harness
at a VA other than its PA (the driver cannot move the PC at ``mmu_stop``), and
a setup whose HCR_EL2.E2H the chosen guest hypervisor cannot have where it
matters (EL2 stage 1 on, or HCR_EL2.TGE = 1).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from xcheck.arch.features import Features
from xcheck.machine import (
    HARNESS_DATA_PA,
    HARNESS_PA,
    MachineSetup,
    Probe,
    ProbeResult,
    Readback,
    SecurityState,
    chunks,
    word_spans,
    words_in,
)
from xcheck.target import harness, isa
from xcheck.target.errors import ProgramTimeout, QemuLaunchError, TargetError, Unsupported
from xcheck.target.guest import ID_REGISTERS
from xcheck.target.kvm.artifacts import (
    KERNEL_ARGS,
    Artifacts,
    KvmOptions,
    locate,
    version_tuple,
)
from xcheck.target.kvm.protocol import (
    EXIT_FREE,
    EXIT_PA,
    GUEST_RAM_SIZE,
    MAX_READS,
    Answer,
    Job,
    fit_reads,
)
from xcheck.target.kvm.session import AgentSession, qemu_kvm_argv
from xcheck.target.profile import Profile

HCR_E2H = 1 << 34
HCR_TGE = 1 << 27
SCTLR_M = 1
BOOT_TIMEOUT_MIN = 60.0
"""Seconds allowed for the guest kernel to boot to the agent (about 3 s is usual)."""
ANSWER_SLACK = 15.0
"""Seconds beyond a job's own timeout to wait for the agent's answer."""
MAX_VMS = 500
MIN_FREE_KB = 128 << 10
"""A guest with this many kept VMs, or less free memory, is rebooted."""
MIN_TIMEOUT_SHARE = 0.1
"""The least share of the profile's batch timeout a job gets (job_timeout)."""
MIN_PART = 64
"""Fewest probes worth a VM of their own: a smaller batch is not shared out
over the guest's CPUs (a VM costs about 25 ms of one CPU to create, and
every one is kept until the guest is rebooted)."""


def kernel_complaint(klog: Sequence[str]) -> str:
    """One line per distinct WARNING/BUG the guest kernel logged during a job
    (a KVM warning makes the job's PARs suspect); the full log goes along as
    the error's detail."""
    heads = []
    for line in klog:
        text = line.split(" ", 1)[-1]
        complaint = text.startswith(("WARNING:", "BUG:", "Unable to handle", "Internal error"))
        if complaint and text not in heads:
            heads.append(text)
    what = "; ".join(heads) if heads else klog[0].split(" ", 1)[-1]
    return f"the guest kernel complained while the probes ran: {what} ({len(klog)} log lines)"


def guest_hypervisor_for(setup: MachineSetup, choice: str) -> str:
    """The vCPU's EL2 flavour for ``setup``: "vhe" or "nvhe".

    ``choice`` is the profile's: auto follows the setup's HCR_EL2.E2H; a fixed
    choice that contradicts it raises Unsupported where the difference shows
    (EL2 stage 1 enabled, or TGE = 1: the regime the AT ops of EL2 and EL0 use
    changes with E2H, Arm ARM D8.1.1), and runs otherwise.
    """
    regs = setup.sysregs
    e2h = bool(regs.get("HCR_EL2", 0) & HCR_E2H)
    if choice == "auto":
        return "vhe" if e2h else "nvhe"
    if e2h == (choice == "vhe"):
        return choice
    matters = regs.get("SCTLR_EL2", 0) & SCTLR_M or regs.get("HCR_EL2", 0) & HCR_TGE
    if matters:
        fixed = "1 (VHE)" if choice == "vhe" else "0 (nVHE, FEAT_E2H0)"
        raise Unsupported(
            f"the setup has HCR_EL2.E2H = {int(e2h)} with the EL2 stage 1 on or TGE = 1, "
            f"but this profile's guest hypervisor has E2H fixed at {fixed}"
        )
    return choice


def runnable(setup: MachineSetup, features: Features, choice: str) -> str:
    """The guest hypervisor (vhe or nvhe) that runs ``setup``'s program;
    Unsupported when no program can (the harness mapped at a VA other than
    its PA in the EL2 regime, or an E2H the choice excludes), TargetError for
    probes at EL1 with HCR_EL2.TGE = 1."""
    regs = setup.sysregs
    if any(p.el == 3 or p.space is not SecurityState.NONSECURE for p in setup.probes):
        raise Unsupported(
            "probes at EL3, or in the Secure or Realm state, need a CPU that starts at "
            "EL3 (SCR_EL3 selects the Security state); the kvm-nested target's vCPU "
            "starts at Non-secure vEL2 and never runs at EL3 (ID_AA64PFR0_EL1.EL3 is "
            "the host's, and a guest's SMC is taken by KVM)"
        )
    regime = harness.el2_regime(regs, features)
    base = setup.code_va.get(regime, HARNESS_PA)
    if base != HARNESS_PA:
        raise Unsupported(
            f"the setup maps the harness at VA 0x{base:x} in the {regime} regime; on "
            "the kvm-nested target the program cannot be moved there when the EL2 MMU "
            "turns on, so only VA = PA mappings of the harness at EL2 run"
        )
    if any(p.el == 1 for p in setup.probes) and regs.get("HCR_EL2", 0) & HCR_TGE:
        raise TargetError(
            "probes at EL1 need HCR_EL2.TGE = 0 (EL1 cannot be entered with TGE = 1)"
        )
    return guest_hypervisor_for(setup, choice)


class KvmTarget:
    """Nested KVM inside QEMU. Use as a context manager, or call
    :meth:`start` and :meth:`close`; the same interface as QemuTarget (batch
    mode only)."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.options = KvmOptions.from_profile(profile)
        self.version = ""
        self.qemu_version = ""
        self.kernel_release = ""
        self.id_regs: dict[str, int] = {}
        self.ram_size = GUEST_RAM_SIZE
        """RAM of the VM a job runs in (not QEMU's -m, which the guest Linux gets)."""
        self.artifacts: Artifacts | None = None
        self.boot_s = 0.0
        self.last_stats: Mapping[str, int] = {}
        self.readbacks: list[Readback] = []
        """The watched words read back by the last :meth:`run` (one per job)."""
        self.vcpu_seconds = 0.0
        """The jobs' vCPU run time (the agent's run_us): AT emulated by KVM; of
        the jobs run at once on several CPUs, the longest."""
        self._session: AgentSession | None = None
        self._ids = itertools.count(1)
        """Job numbers; a job's id is "j-<n>": in an error message the
        number is blanked like any other (xcheck.fuzz.signature.normalize),
        so one hang is one fuzz signature whatever job it hit."""

    # --- lifecycle -------------------------------------------------------
    def __enter__(self) -> KvmTarget:
        self.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> None:
        """Boot the guest, wait for the agent, check nested KVM is there, read
        the ID registers at vEL2. Raises QemuLaunchError when unusable."""
        art = locate(self.profile, self.options)
        self.artifacts = art
        self.qemu_version = art.qemu_version
        append = " ".join(filter(None, (KERNEL_ARGS, self.options.kernel_args)))

        def argv(console: Path) -> list[str]:
            return qemu_kvm_argv(
                art.qemu,
                machine=self.profile.machine,
                cpu=self.profile.cpu,
                memory=self.profile.memory,
                kernel=art.kernel,
                initramfs=art.initramfs,
                append=append,
                console=console,
                cpus=self.options.vcpus,
                extra_args=self.profile.extra_args,
            )

        self._session = AgentSession(argv, max(self.profile.timeouts.launch, BOOT_TIMEOUT_MIN))
        try:
            banner = self._session.start()
            self.boot_s = self._session.boot_s
            if banner.nokvm:
                raise QemuLaunchError(
                    f"the guest has no /dev/kvm ({banner.nokvm}): the machine needs "
                    f"virtualization=on (machine is {self.profile.machine!r})"
                )
            if banner.caps.get("el2", 0) <= 0:
                raise QemuLaunchError(
                    "the guest's KVM offers no nested virtualization (KVM_CAP_ARM_EL2); "
                    f"its log says: {'; '.join(banner.kvm) or 'nothing about kvm'}"
                )
            if self.options.guest_hypervisor == "nvhe" and banner.caps.get("e2h0", 0) <= 0:
                raise QemuLaunchError(
                    "the guest's KVM cannot give the guest hypervisor E2H = 0 "
                    "(KVM_CAP_ARM_EL2_E2H0); use guest_hypervisor: vhe"
                )
            if banner.cpus < self.options.vcpus:
                raise QemuLaunchError(
                    f"the guest Linux brought up {banner.cpus} of the {self.options.vcpus} "
                    "CPUs the profile asks for (options: vcpus)"
                )
            self.kernel_release = banner.kernel
            upstream = ".".join(str(x) for x in version_tuple(banner.kernel))
            self.version = f"{self.qemu_version}/kvm-{upstream or banner.kernel}"
            self.id_regs = self._read_id_regs()
        except TargetError as err:
            self.close()
            if isinstance(err, QemuLaunchError):
                raise
            raise QemuLaunchError(f"the nested-KVM guest is unusable: {err}", err.stderr) from None

    def close(self) -> None:
        """Stop QEMU (idempotent; no process is left behind)."""
        if self._session is not None:
            self._session.close()
            self._session = None

    def restart(self) -> None:
        self.close()
        self.start()

    @property
    def session(self) -> AgentSession:
        if self._session is None:
            raise TargetError("the target is not started")
        return self._session

    # --- jobs ------------------------------------------------------------
    def run_job(
        self,
        mode: str,
        memory: Sequence[tuple[int, bytes]],
        entry: int,
        reads: Sequence[tuple[int, int]] = (),
        timeout: float | None = None,
    ) -> Answer:
        """Run one job in a fresh VM; the agent's answer (errors included)."""
        return self.run_jobs(mode, [(memory, entry, reads)], timeout)[0]

    def run_jobs(
        self,
        mode: str,
        parts: Sequence[tuple[Sequence[tuple[int, bytes]], int, Sequence[tuple[int, int]]]],
        timeout: float | None = None,
    ) -> list[Answer]:
        """Run jobs (memory, entry, reads) at once, each in a fresh VM on its
        own guest CPU; the agent's answers in the same order."""
        seconds = self.profile.timeouts.batch if timeout is None else timeout
        jobs = [
            Job(id=f"j-{next(self._ids)}", mode=mode, memory=memory, entry=entry, reads=reads,
                timeout_ms=max(int(seconds * 1000), 1))
            for memory, entry, reads in parts
        ]
        answers = self.session.run_group(jobs, seconds + ANSWER_SLACK)
        self.last_stats = answers[-1].stats
        self.vcpu_seconds += max(a.stats.get("run_us", 0) for a in answers) / 1e6
        if any(a.error.startswith("full") or self._full(a.stats) for a in answers):
            self._retire_guest()
        return answers

    def job_timeout(self, probes: int) -> float:
        """Seconds a job of ``probes`` probes may run: the profile's batch
        timeout for a full program (harness.MAX_BATCH probes), in proportion
        below that, and never under MIN_TIMEOUT_SHARE of it. A trapped AT
        costs about 1 ms of the vCPU under TCG and a VM about 25 ms, so a
        fuzz case's hang is called after 3 s (with the shipped 30 s), not 30."""
        batch = self.profile.timeouts.batch
        return batch * max(MIN_TIMEOUT_SHARE, probes / harness.MAX_BATCH)

    @staticmethod
    def _full(stats: Mapping[str, int]) -> bool:
        """Whether the guest should be rebooted before the next job: the agent
        keeps every VM it made (destroying one costs seconds under TCG)."""
        return stats.get("vms", 0) >= MAX_VMS or 0 <= stats.get("mem_kb", -1) < MIN_FREE_KB

    def _retire_guest(self) -> None:
        """Boot a new guest (same QEMU and kernel); about 3 s."""
        self.close()
        self.start()

    def _default_mode(self) -> str:
        return "nvhe" if self.options.guest_hypervisor == "nvhe" else "vhe"

    def _read_id_regs(self) -> dict[str, int]:
        """MRS of each ID register at vEL2, stored to the exit page: what
        KVM shows the guest hypervisor (its sanitised view)."""
        code: list[int] = [*isa.mov_imm(2, EXIT_PA)]
        for k, name in enumerate(ID_REGISTERS):
            code += [isa.mrs(1, name), isa.str_imm(1, 2, EXIT_FREE + 8 * k)]
        code += [isa.str_imm(isa.XZR, 2, 0), isa.b(0)]
        blob = b"".join(w.to_bytes(4, "little") for w in code)
        ans = self.run_job(self._default_mode(), [(HARNESS_PA, blob)], HARNESS_PA)
        if not ans.ok:
            raise TargetError(f"reading the ID registers at vEL2 failed: {ans.error}")
        return {name: ans.out.get(EXIT_FREE + 8 * k, 0) for k, name in enumerate(ID_REGISTERS)}

    # --- running ---------------------------------------------------------
    def run(self, setup: MachineSetup, mode: str = "batch") -> list[ProbeResult]:
        """Load ``setup`` into a fresh VM per batch and run its probes; a PAR
        or an exception per probe. Unsupported when this target cannot run
        the setup; TargetError when KVM or the guest fails."""
        if mode == "step":
            raise Unsupported(
                "step mode is not supported on the kvm-nested target (nobody can stop "
                "the vCPU between instructions); run in batch mode"
            )
        if mode != "batch":
            raise ValueError(f"mode must be batch or step, not {mode!r}")
        features = Features.from_id_regs(self.id_regs)
        flavour = runnable(setup, features, self.options.guest_hypervisor)
        probes = list(setup.probes)
        out: list[ProbeResult] = []
        self.readbacks = []
        size = harness.MAX_BATCH * self.options.vcpus
        for start in range(0, max(len(probes), 1), size):
            out += self._run_batch(setup, probes[start : start + size], start, flavour)
        return out

    def _run_batch(
        self, setup: MachineSetup, probes: Sequence[Probe], offset: int, flavour: str
    ) -> list[ProbeResult]:
        """One group of jobs, run at once: probe k of ``probes`` goes to job
        k mod n (n: the profile's vcpus, fewer for a small batch, MIN_PART),
        so that trapped and untrapped probes are shared out alike. Each job is
        a whole program in its own VM (its own exception vectors: a probe's
        exception is reported as on one CPU); the watched words come back
        with its results as one Readback of its probes."""
        n = max(1, min(self.options.vcpus, len(probes) // MIN_PART))
        features = Features.from_id_regs(self.id_regs)
        # the agent takes MAX_READS ranges, one of them the results
        spans = fit_reads(word_spans(setup.watch), MAX_READS - 1)
        programs, parts = [], []
        for k in range(n):
            program = harness.assemble(
                setup, probes[k::n], el1_via_el12=(flavour == "vhe"), exit_store=EXIT_PA,
                features=features,
            )
            memory = [
                *chunks(setup.memory),
                (HARNESS_PA, program.code),
                (HARNESS_DATA_PA, program.initial_data()),
            ]
            programs.append(program)
            parts.append((memory, HARNESS_PA + program.entry,
                          [(HARNESS_DATA_PA, program.data_size), *spans]))
        answers = self.run_jobs(flavour, parts, self.job_timeout(len(probes[0::n])))
        results: list[ProbeResult | None] = [None] * len(probes)
        for k, (program, ans) in enumerate(zip(programs, answers, strict=True)):
            indices = range(k, len(probes), n)
            part = self._results(program, ans, flavour)
            for i, r in zip(indices, part, strict=True):
                results[i] = r
            if spans:
                words = words_in({a: ans.data.get(a, b"") for a, _ in spans}, setup.watch)
                ran = tuple(offset + indices[i] for grp in program.groups for i in grp.indices)
                self.readbacks.append(Readback(ran, words))
        return [r for r in results if r is not None]

    @staticmethod
    def _results(program: harness.Program, ans: Answer, flavour: str) -> list[ProbeResult]:
        """The PAR or exception of each probe of ``program`` from the agent's
        answer; TargetError when the job or the guest failed."""
        if ans.klog:
            raise TargetError(kernel_complaint(ans.klog), stderr="\n".join(ans.klog))
        if not ans.ok:
            if ans.error.startswith("timeout"):
                # the agent answers only once the vCPU's thread is back: the
                # guest and its KVM serve the next job as they are
                raise ProgramTimeout(f"the program did not finish ({ans.error})")
            raise TargetError(f"KVM ({flavour} guest hypervisor): {ans.error}")
        data = ans.data.get(HARNESS_DATA_PA, b"")
        if len(data) != program.data_size:
            raise TargetError(
                f"the agent sent {len(data)} bytes of results, not {program.data_size}"
            )
        results, setup_exc = harness.decode_results(program, data)
        if setup_exc is not None:
            raise TargetError(
                f"writing the system registers took an exception: {setup_exc.describe()}"
            )
        missing = [i for i, r in enumerate(results) if r == harness.SENTINEL]
        if missing:
            raise TargetError(
                f"{len(missing)} probe(s) did not run (the program gave up after "
                f"{harness.MAX_EXCEPTIONS} unexpected exceptions)"
            )
        return results
