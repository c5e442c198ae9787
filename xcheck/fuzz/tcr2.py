"""What TCR2_ELx and VTCR_EL2 switch on, as the fuzzer draws it: Indirect
permissions (FEAT_S1PIE: PIR_ELx, PIRE0_ELx and the descriptor's PIIndex),
stage 2 Indirect permissions (FEAT_S2PIE: S2PIR_EL2 and the stage 2
PIIndex) and MAIR2_ELx with AttrIndx[3] (FEAT_AIE).

Rules: Arm ARM D8.4 "Indirect permissions" (R_LLZDZ: the PIR encodings;
Table D8-82: the S2PIR encodings), D24.2 TCR2_EL1, TCR2_EL2, PIR_ELx,
PIRE0_ELx, S2PIR_EL2, MAIR2_ELx; AArch64.S1ApplyOutputPerms and
AArch64.S2ApplyOutputPerms (where the PIIndex is in a descriptor).

The harness's own pages are PIIndex 8 (code) and 12 (data) in a two-range
regime, 1 and 9 in the EL2 regime (docs/scenario-format.md, "The harness
mappings"): in a regime the harness runs in, those entries get
permissions it can run with, every other entry is drawn from all sixteen
encodings (reserved ones included).
"""

from __future__ import annotations

import random
from typing import Any

HARNESS_PI = {True: (8, 12), False: (1, 9)}
"""Two VA ranges or one: the PIIndex of the harness's (code, data) pages."""
CODE_PIR = (0b1010, 0b0011, 0b1110, 0b0111)
"""Privileged read and execute (RX, RX overlay, RWX, RWX overlay; R_LLZDZ)."""
CODE_PIRE0 = (0b0000, 0b0001, 0b0010, 0b1000, 0b1010)
"""No unprivileged write: with privileged execute it would remove every
permission (AArch64.S1IndirectBasePermissions)."""
DATA_PIR = (0b1100, 0b0101)
"""Privileged read and write, never execute."""


def perms(r: random.Random) -> dict[str, int]:
    """Perm0 ... Perm15 of a PIR_ELx, PIRE0_ELx: any encoding, the defined
    ones more often than the reserved (0b0100, 0b1011, 0b1101, 0b1111)."""
    weights = [1.0 if e in (0b0100, 0b1011, 0b1101, 0b1111) else 3.0 for e in range(16)]
    return {f"Perm{i}": r.choices(range(16), weights)[0] for i in range(16)}


def s1_indirect(r: random.Random, el: str, two_ranges: bool,
                harness: bool) -> dict[str, dict[str, int]]:
    """TCR2_ELx.PIE = 1 and the PIR_ELx (and, with two VA ranges, PIRE0_ELx)
    of the ``el`` regime; ``harness``: the harness runs in it."""
    pir = perms(r)
    regs = {f"TCR2_{el}": {"PIE": 1}, f"PIR_{el}": pir}
    pire0 = perms(r) if two_ranges else {}
    if harness:
        code, data = HARNESS_PI[two_ranges]
        pir[f"Perm{code}"] = r.choice(CODE_PIR)
        pir[f"Perm{data}"] = r.choice(DATA_PIR)
        if two_ranges:
            pire0[f"Perm{code}"] = r.choice(CODE_PIRE0)
            pire0[f"Perm{data}"] = 0  # no EL0 access: PSTATE.PAN = 1 would deny it
    if two_ranges:
        regs[f"PIRE0_{el}"] = pire0
    return regs


def s2pir(r: random.Random) -> int:
    """S2PIR_EL2: sixteen 4-bit Perm fields, any encoding (the reserved
    0b0001 and 0b0101 included; Table D8-82)."""
    return sum(r.randrange(16) << (4 * i) for i in range(16))


def s1_leaf(r: random.Random, m: dict[str, Any]) -> None:
    """A stage 1 leaf's PIIndex (in place of AP[1], DBM, PXN, UXN) and,
    sometimes, nDirty (AP[2])."""
    m["pi_index"] = r.randrange(16)
    if r.random() < 0.3:
        m["ndirty"] = 1


def s2_leaf(r: random.Random, m: dict[str, Any]) -> None:
    """A stage 2 leaf's PIIndex (in place of S2AP[0], DBM, XN) and,
    sometimes, S2Dirty = 0."""
    m["pi_index"] = r.randrange(16)
    if r.random() < 0.3:
        m["dirty"] = 0
