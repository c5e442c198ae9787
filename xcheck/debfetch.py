"""Fetch Debian packages with a private apt state and unpack them into a per-user cache.

The system's apt configuration is only read (the mirror in its sources, its keyrings,
apt.conf for proxies), never written: sources list, package lists, status file and
archive cache all live under a directory of ours. Two uses are built on it:
a second QEMU side by side with the system one (`install_qemu`) and Debian's arm64
kernels (`fetch_kernel`). Both cache their unpacked tree under
``$XDG_CACHE_HOME/xcheck/<what>-<version>/`` (``~/.cache`` without that variable);
an entry counts as present once its marker file, written last, exists.

Run ``python -m xcheck.debfetch qemu``, ``... kernel`` or ``... linux-source``
(xcheck.linux_source: a kernel tree for building KVM selftests).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from xcheck.runtime_root import (
    DEPENDS_OPTIONS,
    RootError,
    parse_depends,
    refresh_wrapper,
    runtime_closure,
    write_wrapper,
)

DEFAULT_MIRROR = "http://deb.debian.org/debian"
"""Used only when no Debian mirror can be read from the system's apt sources."""

CACHE_PREFIX = "@cache/"
MARKER = ".xcheck-complete"
QEMU_PACKAGES = ("qemu-system-arm", "qemu-system-common", "qemu-system-data")
QEMU_BINARY = "usr/bin/qemu-system-aarch64"
QEMU_RUNNER = "qemu-system-aarch64"
"""What runs QEMU, at the top of its cache entry: a link to QEMU_BINARY or a wrapper."""
STDERR_TAIL_LINES = 12
KERNEL_EXCLUDE = (  # modules and device trees: -kernel on the virt machine needs neither
    "./lib/modules/*/kernel",
    "./usr/lib/modules/*/kernel",
    "./usr/lib/linux-image-*",
)


class DebFetchError(Exception):
    """Fetching or unpacking failed; carries the command and the tail of its stderr."""

    def __init__(self, message: str, *, command: Sequence[str] = (), stderr: str = "") -> None:
        self.command = list(command)
        self.stderr_tail = "\n".join(stderr.strip().splitlines()[-STDERR_TAIL_LINES:])
        text = message
        if self.command:
            text += f"\n  command: {' '.join(self.command)}"
        if self.stderr_tail:
            text += "\n  " + self.stderr_tail.replace("\n", "\n  ")
        super().__init__(text)


@dataclass(frozen=True)
class Mirror:
    """A Debian archive as the system's apt sources name it."""

    uri: str
    signed_by: str | None = None

    def sources_line(self, suite: str, components: str = "main") -> str:
        """One-line sources.list entry for `suite` on this mirror."""
        opts = f"[signed-by={self.signed_by}] " if self.signed_by else ""
        return f"deb {opts}{self.uri} {suite} {components}"


def _deb822_stanzas(text: str) -> Iterator[dict[str, str]]:
    stanza: dict[str, str] = {}
    for raw in [*text.splitlines(), ""]:
        line = "" if raw.lstrip().startswith("#") else raw.rstrip()
        if not raw.strip():
            if stanza:
                yield stanza
            stanza = {}
        elif line and ":" in line and not line[0].isspace():
            key, value = line.split(":", 1)
            stanza[key.strip().lower()] = value.strip()


def _candidates(etc_apt: Path) -> Iterator[tuple[str, list[str], str | None]]:
    """(uri, suites, signed_by) of every `deb` entry in the system's sources."""
    legacy = [etc_apt / "sources.list", *sorted((etc_apt / "sources.list.d").glob("*.list"))]
    for path in legacy:
        if not path.is_file():
            continue
        for raw in path.read_text(errors="replace").splitlines():
            m = re.match(r"\s*deb\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)", raw)
            if m:
                signed = re.search(r"signed-by=(\S+)", m.group(1) or "")
                yield m.group(2), [m.group(3)], signed.group(1) if signed else None
    for path in sorted((etc_apt / "sources.list.d").glob("*.sources")):
        for st in _deb822_stanzas(path.read_text(errors="replace")):
            if "deb" not in st.get("types", "").split() or st.get("enabled", "yes") == "no":
                continue
            for uri in st.get("uris", "").split():
                yield uri, st.get("suites", "").split(), st.get("signed-by")


def system_mirror(etc_apt: Path = Path("/etc/apt")) -> Mirror:
    """The Debian archive the system already uses (not its security archive)."""
    for uri, suites, signed_by in _candidates(etc_apt):
        main_suites = [s for s in suites if not s.endswith("-security")]
        if uri.rstrip("/").endswith("/debian") and main_suites:
            return Mirror(
                uri.rstrip("/"), signed_by if signed_by and "\n" not in signed_by else None
            )
    return Mirror(DEFAULT_MIRROR)


def mirror_reachable(mirror: Mirror | None = None, timeout: float = 5.0) -> str | None:
    """None when the mirror answers over HTTP, else why it does not."""
    base = (mirror or system_mirror()).uri
    try:
        req = urllib.request.Request(f"{base}/dists/bookworm/Release", method="HEAD")
        with urllib.request.urlopen(req, timeout=timeout):
            return None
    except (urllib.error.URLError, OSError) as err:
        return f"Debian mirror {base} cannot be reached: {err}"


def base_suites(suite: str) -> list[str]:
    """The suites `suite` is built on: a backports suite needs its release
    (trixie-backports -> trixie), whose libraries its packages depend on."""
    base = suite.removesuffix("-backports")
    return [base] if base != suite else []


def cache_root() -> Path:
    """Per-user cache directory of xcheck."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "xcheck"


def resolve_binary(spec: str) -> str:
    """Expand a profile's ``@cache/...`` binary to a path in the per-user cache."""
    if spec.startswith(CACHE_PREFIX):
        return str(cache_root() / spec[len(CACHE_PREFIX) :])
    return spec


def upstream_version(debian_version: str) -> str:
    """'1:10.0.2+ds-2+deb13u1~bpo12+1' -> '10.0.2' (epoch, repack and revision dropped)."""
    v = debian_version.split(":", 1)[-1]
    v = v.rsplit("-", 1)[0] if "-" in v else v
    return re.split(r"[+~]", v, maxsplit=1)[0]


def _run(cmd: Sequence[str], *, cwd: Path | None = None, what: str) -> str:
    try:
        proc = subprocess.run(
            list(cmd), cwd=cwd, capture_output=True, text=True, check=False, timeout=600
        )
    except FileNotFoundError as err:
        raise DebFetchError(f"{what}: {err.filename} is not installed", command=cmd) from err
    except subprocess.TimeoutExpired as err:
        raise DebFetchError(f"{what}: timed out", command=cmd) from err
    if proc.returncode != 0:
        raise DebFetchError(
            f"{what} failed (exit {proc.returncode})", command=cmd, stderr=proc.stderr
        )
    return proc.stdout


class AptState:
    """apt-get/apt-cache confined to `root`: own sources, lists, status and cache."""

    def __init__(
        self, root: Path, sources_line: str, arch: str, default_release: str | None = None
    ) -> None:
        self.root = root
        self.sources_line = sources_line
        """One sources.list line per suite."""
        self.arch = arch
        self.default_release = default_release
        """The suite whose versions apt prefers (a backports suite over its base suite)."""
        for sub in ("lists/partial", "cache/archives/partial", "preferences.d"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "sources.list").write_text(sources_line + "\n")
        status = root / "status"
        if not status.exists():
            status.write_text("")

    def options(self) -> list[str]:
        r = self.root
        opts = {
            "Dir::Etc::SourceList": r / "sources.list",
            "Dir::Etc::SourceParts": "/dev/null",
            "Dir::Etc::Preferences": "/dev/null",
            "Dir::Etc::PreferencesParts": r / "preferences.d",
            "Dir::State::Lists": r / "lists",
            "Dir::State::status": r / "status",
            "Dir::State::extended_states": r / "extended_states",
            "Dir::Cache": r / "cache",
            # kept even where the system's apt.conf turns it off (Docker images do):
            # without it every apt-cache call parses all package lists again (6 s, not 1)
            "Dir::Cache::pkgcache": "pkgcache.bin",
            "APT::Architecture": self.arch,
            "APT::Architectures::": self.arch,
            "Acquire::Languages": "none",
            "Acquire::GzipIndexes": "true",
        }
        if self.default_release:
            opts["APT::Default-Release"] = self.default_release
        if os.geteuid() == 0:
            opts["APT::Sandbox::User"] = "root"  # files of ours that _apt cannot write
        return [arg for k, v in opts.items() for arg in ("-o", f"{k}={v}")]

    def update(self) -> None:
        """apt-get update; any failed index (no network, unknown suite) is an error."""
        _run(["apt-get", "-q", *self.options(), "--error-on=any", "update"], what="apt-get update")

    def candidate(self, package: str) -> tuple[str, list[str]]:
        """(version, dependency names) of the version apt would fetch."""
        fields = self._show([package]).get(package)
        if fields is None:
            raise DebFetchError(f"package {package} not found in: {self.sources_line}")
        deps = [d.split()[0] for d in fields.get("depends", "").split(",") if d.strip()]
        return fields["version"], deps

    def candidates(self, packages: Sequence[str]) -> dict[str, str]:
        """Package -> the version apt would fetch, in one query."""
        found = self._show(packages)
        missing = [p for p in packages if p not in found]
        if missing:
            raise DebFetchError(f"not found in {self.sources_line}: {', '.join(missing)}")
        return {p: found[p]["version"] for p in packages}

    def _show(self, packages: Sequence[str]) -> dict[str, dict[str, str]]:
        out = _run(
            ["apt-cache", *self.options(), "show", "--no-all-versions", *packages],
            what=f"looking up {', '.join(packages)}",
        )
        return {
            st["package"]: st for st in _deb822_stanzas(out) if "package" in st and "version" in st
        }

    def depends(self, package: str) -> str:
        """`apt-cache depends --recurse` of `package`, Depends and Pre-Depends only
        (parsed by `xcheck.runtime_root.parse_depends`)."""
        return _run(
            ["apt-cache", *self.options(), "depends", *DEPENDS_OPTIONS, package],
            what=f"listing the dependencies of {package}",
        )

    def download(self, packages: Sequence[str], dest: Path) -> list[Path]:
        """apt-get download into `dest`; the .deb paths, in the order of `packages`."""
        dest.mkdir(parents=True, exist_ok=True)
        base = ["apt-get", "-q", *self.options(), "download"]
        uris = _run([*base, "--print-uris", *packages], cwd=dest, what="apt-get download")
        names = [line.split()[1] for line in uris.splitlines() if line.startswith("'")]
        _run([*base, *packages], cwd=dest, what="apt-get download")
        debs = [dest / n for n in names]
        missing = [str(d) for d in debs if not d.is_file()]
        if missing or not debs:
            raise DebFetchError(f"apt-get download left no file for {', '.join(packages)}")
        return debs


def fetch_debs(packages: Sequence[str], *, suite_line: str, arch: str, dest: Path) -> list[Path]:
    """Download `packages` from the sources line `suite_line` into `dest` (apt state in
    dest/.apt); see `Mirror.sources_line` for a line on the system's mirror."""
    apt = AptState(dest / ".apt", suite_line, arch)
    apt.update()
    return apt.download(packages, dest)


def unpack(debs: Sequence[Path], prefix: Path, *, exclude: Sequence[str] = ()) -> None:
    """Unpack .deb files under `prefix` (dpkg -x); `exclude` are tar patterns left out."""
    prefix.mkdir(parents=True, exist_ok=True)
    for deb in debs:
        if not exclude:
            _run(["dpkg", "-x", str(deb), str(prefix)], what=f"unpacking {deb.name}")
            continue
        tar = ["tar", "-x", "-C", str(prefix), *(f"--exclude={e}" for e in exclude)]
        with subprocess.Popen(
            ["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE
        ) as src:
            _run_with_stdin(tar, src, what=f"unpacking {deb.name}")


def _run_with_stdin(cmd: Sequence[str], src: subprocess.Popen[bytes], *, what: str) -> None:
    proc = subprocess.run(list(cmd), stdin=src.stdout, capture_output=True, check=False)
    if src.wait() != 0 or proc.returncode != 0:
        raise DebFetchError(
            f"{what} failed", command=cmd, stderr=proc.stderr.decode(errors="replace")
        )


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fd:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


def cached_versions(entry: Path) -> dict[str, str] | None:
    """Package versions of a complete cache entry (its marker is written last), else None."""
    try:
        info = json.loads((entry / MARKER).read_text())
    except (OSError, ValueError):
        return None
    packages = info.get("packages") if isinstance(info, dict) else None
    return {str(k): str(v) for k, v in packages.items()} if isinstance(packages, dict) else None


@contextmanager
def apt_for(suite: str, arch: str) -> Iterator[AptState]:
    """The cache's apt state for `suite` on the system mirror, updated, held exclusively."""
    name = f"{suite}-{arch}"
    with _locked(cache_root() / f".lock-apt-{name}"):
        mirror = system_mirror()
        lines = [mirror.sources_line(s) for s in (*base_suites(suite), suite)]
        apt = AptState(cache_root() / "apt" / name, "\n".join(lines), arch, default_release=suite)
        apt.update()
        yield apt


def fill_entry(
    entry: Path,
    apt: AptState,
    packages: dict[str, str],
    exclude: Sequence[str] = (),
    also: Callable[[Path], dict[str, str]] | None = None,
) -> None:
    """Download and unpack into a scratch dir, write the marker, then move it into place.
    `also` may add to the scratch tree; it returns the further packages it unpacked."""
    scratch = entry.with_name(entry.name + ".partial")
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.rmtree(entry, ignore_errors=True)
    debs = apt.download(list(packages), scratch / ".debs")
    unpack(debs, scratch, exclude=exclude)
    shutil.rmtree(scratch / ".debs")
    extra = also(scratch) if also else {}
    shutil.rmtree(scratch / ".debs", ignore_errors=True)
    info = {"sources": apt.sources_line, "arch": apt.arch, "packages": {**packages, **extra}}
    (scratch / MARKER).write_text(json.dumps(info, indent=1) + "\n")
    scratch.rename(entry)


def _link(link: Path, target: str) -> None:
    tmp = link.with_name(link.name + ".new")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    tmp.replace(link)


def install_qemu(suite: str = "bookworm-backports", arch: str = "amd64") -> Path:
    """Install Debian's QEMU from `suite` beside the system one; the command that runs it.

    The tree goes to cache/qemu-<X.Y.Z>; cache/qemu-<X.Y> links to the newest such tree
    (whichever suite it came from), and a profile names
    ``@cache/qemu-<X.Y>/qemu-system-aarch64``: a link to the unpacked binary when that
    runs with the system's libraries, else a wrapper that runs it with those of its own
    suite (`xcheck.runtime_root`). Suites sharing an upstream version share the tree.
    """
    with apt_for(suite, arch) as apt:
        versions = apt.candidates(QEMU_PACKAGES)
        upstream = upstream_version(versions["qemu-system-arm"])
        entry = cache_root() / f"qemu-{upstream}"
        with _locked(cache_root() / f".lock-{entry.name}"):  # other suites may fill it too
            cached = cached_versions(entry) or {}
            if any(cached.get(p) != v for p, v in versions.items()):
                _fill_qemu_entry(entry, apt, suite, versions)
            runner = entry / QEMU_RUNNER
            if not runner.exists():  # an entry unpacked before runners existed
                _link(runner, QEMU_BINARY)
            elif not runner.is_symlink():  # a wrapper written by an older xcheck
                refresh_wrapper(entry, QEMU_RUNNER, QEMU_BINARY)
            check_binary_runs(runner)
            _link_newest(".".join(upstream.split(".")[:2]))
    return runner


def _link_newest(minor: str) -> None:
    """Point cache/qemu-<minor> at the newest complete cache/qemu-<minor>.<patch>."""
    entries = [
        e
        for e in cache_root().glob(f"qemu-{minor}.*")
        if re.fullmatch(rf"qemu-{re.escape(minor)}\.\d+", e.name)
        and cached_versions(e) is not None
    ]
    newest = max(entries, key=lambda e: int(e.name.rsplit(".", 1)[1]))
    _link(cache_root() / f"qemu-{minor}", newest.name)


def _fill_qemu_entry(entry: Path, apt: AptState, suite: str, versions: dict[str, str]) -> None:
    """Unpack QEMU's packages; when the binary does not run here, add its runtime closure
    and a wrapper; the marker records every package unpacked."""

    def add_closure(scratch: Path) -> dict[str, str]:
        try:
            check_binary_runs(scratch / QEMU_BINARY)
        except DebFetchError:
            graph = parse_depends(apt.depends(QEMU_PACKAGES[0]))
            extra = apt.candidates(runtime_closure(graph, list(versions)))
            unpack(apt.download(list(extra), scratch / ".debs"), scratch)
            about = (
                f"qemu-system-arm {versions[QEMU_PACKAGES[0]]} from Debian {suite},\n"
                "run with that suite's libraries through its dynamic loader (xcheck.debfetch)"
            )
            try:
                write_wrapper(scratch, QEMU_RUNNER, QEMU_BINARY, about)
            except RootError as err:
                raise DebFetchError(f"cannot run {QEMU_BINARY} from its own root: {err}") from err
            return extra
        _link(scratch / QEMU_RUNNER, QEMU_BINARY)
        return {}

    fill_entry(entry, apt, versions, also=add_closure)


def check_binary_runs(binary: Path) -> None:
    """`binary --version` must succeed; name the shared libraries the system lacks."""
    try:
        _run([str(binary), "--version"], what=f"running {binary}")
    except DebFetchError as err:
        ldd = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
        lacking = [ln.split()[0] for ln in ldd.stdout.splitlines() if "not found" in ln]
        if not lacking:
            raise
        raise DebFetchError(
            f"{binary} needs libraries this system lacks: {', '.join(lacking)} "
            "(install the Debian packages that provide them)"
        ) from err


KERNEL_NAME = re.compile(r"linux-(?:image|binary)-(?:\d[^-]*(?:-\d+)?-)?(?P<flavour>[a-z]\S*)")
"""A Debian kernel package name: linux-image-[<abi>-]<flavour> or linux-binary-<abi>-<flavour>."""


def image_package(package: str, depends: Callable[[str], Sequence[str]]) -> str:
    """The package holding the kernel image that `package` leads to.

    Follows meta packages through their dependencies, each step to the one named
    linux-image-<abi>-<flavour> or linux-binary-<abi>-<flavour> of the same flavour:
    linux-image-<flavour> to linux-image-<abi>-<flavour>, and on to
    linux-binary-<abi>-<flavour> where the image is split out (Debian 13 on).
    `depends(name)` gives the dependency names of the version apt would fetch.
    """
    m = KERNEL_NAME.fullmatch(package)
    if m is None:
        return package
    step = re.compile(rf"linux-(?:image|binary)-\d.*-{re.escape(m['flavour'])}")
    name = package
    for _ in range(3):
        nxt = [d for d in depends(name) if step.fullmatch(d)]
        if not nxt:
            break
        name = nxt[0]
    return name


def kernel_package(suite: str, flavour: str = "arm64", arch: str = "arm64") -> str:
    """The package holding the current `flavour` kernel image of `suite`."""
    with apt_for(suite, arch) as apt:
        return image_package(f"linux-image-{flavour}", lambda p: apt.candidate(p)[1])


def fetch_kernel(package: str, suite: str = "bookworm", arch: str = "arm64") -> Path:
    """Fetch a Debian kernel package and return its unpacked vmlinuz (modules left out);
    a meta package is followed to the package that holds the image."""
    with apt_for(suite, arch) as apt:
        package = image_package(package, lambda p: apt.candidate(p)[1])
        version, _ = apt.candidate(package)
        entry = cache_root() / f"{package}-{version}"
        if cached_versions(entry) != {package: version}:
            fill_entry(entry, apt, {package: version}, exclude=KERNEL_EXCLUDE)
    images = sorted(entry.glob("boot/vmlinuz-*")) + sorted(entry.glob("usr/lib/modules/*/vmlinuz"))
    if not images:
        raise DebFetchError(f"{package} {version} holds no vmlinuz")
    return images[0]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``qemu`` installs QEMU side by side, ``kernel`` fetches a vmlinuz,
    ``linux-source`` a kernel source tree for the KVM selftests."""
    ap = argparse.ArgumentParser(
        prog="python -m xcheck.debfetch",
        description="Fetch Debian packages into the per-user cache without touching apt's "
        "system state. Example: python -m xcheck.debfetch kernel --suite trixie-backports",
    )
    sub = ap.add_subparsers(dest="what", required=True)
    q = sub.add_parser("qemu", help="install Debian's QEMU of a suite beside the system one")
    q.add_argument(
        "--suite",
        default="bookworm-backports",
        help="any Debian suite with a QEMU, e.g. trixie-backports or sid (default: %(default)s)",
    )
    k = sub.add_parser("kernel", help="fetch a Debian arm64 kernel, print its vmlinuz path")
    k.add_argument("package", nargs="?", help="default: the suite's current arm64 kernel")
    k.add_argument("--suite", default="bookworm")
    s = sub.add_parser("linux-source", help="fetch Debian's kernel source (tools/ and what "
                       "the KVM selftests build from) and UAPI headers, print the folder")
    s.add_argument("--suite", default="trixie-backports")
    args = ap.parse_args(argv)
    try:
        if args.what == "qemu":
            print(install_qemu(args.suite))
        elif args.what == "linux-source":
            from xcheck.linux_source import fetch_linux_source

            print(fetch_linux_source(args.suite))
        else:
            print(fetch_kernel(args.package or kernel_package(args.suite), args.suite))
    except DebFetchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
