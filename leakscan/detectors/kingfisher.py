"""Adapter for the kingfisher-secret-scanner engine (Rust + Hyperscan, in process).

The only module that imports ``kingfisher_sdk``.
"""

from __future__ import annotations

from typing import cast

from kingfisher_sdk import Rules, Scanner

from leakscan.detectors import Confidence, Match, RuleInfo, Subject

_CONFIDENCES = ("high", "medium", "low")


class KingfisherDetector:
    """Every kingfisher rule, low confidence included; leakscan filters by confidence."""

    name = "kingfisher"

    def __init__(self) -> None:
        # compiling the catalog takes seconds the first time; kingfisher caches it on disk
        self._rules = Rules(confidence="low")
        # scan() sees raw bytes: scan_file would apply kingfisher's own path filters,
        # which skip site-packages and node_modules, and we want every path of a layer
        self._scanner = Scanner(self._rules, base64=True, dedup=False, redact=False)

    def wants(self, subject: Subject) -> bool:
        """Every byte of every file and string."""
        return True

    def scan(self, data: bytes, subject: Subject) -> list[Match]:
        """Run the engine over ``data``."""
        out = []
        for found in self._scanner.scan(data):
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
