"""The JSON Schema export: every shipped scenario, every good example and the
documentation's example validate; typos do not. Uses jsonschema when it is
installed, else a small validator for the keywords the schema uses."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from modelrun import run

from xcheck.arch.features import Features
from xcheck.machine import HARNESS_PA
from xcheck.scenario.loader import TOP_KEYS, load_scenario, parse_scenario
from xcheck.scenario.schema import json_schema

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "scenario-format.md"
FILES = sorted((Path(__file__).parent / "good").glob("*.yaml")) + sorted(
    (ROOT / "scenarios").rglob("*.yaml"))


def _type_ok(value: Any, t: str) -> bool:
    return {
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
        "string": isinstance(value, str),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
        "null": value is None,
    }[t]


def _errors(value: Any, schema: dict[str, Any], root: dict[str, Any], where: str) -> list[str]:
    """The keywords json_schema() uses: $ref, type, enum, anyOf, properties,
    additionalProperties, required, items, minItems, minimum, maximum, pattern."""
    if "$ref" in schema:
        schema = root["$defs"][schema["$ref"].rsplit("/", 1)[1]]
    errs: list[str] = []
    types = schema.get("type")
    names = [types] if isinstance(types, str) else types or []
    if types is not None and not any(_type_ok(value, t) for t in names):
        return [f"{where}: {value!r} is not of type {types}"]
    if "enum" in schema and not any(value == e and type(value) is type(e)
                                    for e in schema["enum"]):
        errs.append(f"{where}: {value!r} not in {schema['enum']}")
    if "anyOf" in schema and not any(not _errors(value, s, root, where)
                                     for s in schema["anyOf"]):
        errs.append(f"{where}: {value!r} matches none of anyOf")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                errs.append(f"{where}: missing {key}")
        for key, v in value.items():
            if key in props:
                errs += _errors(v, props[key], root, f"{where}.{key}")
            elif schema.get("additionalProperties") is False:
                errs.append(f"{where}: unexpected {key}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errs.append(f"{where}: too few items")
        if "items" in schema:
            for i, v in enumerate(value):
                errs += _errors(v, schema["items"], root, f"{where}[{i}]")
    if _type_ok(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            errs.append(f"{where}: {value} < {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errs.append(f"{where}: {value} > {schema['maximum']}")
    if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
        errs.append(f"{where}: {value!r} does not match {schema['pattern']}")
    return errs


def validate(doc: Any) -> list[str]:
    schema = json_schema()
    try:
        import jsonschema  # type: ignore[import-untyped]
    except ImportError:
        return _errors(doc, schema, schema, "$")
    validator = jsonschema.Draft202012Validator(schema)
    return [e.message for e in validator.iter_errors(doc)]


def doc_example() -> str:
    text = DOC.read_text()
    m = re.search(r"## A complete example.*?```yaml\n(.*?)```", text, re.S)
    assert m, "docs/scenario-format.md has a complete yaml example"
    return m.group(1)


def test_schema_is_json_and_names_every_key() -> None:
    schema = json.loads(json.dumps(json_schema()))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(schema["properties"]) == set(TOP_KEYS)
    assert schema["required"] == ["probes"]


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_files_validate(path: Path) -> None:
    load_scenario(path)
    assert validate(yaml.safe_load(path.read_text())) == []


def test_doc_example_loads_validates_and_meets_its_expectations() -> None:
    text = doc_example()
    s = parse_scenario(text, DOC)
    assert validate(yaml.safe_load(text)) == []
    assert len(s.probes) == 10
    assert s.build().code_va == {"EL10": HARNESS_PA}
    for p, r in zip(s.probes, run(s, Features.everything()), strict=True):
        for e in s.expect:
            if e.matches(p):
                assert e.check(r) == "", f"{p.label}: {e.check(r)}"


@pytest.mark.parametrize("bad", [
    {"probes": [{"op": "S1E1R", "va": 1}], "colour": "blue"},
    {"probes": [{"op": "S1E4R", "va": 1}]},
    {"probes": [{"op": "S1E1R", "va": 1, "el": 0}]},
    {"probes": []},
    {"regs": {"TCR_EL1": {"TG2": "4K"}}, "probes": [{"op": "S1E1R", "va": 1}]},
    {"regs": {"TCR_EL1": {"TG0": "8K"}}, "probes": [{"op": "S1E1R", "va": 1}]},
    {"regs": {"TCR_EL1": {"T0SZ": 64}}, "probes": [{"op": "S1E1R", "va": 1}]},
    {"tables": {"TTBR0_EL1": [{"va": 0, "size": "4K"}]}, "probes": [{"op": "S1E1R", "va": 1}]},
    {"tables": {"VTTBR_EL2": [{"va": 0, "pa": 0, "size": "4K"}]},
     "probes": [{"op": "S1E1R", "va": 1}]},
    {"requires": ["PAN4"], "probes": [{"op": "S1E1R", "va": 1}]},
    {"known": [{"op": "S1E1R"}], "probes": [{"op": "S1E1R", "va": 1}]},
])
def test_schema_rejects(bad: dict[str, Any]) -> None:
    assert validate(bad)
