"""QEMU profiles: YAML files in qemu_configs/ naming binary, machine, CPU,
memory, extra arguments and timeouts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from xcheck.debfetch import resolve_binary
from xcheck.target.errors import ProfileError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "qemu_configs"
DEFAULT_PROFILE = "tcg-max"
OVERRIDABLE = ("machine", "cpu", "memory", "extra_args")
"""Profile keys a scenario may override."""


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed for QEMU and gdb to come up, for one MI command, and
    for one batch of probes to finish."""

    launch: float = 15.0
    command: float = 10.0
    batch: float = 30.0


@dataclass(frozen=True)
class Profile:
    name: str
    binary: str = "qemu-system-aarch64"
    machine: str = "virt,virtualization=on"
    cpu: str = "max"
    memory: str = "128M"
    extra_args: tuple[str, ...] = ()
    timeouts: Timeouts = field(default_factory=Timeouts)
    gdb: str = "gdb-multiarch"
    path: str = ""
    kind: str = "qemu"
    """Which target drives this QEMU: "qemu" (AT run by QEMU itself, over
    the GDB stub) or "kvm-nested" (AT run by nested KVM in a guest Linux)."""
    options: tuple[tuple[str, str], ...] = ()
    """Target-specific settings (``options:`` mapping in the YAML)."""

    @property
    def executable(self) -> str:
        """The binary with ``@cache/`` expanded to the per-user cache."""
        return resolve_binary(self.binary)

    def ram_size(self) -> int:
        return parse_size(self.memory)


def parse_size(text: str) -> int:
    """QEMU's -m syntax: a number with an optional K/M/G suffix (default M)."""
    t = str(text).strip().upper().removesuffix("B")
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t) << 20
    except ValueError:
        raise ProfileError(f"memory: {text!r} is not a size like 128M or 1G") from None


ALIASES = {"qemu": DEFAULT_PROFILE}
"""Target names that stand for a profile (``--target qemu``)."""


def _find(name: str) -> Path:
    name = ALIASES.get(name, name)
    p = Path(name)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise ProfileError(f"profile file {name} does not exist")
        return p
    cand = CONFIG_DIR / f"{name}.yaml"
    if not cand.is_file():
        known = ", ".join(sorted(f.stem for f in CONFIG_DIR.glob("*.yaml")))
        raise ProfileError(f"no profile named {name!r} (known: {known})")
    return cand


_KEYS = {
    "binary", "machine", "cpu", "memory", "extra_args", "timeouts",
    "gdb", "about", "kind", "options",
}
KINDS = ("qemu", "kvm-nested")


def _from_mapping(name: str, path: str, data: Mapping[str, Any]) -> Profile:
    unknown = set(data) - _KEYS
    if unknown:
        raise ProfileError(
            f"{path}: unknown key(s) {', '.join(sorted(unknown))}; "
            f"expected {', '.join(sorted(_KEYS))}"
        )
    kw: dict[str, Any] = {"name": name, "path": path}
    if "kind" in data and data["kind"] not in KINDS:
        raise ProfileError(f"{path}: kind: {data['kind']!r} is not one of {', '.join(KINDS)}")
    if "options" in data:
        opts = data["options"]
        if not isinstance(opts, dict):
            raise ProfileError(f"{path}: options: expected a mapping")
        kw["options"] = tuple(sorted((str(k), str(v)) for k, v in opts.items()))
    for key in ("binary", "machine", "cpu", "memory", "gdb", "kind"):
        if key in data:
            if not isinstance(data[key], (str, int)):
                raise ProfileError(f"{path}: {key}: expected a string, got {data[key]!r}")
            kw[key] = str(data[key])
    if "extra_args" in data:
        args = data["extra_args"]
        if not isinstance(args, list) or not all(isinstance(a, (str, int)) for a in args):
            raise ProfileError(f"{path}: extra_args: expected a list of strings")
        kw["extra_args"] = tuple(str(a) for a in args)
    if "timeouts" in data:
        t = data["timeouts"]
        if not isinstance(t, dict) or set(t) - {"launch", "command", "batch"}:
            raise ProfileError(
                f"{path}: timeouts: expected a mapping of launch, command, batch (seconds)"
            )
        try:
            kw["timeouts"] = Timeouts(**{k: float(v) for k, v in t.items()})
        except (TypeError, ValueError):
            raise ProfileError(f"{path}: timeouts: values must be numbers of seconds") from None
    prof = Profile(**kw)
    prof.ram_size()
    return prof


def load_profile(
    name: str | None = None, *, qemu: str | None = None, cpu: str | None = None
) -> Profile:
    """Load a profile by name (from qemu_configs/) or path; ``qemu`` replaces
    its binary (``--qemu``), ``cpu`` its CPU model (``--cpu``)."""
    path = _find(name or DEFAULT_PROFILE)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ProfileError(f"{path}: cannot read profile: {err}") from None
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: a profile is a mapping of keys")
    prof = _from_mapping(path.stem, str(path), data)
    if qemu:
        prof = replace(prof, binary=qemu, name=f"{prof.name}+{Path(qemu).name}")
    if cpu:
        prof = replace(prof, cpu=cpu, name=f"{prof.name}/{cpu}")
    return prof


def with_overrides(
    profile: Profile, overrides: Mapping[str, Any] | tuple[tuple[str, Any], ...]
) -> Profile:
    """The profile with a scenario's overrides applied (keys in OVERRIDABLE)."""
    items = dict(overrides)
    if not items:
        return profile
    bad = set(items) - set(OVERRIDABLE)
    if bad:
        raise ProfileError(
            f"cannot override {', '.join(sorted(bad))}; allowed: {', '.join(OVERRIDABLE)}"
        )
    if "extra_args" in items:
        items["extra_args"] = tuple(str(a) for a in items["extra_args"])
    for k in ("machine", "cpu", "memory"):
        if k in items:
            items[k] = str(items[k])
    return replace(profile, **items)
