"""A fuzz case: a generated document that the real loader and builder
accept, with the model's answer for each probe.

make_case draws a document (generate.py), writes it as YAML, loads it
with xcheck.scenario.loader (so what runs is exactly what a file holds),
and repairs what the builder refuses or what would stop the harness:
probes at EL1 moved to EL2 when the harness cannot be mapped at EL1,
descriptor overrides on the harness's own walk dropped, and probes the
model expects to raise an exception kept under a budget.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from xcheck.arch.at import AtResult
from xcheck.arch.features import Features
from xcheck.arch.rules import Rule
from xcheck.check import answers
from xcheck.fuzz.generate import IDENTITY_END, Plan, generate
from xcheck.fuzz.knobs import Knobs
from xcheck.fuzz.memory import sparse
from xcheck.fuzz.yamlout import Doc, dump
from xcheck.machine import (
    HARNESS_CODE_SIZE,
    HARNESS_PA,
    HARNESS_SIZE,
    RAM_BASE,
    RESERVED_LOW,
    AtOp,
    MachineSetup,
    Probe,
    SecurityState,
)
from xcheck.model import ImpDefStates, run_model
from xcheck.needs import unrunnable
from xcheck.scenario.errors import Located
from xcheck.scenario.loader import (
    Scenario,
    ScenarioError,
    parse_scenario,
    probe_label,
    space_problem,
)
from xcheck.scenario.loader import _Parser as LoaderParser
from xcheck.scenario.yamlsrc import YList, YMap

DEVICE_WINDOWS = ((0, RAM_BASE + RESERVED_LOW), (HARNESS_PA, HARNESS_PA + HARNESS_SIZE),
                  (0x40_0000_0000, 0x100_0000_0000))
"""Physical ranges whose content the model does not know: the virt machine's
flash, devices and PCIe windows (below RAM; the high GIC, PCIe ECAM and MMIO
between 256 GiB and 1 TiB), the bottom of RAM where QEMU puts the device
tree (machine.RESERVED_LOW), and the harness (its code and results). A walk
that reads a descriptor there reads something else on the target, so such
probes are left out. Between the end of RAM and 256 GiB, and from 1 TiB,
there is nothing: both sides take an External abort."""
EXCEPTION_BUDGET = 24
"""Probes per case the model expects to raise an exception (UNDEFINED, a
trap, an abort): the harness gives up after 64 unexpected exceptions."""
DRAWS = 8


@dataclass(frozen=True)
class Case:
    """One generated scenario, loaded and built, with the model's results."""

    seed: int
    index: int
    doc: Doc
    comments: tuple[str, ...]
    scenario: Scenario
    setup: MachineSetup
    model: tuple[AtResult, ...]
    tags: frozenset[str]
    repairs: tuple[str, ...] = ()
    choices: ImpDefStates | None = field(default=None, compare=False, repr=False)
    """The setup's registers as the model decoded them (for xcheck.needs)."""

    @property
    def name(self) -> str:
        return case_name(self.seed, self.index)

    @property
    def text(self) -> str:
        """The case as a scenario file."""
        return dump(self.doc, self.comments)


def case_name(seed: int, index: int) -> str:
    return f"fuzz-{seed}-{index}"


def case_rng(seed: int, index: int) -> random.Random:
    """The generator of case ``index`` of ``seed`` (independent of every
    other case, so that one case can be drawn again alone)."""
    return random.Random(f"xcheck-fuzz:{seed}:{index}")


def load_doc(doc: Doc, name: str, comments: tuple[str, ...] = ()) -> tuple[str, Scenario]:
    """The YAML text of ``doc`` and the scenario the loader makes of it
    (ScenarioError when it does not load or build)."""
    text = dump(doc, comments)
    return text, parse_scenario(text, Path(f"{name}.yaml"))


def _nodes(value: Any) -> Any:
    """``value`` as the YAML reader returns it (every line number 1: no entry
    has a line of its own, so each is at its container's line)."""
    if isinstance(value, dict):
        m = YMap({k: _nodes(v) if isinstance(v, dict | list) else v
                  for k, v in value.items()})
        m.line, m.lines = 1, {}
        return m
    if isinstance(value, list):
        seq = YList([_nodes(v) if isinstance(v, dict | list) else v for v in value])
        seq.line, seq.lines = 1, []
        return seq
    return value


_PROBE_KEYS = frozenset({"op", "va", "el", "pan"})
_PROBE_KEYS_SPACE = _PROBE_KEYS | {"space"}
_OPS = {op.value: op for op in AtOp}
_SPACES = {s.value: s for s in SecurityState}
_NONSECURE = SecurityState.NONSECURE.value


def _plain_probes(doc: Doc) -> tuple[Probe, ...] | None:
    """The probes of a generated document, made directly when each is a plain
    ``{op, va, el, pan}`` (and maybe ``space``) the loader would accept as it
    stands (a known op, a 64-bit VA, EL 1 to 3, PAN 0 or 1, a Security state
    the op can run in at that EL, no two alike) and nothing else in the
    document selects probes; None otherwise (the loader then reads them)."""
    if "expect" in doc or "known" in doc:
        return None
    out: list[Probe] = []
    seen: set[tuple[str, int, int, int, str]] = set()
    for p in doc["probes"]:
        if type(p) is not dict or (p.keys() != _PROBE_KEYS and p.keys() != _PROBE_KEYS_SPACE):
            return None
        op, va, el, pan = p["op"], p["va"], p["el"], p["pan"]
        space = p.get("space", _NONSECURE)
        key = (op, va, el, pan, space)
        # every op runs Non-secure at every EL (space_problem has nothing to say)
        if op not in _OPS or type(va) is not int or not 0 <= va < 1 << 64 \
                or el not in (1, 2, 3) or pan not in (0, 1) or space not in _SPACES \
                or (space != _NONSECURE and space_problem(_SPACES[space], el, _OPS[op])) \
                or key in seen:
            return None
        seen.add(key)
        at, ss = _OPS[op], _SPACES[space]
        out.append(Probe(at, va, el, bool(pan), probe_label(at, va, el, bool(pan), ss), ss))
    return tuple(out) if out else None


def scenario_of(doc: Doc, name: str) -> Scenario:
    """What the loader makes of ``doc``, without writing and re-reading YAML
    text (the same validation and build; line numbers are all 1). Plain
    generated probes are made directly (_plain_probes: the loader reads the
    first, to check the document has one). The tests check that the text
    path gives the same scenario."""
    path = Path(f"{name}.yaml")
    direct = _plain_probes(doc)
    body = doc if direct is None else {**doc, "probes": doc["probes"][:1]}
    try:
        scenario = LoaderParser(path).scenario(_nodes(body))
    except Located as err:
        raise err.at(path) from None
    if direct is not None:
        scenario = replace(scenario, probes=direct,
                           probe_lines=tuple((p, 1) for p in direct))
    scenario.build()
    return scenario


def built(scenario: Scenario) -> MachineSetup:
    """The scenario's machine setup with its memory image made sparse
    (memory.sparse: the same meaning, far fewer bytes for the target)."""
    setup = scenario.build()
    return replace(setup, memory=sparse(setup.memory))


def model_results(setup: MachineSetup, features: Features, ram_size: int) -> list[AtResult]:
    """The model's answer for every probe: xcheck.check.run_model (with the
    alternatives the architecture permits)."""
    return run_model(setup, features, ram_size)


def needed_requires(doc: Doc, name: str, features: Features, ram_size: int) -> list[str]:
    """The features of ``doc``'s ``requires:`` its probes still depend on, on
    a CPU with ``features`` (which has them all): those without which the
    model answers a probe otherwise (xcheck.check.answers: the PAR within its
    mask, an abort's fault) or the harness could not run one (xcheck.needs).
    A shrunk case keeps the original's ``requires:``, which may name what its
    shrunk registers and tables no longer use; such a file would skip on a
    CPU it runs on. A feature without which the model cannot translate a
    probe at all (a probe in the Realm state without FEAT_RME: there is no
    such state, xcheck.arch.regime.route) is needed."""
    listed = list(doc.get("requires", ()))
    if not listed:
        return listed
    setup = built(scenario_of(doc, name))

    def asked(cpu: Features) -> tuple[list[tuple[object, ...]], Sequence[str]] | None:
        try:
            model = run_model(setup, cpu, ram_size)
        except ValueError:
            return None
        return answers(model), unrunnable(setup, cpu, ram_size)

    mine = asked(features)
    return [n for n in listed
            if (less := features.without(n)) is None or asked(less) != mine]


def _el1_to_el2(doc: Doc) -> bool:
    probes = doc["probes"]
    if not any(p["el"] == 1 for p in probes):
        return False
    seen: dict[tuple[Any, ...], dict[str, Any]] = {}
    for p in probes:
        q = dict(p, el=2) if p["el"] == 1 else p
        seen.setdefault((q["op"], q["va"], q["el"], q["pan"], q.get("space")), q)
    doc["probes"] = list(seen.values())
    return True


def _unsafe_overrides(doc: Doc, plan: Plan, setup: MachineSetup) -> list[int]:
    """Indexes of ``descriptors:`` entries that write over an entry the
    harness's own walk (stage 1 at its VA, or stage 2 of the RAM) reads."""
    guard: dict[str, list[tuple[int, int]]] = {}
    for regime, base in (("EL10", "TTBR0_EL1"), ("EL2", "TTBR0_EL2"), ("EL20", "TTBR0_EL2")):
        if regime in setup.code_va:
            va = setup.code_va[regime]
            guard.setdefault(base, []).append((va, va + HARNESS_SIZE))
    guard["VTTBR_EL2"] = [(RAM_BASE, IDENTITY_END)]
    bad = []
    for i, o in enumerate(doc.get("descriptors", [])):
        shape = plan.shapes[o["table"]]
        lo, hi = shape.entry_range(o["va"], o["level"])
        if any(a < hi and lo < b for a, b in guard.get(o["table"], [])):
            bad.append(i)
    return bad


def make_case(seed: int, index: int, knobs: Knobs, ram_size: int,
              origin: str = "") -> Case:
    """Case ``index`` of ``seed``: always the same for the same CPU features
    and knobs. ``origin`` (the profile) goes into the file's comment."""
    rng = case_rng(seed, index)
    name = case_name(seed, index)
    comments = (f"xcheck fuzz --seed {seed}: case {index}" + (f" ({origin})" if origin else ""),)
    last = ""
    for _ in range(DRAWS):
        doc, plan = generate(rng, knobs)
        doc = {"name": name, "about": f"Generated by xcheck fuzz, seed {seed}, case {index}.",
               **doc}
        repairs: list[str] = []
        try:
            scenario = _load_repaired(doc, name, repairs)
            setup = built(scenario)
            unsafe = _unsafe_overrides(doc, plan, setup)
            if unsafe:
                doc["descriptors"] = [o for i, o in enumerate(doc["descriptors"])
                                      if i not in unsafe]
                if not doc["descriptors"]:
                    del doc["descriptors"]
                repairs.append("overrides on the harness walk dropped")
                scenario = scenario_of(doc, name)
                setup = built(scenario)
            if "gpt" in doc and _gpt_blocks_harness(setup, knobs.features, ram_size):
                scenario, setup = _free_harness(doc, plan, name, knobs.features, ram_size)
                repairs.append("GPT regions on the harness's walks dropped")
            choices = ImpDefStates(setup, knobs.features, 2, False)
            model = run_model(setup, knobs.features, ram_size, choices)
            kept = _reads_devices(doc, model)
            if kept is not None:
                repairs.append("probes whose walk reads a device window dropped")
                if not doc["probes"]:
                    raise ScenarioError(Path(name), 1, "probes", "every probe reads a device")
                scenario, setup, model, choices = _kept(doc, name, setup, model, choices, kept,
                                                        knobs.features, ram_size)
            kept = _over_budget(doc, model)
            if kept is not None:
                repairs.append("probes over the exception budget dropped")
                scenario, setup, model, choices = _kept(doc, name, setup, model, choices, kept,
                                                        knobs.features, ram_size)
        except ScenarioError as err:
            last = str(err)
            continue
        return Case(seed, index, doc, comments, scenario, setup, tuple(model),
                    frozenset(plan.tags), tuple(repairs), choices)
    raise RuntimeError(f"case {index} of seed {seed}: no draw loaded ({last})")


def _load_repaired(doc: Doc, name: str, repairs: list[str]) -> Scenario:
    try:
        return scenario_of(doc, name)
    except ScenarioError:
        if not _el1_to_el2(doc):
            raise
    repairs.append("probes moved from EL1 to EL2")
    try:
        return scenario_of(doc, name)
    except ScenarioError:
        if "descriptors" not in doc and "memory" not in doc:
            raise
    doc.pop("descriptors", None)
    doc.pop("memory", None)
    repairs.append("hand-made tables dropped")
    return scenario_of(doc, name)


def _harness_walks(setup: MachineSetup, features: Features) -> tuple[Probe, ...]:
    """ATs that walk what the harness's own code and data pages walk: at EL3
    (every program starts there on a CPU with EL3), in its EL2 regime, and
    for EL1 code both stages at EL2."""
    out = []
    for va in (HARNESS_PA, HARNESS_PA + HARNESS_CODE_SIZE):
        if features.el3:
            out.append(Probe(AtOp.S1E3R, setup.code_va.get("EL3", HARNESS_PA) + va - HARNESS_PA,
                             3))
        for regime in ("EL2", "EL20"):
            if regime in setup.code_va:
                out.append(Probe(AtOp.S1E2R, setup.code_va[regime] + va - HARNESS_PA, 2))
        if any(p.el == 1 for p in setup.probes):
            out.append(Probe(AtOp.S12E1R, setup.code_va.get("EL10", HARNESS_PA) + va
                             - HARNESS_PA, 2))
    return tuple(out)


GPC_DENIALS = frozenset({Rule.GPC_CONFIG_INVALID, Rule.GPC_ABOVE_PPS, Rule.GPT_BASE_ADDRESS_SIZE,
                        Rule.GPT_EXTERNAL_ABORT, Rule.GPT_L0_INVALID, Rule.GPT_L1_INVALID,
                        Rule.GPC_GPI_DENIES})
"""The rules of a granule protection check that fails (xcheck.arch.gpc)."""


def _gpt_blocks_harness(setup: MachineSetup, features: Features, ram_size: int) -> bool:
    """Would a GPC fault stop the harness's own walks (the GPT of ``setup``
    denying a table the harness reads to its PA space)? The model tells."""
    probes = _harness_walks(setup, features)
    results = run_model(replace(setup, probes=probes), features, ram_size)
    return any(step.cites in GPC_DENIALS for res in results for step in res.trace)


def _free_harness(doc: Doc, plan: Plan, name: str, features: Features,
                  ram_size: int) -> tuple[Scenario, MachineSetup]:
    """Drop ``gpt`` regions until the harness's walks pass the GPC: those on
    the start-level tables (which the harness's walks share), then every
    table region, then the whole GPT (in place)."""
    steps: list[Callable[[dict[str, Any]], bool]] = [
        lambda r: "table" in r and r["level"] == plan.shapes[r["table"]].start_level,
        lambda r: "table" in r,
    ]
    for drop in steps:
        doc["gpt"] = {**doc["gpt"], "regions": [r for r in doc["gpt"]["regions"]
                                                if not drop(r)]}
        scenario = scenario_of(doc, name)
        setup = built(scenario)
        if not _gpt_blocks_harness(setup, features, ram_size):
            return scenario, setup
    del doc["gpt"]
    scenario = scenario_of(doc, name)
    return scenario, built(scenario)


def _reads_devices(doc: Doc, model: list[AtResult]) -> list[int] | None:
    """Drop probes whose walk reads a descriptor in DEVICE_WINDOWS (in place):
    the indexes of those kept, or None when none went."""
    kept = [i for i, m in enumerate(model) if not _reads_device(m)]
    return _keep(doc, kept)


def _reads_device(result: AtResult) -> bool:
    """Does a step of ``result``'s walks read memory in DEVICE_WINDOWS?"""
    for step in result.trace:
        addr = step.addr
        if addr is not None:
            for lo, hi in DEVICE_WINDOWS:
                if lo <= addr < hi:
                    return True
    return False


def _over_budget(doc: Doc, model: list[AtResult]) -> list[int] | None:
    """Drop probes past the exception budget (in place): the indexes of
    those kept, or None when none went."""
    kept, raising = [], 0
    for i, result in enumerate(model):
        if result.kind != "par":
            raising += 1
            if raising > EXCEPTION_BUDGET:
                continue
        kept.append(i)
    return _keep(doc, kept)


def _keep(doc: Doc, kept: list[int]) -> list[int] | None:
    """Keep only the probes ``kept`` (indexes) of ``doc``; None (and ``doc``
    as it was) when that is all of them."""
    probes = doc["probes"]
    if len(kept) == len(probes):
        return None
    doc["probes"] = [probes[i] for i in kept]
    return kept


def _kept(doc: Doc, name: str, setup: MachineSetup, model: list[AtResult],
          choices: ImpDefStates, kept: list[int], features: Features, ram_size: int
          ) -> tuple[Scenario, MachineSetup, list[AtResult], ImpDefStates]:
    """The case loaded again after the probes ``kept`` (indexes into
    ``setup.probes``) were kept, with the model's answers and its decode of
    the registers (``choices``, the old setup's). The model reads
    memory and never writes it, so an answer depends on its probe and the
    setup alone; when the new setup is the old one less the dropped probes
    and no AT of the case may update a descriptor (every word its walks read
    has ``may_set`` 0: xcheck.arch.descupdate), the kept answers are those
    already worked out."""
    scenario = scenario_of(doc, name)
    new = built(scenario)
    same = (new.probes == tuple(setup.probes[i] for i in kept)
            and replace(new, probes=setup.probes) == setup)
    if same and not any(word.may_set for result in model for word in result.memory):
        return scenario, new, [model[i] for i in kept], choices
    choices = ImpDefStates(new, features, 2, False)
    return scenario, new, run_model(new, features, ram_size, choices), choices


def model_features(features: Features | None) -> Features:
    """The CPU to generate for when no target is asked (tests, --dry-run)."""
    return features if features is not None else Features.everything()
