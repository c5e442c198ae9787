"""JSON Schema (draft 2020-12) of scenario files, for editors (`xcheck schema`).

The schema checks structure, names and ranges; the loader checks more (a
selector that matches no probe, alignment, overlaps, what the registers
make of the tables) and says where. Both are built from the same tables of
keys and register fields.
"""

from __future__ import annotations

from typing import Any

from xcheck.machine import TRANSLATION_SYSREGS, AtOp
from xcheck.requires import FEATURE_NAMES
from xcheck.scenario import loader
from xcheck.scenario.expect import FAULT_NAMES, RESULTS
from xcheck.scenario.gpt import GPI_VALUES, L0GPTSZ_VALUES, PGS_VALUES, PPS_VALUES
from xcheck.scenario.regfields import NAMED, SH_VALUES, TCR_EL2_FIELDS, TCR_FIELDS, layout
from xcheck.scenario.spec import BASE_REGS, S2_BASES

Schema = dict[str, Any]

NUMBER_TEXT = r"^\s*(0[xX][0-9a-fA-F_]+|0[bB][01_]+|[0-9][0-9_]*)\s*$"
SIZE_TEXT = r"^\s*[0-9][0-9_]*\s*([KMGTkmgt]([iI]?[bB])?)?\s*$"


def _int(hi: int = (1 << 64) - 1, lo: int = 0) -> Schema:
    return {"anyOf": [{"type": "integer", "minimum": lo, "maximum": hi},
                      {"type": "string", "pattern": NUMBER_TEXT}]}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/$defs/{name}"}


def _one_or_list(item: Schema) -> Schema:
    return {"anyOf": [item, {"type": "array", "items": item, "minItems": 1}]}


def _obj(props: dict[str, Schema], required: tuple[str, ...] = (), about: str = "") -> Schema:
    out: Schema = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        out["required"] = list(required)
    if about:
        out["description"] = about
    return out


def _named(names: list[str], width: int) -> Schema:
    return {"anyOf": [_int((1 << width) - 1)["anyOf"][0], {"enum": names},
                      {"type": "string", "pattern": NUMBER_TEXT}]}


def _field(name: str, width: int) -> Schema:
    if name in NAMED:
        names = list(NAMED[name])
        if name in ("IPS", "PS"):
            names += [n.replace("bit", "-bit") for n in names]
        return _named(names, width)
    if width == 1:
        return {"anyOf": [{"type": "boolean"}, {"enum": [0, 1]}]}
    return _int((1 << width) - 1)


def _register(reg: str) -> Schema:
    fields = dict(layout(reg, False))
    if reg == "TCR_EL2":  # the layout follows HCR_EL2.E2H: either is accepted here
        fields = {**TCR_EL2_FIELDS, **TCR_FIELDS}
    props = {name: _field(name, width) for name, (_, width) in fields.items()}
    return {"description": f"{reg}: a raw 64-bit value, or fields by name merged over "
                           "the reset-like default",
            "anyOf": [_int(), _obj(props)]}


def _selector() -> dict[str, Schema]:
    return {"op": _one_or_list(_ref("op")), "va": _one_or_list(_ref("address")),
            "el": _one_or_list(_ref("el")), "pan": _one_or_list(_ref("flag")),
            "space": _one_or_list({"enum": list(loader.SPACES), "description": "the Security "
                                   "state of a probe: at EL1 and EL2 the state it runs in "
                                   "(secure at EL2 needs SCR_EL3.EEL2 = 1), at EL3 the one "
                                   "SCR_EL3.{NSE, NS} selects for its AT; root: AT S1E3* at "
                                   "EL3 with FEAT_RME; realm: the Realm regimes (FEAT_RME), "
                                   "not AT S1E3*"})}


def _mapping(stage: int) -> Schema:
    flag, addr = _ref("flag"), _ref("address")
    common: dict[str, Schema] = {
        "pa": addr, "size": _ref("size"), "level": {"type": "integer", "minimum": -1,
                                                    "maximum": 3},
        "raw": addr, "force": flag, "sh": _ref("sh"), "af": flag, "contiguous": flag,
        "dbm": flag,
    }
    if stage == 2:
        props = {"ipa": addr, **common, "s2ap": _named(list(loader.S2AP), 2),
                 "attr": _int(15), "xn": {"anyOf": [{"type": "boolean"}, _int(3)]},
                 "pi_index": _int(15), "dirty": flag, "ns": flag}
        key = "ipa"
    else:
        ap_names = list(dict.fromkeys([*loader.AP_TWO_RANGES, *loader.AP_ONE_RANGE]))
        table = _obj({"level": {"type": "integer", "minimum": -1, "maximum": 2},
                      "aptable": _int(3), "pxntable": flag, "uxntable": flag,
                      "xntable": flag, "nstable": flag},
                     about="attributes of a table descriptor on this mapping's walk")
        props = {"va": addr, **common, "ap": _named(ap_names, 2), "attr": _int(15), "ng": flag,
                 "pxn": flag, "uxn": flag, "xn": flag, "table": table, "pi_index": _int(15),
                 "ndirty": flag, "ns": flag, "nse": flag}
        key = "va"
    out = _obj(props, (key,))
    out["anyOf"] = [{"required": ["pa"]}, {"required": ["raw"]}]
    return out


def json_schema() -> Schema:
    """The schema of a scenario file."""
    sel = _selector()
    defs: dict[str, Schema] = {
        "address": _int(),
        "flag": {"anyOf": [{"type": "boolean"}, {"enum": [0, 1]}]},
        "op": {"enum": [op.value for op in AtOp]},
        "el": {"enum": [1, 2, 3], "description": "probes run at EL1, EL2 or EL3 (EL0: use "
                                                 "S1E0R/W; EL3 needs a CPU that starts there)"},
        "size": {"anyOf": [{"type": "integer", "minimum": 1},
                           {"type": "string", "pattern": SIZE_TEXT}]},
        "sh": _named(list(SH_VALUES), 2),
        "s1_mapping": _mapping(1),
        "s2_mapping": _mapping(2),
    }
    tables = {base: {"anyOf": [{"type": "null"}, {"type": "array", "items": _ref(
        "s2_mapping" if base in S2_BASES else "s1_mapping")}]} for base in BASE_REGS}
    probe = _obj({**sel, "label": {"type": "string"}}, ("op", "va"))
    expect = _obj({**sel, "fault": {"enum": list(FAULT_NAMES)},
                   "level": {"type": "integer", "minimum": -1, "maximum": 3},
                   "stage": {"enum": [1, 2]}, "ptw": _ref("flag"), "pa": _ref("address"),
                   "attr": _int(255), "sh": _ref("sh"), "ns": _ref("flag"),
                   "result": {"enum": list(RESULTS)}},
                  about="what the Arm ARM requires of the selected probes")
    expect["anyOf"] = [{"required": ["fault"]}, {"required": ["pa"]}, {"required": ["result"]}]
    known = _obj({**sel, "qemu": {"type": "string", "description": "a version range: "
                                  "\"<10.1\", \">=7.2,<8.1\", \"*\""},
                  "kvm": {"type": "string", "description": "a guest kernel version range: "
                          "the entry records a bug of KVM's AT emulation (nested-KVM target)"},
                  "lacks": {"type": "array", "items": {"enum": list(FEATURE_NAMES)},
                            "description": "the entry applies only on CPUs without these "
                            "features"},
                  "why": {"type": "string"}, "link": {"type": "string"},
                  "acts_as": {**_obj({reg: _register(reg)["anyOf"][1]
                                      for reg in TRANSLATION_SYSREGS}),
                              "description": "register fields by name under which the model "
                              "answers as the target does (the bug's behaviour): the entry "
                              "then covers a probe only where that holds"}}, ("why",),
                 about="a recorded QEMU divergence: reported as known, not failed")
    memory = _obj({"addr": _ref("address"),
                   "words": {"type": "array", "items": _ref("address"), "minItems": 1}},
                  ("addr", "words"))
    override = _obj({"table": {"enum": list(BASE_REGS)},
                     "level": {"type": "integer", "minimum": -1, "maximum": 3},
                     "index": {"type": "integer", "minimum": 0}, "va": _ref("address"),
                     "value": _ref("address")}, ("table", "level", "value"))
    gpi = {"anyOf": [{"enum": list(GPI_VALUES)}, _int(15)]}
    top = _obj({
        "name": {"type": "string"},
        "about": {"type": "string"},
        "requires": _one_or_list({"enum": list(FEATURE_NAMES)}),
        "profile": _obj({"machine": {"type": "string"}, "cpu": {"type": "string"},
                         "memory": {"type": ["string", "integer"]},
                         "extra_args": {"type": "array", "items": {"type": ["string",
                                                                           "integer"]}}}),
        "regs": _obj({reg: _register(reg) for reg in TRANSLATION_SYSREGS}),
        "pstate": _obj({"EL": _ref("el"), "PAN": _ref("flag")}),
        "tables": _obj(tables),
        "memory": {"type": "array", "items": memory},
        "descriptors": {"type": "array", "items": override},
        "gpt": _obj({
            "pps": {"enum": list(PPS_VALUES)}, "pgs": {"enum": list(PGS_VALUES)},
            "l0gptsz": {"enum": list(L0GPTSZ_VALUES)}, "default": gpi,
            "regions": {"type": "array", "items": _obj({
                "pa": _ref("address"), "size": _ref("size"),
                "table": {"enum": list(BASE_REGS)},
                "level": {"type": "integer", "minimum": -1, "maximum": 3},
                "va": _ref("address"), "gpi": gpi}, ("gpi",))},
        }, about="granule protection (FEAT_RME): GPCCR_EL3, GPTBR_EL3 and the GPT"),
        "probes": {"type": "array", "items": probe, "minItems": 1},
        "expect": {"type": "array", "items": expect},
        "known": {"type": "array", "items": known},
    }, ("probes",))
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://xcheck.invalid/scenario.schema.json",
        "title": "xcheck scenario",
        "description": "Registers, page tables, AT probes and expectations for xcheck "
                       "(docs/scenario-format.md)",
        **top,
        "$defs": defs,
    }
