"""Shrink a failing scenario document to a small one that fails the same way.

Greedy reduction in the order that removes the most first: probes, then
mappings, memory blocks and descriptor overrides, then registers and their
fields, then optional keys of each mapping and simpler values (PAN 0,
probes at EL2, fewer bits in raw words). Every candidate is tried with
``fails`` (on the fuzzer: load it, run it on the target and the model,
look for the same signature); a change is kept when the candidate still
fails. Passes repeat until none changes anything, or the run budget ends.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from xcheck.fuzz.yamlout import Doc

T = TypeVar("T")
Predicate = Callable[[Doc], bool]

REQUIRED_KEYS = frozenset({"va", "ipa", "pa", "size", "level", "raw"})
LIST_KEYS = ("memory", "descriptors")


@dataclass
class Shrunk:
    doc: Doc
    runs: int
    kept: int
    """Candidates that still failed (each a step smaller)."""
    complete: bool
    """False when the budget ended before a pass changed nothing."""


class _Budget(Exception):
    pass


class Shrinker:
    def __init__(self, fails: Predicate, max_runs: int, deadline: float | None) -> None:
        self.fails = fails
        self.max_runs = max_runs
        self.deadline = deadline
        self.runs = 0
        self.kept = 0
        self.best: Doc = {}

    def test(self, doc: Doc) -> bool:
        if self.runs >= self.max_runs or (self.deadline is not None
                                          and time.monotonic() > self.deadline):
            raise _Budget
        self.runs += 1
        ok = self.fails(doc)
        if ok:
            self.kept += 1
            self.best = doc
        return ok

    def reduce_list(self, items: Sequence[T], test: Callable[[list[T]], bool],
                    keep_one: bool) -> list[T]:
        """Delta debugging's complement removal: drop chunks, halving the
        chunk size when no chunk can go."""
        cur = list(items)
        n = 2
        while len(cur) > (1 if keep_one else 0):
            chunk = max(1, -(-len(cur) // n))
            for i in range(0, len(cur), chunk):
                cand = cur[:i] + cur[i + chunk:]
                if (cand or not keep_one) and test(cand):
                    cur = cand
                    n = max(n - 1, 2)
                    break
            else:
                if chunk == 1:
                    break
                n = min(n * 2, len(cur))
        return cur

    # --- passes -------------------------------------------------------------

    def probes(self, doc: Doc, hint: Sequence[int]) -> Doc:
        probes = doc["probes"]
        for i in hint[:3]:
            cand = dict(doc, probes=[probes[i]])
            if self.test(cand):
                return cand

        def test(items: list[Any]) -> bool:
            return self.test(dict(doc, probes=items))

        return dict(doc, probes=self.reduce_list(probes, test, keep_one=True))

    def tables(self, doc: Doc) -> Doc:
        for base in list(doc.get("tables", {})):
            kept = self.reduce_list(doc["tables"][base], _Tester(self, _with_maps, doc, base),
                                    keep_one=False)
            doc = _with_maps(doc, base, kept)
            if not kept:
                tables = {b: m for b, m in doc["tables"].items() if b != base}
                cand = dict(doc, tables=tables) if tables else _without(doc, "tables")
                if self.test(cand):
                    doc = cand
        for key in LIST_KEYS:
            if key not in doc:
                continue
            kept = self.reduce_list(doc[key], _Tester(self, _with_list, doc, key),
                                    keep_one=False)
            doc = _with_list(doc, key, kept)
        return doc

    def regs(self, doc: Doc) -> Doc:
        for reg in list(doc.get("regs", {})):
            regs = {r: v for r, v in doc["regs"].items() if r != reg}
            cand = dict(doc, regs=regs) if regs else _without(doc, "regs")
            if self.test(cand):
                doc = cand
                continue
            if not isinstance(doc["regs"][reg], dict):  # a raw value (S2PIR_EL2)
                continue
            for name in list(doc["regs"][reg]):
                fields = {k: v for k, v in doc["regs"][reg].items() if k != name}
                cand = dict(doc, regs=dict(doc["regs"], **{reg: fields}))
                if not fields:
                    regs = {r: v for r, v in doc["regs"].items() if r != reg}
                    cand = dict(doc, regs=regs) if regs else _without(doc, "regs")
                if self.test(cand):
                    doc = cand
        return doc

    def values(self, doc: Doc) -> Doc:
        for base in list(doc.get("tables", {})):
            for i in range(len(doc["tables"][base])):
                for key in list(doc["tables"][base][i]):
                    if key in REQUIRED_KEYS:
                        continue
                    m = {k: v for k, v in doc["tables"][base][i].items() if k != key}
                    cand = _set_mapping(doc, base, i, m)
                    if self.test(cand):
                        doc = cand
                raw = doc["tables"][base][i].get("raw")
                if isinstance(raw, int):
                    doc = self.fewer_bits(doc, raw, _RawWord(base, i))
        for i in range(len(doc.get("descriptors", []))):
            doc = self.fewer_bits(doc, doc["descriptors"][i]["value"], _OverrideWord(i))
        for i in range(len(doc.get("memory", []))):
            words = doc["memory"][i]["words"]
            for j in range(len(words)):
                if words[j]:
                    cand_words = [*words[:j], 0, *words[j + 1:]]
                    cand = _set_list(doc, "memory", i, dict(doc["memory"][i], words=cand_words))
                    if self.test(cand):
                        doc, words = cand, cand_words
        for i in range(len(doc["probes"])):
            for key, simple in (("pan", 0), ("el", 2)):
                if doc["probes"][i].get(key) != simple:
                    cand = _set_list(doc, "probes", i, dict(doc["probes"][i], **{key: simple}))
                    if self.test(cand):
                        doc = cand
        return doc

    def fewer_bits(self, doc: Doc, word: int, put: Callable[[Doc, int], Doc]) -> Doc:
        """Clear the bits of ``word`` outside the output address, in groups."""
        for mask in (0xFFF << 52, 0b111 << 49, 0xFFF << 2, 0xF << 12):
            if word & mask:
                cand = put(doc, word & ~mask)
                if self.test(cand):
                    doc, word = cand, word & ~mask
        return doc


@dataclass(frozen=True)
class _Tester:
    """Test ``doc`` with one of its lists (named ``key``) replaced by ``items``."""

    shrinker: Shrinker
    put: Callable[[Doc, str, list[Any]], Doc]
    doc: Doc
    key: str

    def __call__(self, items: list[Any]) -> bool:
        return self.shrinker.test(self.put(self.doc, self.key, items))


@dataclass(frozen=True)
class _RawWord:
    """Put a word as the ``raw`` of mapping ``i`` of ``base``."""

    base: str
    i: int

    def __call__(self, doc: Doc, word: int) -> Doc:
        return _set_mapping(doc, self.base, self.i,
                            dict(doc["tables"][self.base][self.i], raw=word))


@dataclass(frozen=True)
class _OverrideWord:
    """Put a word as the value of descriptor override ``i``."""

    i: int

    def __call__(self, doc: Doc, word: int) -> Doc:
        return _set_list(doc, "descriptors", self.i, dict(doc["descriptors"][self.i],
                                                           value=word))


def _with_maps(doc: Doc, base: str, items: list[Any]) -> Doc:
    return dict(doc, tables=dict(doc["tables"], **{base: items}))


def _with_list(doc: Doc, key: str, items: list[Any]) -> Doc:
    return dict(doc, **{key: items}) if items else _without(doc, key)


def _without(doc: Doc, key: str) -> Doc:
    return {k: v for k, v in doc.items() if k != key}


def _set_list(doc: Doc, key: str, i: int, value: Any) -> Doc:
    items = list(doc[key])
    items[i] = value
    return dict(doc, **{key: items})


def _set_mapping(doc: Doc, base: str, i: int, m: dict[str, Any]) -> Doc:
    maps = list(doc["tables"][base])
    maps[i] = m
    return dict(doc, tables=dict(doc["tables"], **{base: maps}))


def shrink(doc: Doc, fails: Predicate, *, hint: Sequence[int] = (), max_runs: int = 400,
           deadline: float | None = None) -> Shrunk:
    """The smallest document found that still ``fails``; ``hint`` lists the
    indexes of probes known to fail (tried alone first). ``doc`` itself is
    assumed to fail and is not changed."""
    s = Shrinker(fails, max_runs, deadline)
    cur = s.best = copy.deepcopy(doc)
    complete = False
    try:
        cur = s.probes(cur, hint)
        while True:
            before = s.kept
            for step in (s.tables, s.regs, s.values):
                cur = step(cur)
            if s.kept == before:
                complete = True
                break
            cur = s.probes(cur, ())
    except _Budget:
        cur = s.best
    return Shrunk(cur, s.runs, s.kept, complete)
