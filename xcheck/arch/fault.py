"""FaultRecord and the fault status codes reported in PAR_EL1.FST.

Arm ARM DDI 0487: J1.1.3.12 AArch64.PARFaultStatus, EncodeLDFSC (J1.3),
D24.2 PAR_EL1.FST. A fault is a value, never an exception.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from xcheck.machine import IdentityEnum

if TYPE_CHECKING:
    from xcheck.arch.gpc import GpcFault


class Fault(IdentityEnum):
    """The FaultRecord.statuscode values the model produces (hashed by
    identity: encode_fst looks them up per faulting AT)."""

    ADDRESS_SIZE = "address size"
    TRANSLATION = "translation"
    ACCESS_FLAG = "access flag"
    PERMISSION = "permission"
    EXTERNAL_ABORT_ON_WALK = "external abort on walk"
    GPCF_ON_WALK = "granule protection on walk"
    GPCF_ON_OUTPUT = "granule protection on output"


_BASE = {
    Fault.ADDRESS_SIZE: 0b000000,
    Fault.TRANSLATION: 0b000100,
    Fault.ACCESS_FLAG: 0b001000,
    Fault.PERMISSION: 0b001100,
    Fault.EXTERNAL_ABORT_ON_WALK: 0b010100,
    Fault.GPCF_ON_WALK: 0b100100,
}
_LEVEL_MINUS_1 = {
    Fault.ADDRESS_SIZE: 0b101001,
    Fault.TRANSLATION: 0b101011,
    Fault.EXTERNAL_ABORT_ON_WALK: 0b010011,
    Fault.GPCF_ON_WALK: 0b100011,
}


def encode_fst(status: Fault, level: int) -> int:
    """EncodeLDFSC: the 6-bit fault status code for ``status`` at ``level``.

    Levels 0..3 use 0bSSSSLL; level -1 (FEAT_LPA2) has its own encodings.
    A GPC fault on the output (FEAT_RME) has no level: 0b101000."""
    if status is Fault.GPCF_ON_OUTPUT:
        return 0b101000
    if level == -1:
        return _LEVEL_MINUS_1[status]
    return _BASE[status] | (level & 3)


class FaultRecord(NamedTuple):
    """A translation fault as the ASL FaultRecord: status, level, stage,
    s2fs1walk (PAR.PTW), write; ``rule`` cites what decided it. A NamedTuple:
    immutable, and cheap to make (most walks of a fuzz case fault)."""

    statuscode: Fault
    level: int
    stage: int = 1
    s2fs1walk: bool = False
    write: bool = False
    rule: str = ""
    dirtybit: bool = False
    """A Permission fault due to dirty state managed by software with
    Indirect permissions (PAR_EL1.DirtyBit)."""
    gpcf: GpcFault | None = None
    """With Fault.GPCF_ON_WALK: the GPCFRecord (xcheck.arch.gpc)."""
    af_update: int | None = None
    """A stage 1 Permission fault on a descriptor with AF == 0 under TCR.HA
    == 1: the descriptor's address, where the walk may still set AF
    (AArch64.SettingAccessFlagPermitted: CONSTRAINED UNPREDICTABLE)."""
    af_update_ns: bool = False
    """The PA space of that descriptor (the walk's, before the leaf's NS)."""

    @property
    def fst(self) -> int:
        return encode_fst(self.statuscode, self.level)

    def describe(self) -> str:
        where = f"stage {self.stage}" + (" (during the stage 1 walk)" if self.s2fs1walk else "")
        gpc = f" ({self.gpcf.describe()})" if self.gpcf is not None else ""
        return f"{self.statuscode.value} fault{gpc}, level {self.level}, {where}"
