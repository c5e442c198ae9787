"""Errors of the target side, each with a message a user can act on."""

from __future__ import annotations


class TargetError(Exception):
    """QEMU or gdb failed while a setup ran: a crash, a hang, a lost stub.

    ``stderr`` holds what QEMU printed, for the report."""

    def __init__(self, message: str, stderr: str = "") -> None:
        super().__init__(message)
        self.stderr = stderr

    def __str__(self) -> str:
        msg = super().__str__()
        tail = self.stderr.strip()
        if tail:
            lines = tail.splitlines()[-8:]
            msg += "\nQEMU stderr:\n  " + "\n  ".join(lines)
        return msg


class QemuLaunchError(TargetError):
    """QEMU (or gdb) could not be started or refused the configuration:
    nothing can be tested (exit code 125)."""


class Unsupported(TargetError):
    """This target cannot run this setup (e.g. a feature of the harness it
    lacks): the probes are SKIPPED with this reason, never silently."""


class HarnessError(TargetError):
    """The harness itself took an exception (writing the system registers,
    or too many unexpected exceptions): QEMU and gdb work, and the next
    setup starts from a clean CPU (QemuTarget checks it), so no restart is
    needed."""


class ProgramTimeout(TargetError):
    """The program did not finish in time, and the target stopped it and can
    run the next setup as it is: the nested-KVM agent stops the vCPU
    (``immediate_exit`` and a signal), waits for its thread, retires its VM
    and goes on serving, so no restart is needed."""


class GdbTimeout(TargetError):
    """A GDB/MI command got no result in time."""


def needs_restart(err: TargetError) -> bool:
    """Whether the target must be started again before the next setup after
    ``err``: not after the harness's own trouble (HarnessError), a setup the
    target cannot run (Unsupported) or a program it stopped (ProgramTimeout)."""
    return not isinstance(err, (HarnessError, Unsupported, ProgramTimeout))


class ProfileError(Exception):
    """A QEMU profile is missing or malformed."""
