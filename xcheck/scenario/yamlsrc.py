"""YAML with line numbers: mappings and lists remember where each entry is.

PyYAML's composer knows every node's position; this loader keeps the line of
each mapping key and list item so that an error can name the line of the
field it is about. Duplicate keys are an error (PyYAML would keep the last).
"""

from __future__ import annotations

from typing import Any

import yaml

from xcheck.scenario.errors import Located

try:
    _Base: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Base = yaml.SafeLoader


class YMap(dict[str, Any]):
    """A YAML mapping; ``line`` is where it starts, ``lines[key]`` where each key is."""

    line: int
    lines: dict[str, int]

    def at(self, key: str) -> int:
        return self.lines.get(key, self.line)


class YList(list[Any]):
    """A YAML sequence; ``line`` is where it starts, ``lines[i]`` where item i is."""

    line: int
    lines: list[int]

    def at(self, index: int) -> int:
        return self.lines[index] if index < len(self.lines) else self.line


class _Loader(_Base):  # type: ignore[misc, valid-type]
    pass


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> YMap:
    loader.flatten_mapping(node)
    out = YMap()
    out.line = _line(node)
    out.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | bool | float) or key is None:
            raise Located(_line(key_node), "yaml", "a mapping key must be a plain word")
        name = str(key)
        if name in out:
            raise Located(_line(key_node), name,
                          f"duplicate key (first at line {out.lines[name]})")
        out[name] = loader.construct_object(value_node, deep=True)
        out.lines[name] = _line(key_node)
    return out


def _sequence(loader: yaml.SafeLoader, node: yaml.SequenceNode) -> YList:
    out = YList(loader.construct_object(item, deep=True) for item in node.value)
    out.line = _line(node)
    out.lines = [_line(item) for item in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)


def load_yaml(text: str) -> Any:
    """Parse ``text``; a syntax error becomes Located at the line PyYAML names."""
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = int(mark.line) + 1 if mark is not None else 1
        what = err.problem or err.context or "not valid YAML"
        raise Located(line, "yaml", f"{what} (not valid YAML)") from None
    except yaml.YAMLError as err:
        raise Located(1, "yaml", f"not valid YAML: {err}") from None
