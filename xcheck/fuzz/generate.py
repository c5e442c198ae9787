"""Random translation setups as scenario documents.

A case is a plain dict in the scenario format (docs/scenario-format.md):
registers by field, mappings per base register, raw words, descriptor
overrides and probes. It is built by the real loader and builder, so each
case can be written to a file and run again with `xcheck run`. Everything
random comes from one ``random.Random`` seeded by (seed, case index): the
same seed and CPU give the same documents.

What is generated stays inside what the CPU implements (the knobs), and
inside what the harness needs to keep running (docs/scenario-format.md,
"The harness mappings"): probes at EL1 only with HCR_EL2.TGE = 0 and
little-endian EL1 data, table overrides off the harness's own walk,
stage 2 mapping the RAM identically when EL1 code runs under it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from xcheck.arch.features import PARANGE_BITS
from xcheck.arch.walkparams import max_txsz
from xcheck.fuzz import security, tcr2
from xcheck.fuzz.knobs import Knobs
from xcheck.fuzz.shape import (
    GRANULE_NAMES,
    S2_SL0,
    Shape,
    s1_start_level,
    s2_levels,
    size_bytes,
)
from xcheck.fuzz.yamlout import Doc
from xcheck.machine import ARENA_PA, HARNESS_PA, HARNESS_SIZE, RAM_BASE, AtOp
from xcheck.scenario.loader import OP_NAMES

RAM_END = RAM_BASE + (128 << 20)
IDENTITY_END = RAM_BASE + (32 << 20)
"""Stage 2 maps [RAM_BASE, IDENTITY_END) identically when EL1 code runs: the
harness, the table arena and the hand-made tables."""
RAW_PAGES = 0x4180_0000
"""Hand-made table pages (``memory:`` blocks), above the arena."""
NO_RAM = 0x5000_0000
"""Physical addresses here hold nothing on the virt machine: a walk that
reads one takes an External abort."""
CONTIGUOUS_BIT = 1 << 52
"""The Contiguous bit of a block or page descriptor (D8.3.2)."""

MAIR_NORMAL = (0xFF, 0x44, 0xBB, 0x4F, 0xF4, 0xEE, 0x77, 0xAA, 0x33, 0x4B)
MAIR_DEVICE = (0x00, 0x04, 0x08, 0x0C)
MAIR_ODD = (0x40, 0xA0, 0xF0, 0x01, 0x60, 0x0D)
"""FEAT_XS / FEAT_MTE encodings and reserved ones."""
AP_TWO = ("RW_EL1", "RW_ANY", "RO_EL1", "RO_ANY")
AP_ONE = ("RW", "RO")
S2AP = ("NONE", "RO", "WO", "RW")
SH = ("NSH", "OSH", "ISH", 1)
CACHE = ("NC", "WBWA", "WT", "WBnWA")
EL1_OPS = (AtOp.S1E1R, AtOp.S1E1W, AtOp.S1E0R, AtOp.S1E0W)
PAN_OPS = (AtOp.S1E1RP, AtOp.S1E1WP)
S12_OPS = (AtOp.S12E1R, AtOp.S12E1W, AtOp.S12E0R, AtOp.S12E0W)
EL2_OPS = (AtOp.S1E2R, AtOp.S1E2W)
EL3_OPS = (AtOp.S1E3R, AtOp.S1E3W)
MAX_PROBES = 96


def size_name(n: int) -> str:
    for shift, unit in ((40, "T"), (30, "G"), (20, "M"), (10, "K")):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)


@dataclass
class Target:
    """A VA (or IPA) worth probing, and the ops that translate its regime."""

    va: int
    ops: tuple[AtOp, ...]
    secure: bool = False
    """An IPA of the Secure stage 2: probed mostly in the Secure state."""


@dataclass
class Plan:
    """A case as it is being generated: the document's parts and what the
    probes and the safety checks need to know about them."""

    regs: dict[str, dict[str, Any]] = field(default_factory=dict)
    raw_regs: dict[str, int] = field(default_factory=dict)
    """Registers written as a whole value (those without named fields)."""
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    memory: list[dict[str, Any]] = field(default_factory=list)
    descriptors: list[dict[str, Any]] = field(default_factory=list)
    requires: set[str] = field(default_factory=set)
    shapes: dict[str, Shape] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    tags: set[str] = field(default_factory=set)
    el1: bool = False
    """Probes may run at EL1."""
    ha: bool = False
    """Hardware Access flag updates may be on (TCR.HA, VTCR_EL2.HA). An AT
    may then set AF in a descriptor (AArch64.S1Translate/S2Translate), which
    later probes would see: the case makes no table point into another one."""
    taken: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    table_attrs: dict[tuple[str, int, int], dict[str, int]] = field(default_factory=dict)
    next_raw_page: int = RAW_PAGES
    indirect: set[str] = field(default_factory=set)
    """Base registers whose regime has Indirect permissions (TCR2_ELx.PIE)."""
    s2pie: bool = False
    """VTCR_EL2.S2PIE: stage 2 descriptors hold a PIIndex."""
    gpt: dict[str, Any] | None = None
    """The ``gpt:`` section (FEAT_RME granule protection; security.gpt)."""

    def reg(self, name: str) -> dict[str, Any]:
        return self.regs.setdefault(name, {})


class Generator:
    """One case's generation from ``rng`` within ``knobs``."""

    def __init__(self, rng: random.Random, knobs: Knobs) -> None:
        self.r = rng
        self.k = knobs
        self.f = knobs.features
        self.p = Plan()
        self.security = knobs.on("secure") or knobs.on("realm")
        """Probes may run at EL3 in another Security state: the NS bits matter."""

    def chance(self, p: float, knob: str | None = None) -> bool:
        if knob is not None and not self.k.on(knob):
            return False
        return self.r.random() < p

    # --- the whole case -------------------------------------------------------

    def case(self) -> Plan:
        kinds = [("el10", 5.0), ("el10-s2", 3.0 if self.k.on("stage2") else 0.0),
                 ("el2", 1.5 if self.k.on("el2") else 0.0),
                 ("el20", 2.0 if self.k.on("vhe") else 0.0),
                 ("s2-only", 1.0 if self.k.on("stage2") else 0.0),
                 ("mmu-off", 0.4 if self.k.on("mmu-off") else 0.0),
                 ("el3", 2.0 if self.k.on("secure") else 0.0)]
        kind = self.r.choices([k for k, _ in kinds], [w for _, w in kinds])[0]
        p = self.p
        p.tags.add(f"case:{kind}")
        hcr = p.reg("HCR_EL2")
        e2h = kind == "el20" or (kind != "el2" and self.chance(0.15, "vhe"))
        tge = (self.chance(0.4, "tge") if kind == "el20" else self.chance(0.01, "tge"))
        p.ha = self.chance(0.3, "ha")
        if e2h:
            hcr["E2H"] = 1
        if tge:
            hcr["TGE"] = 1
        p.el1 = not tge and self.chance(0.5, "el1")
        stage2 = kind in ("el10-s2", "s2-only") or (kind == "mmu-off"
                                                    and self.chance(0.5, "stage2"))
        if stage2:
            hcr["VM"] = 1
            if self.chance(0.08, "dc"):
                hcr["DC"] = 1
            if self.chance(0.3, "fwb"):
                hcr["FWB"] = 1
            if self.chance(0.3, "ptw"):
                hcr["PTW"] = 1
        if not p.el1 and self.chance(0.05, "nv"):
            # with NV the harness's own EL1 exception return would trap
            hcr["NV"] = 1
        if self.chance(0.04, "nv"):
            hcr["AT"] = 1
        if not hcr:
            del p.regs["HCR_EL2"]
        if not p.el1 and self.chance(0.1, "tcr2"):
            p.reg("HCRX_EL2")["TCR2En"] = 0  # TCR2_EL1 has no effect (IsTCR2EL1Enabled)
            p.requires.add("HCX")
        if self.chance(0.5, "sel2"):
            p.reg("SCR_EL3")["EEL2"] = 1
            p.requires.add("SEL2")
        if stage2:
            self.stage2()
            if "SCR_EL3" in p.regs and self.chance(0.7, "sel2"):
                self.secure_stage2()
        if kind == "el3":
            self.stage1("EL3", self.r.randint(2, 16), enable=self.chance(0.9))
            if self.chance(0.5):
                self.stage1("EL10", self.r.randint(1, 8))
        elif self.chance(0.2, "secure"):
            self.stage1("EL3", self.r.randint(1, 4), enable=self.chance(0.8))
        if kind in ("el10", "el10-s2"):
            self.stage1("EL10", self.r.randint(2, 20))
            if self.chance(0.2, "el2"):
                self.stage1("EL20" if e2h else "EL2", self.r.randint(1, 4))
        elif kind in ("el2", "el20"):
            regime = "EL20" if e2h else "EL2"
            self.stage1(regime, self.r.randint(2, 20), enable=not tge or self.chance(0.9))
            if not tge and self.chance(0.25):
                self.stage1("EL10", self.r.randint(1, 4))
        elif kind == "s2-only" and self.chance(0.3):
            p.reg("SCTLR_EL1")["C"] = int(self.chance(0.5))
        if self.chance(0.4, "gpc"):
            p.gpt = security.gpt(self.r, p.tables, p.shapes, p.memory, self.f, self.k.l0gptsz)
            p.requires.add("RME")
            p.tags |= {f"gpt:{r['gpi']}" + (":table" if "table" in r else ":pa")
                       for r in p.gpt["regions"]}
        for name in [n for n, v in p.regs.items() if not v]:
            del p.regs[name]
        self.tag_regs()
        return p

    def tag_regs(self) -> None:
        p = self.p
        for reg, fields in p.regs.items():
            for name, value in fields.items():
                if name not in ("T0SZ", "T1SZ", "IRGN0", "ORGN0", "IRGN1", "ORGN1",
                                "SL0") and not name.startswith(("Attr", "Perm")) and value:
                    p.tags.add(f"{reg}.{name}" + (f"={value}" if name in (
                        "TG0", "TG1", "IPS", "PS") else ""))
        for base, shape in p.shapes.items():
            p.tags.add(f"{base}:{GRANULE_NAMES[shape.granule_bits]}")
            p.tags.add(f"{base}:start-level {shape.start_level}")

    # --- stage 1 ---------------------------------------------------------------

    def pa_encoding(self, lpa_ok: bool) -> tuple[str, int]:
        """An IPS/PS value (mostly ones the CPU implements) and its size."""
        pamax = self.f.pa_range_bits
        encs = [e for e, bits in PARANGE_BITS.items() if bits <= pamax]
        weights = [1.0 + 3.0 * (PARANGE_BITS[e] in (40, 48)) for e in encs]
        enc = self.r.choices(encs, weights)[0]
        if self.chance(0.03):
            enc = 7  # reserved: treated as PAMax
        bits = PARANGE_BITS[enc]
        if bits == 52 and not lpa_ok:
            bits = 48
        return f"{PARANGE_BITS[enc]}bit", bits

    def granule(self, stage: int) -> int:
        f = self.f
        have = ([(12, f.tgran4), (14, f.tgran16), (16, f.tgran64)] if stage == 1
                else [(12, f.tgran4_2), (14, f.tgran16_2), (16, f.tgran64_2)])
        return self.r.choice([g for g, ok in have if ok] or [12])

    def txsz(self, g: int, ds: bool, harness: bool) -> int:
        lo = 12 if self.f.lva and (g == 16 or ds) else 16
        hi = max_txsz(g, self.f)
        if harness:
            hi = min(hi, 40)
        if self.chance(0.6):
            return self.r.randint(max(lo, 25), min(hi, 39))
        return self.r.randint(lo, hi)

    def stage1(self, regime: str, count: int, enable: bool = True) -> None:
        """Registers and tables of one stage 1 regime: "EL10", "EL2", "EL20",
        "EL3" (the harness runs there at VA = PA when it is enabled)."""
        p = self.p
        el = {"EL10": "EL1", "EL3": "EL3"}.get(regime, "EL2")
        sctlr, tcr, mair = p.reg(f"SCTLR_{el}"), p.reg(f"TCR_{el}"), p.reg(f"MAIR_{el}")
        sctlr["M"] = int(enable)
        sctlr["C"] = int(self.chance(0.8))
        if self.chance(0.25, "wxn"):
            sctlr["WXN"] = 1
        if regime in ("EL10", "EL20") and self.chance(0.4, "epan"):
            sctlr["EPAN"] = 1
        if regime == "EL10" and not p.el1 and self.chance(0.08, "ee"):
            sctlr["EE"] = 1
        mair.update(self.mair_attrs())
        # the harness runs in this regime: EL2 (SCTLR_EL2.M) or EL1&0 (probes at EL1)
        harness = enable and (regime != "EL10" or p.el1)
        if regime != "EL3":
            self.tcr2_features(regime, el, harness)
        else:
            p.requires.add("EL3")
            if enable:  # the harness's own pages, at VA = PA (docs/scenario-format.md)
                p.taken["TTBR0_EL3"] = [(HARNESS_PA, HARNESS_PA + HARNESS_SIZE)]
        g0 = self.granule(1)
        one_range = regime in ("EL2", "EL3")
        ds_bit = self.chance(0.2, "ds")
        ps_name, ps_bits = self.pa_encoding(lpa_ok=True)
        tcr["IPS" if not one_range else "PS"] = ps_name
        if ds_bit:
            tcr["DS"] = 1
        if self.p.ha and self.chance(0.6):
            tcr["HA"] = 1
            if self.chance(0.5, "hd"):
                tcr["HD"] = 1
        bases = [f"TTBR0_{el}"]
        if not one_range and self.chance(0.5, "ttbr1"):
            bases.append(f"TTBR1_{el}")
        for base in bases:
            upper = base.startswith("TTBR1")
            n = "1" if upper else "0"
            g = self.granule(1) if upper else g0
            ds = ds_bit and g != 16
            t = self.txsz(g, ds, harness and not upper)
            if regime == "EL3" and harness:
                t = min(t, 64 - (HARNESS_PA + HARNESS_SIZE - 1).bit_length())
            if one_range:
                tcr.update({"TG0": GRANULE_NAMES[g], "T0SZ": t})
            else:
                tcr.update({f"TG{n}": GRANULE_NAMES[g], f"T{n}SZ": t})
            suffix = "" if one_range else n
            if not ds:
                tcr[f"SH{n}"] = self.r.choice(SH[:3])
            tcr[f"IRGN{n}"] = self.r.choice(CACHE)
            tcr[f"ORGN{n}"] = self.r.choice(CACHE)
            if self.chance(0.2, "hpd"):
                tcr[f"HPD{suffix}"] = 1
            if self.chance(0.3, "tbi"):
                tcr[f"TBI{suffix}"] = 1
            if not one_range and self.chance(0.1, "e0pd"):
                tcr[f"E0PD{n}"] = 1
            if not one_range and (upper or not harness) and self.chance(0.1, "epd"):
                tcr[f"EPD{n}"] = 1
            cap = 52 if self.f.lpa and (g == 16 or ds) else 48
            shape = Shape(base, g, 64 - t, s1_start_level(64 - t, g),
                          min(ps_bits, cap, self.f.pa_range_bits), ds,
                          lpa=g == 16 and self.f.lpa, upper=upper)
            p.shapes[base] = shape
            p.tables[base] = []
            self.mappings(shape, count if not upper else self.r.randint(1, 8), regime)
        if not one_range and "TTBR1" not in " ".join(bases):
            tcr["EPD1"] = 1 if not self.chance(0.2, "epd") else 0
            tcr.setdefault("T1SZ", self.r.randint(16, 39))

    def mair_attrs(self) -> dict[str, int]:
        """Attr0 ... Attr7 of a MAIR_ELx or MAIR2_ELx: mostly Normal, some
        Device, a few FEAT_XS / FEAT_MTE / reserved encodings."""
        out = {}
        for i in range(8):
            pool = self.r.choices([MAIR_NORMAL, MAIR_DEVICE, MAIR_ODD], [6, 3, 0.4])[0]
            out[f"Attr{i}"] = self.r.choice(pool)
        return out

    def tcr2_features(self, regime: str, el: str, harness: bool) -> None:
        """TCR2_ELx.PIE (PIR_ELx, PIRE0_ELx) and TCR2_ELx.AIE (MAIR2_ELx) of
        one stage 1 regime, each when the CPU has it (xcheck.fuzz.tcr2)."""
        p = self.p
        two = regime != "EL2"
        if self.chance(0.35, "s1pie"):
            for name, fields in tcr2.s1_indirect(self.r, el, two, harness).items():
                p.reg(name).update(fields)
            p.indirect |= {f"TTBR0_{el}", f"TTBR1_{el}"}
            p.requires |= {"TCR2", "S1PIE"}
            p.tags.add(f"pie:{regime}")
        if self.chance(0.35, "aie"):
            p.reg(f"TCR2_{el}")["AIE"] = 1
            p.reg(f"MAIR2_{el}").update(self.mair_attrs())
            p.requires |= {"TCR2", "AIE"}
            p.tags.add(f"aie:{regime}")

    # --- stage 2 ---------------------------------------------------------------

    def stage2(self) -> None:
        p, f = self.p, self.f
        vtcr = p.reg("VTCR_EL2")
        g = self.granule(2)
        ds = g != 16 and self.chance(0.15, "ds")
        lpa_ok = g == 16 or ds
        ia, level = self.s2_geometry(g, ds, 31 if p.el1 else 25)
        ps_name, ps_bits = self.pa_encoding(lpa_ok)
        vtcr.update({"TG0": GRANULE_NAMES[g], "T0SZ": 64 - ia, "SL0": S2_SL0[g][level],
                     "PS": ps_name})
        if ds:
            vtcr["DS"] = 1
        else:
            vtcr["SH0"] = self.r.choice(SH[:3])
        vtcr["IRGN0"] = self.r.choice(CACHE)
        vtcr["ORGN0"] = self.r.choice(CACHE)
        if self.p.ha and self.chance(0.6):
            vtcr["HA"] = 1
            if self.chance(0.5, "hd"):
                vtcr["HD"] = 1
        # not under EL1 code: the harness's own stage 2 pages would need an S2PIR entry
        if not p.el1 and self.chance(0.35, "s2pie"):
            vtcr["S2PIE"] = 1
            p.raw_regs["S2PIR_EL2"] = tcr2.s2pir(self.r)
            p.s2pie = True
            p.requires.add("S2PIE")
            p.tags.add("s2pie")
        cap = 52 if f.lpa and lpa_ok else 48
        shape = Shape("VTTBR_EL2", g, ia, level, min(ps_bits, cap, f.pa_range_bits), ds,
                      lpa=g == 16 and f.lpa)
        p.shapes["VTTBR_EL2"] = shape
        p.tables["VTTBR_EL2"] = []
        self.identity_ram(shape, p.el1)
        self.mappings(shape, self.r.randint(2, 14), "S2")

    def s2_geometry(self, g: int, ds: bool, lo: int) -> tuple[int, int]:
        """A stage 2 IPA size from ``lo`` bits and a start level valid and
        consistent for it (shape.s2_levels)."""
        f = self.f
        lpa_ok = g == 16 or ds
        ips = (52 if lpa_ok else 48) if f.pa_range_bits >= 52 else f.pa_range_bits
        choices = []
        for ia in range(lo, ips + 1):
            for level in s2_levels(g, ia, f.pa_range_bits, ds, f.ttst):
                choices.append((ia, level))
        weights = [3.0 if 32 <= ia <= 44 else 1.0 for ia, _ in choices]
        return self.r.choices(choices, weights)[0]

    def identity_ram(self, shape: Shape, harness: bool) -> None:
        """The RAM the walks (and, with ``harness``, the harness at EL1) use,
        identity-mapped in the stage 2 ``shape`` (or, without the harness,
        sometimes mapped badly: stage 2 faults on stage 1 walks)."""
        p = self.p
        maps = p.tables[shape.base]
        taken = p.taken.setdefault(shape.base, [])
        ps_bits = shape.oasize
        big = [lv for lv in shape.levels() if shape.block_ok(lv) and lv < 3
               and shape.size(lv) >= IDENTITY_END - RAM_BASE
               and RAM_BASE % shape.size(lv) == 0]
        level_id = max(big) if big else None
        if level_id is not None and (harness or not self.chance(0.15)):
            size = shape.size(level_id)
            m: dict[str, Any] = {"ipa": RAM_BASE, "pa": RAM_BASE, "size": size_name(size)}
            if not harness and self.chance(0.3):
                p.tags.add("s2:walk-faults")
                bad = self.r.choice(["s2ap", "attr", "af", "pa"])
                if bad == "s2ap":
                    m["s2ap"] = self.r.choice(["NONE", "WO", "RO"])
                elif bad == "attr":
                    m["attr"] = self.r.randrange(4)
                elif bad == "af":
                    m["af"] = 0
                else:
                    m["pa"] = RAM_BASE + size if RAM_BASE + 2 * size <= 1 << ps_bits else 0
            maps.append(m)
            taken.append((RAM_BASE, RAM_BASE + size))
        elif harness:
            raise _Retry("no stage 2 block maps the RAM identically")

    def secure_stage2(self) -> None:
        """The Secure stage 2 of FEAT_SEL2 (AArch64.SS2TTWParams): VSTCR_EL2's
        granule, IPA size and start level, VTCR_EL2's DS and PS; the PA spaces
        of both IPA spaces' tables and outputs (VSTCR_EL2.SW/SA,
        VTCR_EL2.NSW/NSA: AArch64.SS2OutputPASpace). The harness never runs
        under it (EL1 runs Non-secure)."""
        p, r = self.p, self.r
        vtcr, vstcr = p.regs["VTCR_EL2"], p.reg("VSTCR_EL2")
        ds = "DS" in vtcr
        g = self.granule(2)
        if ds and g == 16:
            g = 12 if self.f.tgran4_2 else 14
        ia, level = self.s2_geometry(g, ds, 25)
        vstcr.update({"TG0": GRANULE_NAMES[g], "T0SZ": 64 - ia, "SL0": S2_SL0[g][level]})
        for reg, names in ((vstcr, ("SW", "SA")), (vtcr, ("NSW", "NSA"))):
            for name in names:
                if r.random() < 0.5:
                    reg[name] = 1
        nonsecure = p.shapes["VTTBR_EL2"]
        shape = Shape("VSTTBR_EL2", g, ia, level, nonsecure.oasize, ds,
                      lpa=g == 16 and self.f.lpa)
        p.shapes["VSTTBR_EL2"] = shape
        p.tables["VSTTBR_EL2"] = []
        self.identity_ram(shape, False)
        self.mappings(shape, r.randint(2, 10), "S2")
        p.tags.add("secure-stage2")

    # --- mappings -----------------------------------------------------------------

    def pick_level(self, shape: Shape) -> tuple[int, bool]:
        """A level for a new entry, and whether it is a forced (invalid) block."""
        illegal = [lv for lv in shape.levels() if not shape.block_ok(lv)]
        if illegal and self.chance(0.06, "malformed"):
            return self.r.choice(illegal), True
        legal = [lv for lv in shape.levels() if shape.block_ok(lv)]
        weights = [4.0 if lv == 3 else 2.0 if lv == 2 else 1.0 for lv in legal]
        return self.r.choices(legal, weights)[0], False

    def pick_addr(self, shape: Shape, size: int, anchors: list[int]) -> int | None:
        lo, hi = shape.range_start, shape.range_end
        slots = (hi - lo) // size
        if slots <= 0:
            return None
        taken = self.p.taken.setdefault(shape.base, [])
        for _ in range(8):
            mode = self.r.random()
            if taken and mode < 0.45:
                a, b = self.r.choice(taken)
                va = (b + size - 1) & ~(size - 1) if self.r.random() < 0.6 \
                    else (a & ~(size - 1)) - size
            elif anchors and mode < 0.8:
                va = (self.r.choice(anchors) & ~(size - 1)) + self.r.randrange(8) * size
            else:
                va = lo + self.r.randrange(slots) * size
            if lo <= va and va + size <= hi and not any(
                    s < va + size and va < e for s, e in taken):
                taken.append((va, va + size))
                return va
        return None

    def pick_out(self, shape: Shape, size: int) -> int:
        """An output address for an entry of ``size``: mostly below the OA size,
        in a stage 2 mapping when stage 2 translates it, sometimes beyond."""
        p = self.p
        top = min(shape.oasize, 44)
        if shape.stage == 1 and "VTTBR_EL2" in p.shapes and shape.base.endswith("EL1") \
                and self.r.random() < 0.7:
            s2 = [m for m in p.tables["VTTBR_EL2"] if "pa" in m and "raw" not in m]
            if s2:
                m = self.r.choice(s2)
                s2size = size_bytes(m["size"])
                ipa: int = m["ipa"]
                return (ipa + self.r.randrange(max(1, s2size // shape.granule))
                        * shape.granule) & ~(size - 1)
        roll = self.r.random()
        if roll < 0.12 and self.k.on("malformed") and shape.oasize < shape.encodable_bits:
            hi = 1 << shape.encodable_bits
            lo = 1 << shape.oasize
            return (lo + self.r.randrange(max(1, (hi - lo) // size)) * size) & (hi - 1)
        if roll < 0.25:
            return ((1 << shape.oasize) - size) & ~(size - 1)
        if roll < 0.5 and size <= 1 << 30:
            return (RAM_BASE + self.r.randrange(1 << 27) & ~(size - 1)) or size
        return self.r.randrange(max(1, (1 << top) // size)) * size

    def mappings(self, shape: Shape, count: int, regime: str) -> None:
        p = self.p
        maps = p.tables[shape.base]
        s2 = shape.stage == 2
        anchors = []
        for _ in range(self.r.randint(1, 3)):
            top = shape.size(max(shape.start_level, 0))
            anchors.append(shape.range_start
                           + self.r.randrange(max(1, (shape.range_end - shape.range_start)
                                                  // top)) * top)
            if self.r.random() < 0.3:
                anchors[-1] = shape.range_end - top
        if s2 and p.el1:
            anchors = [a for a in anchors if not RAM_BASE <= a < RAM_END] or [0]
        for _ in range(count):
            level, force = self.pick_level(shape)
            size = shape.size(level)
            va = self.pick_addr(shape, size, anchors)
            if va is None:
                continue
            if s2 and va < RAM_END and va + size > RAM_BASE:
                # keep the RAM's stage 2 mapping (the walks and the harness) as built
                p.taken[shape.base].remove((va, va + size))
                continue
            key = "ipa" if s2 else "va"
            m: dict[str, Any] = {key: va}
            if self.chance(0.12, "malformed"):
                m["raw"] = self.raw_word(shape, level, va)
                m["level"] = level
                p.tags.add("raw-descriptor")
            else:
                m["pa"] = self.pick_out(shape, size)
                m["size"] = size_name(size)
                if force:
                    m["force"] = 1
                    p.tags.add("forced-block")
                if level == 1 and shape.granule_bits == 16 and not force:
                    p.requires.add("LPA")
                self.leaf_fields(m, shape, level, regime)
            maps.append(m)
            self.add_targets(shape, va, size, regime)
            if level > shape.start_level and self.chance(0.15, "raw-tables"):
                self.override(shape, va, level, regime)

    def leaf_fields(self, m: dict[str, Any], shape: Shape, level: int, regime: str) -> None:
        r = self.r
        indirect = r.random() < 0.85 and (self.p.s2pie if shape.stage == 2
                                          else shape.base in self.p.indirect)
        if shape.stage == 2:
            if indirect:
                tcr2.s2_leaf(r, m)
                self.p.tags.add("s2:pi_index")
            elif r.random() < 0.6:
                m["s2ap"] = r.choice(S2AP)
            if r.random() < 0.7:
                m["attr"] = r.randrange(16)
            if not indirect and r.random() < 0.2 and self.k.on("malformed"):
                m["xn"] = r.randrange(4)
            if self.chance(0.25, "realm"):
                m["ns"] = 1  # Realm stage 2: the output is Non-secure (S2NextWalkStateLeaf)
                self.p.tags.add("s2:ns")
        else:
            if indirect:
                tcr2.s1_leaf(r, m)
                self.p.tags.add("pi_index")
            elif r.random() < 0.8:
                m["ap"] = r.choice(AP_ONE if regime in ("EL2", "EL3") else AP_TWO)
            if r.random() < 0.8:
                # AttrIndx[3] (descriptor bit 59) with FEAT_AIE: MAIR2_ELx
                m["attr"] = r.randrange(16 if self.chance(0.4, "aie") else 8)
            if r.random() < 0.2:
                m["ng"] = 1
            if not indirect and r.random() < 0.2:
                m["pxn"] = 1
            if not indirect and r.random() < 0.2:
                m["uxn"] = 1
            if level > shape.start_level and self.chance(0.25, "table-attrs"):
                self.table_attr(m, shape, level)
            self.security_bits(m, regime)
        if not shape.ds and r.random() < 0.4:
            m["sh"] = r.choice(SH)
        ha = "HA" in self.p.regs.get("VTCR_EL2" if shape.stage == 2 else
                                     f"TCR_{shape.base[-3:]}", {})
        if self.chance(0.3 if ha else 0.07, "malformed"):
            m["af"] = 0
            self.p.tags.add("af=0")
        if not indirect and self.chance(0.2, "hd"):
            m["dbm"] = 1

    def security_bits(self, m: dict[str, Any], regime: str) -> None:
        """A stage 1 leaf's NS bit (read in the Secure regimes and the Realm
        EL2 and EL2&0 regimes; D8.4.6) and, in the EL3 regime with FEAT_RME,
        NSE: {NSE, NS} selects Secure, Non-secure, Root or Realm output."""
        el3 = regime == "EL3"
        if self.security and self.r.random() < (0.35 if el3 else 0.15):
            m["ns"] = 1
            self.p.tags.add("ns")
        if el3 and self.chance(0.35, "realm"):
            m["nse"] = 1
            self.p.tags.add("nse")

    def table_attr(self, m: dict[str, Any], shape: Shape, level: int) -> None:
        tlevel = self.r.randrange(shape.start_level, level)
        key = (shape.base, tlevel, m["va"] >> shape.lsb(tlevel))
        lo, hi = shape.entry_range(m["va"], tlevel)
        if shape.base == "TTBR0_EL3" and lo < HARNESS_PA + HARNESS_SIZE and hi > HARNESS_PA:
            return  # the harness's own walk at EL3
        attrs = self.p.table_attrs.get(key)
        if attrs is None:
            attrs = {}
            if self.r.random() < 0.7:
                attrs["aptable"] = self.r.randrange(1, 4)
            if self.r.random() < 0.3:
                attrs["pxntable"] = 1
            if self.r.random() < 0.3:
                attrs["uxntable"] = 1
            if self.security and self.r.random() < 0.3:
                attrs["nstable"] = 1  # the rest of a Secure walk is Non-secure (D8.4.6)
            if not attrs:
                attrs["aptable"] = 2
            self.p.table_attrs[key] = attrs
        entry = dict(attrs)
        if tlevel != level - 1:
            entry["level"] = tlevel
        m["table"] = entry
        self.p.tags.add("table-attrs")

    # --- malformed words ------------------------------------------------------------

    def leaf_word(self, shape: Shape, level: int, oa: int) -> int:
        r = self.r
        word = oa & ((1 << 48) - 1)
        if oa >> 48:
            if shape.granule_bits == 16:
                word |= ((oa >> 48) & 0xF) << 12
            else:
                word |= ((oa >> 48) & 3) << 48 | ((oa >> 50) & 3) << 8
        word |= r.randrange(16 if shape.stage == 2 else 8) << 2
        word |= r.randrange(4) << 6
        if not shape.ds:
            word |= r.randrange(4) << 8
        word |= (1 << 10) if r.random() < 0.85 else 0
        return word | (0b11 if level == 3 else 0b01)

    def raw_word(self, shape: Shape, level: int, va: int) -> int:
        """A descriptor that is wrong on purpose (D8.3): invalid, a reserved
        type, a table pointing at odd places, reserved or ignored bits set,
        an output address beyond the OA size."""
        r = self.r
        size = shape.size(level)
        kinds = ["invalid", "bits", "oa-high"]
        if level == 3:
            kinds.append("l3-reserved")
        else:
            kinds += ["table-far", "table-raw", "table-raw"]
            if not self.p.ha:
                kinds.append("table-arena")
            if not shape.block_ok(level):
                kinds.append("block-illegal")
        kind: str = r.choice(kinds)
        self.p.tags.add(f"raw:{kind}")
        oa = self.pick_out(shape, size)
        if kind == "invalid":
            return r.getrandbits(64) & ~1
        if kind == "l3-reserved":
            return self.leaf_word(shape, level, oa) & ~0b10
        if kind == "block-illegal":
            return self.leaf_word(shape, level, oa)
        if kind == "bits":
            noise = r.choice([1 << b for b in (5, 11, 16, 50, 55, 56, 58, 59, 63)]
                             + [r.getrandbits(12) << 52, r.getrandbits(4) << 12,
                                r.getrandbits(2) << 48])
            if level < 3 and shape.granule_bits + 1 < shape.lsb(level):
                noise |= r.randrange(1, 1 << (shape.lsb(level) - 12)) << 12 \
                    if r.random() < 0.3 else 0
            # Never the Contiguous bit (52): on a lone entry it is a
            # misprogramming whose output is CONSTRAINED UNPREDICTABLE (D8.7.1).
            return self.leaf_word(shape, level, oa) | noise & ~CONTIGUOUS_BIT
        if kind == "oa-high":
            hi = 1 << shape.encodable_bits
            lo = min(1 << shape.oasize, hi - size)
            return self.leaf_word(shape, level, lo + r.randrange(max(1, (hi - lo) // size))
                                  * size)
        table_bits = 0 if shape.stage == 2 else r.choice([0, 0, 1 << 61, 1 << 62, 3 << 59])
        if kind == "table-arena":
            page = ARENA_PA + r.randrange(8) * shape.granule
            return page | table_bits | 0b11
        if kind == "table-far":
            far = r.choice([NO_RAM, 1 << shape.oasize if shape.oasize < 48 else NO_RAM])
            return far | table_bits | 0b11
        page = self.raw_table(shape, level, va)
        return page | table_bits | 0b11

    def raw_table(self, shape: Shape, level: int, va: int) -> int:
        """A hand-made next-level table (a ``memory:`` block) for the entry
        at ``level`` on the walk of ``va``, with probes at its entries."""
        p, r = self.p, self.r
        page = p.next_raw_page
        p.next_raw_page += 0x10000
        entries = shape.granule // 8
        n = r.randint(2, 10)
        first = r.randrange(entries - n)
        words = []
        sub = level + 1
        for _ in range(n):
            roll = r.random()
            if roll < 0.2:
                words.append(0)
            elif roll < 0.6 or sub == 3:
                words.append(self.leaf_word(shape, sub, self.pick_out(shape, shape.size(sub)))
                             | (r.getrandbits(2) << 53 if r.random() < 0.3 else 0))
            elif not p.ha:
                words.append(ARENA_PA + r.randrange(4) * shape.granule | 0b11)
            else:
                words.append(NO_RAM | 0b11)
        p.memory.append({"addr": page + 8 * first, "words": words})
        region, _ = shape.entry_range(va, level)
        for j in range(n):
            at = region + (first + j) * shape.size(sub)
            self.p.targets.append(Target(at + r.randrange(shape.size(sub)) // 8 * 8,
                                         self.ops_for(shape)))
            self.p.targets.append(Target(at, self.ops_for(shape)))
        p.tags.add("raw-table")
        return page

    def override(self, shape: Shape, va: int, level: int, regime: str) -> None:
        """Write over the table descriptor at a level above ``va``'s entry."""
        r = self.r
        olevel = r.randrange(shape.start_level, level)
        kinds = ["zero", "block", "table-raw", "table-far"]
        if not self.p.ha:
            kinds += ["table-arena", "bits"]
        kind = r.choice(kinds)
        oa = self.pick_out(shape, shape.size(olevel))
        if kind == "zero":
            value = 0
        elif kind == "block":
            value = self.leaf_word(shape, olevel, oa)
        elif kind == "table-arena":
            value = ARENA_PA + r.randrange(8) * shape.granule | 0b11
        elif kind == "table-raw":
            value = self.raw_table(shape, olevel, va) | 0b11
        elif kind == "table-far":
            value = NO_RAM | 0b11
        else:
            value = ARENA_PA + r.randrange(8) * shape.granule | 0b11 \
                | r.getrandbits(5) << 59 | r.getrandbits(3) << 8
        self.p.descriptors.append({"table": shape.base, "level": olevel, "va": va,
                                   "value": value})
        self.p.tags.add(f"override:{kind}")

    # --- probes ---------------------------------------------------------------------

    def ops_for(self, shape: Shape) -> tuple[AtOp, ...]:
        hcr = self.p.regs.get("HCR_EL2", {})
        host = hcr.get("E2H") and hcr.get("TGE")
        pan = PAN_OPS if self.f.pan >= 2 else ()
        el1 = EL1_OPS + self.ats1a_ops(AtOp.S1E1A)
        if shape.base == "TTBR0_EL3":
            return EL3_OPS
        if shape.stage == 2:
            return S12_OPS + el1
        if shape.base.endswith("EL2"):
            return EL2_OPS + self.ats1a_ops(AtOp.S1E2A) + ((el1 + pan) if host else ())
        return el1 + pan + S12_OPS

    def ats1a_ops(self, op: AtOp) -> tuple[AtOp, ...]:
        """AT S1E1A / S1E2A (FEAT_ATS1A: no permission check) when the CPU has it."""
        return (op,) if self.k.on("ats1a") else ()

    def add_targets(self, shape: Shape, va: int, size: int, regime: str) -> None:
        r = self.r
        ops = self.ops_for(shape)
        g = shape.granule
        offsets = [0, size - 8, r.randrange(size) // 8 * 8]
        offsets += [off for off in (size, -g) if r.random() < 0.5]
        if size > g:
            offsets += [size // 2, g]
        secure = shape.base == "VSTTBR_EL2"
        for off in offsets:
            a = (va + off) % (1 << 64)
            self.p.targets.append(Target(a, ops, secure))
            if self.chance(0.15, "tbi"):
                tag = r.randrange(256)
                self.p.targets.append(Target((a & ~(0xFF << 56)) | tag << 56, ops))

    def hole_targets(self) -> None:
        r = self.r
        for shape in list(self.p.shapes.values()):
            ops = self.ops_for(shape)
            span = shape.range_end - shape.range_start
            for _ in range(4):
                self.p.targets.append(Target(shape.range_start + r.randrange(span) // 8 * 8,
                                             ops))
            outside = (shape.range_start - 8 if shape.upper
                       else min(shape.range_end + r.randrange(1 << 20) * 8, (1 << 64) - 8))
            self.p.targets.append(Target(outside, ops))
        if not self.p.shapes or self.r.random() < 0.3:
            ops = (EL1_OPS + S12_OPS + EL2_OPS + self.ats1a_ops(AtOp.S1E1A)
                   + self.ats1a_ops(AtOp.S1E2A) + (EL3_OPS if self.k.on("secure") else ()))
            for a in (RAM_BASE + 0x1000, 1 << self.f.pa_range_bits,
                      (1 << self.f.pa_range_bits) - 0x1000, r.getrandbits(48) & ~7,
                      0xFFFF_FFFF_FFFF_F000):
                self.p.targets.append(Target(a, ops))

    def probes(self) -> list[dict[str, Any]]:
        """Probes on the targets: each VA with a few (op, EL, PAN) picks; a
        few illegal ones (UNDEFINED at EL1)."""
        self.hole_targets()
        r, p = self.r, self.p
        seen: dict[tuple[str, int, int, int, str], dict[str, Any]] = {}
        pan_ok = self.k.on("pan")
        el1_ops = {op for op in AtOp
                   if op.min_el == 1 and (op not in PAN_OPS or self.f.pan >= 2)}
        for t in p.targets:
            for _ in range(r.randint(1, 4)):
                op = r.choice(t.ops)
                space = ""
                if op in EL3_OPS:
                    # the EL3 regime: the Root state with FEAT_RME, else Secure
                    el, space = 3, "root" if self.f.rme else ""
                else:
                    el = 1 if p.el1 and op in el1_ops and r.random() < 0.5 else 2
                    if self.security and r.random() < (0.85 if t.secure else 0.4):
                        el, space = 3, self.space(t.secure)
                pan = int(pan_ok and r.random() < 0.4)
                name = OP_NAMES[op]
                q = {"op": name, "va": t.va, "el": el, "pan": pan}
                if space and space != "nonsecure":
                    q["space"] = space
                seen.setdefault((name, t.va, el, pan, space), q)
        out = list(seen.values())
        if len(out) > MAX_PROBES:
            out = r.sample(out, MAX_PROBES)
        # one run of probes per (EL, PAN, Security state): the harness switches them per run
        out.sort(key=lambda q: (q["el"], q["pan"], q.get("space", "")))
        if p.el1 and self.k.on("undefined"):
            for _ in range(r.randint(0, 3)):
                t = r.choice(p.targets)
                op = r.choice(EL2_OPS + S12_OPS + self.ats1a_ops(AtOp.S1E2A))
                key = (op.value, t.va, 1, 0, "")
                if key not in seen:
                    seen[key] = {"op": op.value, "va": t.va, "el": 1, "pan": 0}
                    out.append(seen[key])
                    p.tags.add("undefined-op")
        return out


    def space(self, secure: bool) -> str:
        """The Security state of a probe at EL3 for the EL1 and EL2 operations
        (SCR_EL3.{NSE, NS}): Secure, Realm (FEAT_RME) or Non-secure."""
        spaces = [s for s, knob in (("secure", "secure"), ("realm", "realm"))
                  if self.k.on(knob)]
        if secure and "secure" in spaces:
            return "secure"
        return self.r.choice([*spaces, "nonsecure"])


class _Retry(Exception):
    """This draw cannot make a usable case; draw again."""


def generate(rng: random.Random, knobs: Knobs) -> tuple[Doc, Plan]:
    """One random scenario document (not yet checked by the loader)."""
    for _ in range(20):
        gen = Generator(rng, knobs)
        try:
            plan = gen.case()
        except _Retry:
            continue
        probes = gen.probes()
        if any(q["el"] == 3 for q in probes):
            plan.requires.add("EL3")
        if any(q.get("space") in ("realm", "root") for q in probes):
            plan.requires.add("RME")
        doc: Doc = {}
        if plan.requires:
            doc["requires"] = sorted(plan.requires)
        regs: dict[str, Any] = {**plan.regs, **plan.raw_regs}
        if regs:
            order = sorted(regs, key=lambda n: (n != "HCR_EL2", n))
            doc["regs"] = {n: regs[n] for n in order}
        if plan.tables:
            doc["tables"] = plan.tables
        if plan.memory:
            doc["memory"] = plan.memory
        if plan.descriptors:
            doc["descriptors"] = plan.descriptors
        if plan.gpt is not None:
            doc["gpt"] = plan.gpt
        doc["probes"] = probes
        return doc, plan
    raise RuntimeError("the generator found no usable case in 20 draws")
