"""The nested-KVM target: KVM/arm64's own AT emulation, run inside QEMU.

QEMU (TCG, virtualization=on) boots Debian's arm64 Linux with
``kvm-arm.mode=nested``; the guest's /init is a small agent (agent/ in the
repository) that runs each job in a fresh VM whose vCPU starts at virtual EL2.
AT instructions executed there trap to KVM, which emulates them.
"""
