"""Adapter for the kingfisher-secret-scanner engine (Rust + Hyperscan, in process).

The only module that imports ``kingfisher_sdk``.
"""

from __future__ import annotations

import threading
from typing import cast

from kingfisher_sdk import Rules, Scanner

from leakscan.detectors import Confidence, Match, RuleInfo, Subject

_CONFIDENCES = ("high", "medium", "low")


_LOCK = threading.Lock()
_CATALOG: Rules | None = None


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


def preload() -> threading.Thread:
    """Start loading the catalog on a daemon thread; :func:`catalog` waits for it."""
    thread = threading.Thread(target=catalog, name="leakscan-rules", daemon=True)
    thread.start()
    return thread


class KingfisherDetector:
    """Every kingfisher rule, low confidence included; leakscan filters by confidence."""

    name = "kingfisher"
    whole_file: int | None = None  # any piece: its patterns match within a line or a few KB

    def __init__(self) -> None:
        self._rules = catalog()
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
        for found in scanner.scan(data):
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

    def rules(self) -> list[RuleInfo]:
        """The loaded catalog."""
        return [
            RuleInfo(rule["id"], rule["name"], self.name)
            for rule in self._rules.metadata()
            if rule.get("visible", True)
        ]
