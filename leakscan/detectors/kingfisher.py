"""Adapter for the kingfisher-secret-scanner engine (Rust + Hyperscan, in process).

The only module that imports ``kingfisher_sdk``.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import string
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, Literal, cast

import kingfisher_sdk
from kingfisher_sdk import Rules, ScanInput, Scanner

from leakscan.catalog import CONFIDENCE, read_info, stamp_name
from leakscan.catalog import CatalogInfo as CatalogInfo  # this adapter's API still
from leakscan.catalog import rules_dir as rules_dir
from leakscan.detectors import Confidence, Match, RuleInfo, Subject

_CONFIDENCES = ("high", "medium", "low")


_LOCK = threading.Lock()
_CATALOG: Rules | None = None
_INFO: CatalogInfo | None = None
_ORIGIN: Origin | None = None
_SCOPES_LOCK = threading.Lock()  # apart: catalog() need not wait for the scopes
_SCOPES: PathScopes | None = None

# the catalog's identity and where it is kept live apart: a report names the catalog
# without importing the engine (catalog.py)
_CONFIDENCE: Final = CONFIDENCE

# The compiled catalog a built package ships (build_catalog.py writes it when the wheel is
# built, or in the source tree for an editable install): kingfisher's cache entry as it
# wrote it, and MANIFEST saying which release made it. Copied into rules_dir() on first use.
SHIPPED = Path(__file__).with_name("compiled")
MANIFEST = "catalog.json"

# how this process got its catalog: from rules_dir() as an earlier run left it; from the
# shipped form; compiled here (nothing shipped, or the shipped form did not suit this
# machine); compiled and not kept (no usable folder)
Origin = Literal["loaded", "shipped", "compiled", "uncached"]


def catalog() -> Rules:
    """kingfisher's rule catalog, loaded once per process.

    Loading takes ~0.3 s from the compiled form kept in :func:`rules_dir` (3-4 s of CPU to
    compile it the first time on a machine: ``leakscan warm-up`` does that ahead), and it
    releases the GIL: :func:`preload` starts it on a thread while the rest starts up.
    """
    global _CATALOG
    with _LOCK:
        if _CATALOG is None:
            _CATALOG = _load(rules_dir())
        return _CATALOG


def catalog_info() -> CatalogInfo | None:
    """The loaded catalog's identity; without loading it, what the last compile in
    :func:`rules_dir` recorded, else the shipped form's; None when none is known."""
    global _INFO
    if _INFO is None:
        with _LOCK:
            loaded = _CATALOG
        if loaded is not None:
            _INFO = CatalogInfo.of(loaded)
        else:
            known = _read_stamp(rules_dir() / _stamp_name())
            if known is None:
                ship = shipped()
                known = ship.info if ship else None
            return known
    return _INFO


def catalog_origin() -> Origin | None:
    """How this process got its catalog (None: not loaded yet)."""
    return _ORIGIN


def warm_up() -> CatalogInfo:
    """Compile the catalog into :func:`rules_dir` now (image build, install step, CI cache
    restore), so that no scan pays for it; return which catalog it is."""
    rules = catalog()
    info = catalog_info() or CatalogInfo.of(rules)
    stamp = rules_dir() / _stamp_name()
    if rules.cache_status != "bypassed" and _read_stamp(stamp) != info:
        _write_stamp(stamp, info, catalog_origin())
    return info


def _stamp_name() -> str:
    return stamp_name(kingfisher_sdk.__version__)


@dataclass(frozen=True)
class Shipped:
    """A compiled catalog shipped in the package: kingfisher's cache entry (``file``, in
    ``folder``) and which catalog it holds."""

    folder: Path
    file: str
    info: CatalogInfo


# kingfisher names its entries by a hex key; anything else in a manifest is not copied
_ENTRY = re.compile(r"[0-9a-f]{16,64}\.vscdb")


def shipped(folder: Path | None = None) -> Shipped | None:
    """The compiled catalog shipped in ``folder`` (default :data:`SHIPPED`), when the
    running kingfisher release made it for the catalog leakscan loads; else None (none
    shipped, another release or confidence, an unreadable manifest)."""
    folder = SHIPPED if folder is None else folder
    try:
        data: Any = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        file = str(data["file"])
        info = CatalogInfo(
            str(data["engine"]), str(data["version"]), int(data["rules"]), str(data["digest"])
        )
        confidence = str(data["confidence"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if (
        info.engine != "kingfisher"
        or info.version != kingfisher_sdk.__version__
        or confidence != _CONFIDENCE
        or not _ENTRY.fullmatch(file)
        or not (folder / file).is_file()
    ):
        return None
    return Shipped(folder, file, info)


def _install_shipped(ship: Shipped, folder: Path) -> bool:
    """Copy the shipped entry into ``folder`` unless an entry of its name is there already;
    whether it was copied. A copy of our own, not a link to the package: kingfisher reads
    only entries the running user owns and no one else can write (a package installed by
    root, used by another user), and replaces the entry when it does not suit the machine."""
    target = folder / ship.file
    if target.exists():
        return False
    tmp = folder / f".{ship.file}.{os.getpid()}"
    try:
        shutil.copyfile(ship.folder / ship.file, tmp)
        tmp.chmod(0o600)
        os.replace(tmp, target)
    except OSError:
        tmp.unlink(missing_ok=True)
        return False
    return True


def _load(folder: Path) -> Rules:
    """The catalog from ``folder``: the shipped compiled form copied there when ``folder``
    has none, else compiled there. By one process at a time (an audit's workers on a fresh
    machine would each spend 3-4 s of CPU on the same compile); the others wait, then load
    what it stored."""
    global _ORIGIN
    try:
        # kingfisher refuses a cache folder others can write to: private, as it makes its own
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        _ORIGIN = "uncached"
        return Rules(confidence=_CONFIDENCE, cache=False)
    stamp = folder / _stamp_name()
    ship = shipped()
    if stamp.exists() and (ship is None or (folder / ship.file).exists()):
        # compiled already: no lock, so parallel workers load at the same time. Should the
        # stored form not suit this machine (another CPU), kingfisher compiles it again
        rules = Rules(confidence=_CONFIDENCE, cache_dir=folder)
        _ORIGIN = _origin(rules, copied=False)
        return rules
    with _compile_lock(folder):
        copied = ship is not None and _install_shipped(ship, folder)
        # a copied entry kingfisher cannot use (another architecture or Vectorscan build,
        # damaged) is compiled again here and replaced: slower, not wrong. The CPU model
        # does not matter: the entry is the same bytes on any x86_64 (bench/README.md)
        rules = Rules(confidence=_CONFIDENCE, cache_dir=folder)
        _ORIGIN = _origin(rules, copied)
        if _ORIGIN != "uncached" and _read_stamp(stamp) is None:
            _write_stamp(stamp, CatalogInfo.of(rules), _ORIGIN)
    return rules


def _origin(rules: Rules, copied: bool) -> Origin:
    status = rules.cache_status
    if status == "bypassed":
        return "uncached"
    if status == "stored":
        return "compiled"
    return "shipped" if copied else "loaded"


@contextmanager
def _compile_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder/.compile.lock`` for as long as the block runs; none
    where locks cannot be taken (a read-only folder; no fcntl)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: compiling twice is slower, not wrong
        yield
        return
    try:
        fd = os.open(folder / ".compile.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _read_stamp(path: Path) -> CatalogInfo | None:
    return read_info(path)


def _write_stamp(path: Path, info: CatalogInfo, origin: Origin | None = None) -> None:
    """Best effort, as kingfisher's own cache writes: a missing stamp costs a lock later.
    ``origin`` says where the folder's compiled form came from (shipped or compiled)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        tmp.write_text(json.dumps({**asdict(info), "origin": origin}), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)


def path_scopes() -> PathScopes:
    """The path conditions of the catalog's rules, once per process."""
    global _SCOPES
    with _SCOPES_LOCK:
        if _SCOPES is None:
            known = _KNOWN_SCOPES.get(kingfisher_sdk.__version__)
            if known is not None:
                _SCOPES = PathScopes(tuple((re.compile(p), ids) for p, ids in known))
            else:
                _SCOPES = PathScopes.of(catalog())
        return _SCOPES


# The path conditions of the built-in catalog (all of it: leakscan loads it at confidence
# low), by release. Reading them from the catalog means reading every rule's definition:
# ~90 ms with the GIL held, on the path of every start-up. A release not listed is read so.
# tests/detectors/test_kingfisher.py checks the installed release's entry against its catalog.
_KNOWN_SCOPES: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "1.5.0": (
        (r"(?i)\.php$", ("betterleaks.freemius-secret-key",)),
        (r"(?i)\.(?:tf|hcl)$", ("betterleaks.hashicorp-tf-password",)),
        (r"(?i)\.ya?ml$", ("betterleaks.kubernetes-secret-yaml",)),
        (r"(?i)nuget\.config$", ("betterleaks.nuget-config-password",)),
        (
            r"(?i)(?:\.git[/\\]config|(?:^|[/\\])\.git-credentials|_history)$",
            (
                "veles.secrets/bitbucketcredentials",
                "veles.secrets/codecatalystcredentials",
                "veles.secrets/codecommitcredentials",
            ),
        ),
        (r"(?i)bitwarden[ _-]*cli(?:[\/]+)data\.json$", ("veles.secrets/bitwardenoauth2access",)),
    ),
}


_PRELOAD: threading.Thread | None = None


def preload() -> threading.Thread:
    """Start loading the catalog on a daemon thread; :func:`catalog` waits for it."""
    global _PRELOAD
    thread = threading.Thread(target=catalog, name="leakscan-rules", daemon=True)
    thread.start()
    _PRELOAD = thread
    return thread


def preloading() -> bool:
    """Whether :func:`preload`'s thread is still at work (the catalog not loaded yet, or
    the thread not ended yet)."""
    return _PRELOAD is not None and _PRELOAD.is_alive()


@dataclass(frozen=True)
class PathScopes:
    """Rules that apply only to files whose path matches a pattern of theirs (NuGet
    ``nuget.config`` passwords, Terraform ``.tf`` and ``.hcl``, Kubernetes Secrets in
    ``.yaml``...). kingfisher checks the condition against the path of a
    :class:`ScanInput`; plain ``scan(data)`` has no path, and such rules never fire.
    """

    # each distinct pattern once (rules share some), with the rules it scopes. Apart, not
    # joined: Python's regexes find each one's literal fast, an alternation of them slowly
    patterns: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...]

    @classmethod
    def of(cls, rules: Rules) -> PathScopes:
        """The path-scoped rules of ``rules``. A pattern Python's regexes cannot read is
        left out (its rule then fires nowhere, as before paths were given)."""
        found: dict[str, list[str]] = {}
        for meta in rules.metadata():
            pattern = rules.detail(meta["id"]).get("path")
            if pattern:
                found.setdefault(pattern, []).append(str(meta["id"]))
        patterns = []
        for pattern, ids in found.items():
            try:
                patterns.append((re.compile(pattern), tuple(ids)))
            except re.error:
                continue
        return cls(tuple(patterns))

    @property
    def rules(self) -> frozenset[str]:
        """Every rule scoped to a path leakscan can check."""
        return frozenset(rule for _, ids in self.patterns for rule in ids)

    def name(self, path: str | None) -> str | None:
        """The path to give kingfisher for a file at ``path`` (``OUTER!INNER`` for an
        archive member: its inner path), or None when no path-scoped rule applies.

        Only as much of the end of the path as the rules look at (the file name, or
        ``.git/config``): kingfisher's input filters also read the path, and drop files
        under ``node_modules`` that leakscan reads like any other.
        """
        if path is None:
            return None
        inner = path.rsplit("!", 1)[-1]
        want = self._matching(inner)
        if not want:
            return None
        parts = inner.strip("/").split("/")
        for n in range(1, len(parts)):
            tail = "/".join(parts[-n:])
            if self._matching(tail) == want:
                return tail
        return "/".join(parts)

    def _matching(self, path: str) -> tuple[int, ...]:
        return tuple(i for i, (regex, _) in enumerate(self.patterns) if regex.search(path))


# a GitHub token made up here, in a line every path but an excluded one reports: kingfisher
# drops every finding of a file whose path its input filters exclude (lock files such as
# pnpm-lock.yaml, node_modules), and such a file must still be read as before
_PROBE = (
    "token: ghp_" + "".join(random.Random(1).choices(string.ascii_letters + string.digits, k=36))
).encode()
# file names whose exclusion is known; cleared when full (a new probe costs ~20 µs)
_NAMES_KEPT = 4096


class KingfisherDetector:
    """Every kingfisher rule, low confidence included; leakscan filters by confidence."""

    name = "kingfisher"
    whole_file: int | None = None  # any piece: its patterns match within a line or a few KB

    def __init__(self) -> None:
        self._rules = catalog()
        self._scopes = path_scopes()
        self._excluded: dict[str, bool] = {}
        # the last file's path and its name for kingfisher: a file comes in many chunks
        self._last: tuple[str | None, str | None] = (None, None)
        # scan() sees raw bytes: scan_file would apply kingfisher's own path filters,
        # which skip site-packages and node_modules, and we want every path of a layer
        self._text = Scanner(self._rules, base64=True, dedup=False, redact=False)
        # decoding base64 runs costs ~60% more time per byte, and binaries (most bytes of
        # an image) hold no base64-encoded credentials worth that: their strings are
        # scanned as they stand. Text keeps it (a token base64-encoded in a config file).
        self._binary = Scanner(self._rules, base64=False, dedup=False, redact=False)

    def wants(self, subject: Subject) -> bool:
        """Every byte of every file and string."""
        return True

    def scan(self, data: bytes, subject: Subject) -> list[Match]:
        """Run the engine over ``data``."""
        out = []
        # a NUL byte is what git, grep and diff take for "binary", and no text format has one
        scanner = self._binary if b"\0" in data else self._text
        name = self._name(subject.path)
        if name is None:
            results = scanner.scan(data)
        else:
            # the file's name, for the rules scoped to it (scan_input applies them)
            results = scanner.scan_input(ScanInput(path=name, data=data))
        for found in results:
            if not found.visible:
                continue  # helper matches kept only for the engine's own validation
            loc = found.location
            start, end = int(loc["start_offset"]), int(loc["end_offset"])
            secret = found.secret
            raw = None
            if found.is_base64_encoded:
                raw = data[start:end].decode("utf-8", "replace")
            conf = found.confidence if found.confidence in _CONFIDENCES else "medium"
            out.append(
                Match(
                    rule_id=found.rule_id,
                    description=found.rule_name,
                    secret=secret,
                    start=start,
                    end=end,
                    line=int(loc["line"]),
                    confidence=cast(Confidence, conf),
                    detector=self.name,
                    raw=raw,
                )
            )
        return out

    def _name(self, path: str | None) -> str | None:
        """The path to scan a file at ``path`` under, None: scan without one."""
        last = self._last  # one read: another thread may replace it meanwhile
        if path is not None and last[0] == path:
            return last[1]
        name = self._scopes.name(path)
        if name is not None and self._is_excluded(name):
            name = None
        self._last = (path, name)
        return name

    def _is_excluded(self, name: str) -> bool:
        """Whether kingfisher drops what it finds in a file called ``name``."""
        excluded = self._excluded.get(name)
        if excluded is None:
            probe = self._text.scan_input(ScanInput(path=name, data=_PROBE))
            excluded = not any(found.visible for found in probe)
            if len(self._excluded) >= _NAMES_KEPT:
                self._excluded.clear()
            self._excluded[name] = excluded
        return excluded

    def rules(self) -> list[RuleInfo]:
        """The loaded catalog."""
        return [
            RuleInfo(rule["id"], rule["name"], self.name)
            for rule in self._rules.metadata()
            if rule.get("visible", True)
        ]
