"""``python -m xcheck.target.kvm setup``: prepare the nested-KVM target.

Fetches QEMU 10.0 (when the profile names the per-user cache) and Debian's arm64
kernel with a private apt state, installs the cross compiler with apt-get when
run as root (otherwise prints the command), and builds the agent and its
initramfs. ``check`` boots the guest once and prints what it reports.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from xcheck.debfetch import DebFetchError
from xcheck.target.errors import ProfileError, TargetError
from xcheck.target.kvm.build import BuildError
from xcheck.target.profile import load_profile

DEFAULT_PROFILE = "kvm-nested"


def _check(profile_name: str) -> None:
    from xcheck.target.kvm.target import KvmTarget

    with KvmTarget(load_profile(profile_name)) as target:
        print(f"version: {target.version} (guest kernel {target.kernel_release})")
        print(f"boot: {target.boot_s:.2f} s")
        for name, value in target.id_regs.items():
            print(f"{name} (at vEL2): 0x{value:016x}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m xcheck.target.kvm",
        description="Prepare and check the nested-KVM target. Example: "
        "python -m xcheck.target.kvm setup && python -m xcheck.target.kvm check",
    )
    ap.add_argument("command", choices=("setup", "check"))
    ap.add_argument("--config", default=DEFAULT_PROFILE, help="profile name or file")
    args = ap.parse_args(argv)
    try:
        if args.command == "setup":
            from xcheck.target.kvm.artifacts import setup

            art = setup(load_profile(args.config), print)
            print(f"ready: QEMU {art.qemu_version}, kernel {art.kernel}, {art.initramfs}")
        else:
            _check(args.config)
    except (DebFetchError, BuildError, ProfileError, TargetError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
