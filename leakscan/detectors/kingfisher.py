"""Adapter for the kingfisher-secret-scanner engine (Rust + Hyperscan, in process).

The only module that imports ``kingfisher_sdk``.
"""

from __future__ import annotations

import random
import re
import string
import threading
from dataclasses import dataclass
from typing import cast

from kingfisher_sdk import Rules, ScanInput, Scanner

from leakscan.detectors import Confidence, Match, RuleInfo, Subject

_CONFIDENCES = ("high", "medium", "low")


_LOCK = threading.Lock()
_CATALOG: Rules | None = None
_SCOPES_LOCK = threading.Lock()  # apart: catalog() need not wait for the scopes
_SCOPES: PathScopes | None = None


def catalog() -> Rules:
    """kingfisher's rule catalog, loaded once per process.

    Loading takes ~0.3 s even from kingfisher's disk cache (seconds the first time), and it
    releases the GIL: :func:`preload` starts it on a thread while the rest starts up.
    """
    global _CATALOG
    with _LOCK:
        if _CATALOG is None:
            _CATALOG = Rules(confidence="low")
        return _CATALOG


def path_scopes() -> PathScopes:
    """The path conditions of the catalog's rules, read once per process (reading every
    rule's definition takes ~80 ms: :func:`preload` does it on its thread too)."""
    global _SCOPES
    rules = catalog()
    with _SCOPES_LOCK:
        if _SCOPES is None:
            _SCOPES = PathScopes.of(rules)
        return _SCOPES


def preload() -> threading.Thread:
    """Start loading the catalog and its path scopes on a daemon thread; :func:`catalog`
    and :func:`path_scopes` wait for it."""
    thread = threading.Thread(target=path_scopes, name="leakscan-rules", daemon=True)
    thread.start()
    return thread


# a regex's leading global flags, which Python allows only at the start of a pattern
_GLOBAL_FLAGS = re.compile(r"\(\?([imsx]+)\)")


def _scoped(pattern: str) -> str:
    """``pattern`` as a group that keeps its leading flags to itself, so that patterns can
    be joined into one alternation."""
    flags = _GLOBAL_FLAGS.match(pattern)
    if flags is None:
        return f"(?:{pattern})"
    return f"(?{flags.group(1)}:{pattern[flags.end() :]})"


@dataclass(frozen=True)
class PathScopes:
    """Rules that apply only to files whose path matches a pattern of theirs (NuGet
    ``nuget.config`` passwords, Terraform ``.tf`` and ``.hcl``, Kubernetes Secrets in
    ``.yaml``...). kingfisher checks the condition against the path of a
    :class:`ScanInput`; plain ``scan(data)`` has no path, and such rules never fire.
    """

    rules: tuple[tuple[str, re.Pattern[str]], ...]  # rule id, its path pattern
    any: re.Pattern[str] | None  # one pattern for all: most paths meet none of them

    @classmethod
    def of(cls, rules: Rules) -> PathScopes:
        """The path-scoped rules of ``rules``. A pattern Python's regexes cannot read is
        left out (its rule then fires nowhere, as before paths were given)."""
        found = []
        for meta in rules.metadata():
            pattern = rules.detail(meta["id"]).get("path")
            if not pattern:
                continue
            try:
                found.append((str(meta["id"]), re.compile(pattern), _scoped(pattern)))
            except re.error:
                continue
        joined = re.compile("|".join(group for _, _, group in found)) if found else None
        return cls(tuple((rule, regex) for rule, regex, _ in found), joined)

    def name(self, path: str | None) -> str | None:
        """The path to give kingfisher for a file at ``path`` (``OUTER!INNER`` for an
        archive member: its inner path), or None when no path-scoped rule applies.

        Only as much of the end of the path as the rules look at (the file name, or
        ``.git/config``): kingfisher's input filters also read the path, and drop files
        under ``node_modules`` that leakscan reads like any other.
        """
        if path is None or self.any is None:
            return None
        inner = path.rsplit("!", 1)[-1]
        if self.any.search(inner) is None:
            return None
        want = self._matching(inner)
        parts = inner.strip("/").split("/")
        for n in range(1, len(parts) + 1):
            tail = "/".join(parts[-n:])
            if self._matching(tail) == want:
                return tail
        return inner.strip("/")

    def _matching(self, path: str) -> frozenset[str]:
        return frozenset(rule for rule, regex in self.rules if regex.search(path))


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
        name = self._scopes.name(subject.path)
        if name is None or self._is_excluded(name):
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
