"""Load a scenario file: parse the YAML, validate every field, expand probes.

Errors are ScenarioError with the file, the line and the field path, and say
what was expected (docs/scenario-format.md describes the format). Loading
also builds the scenario once, so that a layout the builder cannot place is
reported when the file is loaded, not when it runs.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from xcheck.machine import TRANSLATION_SYSREGS, AtOp, Probe, SecurityState, sysreg_defaults
from xcheck.requires import FEATURE_NAMES
from xcheck.scenario.errors import Located, ScenarioError
from xcheck.scenario.expect import (
    FAULT_NAMES,
    RESULTS,
    Expectation,
    KnownDivergence,
    RegChange,
    Selector,
)
from xcheck.scenario.gpt import parse_gpt
from xcheck.scenario.regfields import (
    NAMED,
    SH_VALUES,
    field_names,
    layout,
    named_value,
    set_field,
)
from xcheck.scenario.scenario import Scenario
from xcheck.scenario.spec import (
    BASE_REGS,
    DEFAULT_RAM_SIZE,
    S2_BASES,
    Layout,
    MapEntry,
    Override,
    RawBlock,
    TableAttrs,
)
from xcheck.scenario.values import (
    as_bool,
    as_choice,
    as_int,
    as_list,
    as_map,
    as_size,
    as_str,
    hex_,
    one_or_many,
    show,
)
from xcheck.scenario.versions import parse_range
from xcheck.scenario.yamlsrc import YList, YMap, load_yaml
from xcheck.sysregs import SCR_EL3_EEL2

__all__ = [
    "Expectation",
    "KnownDivergence",
    "Scenario",
    "ScenarioError",
    "discover",
    "load_scenario",
    "parse_scenario",
]

TOP_KEYS = ("name", "about", "requires", "profile", "regs", "pstate", "tables", "memory",
            "descriptors", "gpt", "probes", "expect", "known")
PROFILE_KEYS = ("machine", "cpu", "memory", "extra_args")
PSTATE_KEYS = ("EL", "PAN")
SELECT_KEYS = ("op", "va", "el", "pan", "space")
PROBE_KEYS = (*SELECT_KEYS, "label")
EXPECT_KEYS = (*SELECT_KEYS, "fault", "level", "stage", "ptw", "pa", "attr", "sh", "ns",
               "result")
KNOWN_KEYS = (*SELECT_KEYS, "qemu", "kvm", "lacks", "why", "link", "acts_as")
S1_KEYS = ("va", "pa", "size", "level", "raw", "force", "ap", "attr", "sh", "af", "ng",
           "contiguous", "pxn", "uxn", "xn", "dbm", "table", "pi_index", "ndirty",
           "ns", "nse")
PI_INDEX_BITS = ("ap", "pxn", "uxn", "xn", "dbm")
"""The fields whose bits [54:53], [51] and [6] pi_index sets (AArch64.S1ApplyOutputPerms:
PIIndex = UXN:PXN:DBM:AP[1]); with pi_index, ndirty sets bit 7 (AP[2])."""
SPACES = {s.value: s for s in SecurityState}
"""A probe's Security state (``space:``): at EL3, the one SCR_EL3.{NSE, NS}
selects for its AT (root: the EL3 regime's own, with FEAT_RME)."""
S2_KEYS = ("ipa", "pa", "size", "level", "raw", "force", "s2ap", "attr", "sh", "af", "xn",
           "contiguous", "dbm", "pi_index", "dirty", "ns")
TABLE_ATTR_KEYS = ("level", "aptable", "pxntable", "uxntable", "xntable", "nstable")
MEMORY_KEYS = ("addr", "words")
OVERRIDE_KEYS = ("table", "level", "index", "va", "value")

AP_TWO_RANGES = {"RW_EL1": 0b00, "RW_ANY": 0b01, "RO_EL1": 0b10, "RO_ANY": 0b11,
                 "RW": 0b00, "RO": 0b10}
"""AP[2:1] for a regime with EL0 (EL1&0, EL2&0): the privileged level and EL0
(Arm ARM D8.4.1.2, Table D8-42). RW/RO: privileged only."""
AP_ONE_RANGE = {"RW": 0b01, "RO": 0b11}
"""AP[2:1] for the EL2 regime: only AP[2] matters, AP[1] is RES1 (D8.4.1.2)."""
S2AP = {"NONE": 0b00, "RO": 0b01, "WO": 0b10, "RW": 0b11}
"""S2AP[1:0] (D8.4.3, Table D8-51)."""
EL0_PROBES = ("probes at EL0 are not supported: the AT S1E0R/S1E0W operations, run "
              "at EL1, check EL0 permissions")


def discover(paths: Iterable[Path | str]) -> list[Path]:
    """Scenario files under ``paths`` (files, or folders searched recursively
    for *.yaml and *.yml), sorted and without duplicates."""
    found: set[Path] = set()
    for p in map(Path, paths):
        if p.is_dir():
            found.update(f for f in p.rglob("*") if f.suffix in (".yaml", ".yml") and f.is_file())
        elif p.is_file():
            found.add(p)
        else:
            raise ScenarioError(p, 1, "path", "no such file or folder")
    return sorted(found, key=lambda f: str(f))


def load_scenario(path: Path | str) -> Scenario:
    """Read, validate and build-check one scenario file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ScenarioError(p, 1, "file", f"cannot read it: {err}") from None
    return parse_scenario(text, p)


def parse_scenario(text: str, path: Path) -> Scenario:
    """The Scenario described by ``text`` (``path`` names it in errors)."""
    try:
        doc = load_yaml(text)
        scenario = _Parser(path).scenario(doc)
    except Located as err:
        raise err.at(path) from None
    scenario.build()
    return scenario


def _sel_values(entry: YMap, key: str, field: str, parse: Any) -> list[Any]:
    line = entry.at(key)
    values = one_or_many(entry[key])
    if not values:
        raise Located(line, f"{field}.{key}", "an empty list selects nothing")
    return [parse(v, f"{field}.{key}", line) for v in values]


_AT_OPS = {op.value: op for op in AtOp}


def parse_op(value: Any, field: str, line: int) -> AtOp:
    if isinstance(value, str):
        op = _AT_OPS.get(value.strip().upper().removeprefix("AT "))
        if op is not None:
            return op
    raise Located(line, field, f"{show(value)} is not an AT operation: expected one of "
                  + ", ".join(_AT_OPS))


OP_NAMES = {op: name for name, op in _AT_OPS.items()}
"""Each op's assembler name (an Enum's ``value`` is a Python-level property)."""


def probe_label(op: AtOp, va: int, el: int, pan: bool,
                space: SecurityState = SecurityState.NONSECURE) -> str:
    """The label a probe gets from its fields (``S1E1RP va=0x8000_0000 el=1 pan=1``;
    the VA as values.hex_ writes it, formatted in place: every probe has one)."""
    label = f"{OP_NAMES[op]} va={va:#_x} el={el} pan={pan:d}"
    return label if space is SecurityState.NONSECURE else f"{label} space={space.value}"


def parse_va(value: Any, field: str, line: int) -> int:
    return as_int(value, field, line, what="a 64-bit address")


def parse_el(value: Any, field: str, line: int) -> int:
    el = as_int(value, field, line, 0, 3, what="an exception level")
    if el == 0:
        raise Located(line, field, EL0_PROBES)
    return el


def parse_space(value: Any, field: str, line: int) -> SecurityState:
    """``nonsecure``, ``secure``, ``realm`` or ``root``."""
    space: SecurityState = as_choice(value, SPACES, field, line)
    return space


def space_problem(space: SecurityState, el: int, op: AtOp, eel2: bool = False) -> str:
    """Why a probe at ``el`` cannot run ``op`` in ``space`` ("" when it can).
    At EL3 SCR_EL3.{NSE, NS} selects Non-secure, Secure or Realm for the EL1
    and EL2 operations, and Root is the state of EL3 itself (FEAT_RME), so
    only AT S1E3* run in it; AT S1E3* translate the EL3 regime whatever
    SCR_EL3 says, so not in a Realm probe. Below EL3 the probe runs in its
    state: there is no Root EL1 or EL2, and Secure EL2 exists only with
    SCR_EL3.EEL2 = 1 (``eel2``, D24.2 SCR_EL3)."""
    if el != 3 and space is SecurityState.ROOT:
        return ("space: root is the state of EL3 itself (FEAT_RME): there is no Root EL1 or "
                "EL2; use el: 3, or space: nonsecure, secure or realm")
    if el == 2 and space is SecurityState.SECURE and not eel2:
        return ("space: secure at EL2 needs Secure EL2: set regs: {SCR_EL3: {EEL2: 1}} "
                "(without it EL2 does not exist in the Secure state, D24.2 SCR_EL3.EEL2)")
    if space is SecurityState.ROOT and op.min_el != 3:
        return (f"space: root is the state of EL3 itself (FEAT_RME): AT {op.value} at EL3 "
                "translates for the state SCR_EL3.{NSE, NS} selects: nonsecure, secure or "
                "realm")
    if space is SecurityState.REALM and op.min_el == 3:
        return (f"space: realm is for AT S1E1*/S1E0*/S12E*/S1E2* (the Realm regimes): AT "
                f"{op.value} translates the EL3 regime of the Root state: use space: root")
    return ""


def parse_pan(value: Any, field: str, line: int) -> bool:
    return as_bool(value, field, line)


class _Parser:
    """One file's parse; ``self.e2h`` selects TCR_EL2's layout and the AP
    names of TTBR0_EL2's tables."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.e2h = False

    def scenario(self, doc: Any) -> Scenario:
        if doc is None:
            raise Located(1, "probes", "the file is empty: a scenario needs at least probes")
        top = as_map(doc, "", 1, TOP_KEYS)
        if "probes" not in top:
            raise Located(top.line, "probes", "missing: a scenario needs at least one probe")
        name = self.path.stem
        if "name" in top:
            name = as_str(top["name"], "name", top.at("name")).strip()
            if not name:
                raise Located(top.at("name"), "name", "empty: expected a short name")
        about = as_str(top["about"], "about", top.at("about")) if "about" in top else ""
        requires = self.requires(top)
        gpt = parse_gpt(top["gpt"], top.at("gpt")) if "gpt" in top else None
        if gpt is not None and "RME" not in requires:
            requires = (*requires, "RME")  # granule protection checks exist only with FEAT_RME
        overrides = self.profile(top)
        sysregs, reg_lines = self.regs(top)
        el, pan = self.pstate(top)
        mappings, table_lines = self.tables(top)
        memory = self.memory(top)
        overrides_ = self.descriptors(top)
        eel2 = bool(sysregs.get("SCR_EL3", 0) & SCR_EL3_EEL2)
        probes, probe_lines = self.probes(top, el, pan, eel2)
        if "RME" not in requires and any(p.space is SecurityState.REALM for p in probes):
            requires = (*requires, "RME")  # the Realm state exists only with FEAT_RME
        if "SEL2" not in requires and any(p.space is SecurityState.SECURE and p.el == 2
                                          for p in probes):
            requires = (*requires, "SEL2")  # Secure EL2 exists only with FEAT_SEL2
        expect = tuple(self.expectation(e, i, top["expect"].at(i), probes)
                       for i, e in enumerate(self.entries(top, "expect")))
        known = tuple(self.known(e, i, top["known"].at(i), probes)
                      for i, e in enumerate(self.entries(top, "known")))
        ram = DEFAULT_RAM_SIZE
        mem = dict(overrides).get("memory")
        if mem is not None:
            ram = _ram_size(str(mem), top["profile"].at("memory"))
        lay = Layout(
            path=self.path, sysregs=tuple(sysregs.items()), reg_lines=tuple(reg_lines.items()),
            table_lines=tuple(table_lines.items()), mappings=tuple(mappings),
            memory=tuple(memory), overrides=tuple(overrides_), ram_size=ram,
            requires=requires, regs_line=top.at("regs") if "regs" in top else top.line,
            gpt=gpt,
        )
        return Scenario(
            name=name, about=about.strip(), path=self.path, requires=requires,
            probes=tuple(probes), expect=expect, known=known, profile_overrides=overrides,
            layout=lay, probe_lines=tuple(probe_lines.items()),
        )

    # --- simple top-level keys --------------------------------------------

    def entries(self, top: YMap, key: str) -> YList:
        if key not in top or top[key] is None:
            empty = YList()
            empty.line, empty.lines = top.at(key), []
            return empty
        return as_list(top[key], key, top.at(key))

    def requires(self, top: YMap) -> tuple[str, ...]:
        return self.feature_list(top, "requires", "requires") if "requires" in top else ()

    def feature_list(self, m: YMap, key: str, field: str) -> tuple[str, ...]:
        """A feature name or a list of them (xcheck.requires.FEATURE_NAMES)."""
        line = m.at(key)
        raw = m[key]
        items = raw if isinstance(raw, list) else [raw]
        out = []
        for i, item in enumerate(items):
            at = raw.at(i) if isinstance(raw, YList) else line
            feat = as_str(item, f"{field}[{i}]", at).strip()
            if feat not in FEATURE_NAMES:
                raise Located(at, f"{field}[{i}]", f"unknown feature {feat!r}; expected one "
                              f"of {', '.join(FEATURE_NAMES)}")
            out.append(feat)
        return tuple(out)

    def profile(self, top: YMap) -> tuple[tuple[str, Any], ...]:
        if "profile" not in top:
            return ()
        prof = as_map(top["profile"], "profile", top.at("profile"), PROFILE_KEYS)
        out: list[tuple[str, Any]] = []
        for key in sorted(prof):
            value, line = prof[key], prof.at(key)
            if key == "extra_args":
                args = value if isinstance(value, list) else [value]
                for a in args:
                    if not isinstance(a, str | int):
                        raise Located(line, "profile.extra_args", f"{show(a)} is not an "
                                      "argument: expected a list of strings")
                out.append((key, tuple(str(a) for a in args)))
            else:
                if not isinstance(value, str | int) or isinstance(value, bool):
                    raise Located(line, f"profile.{key}", f"{show(value)} is not a string")
                out.append((key, str(value)))
        return tuple(out)

    def pstate(self, top: YMap) -> tuple[int, bool]:
        if "pstate" not in top:
            return 1, False
        ps = as_map(top["pstate"], "pstate", top.at("pstate"), PSTATE_KEYS)
        el = parse_el(ps["EL"], "pstate.EL", ps.at("EL")) if "EL" in ps else 1
        pan = parse_pan(ps["PAN"], "pstate.PAN", ps.at("PAN")) if "PAN" in ps else False
        return el, pan

    # --- registers ---------------------------------------------------------

    def regs(self, top: YMap) -> tuple[dict[str, int], dict[str, int]]:
        values = sysreg_defaults()
        lines: dict[str, int] = {}
        if "regs" not in top:
            return values, lines
        regs = as_map(top["regs"], "regs", top.at("regs"), TRANSLATION_SYSREGS, "register")
        # HCR_EL2 first: its E2H decides the layout of TCR_EL2.
        order = sorted(regs, key=lambda r: r != "HCR_EL2")
        for reg in order:
            lines[reg] = regs.at(reg)
            values[reg] = self.reg_value(reg, regs[reg], values[reg], regs.at(reg))
            if reg == "HCR_EL2":
                self.e2h = bool(values[reg] >> 34 & 1)
        return values, lines

    def reg_value(self, reg: str, spec: Any, default: int, line: int) -> int:
        field = f"regs.{reg}"
        if not isinstance(spec, dict):
            return as_int(spec, field, line, what="a 64-bit register value or a mapping of "
                          "field names")
        fields = layout(reg, self.e2h)
        value = default
        spec = as_map(spec, field, line)
        for name, fv in spec.items():
            fline = spec.at(name)
            if name not in fields:
                extra = (" (with HCR_EL2.E2H == 0; set E2H: 1 for the TCR_EL1 layout)"
                         if reg == "TCR_EL2" and not self.e2h else "")
                raise Located(fline, f"{field}.{name}", f"unknown field of {reg}{extra}; "
                              f"expected one of {field_names(fields)}")
            lsb, width = fields[name]
            n = named_value(name, fv) if isinstance(fv, str) else None
            if n is None:
                if isinstance(fv, str) and name in NAMED:
                    raise Located(fline, f"{field}.{name}", f"{fv!r} is not one of "
                                  f"{', '.join(NAMED[name])} (or an integer encoding)")
                n = as_int(fv, f"{field}.{name}", fline, 0, (1 << width) - 1,
                           what=f"a {width}-bit value")
            value = set_field(value, (lsb, width), n)
        return value

    # --- tables ------------------------------------------------------------

    def tables(self, top: YMap) -> tuple[list[MapEntry], dict[str, int]]:
        out: list[MapEntry] = []
        lines: dict[str, int] = {}
        if "tables" not in top:
            return out, lines
        tables = as_map(top["tables"], "tables", top.at("tables"), BASE_REGS,
                        "table base register")
        for base, entries in tables.items():
            lines[base] = tables.at(base)
            if entries is None:
                continue
            lst = as_list(entries, f"tables.{base}", tables.at(base))
            for i, entry in enumerate(lst):
                out.append(self.mapping(base, i, entry, lst.at(i)))
        return out, lines

    def mapping(self, base: str, n: int, value: Any, line: int) -> MapEntry:
        s2 = base in S2_BASES
        field = f"tables.{base}[{n}]"
        allowed = S2_KEYS if s2 else S1_KEYS
        if isinstance(value, YMap) and s2 and "va" in value:
            raise Located(value.at("va"), f"{field}.va", "stage 2 tables map IPAs: write "
                          "ipa instead of va")
        if isinstance(value, YMap) and not s2 and "ipa" in value:
            raise Located(value.at("ipa"), f"{field}.ipa", "stage 1 tables map VAs: write "
                          "va instead of ipa")
        m = as_map(value, field, line, allowed)
        line = m.line

        def get(key: str, parse: Any, *args: Any) -> Any:
            return parse(m[key], f"{field}.{key}", m.at(key), *args) if key in m else None

        addr_key = "ipa" if s2 else "va"
        if addr_key not in m:
            raise Located(line, f"{field}.{addr_key}", f"missing: every mapping needs "
                          f"{addr_key} (and pa and size, or raw)")
        va = get(addr_key, as_int, 0, (1 << 64) - 1)
        pa = get("pa", as_int, 0, (1 << 52) - 1, "a physical address below 2^52")
        raw = get("raw", as_int)
        size = get("size", as_size)
        level = get("level", as_int, -1, 3, "a level from -1 to 3")
        if raw is None and pa is None:
            raise Located(line, f"{field}.pa", "missing: a mapping needs pa (or raw, a "
                          "descriptor word written as it is)")
        if raw is not None and pa is not None:
            raise Located(m.at("raw"), f"{field}.raw", "raw replaces the whole descriptor: "
                          "give pa or raw, not both")
        if size is None and level is None:
            raise Located(line, f"{field}.size", "missing: expected a size (4K, 2M, 1G, ...) "
                          "or a level")
        if size is not None:
            if size & (size - 1):
                raise Located(m.at("size"), f"{field}.size", f"{show(size)} is not a power "
                              "of two: expected a page or block size such as 4K, 2M, 1G")
            if va % size:
                raise Located(m.at(addr_key), f"{field}.{addr_key}", f"{hex_(va)} is not "
                              f"aligned to the mapping size {hex_(size)}")
            if pa is not None and pa % size:
                raise Located(m.at("pa"), f"{field}.pa", f"{hex_(pa)} is not aligned to "
                              f"the mapping size {hex_(size)}")
        force = bool(get("force", as_bool))
        sh = get("sh", _parse_sh)
        af = get("af", as_bool)
        bits = (1 << 10) if af is None or af else 0
        if get("contiguous", as_bool):
            bits |= 1 << 52
        if get("dbm", as_bool):
            bits |= 1 << 51
        table = None
        if s2:
            bits |= (get("attr", as_int, 0, 15, "a 4-bit MemAttr") if "attr" in m else 0xF) << 2
            pi = get("pi_index", as_int, 0, 15, "a PIIndex (0..15)")
            clash = [k for k in ("s2ap", "dbm", "xn") if k in m]
            if pi is not None and clash:
                raise Located(m.at(clash[0]), f"{field}.{clash[0]}", "with pi_index: "
                              "PIIndex is descriptor bits <54:53,51,6>, where XN, DBM and S2AP[0] "
                              "are (FEAT_S2PIE)")
            if "dirty" in m and pi is None:
                raise Located(m.at("dirty"), f"{field}.dirty", "S2Dirty (bit 7) goes with "
                              "pi_index (FEAT_S2PIE); without it bit 7 is S2AP[1]")
            if pi is not None:
                # AArch64.S2ApplyOutputPerms: PIIndex = <54:53,51,6>, S2Dirty = <7>
                dirty = get("dirty", as_bool)
                bits |= (pi >> 2) << 53 | (pi >> 1 & 1) << 51 | (pi & 1) << 6 \
                    | int(dirty is None or dirty) << 7
            s2ap = get("s2ap", _parse_choice_or_int, S2AP, 3)
            if pi is None:
                bits |= (S2AP["RW"] if s2ap is None else s2ap) << 6
            xn = m.get("xn")
            if xn is not None:
                bits |= (0b10 if xn is True else as_int(xn, f"{field}.xn", m.at("xn"), 0, 3,
                         "XN[1:0] (0..3) or true")) << 53
            if get("ns", as_bool):
                bits |= 1 << 55  # NS: Non-secure output in the Realm state (else software use)
        else:
            one_range = base == "TTBR0_EL3" or (base == "TTBR0_EL2" and not self.e2h)
            attr = get("attr", as_int, 0, 15, "a MAIR index 0..7, or 8..15 (MAIR2, FEAT_AIE: "
                       "bit 3 is descriptor bit 59)") or 0
            bits |= (attr & 7) << 2 | (attr >> 3) << 59
            if "pi_index" in m:
                bits |= self.pi_bits(m, field)
            elif "ndirty" in m:
                raise Located(m.at("ndirty"), f"{field}.ndirty", "ndirty (bit 7) goes with "
                              "pi_index (Indirect permissions); without it write ap")
            if one_range and isinstance(m.get("ap"), str) and m["ap"] in AP_TWO_RANGES \
                    and m["ap"] not in AP_ONE_RANGE:
                regime = "EL3 regime" if base == "TTBR0_EL3" else "EL2 regime (HCR_EL2.E2H == 0)"
                raise Located(m.at("ap"), f"{field}.ap", f"{m['ap']!r}: the {regime} has no "
                              "EL0; expected RW or RO")
            ap = get("ap", _parse_choice_or_int, AP_ONE_RANGE if one_range else AP_TWO_RANGES,
                     3)
            if "pi_index" not in m:  # the EL2 regime's AP[1] is RES1 (R_MGGZM): not a PIIndex bit
                bits |= ((0b01 if one_range else 0) if ap is None else ap) << 6
            if get("ng", as_bool):
                bits |= 1 << 11
            if get("pxn", as_bool):
                bits |= 1 << 53
            if get("uxn", as_bool) or get("xn", as_bool):
                bits |= 1 << 54
            if get("ns", as_bool):
                bits |= 1 << 5  # NS: Non-secure output, in Secure regimes (D8.4.6)
            if get("nse", as_bool):
                bits |= 1 << 11  # NSE, with NS: the output PA space of the Root state (RME)
            if "table" in m:
                table = self.table_attrs(m["table"], f"{field}.table", m.at("table"))
        if raw is not None and len(set(m) - {addr_key, "raw", "size", "level", "force"}):
            extra = sorted(set(m) - {addr_key, "raw", "size", "level", "force"})
            raise Located(m.at(extra[0]), f"{field}.{extra[0]}", "raw is written as it is: "
                          "it cannot be combined with descriptor fields")
        return MapEntry(
            base=base, n=n, line=line, va=va, pa=pa, size=size, level=level, raw=raw,
            force=force, bits=bits, sh=sh, table=table, key_lines=tuple(m.lines.items()),
        )

    def pi_bits(self, m: YMap, field: str) -> int:
        """Descriptor bits of ``pi_index`` (and ``ndirty``): PIIndex[3:0] in
        bits 54, 53, 51 and 6, nDirty in bit 7 (AArch64.S1ApplyOutputPerms)."""
        clash = [k for k in PI_INDEX_BITS if k in m]
        if clash:
            raise Located(m.at(clash[0]), f"{field}.{clash[0]}", f"pi_index sets descriptor "
                          f"bits 54, 53, 51 and 6 (UXN, PXN, DBM, AP[1]): give pi_index or "
                          f"{', '.join(PI_INDEX_BITS)}, not both")
        index = as_int(m["pi_index"], f"{field}.pi_index", m.at("pi_index"), 0, 15,
                       "a PIIndex 0..15")
        ndirty = "ndirty" in m and as_bool(m["ndirty"], f"{field}.ndirty", m.at("ndirty"))
        return ((index >> 2) << 53 | ((index >> 1) & 1) << 51 | (index & 1) << 6
                | int(ndirty) << 7)

    def table_attrs(self, value: Any, field: str, line: int) -> TableAttrs:
        t = as_map(value, field, line, TABLE_ATTR_KEYS)

        def flag(key: str) -> int:
            return int(as_bool(t[key], f"{field}.{key}", t.at(key))) if key in t else 0

        level = (as_int(t["level"], f"{field}.level", t.at("level"), -1, 2,
                        "the level of a table descriptor (-1..2)") if "level" in t else None)
        ap = (as_int(t["aptable"], f"{field}.aptable", t.at("aptable"), 0, 3,
                     "APTable (0..3)") if "aptable" in t else 0)
        bits = (flag("nstable") << 63) | (ap << 61) | ((flag("uxntable") | flag("xntable")) << 60) \
            | (flag("pxntable") << 59)
        return TableAttrs(line=t.line, level=level, bits=bits)

    # --- memory and descriptor overrides -------------------------------------

    def memory(self, top: YMap) -> list[RawBlock]:
        out = []
        for i, entry in enumerate(self.entries(top, "memory")):
            field = f"memory[{i}]"
            m = as_map(entry, field, top["memory"].at(i), MEMORY_KEYS)
            for key in MEMORY_KEYS:
                if key not in m:
                    raise Located(m.line, f"{field}.{key}", "missing: expected "
                                  "{addr: ADDRESS, words: [WORD, ...]}")
            addr = as_int(m["addr"], f"{field}.addr", m.at("addr"), what="a physical address")
            if addr % 8:
                raise Located(m.at("addr"), f"{field}.addr", f"{hex_(addr)} is not 8-byte "
                              "aligned: words are 64-bit")
            words = as_list(m["words"], f"{field}.words", m.at("words"))
            if not words:
                raise Located(m.at("words"), f"{field}.words", "empty: expected at least "
                              "one 64-bit word")
            vals = tuple(as_int(w, f"{field}.words[{j}]", words.at(j),
                                what="a 64-bit word") for j, w in enumerate(words))
            out.append(RawBlock(n=i, line=m.line, addr=addr, words=vals))
        return out

    def descriptors(self, top: YMap) -> list[Override]:
        out = []
        for i, entry in enumerate(self.entries(top, "descriptors")):
            field = f"descriptors[{i}]"
            m = as_map(entry, field, top["descriptors"].at(i), OVERRIDE_KEYS)
            for key in ("table", "level", "value"):
                if key not in m:
                    raise Located(m.line, f"{field}.{key}", "missing: expected {table: "
                                  "TTBR0_EL1, level: N, index: I (or va: VA), value: WORD}")
            base = as_choice(m["table"], {b: b for b in BASE_REGS}, f"{field}.table",
                             m.at("table"))
            if ("index" in m) == ("va" in m):
                raise Located(m.line, f"{field}.index", "expected exactly one of index "
                              "(the entry in the only table at that level) or va (the "
                              "table that VA's walk reads)")
            out.append(Override(
                n=i, line=m.line, base=base,
                level=as_int(m["level"], f"{field}.level", m.at("level"), -1, 3,
                             "a level from -1 to 3"),
                index=as_int(m["index"], f"{field}.index", m.at("index"), 0, 1 << 20)
                if "index" in m else None,
                va=parse_va(m["va"], f"{field}.va", m.at("va")) if "va" in m else None,
                value=as_int(m["value"], f"{field}.value", m.at("value"), what="a 64-bit word"),
            ))
        return out

    # --- probes, expectations, known divergences -------------------------

    def probes(self, top: YMap, el: int, pan: bool,
               eel2: bool) -> tuple[list[Probe], dict[Probe, int]]:
        entries = self.entries(top, "probes")
        if not entries:
            raise Located(top.at("probes"), "probes", "empty: expected at least one probe "
                          "{op: OP, va: VA}")
        probes: list[Probe] = []
        lines: dict[Probe, int] = {}
        seen: dict[str, int] = {}
        for i, entry in enumerate(entries):
            field = f"probes[{i}]"
            m = as_map(entry, field, entries.at(i), PROBE_KEYS)
            for key in ("op", "va"):
                if key not in m:
                    raise Located(m.line, f"{field}.{key}", "missing: a probe needs op and va")
            ops = _sel_values(m, "op", field, parse_op)
            vas = _sel_values(m, "va", field, parse_va)
            els = _sel_values(m, "el", field, parse_el) if "el" in m else [el]
            pans = _sel_values(m, "pan", field, parse_pan) if "pan" in m else [pan]
            spaces = (_sel_values(m, "space", field, parse_space) if "space" in m
                      else [SecurityState.NONSECURE])
            for op, e, ss in itertools.product(ops, els, spaces):
                problem = space_problem(ss, e, op, eel2)
                if problem:
                    raise Located(m.at("space") if "space" in m else m.line,
                                  f"{field}.space", problem)
            label = as_str(m["label"], f"{field}.label", m.at("label")).strip() \
                if "label" in m else ""
            for op, va, e, p, ss in itertools.product(ops, vas, els, pans, spaces):
                auto = probe_label(op, va, e, p, ss)
                full = f"{label}: {auto}" if label else auto
                if full in seen:
                    raise Located(m.line, field, f"probe {full!r} is listed twice (also at "
                                  f"line {seen[full]}); give one a label to keep both")
                seen[full] = m.line
                probe = Probe(op=op, va=va, el=e, pan=p, label=full, space=ss)
                probes.append(probe)
                lines[probe] = m.line
        return probes, lines

    def selector(self, m: YMap, field: str, probes: Sequence[Probe], what: str) -> Selector:
        sel = Selector(
            ops=tuple(_sel_values(m, "op", field, parse_op)) if "op" in m else (),
            vas=tuple(_sel_values(m, "va", field, parse_va)) if "va" in m else (),
            els=tuple(_sel_values(m, "el", field, parse_el)) if "el" in m else (),
            pans=tuple(_sel_values(m, "pan", field, parse_pan)) if "pan" in m else (),
            spaces=tuple(_sel_values(m, "space", field, parse_space)) if "space" in m else (),
        )
        if not any(sel.matches(p) for p in probes):
            raise Located(m.line, field, f"this {what} selects no probe ({sel.describe()}); "
                          "expected op/va/el/pan/space values that some probe has")
        return sel

    def expectation(self, value: Any, i: int, line: int, probes: Sequence[Probe]) -> Expectation:
        field = f"expect[{i}]"
        m = as_map(value, field, line, EXPECT_KEYS)
        forms = [k for k in ("fault", "pa", "result") if k in m]
        if len(forms) != 1 and forms != ["fault", "result"]:
            raise Located(m.line, field, "expected exactly one of fault: (a PAR fault), pa: "
                          "(a successful translation) or result: (undefined, trap, abort)"
                          + (f"; got {', '.join(forms)}" if forms else ""))
        sel = self.selector(m, field, probes, "expectation")

        def get(key: str, parse: Any, *args: Any) -> Any:
            return parse(m[key], f"{field}.{key}", m.at(key), *args) if key in m else None

        success = "pa" in m
        for key in ("attr", "sh", "ns") if not success else ("level", "stage", "ptw"):
            if key in m:
                raise Located(m.at(key), f"{field}.{key}", "does not apply: "
                              + ("attr, sh and ns go with pa:" if not success
                                 else "level, stage and ptw go with fault:"))
        result = (as_choice(m["result"], {r: r for r in RESULTS}, f"{field}.result",
                             m.at("result")) if "result" in m else None)
        if result in ("undefined", "trap"):
            for key in ("fault", "level", "stage", "ptw"):
                if key in m:
                    raise Located(m.at(key), f"{field}.{key}", f"an AT that is {result} "
                                  "reports no fault")
        return Expectation(
            line=m.line, select=sel, fault=get("fault", _parse_fault),
            level=get("level", as_int, -1, 3, "a level from -1 to 3"),
            stage=get("stage", as_int, 1, 2, "stage 1 or 2"), ptw=get("ptw", as_bool),
            pa=get("pa", as_int, 0, (1 << 56) - 1, "a physical address"),
            attr=get("attr", as_int, 0, 255, "a MAIR-format attribute byte"),
            sh=get("sh", _parse_sh), result=result, ns=get("ns", as_bool),
        )

    def known(self, value: Any, i: int, line: int, probes: Sequence[Probe]) -> KnownDivergence:
        field = f"known[{i}]"
        m = as_map(value, field, line, KNOWN_KEYS)
        if "why" not in m:
            raise Located(m.line, f"{field}.why", "missing: say why QEMU differs (and give "
                          "link: to the fix or report)")
        sel = self.selector(m, field, probes, "known divergence")
        qemu = "*"
        if "qemu" in m:
            qemu = as_str(m["qemu"], f"{field}.qemu", m.at("qemu"))
        try:
            rng = parse_range(qemu)
        except ValueError as err:
            raise Located(m.at("qemu"), f"{field}.qemu", str(err)) from None
        kvm = None
        if "kvm" in m:
            try:
                kvm = parse_range(as_str(m["kvm"], f"{field}.kvm", m.at("kvm")))
            except ValueError as err:
                raise Located(m.at("kvm"), f"{field}.kvm", str(err)) from None
        why = as_str(m["why"], f"{field}.why", m.at("why")).strip()
        link = as_str(m["link"], f"{field}.link", m.at("link")).strip() if "link" in m else ""
        lacks = self.feature_list(m, "lacks", f"{field}.lacks") if "lacks" in m else ()
        acts = self.acts_as(m["acts_as"], f"{field}.acts_as", m.at("acts_as")) \
            if "acts_as" in m else ()
        return KnownDivergence(line=m.line, select=sel, qemu=rng, why=why, link=link, kvm=kvm,
                               lacks=lacks, acts_as=acts)

    def acts_as(self, value: Any, field: str, line: int) -> tuple[RegChange, ...]:
        """``acts_as: {REG: {FIELD: VALUE}}``: field values (by name, as in
        ``regs:``) under which the model answers as the target does."""
        regs = as_map(value, field, line, TRANSLATION_SYSREGS, "register")
        out: list[RegChange] = []
        for reg in regs:
            spec = as_map(regs[reg], f"{field}.{reg}", regs.at(reg))
            if not spec:
                raise Located(regs.at(reg), f"{field}.{reg}", "empty: expected field values, "
                              "e.g. {TGE: 0}")
            fields = {**layout(reg, False), **layout(reg, True)}
            for name, fv in spec.items():
                at, where = spec.at(name), f"{field}.{reg}.{name}"
                if name not in fields:
                    raise Located(at, where, f"unknown field of {reg}; expected one of "
                                  f"{field_names(fields)}")
                width = fields[name][1]
                n = named_value(name, fv) if isinstance(fv, str) else None
                if n is None:
                    n = as_int(fv, where, at, 0, (1 << width) - 1, what=f"a {width}-bit value")
                out.append(RegChange(reg, name, n))
        return tuple(out)


def _parse_fault(value: Any, field: str, line: int) -> Any:
    if isinstance(value, str):
        key = value.strip().lower().replace("_", "-").replace(" ", "-")
        if key in FAULT_NAMES:
            return FAULT_NAMES[key]
    raise Located(line, field, f"{show(value)} is not one of {', '.join(FAULT_NAMES)}")


def _parse_sh(value: Any, field: str, line: int) -> int:
    if isinstance(value, str) and not value.strip()[:1].isdigit():
        return as_choice(value, SH_VALUES, field, line)
    return as_int(value, field, line, 0, 3, "SH[1:0] (0..3) or NSH, OSH, ISH")


def _parse_choice_or_int(value: Any, field: str, line: int, choices: dict[str, int],
                         hi: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return as_int(value, field, line, 0, hi, "a field value")
    return as_choice(value, choices, field, line)


def _ram_size(text: str, line: int) -> int:
    """QEMU's -m syntax: a number with an optional K/M/G suffix (default M)."""
    t = text.strip().upper().removesuffix("B")
    units = {"K": 10, "M": 20, "G": 30}
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * (1 << units[t[-1]]))
        return int(t) << 20
    except ValueError:
        raise Located(line, "profile.memory", f"{text!r} is not a memory size: expected "
                      "e.g. 128M or 1G") from None
