"""xcheck: cross-check Arm address translation in an emulator against a model
of the Arm architecture (DDI 0487)."""

__version__ = "0.1.0"
