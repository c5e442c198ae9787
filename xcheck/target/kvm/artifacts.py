"""What the nested-KVM target needs on disk, from the profile's ``options``:
QEMU >= 9.0 (FEAT_NV under TCG), Debian's arm64 kernel, the agent's initramfs.

``setup`` fetches and builds all three into the per-user cache (debfetch,
build); ``locate`` only looks them up, so that starting a target never
reaches the network or a compiler.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from xcheck.debfetch import (
    CACHE_PREFIX,
    DebFetchError,
    cache_root,
    cached_versions,
    fetch_kernel,
    install_qemu,
    kernel_package,
)
from xcheck.target.errors import ProfileError, QemuLaunchError
from xcheck.target.kvm.build import BuildError, build_agent, find_agent
from xcheck.target.profile import Profile
from xcheck.target.qemu import qemu_version

MIN_QEMU = (9, 0)
"""First QEMU whose TCG emulates FEAT_NV well enough to host nested KVM."""
MODES = ("auto", "vhe", "nvhe")
MAX_VCPUS = 8
"""Most guest CPUs a job's probes are spread over (the agent's MAX_GROUP)."""
KERNEL_ARGS = "console=ttyAMA0 kvm-arm.mode=nested rdinit=/init quiet"


@dataclass(frozen=True)
class KvmOptions:
    """The profile's ``options:`` for kind kvm-nested."""

    guest_hypervisor: str = "auto"
    """vhe (HCR_EL2.E2H fixed at 1), nvhe (E2H fixed at 0, FEAT_E2H0), or
    auto: per setup, the one its HCR_EL2.E2H asks for."""
    vcpus: int = 1
    """CPUs of the guest Linux (QEMU -smp); a job's probes are shared out
    over that many VMs run at once, one on each CPU."""
    kernel_suite: str = "trixie-backports"
    kernel_package: str = "linux-binary-7.3.4+deb13-arm64"
    """This package or a newer kernel of the same flavour."""
    kernel: str = ""
    """A kernel image to boot instead (a path)."""
    initramfs: str = ""
    """An initramfs to boot instead of the built one (a path)."""
    kernel_args: str = ""
    """Appended to the kernel command line."""

    @classmethod
    def from_profile(cls, profile: Profile) -> KvmOptions:
        opts = dict(profile.options)
        known = set(cls.__dataclass_fields__)
        unknown = set(opts) - known
        if unknown:
            raise ProfileError(
                f"{profile.path or profile.name}: options: unknown key(s) "
                f"{', '.join(sorted(unknown))}; expected {', '.join(sorted(known))}"
            )
        vcpus = opts.pop("vcpus", "1")
        if not vcpus.isdigit() or not 1 <= int(vcpus) <= MAX_VCPUS:
            raise ProfileError(
                f"{profile.path or profile.name}: options: vcpus: {vcpus!r} is not a "
                f"whole number from 1 to {MAX_VCPUS}"
            )
        o = cls(**opts, vcpus=int(vcpus))
        if o.guest_hypervisor not in MODES:
            raise ProfileError(
                f"{profile.path or profile.name}: options: guest_hypervisor: "
                f"{o.guest_hypervisor!r} is not one of {', '.join(MODES)}"
            )
        return o


@dataclass(frozen=True)
class Artifacts:
    qemu: str
    qemu_version: str
    kernel: Path
    initramfs: Path


def version_tuple(text: str) -> tuple[int, ...]:
    """'7.3.4+deb13' -> (7, 3, 4); '10.0.2' -> (10, 0, 2)."""
    m = re.match(r"\d+(?:\.\d+)*", text)
    return tuple(int(x) for x in m.group(0).split(".")) if m else ()


_KERNEL_ENTRY = re.compile(r"linux-(?:binary|image)-(\d[^-]*)-(?P<flavour>[a-z0-9]+)-")


def _kernel_image(entry: Path) -> Path | None:
    images = sorted(entry.glob("boot/vmlinuz-*")) + sorted(entry.glob("usr/lib/modules/*/vmlinuz"))
    return images[0] if images else None


def cached_kernel(package: str) -> Path | None:
    """The cached image of ``package``, else of the newest cached kernel of the
    same flavour that is at least as new; None when there is none."""
    m = _KERNEL_ENTRY.match(package + "-")
    want = version_tuple(m.group(1)) if m else ()
    flavour = m.group("flavour") if m else ""
    best: tuple[tuple[int, ...], Path] | None = None
    for entry in cache_root().glob("linux-*"):
        if cached_versions(entry) is None:
            continue
        image = _kernel_image(entry)
        if image is None:
            continue
        if entry.name.startswith(package + "-"):
            return image
        e = _KERNEL_ENTRY.match(entry.name)
        if not (m and e and e.group("flavour") == flavour):
            continue
        have = version_tuple(e.group(1))
        if have >= want and (best is None or have > best[0]):
            best = (have, image)
    return best[1] if best else None


def check_qemu(binary: str) -> str:
    """QEMU's version; QemuLaunchError when it is missing or older than 9.0."""
    version = qemu_version(binary)
    if version_tuple(version) < MIN_QEMU:
        raise QemuLaunchError(
            f"QEMU {version} cannot host nested KVM (FEAT_NV needs QEMU >= "
            f"{MIN_QEMU[0]}.{MIN_QEMU[1]}); run: python -m xcheck.target.kvm setup"
        )
    return version


def locate(profile: Profile, opts: KvmOptions) -> Artifacts:
    """Find QEMU, kernel and initramfs without fetching or building anything."""
    hint = "run: make kvm (or python -m xcheck.target.kvm setup)"
    version = check_qemu(profile.executable)
    if opts.kernel:
        kernel = Path(opts.kernel).expanduser()
        if not kernel.is_file():
            raise QemuLaunchError(f"options: kernel: {kernel} does not exist")
    else:
        found = cached_kernel(opts.kernel_package)
        if found is None:
            raise QemuLaunchError(f"no cached kernel {opts.kernel_package} (or newer); {hint}")
        kernel = found
    if opts.initramfs:
        initramfs = Path(opts.initramfs).expanduser()
        if not initramfs.is_file():
            raise QemuLaunchError(f"options: initramfs: {initramfs} does not exist")
    else:
        build = find_agent()
        if build is None:
            raise QemuLaunchError(f"the in-guest agent is not built; {hint}")
        initramfs = build.initramfs
    return Artifacts(profile.executable, version, kernel, initramfs)


def setup(profile: Profile, say: Callable[[str], None]) -> Artifacts:
    """Fetch QEMU (when the profile names the cache) and the kernel, build the
    agent; raises DebFetchError or BuildError with what to do."""
    opts = KvmOptions.from_profile(profile)
    if profile.binary.startswith(CACHE_PREFIX):
        try:
            check_qemu(profile.executable)
            say(f"QEMU: {profile.executable} (cached)")
        except QemuLaunchError:
            say("QEMU: installing QEMU 10.0 from bookworm-backports into the per-user cache")
            say(f"QEMU: {install_qemu()}")
    if not opts.kernel:
        if cached_kernel(opts.kernel_package) is None:
            say(f"kernel: fetching {opts.kernel_package} from {opts.kernel_suite}")
            try:
                fetch_kernel(opts.kernel_package, opts.kernel_suite)
            except DebFetchError:
                newest = kernel_package(opts.kernel_suite)
                if newest == opts.kernel_package:
                    raise
                say(
                    f"kernel: {opts.kernel_package} is gone from {opts.kernel_suite}; "
                    f"fetching its successor {newest}"
                )
                fetch_kernel(newest, opts.kernel_suite)
        say(f"kernel: {cached_kernel(opts.kernel_package)}")
    log: list[str] = []
    build = build_agent(log)
    for line in log:
        say(f"agent: {line}")
    say(f"agent: {build.initramfs}{'' if build.built else ' (cached)'}")
    return locate(profile, opts)


__all__ = ["Artifacts", "BuildError", "KvmOptions", "cached_kernel", "locate", "setup"]
