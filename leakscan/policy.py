"""The gate: which of the findings shown fail a build (``--fail-on``), apart from which are
shown (``--min-confidence``).

A policy names places and a minimum confidence. Places are the file statuses ``present``,
``deleted`` and ``overwritten`` (``file`` is all three), ``history``, ``config`` and
``attestation`` (what travels with the image: provenance, SBOMs, signatures); a
finding fails the gate when its place is named and its confidence is at least the minimum.
The default fails on every finding shown: a deleted secret still ships in the image.
Accepted findings (baseline, ignored rules and paths) and findings below the confidence
threshold are not shown, so they never fail it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from leakscan import model as m
from leakscan.errors import InputError
from leakscan.terms import CONFIDENCE_RANK, Confidence

PLACES = ("present", "deleted", "overwritten", "history", "config", "attestation")
_ALIASES = {"file": ("present", "deleted", "overwritten"), "all": PLACES, "any": PLACES}
SYNTAX = (
    "present, deleted, overwritten, file, history, config, attestation, all, none, "
    "confidence=LEVEL "
    "(comma-separated or repeated)"
)


def place_of(finding: m.Finding) -> str:
    """The word a policy names a finding's place by: its file status, or history, config."""
    loc = finding.location
    return loc.status if isinstance(loc, m.FileLocation) else loc.kind


@dataclass(frozen=True)
class Policy:
    """What fails the gate: findings at one of ``places`` of at least ``min_confidence``
    (None: any confidence shown). ``places`` empty: no finding fails it (``none``)."""

    places: tuple[str, ...] = PLACES
    min_confidence: Confidence | None = None

    def fails(self, finding: m.Finding) -> bool:
        """True when ``finding`` fails the gate."""
        if place_of(finding) not in self.places:
            return False
        floor = self.min_confidence
        return floor is None or CONFIDENCE_RANK[finding.confidence] >= CONFIDENCE_RANK[floor]

    def describe(self) -> str:
        """The policy in the ``--fail-on`` spelling, e.g. ``present,history,confidence=high``."""
        if not self.places:
            return "none"
        words = ["all"] if self.places == PLACES else list(self.places)
        if self.min_confidence is not None:
            words.append(f"confidence={self.min_confidence}")
        return ",".join(words)


def parse_fail_on(values: Iterable[str], where: str = "--fail-on") -> Policy:
    """A policy from ``--fail-on`` values (or the settings file's ``fail-on``): each value
    one or more comma-separated words. No place named: every place."""
    places: list[str] = []
    level: Confidence | None = None
    none = False
    for value in values:
        for raw in value.split(","):
            word = raw.strip().lower()
            if not word:
                continue
            if word.startswith("confidence="):
                wanted = word.removeprefix("confidence=")
                if wanted not in CONFIDENCE_RANK:
                    raise InputError(f"{where} {raw.strip()!r}: confidence is high, medium or low")
                level = wanted  # type: ignore[assignment]
            elif word == "none":
                none = True
            elif word in PLACES:
                places.append(word)
            elif word in _ALIASES:
                places.extend(_ALIASES[word])
            else:
                raise InputError(f"{where} {raw.strip()!r}: not one of {SYNTAX}")
    if none and (places or level):
        raise InputError(f"{where}: none fails on nothing; it goes alone")
    if none:
        return Policy(places=(), min_confidence=None)
    chosen = tuple(p for p in PLACES if p in places) or PLACES
    return Policy(places=chosen, min_confidence=level)


def _counts(findings: Sequence[m.Finding]) -> dict[str, int]:
    counts = Counter(place_of(f) for f in findings)
    return {p: counts[p] for p in PLACES if counts[p]}


@dataclass(frozen=True)
class Gate:
    """The gate's verdict on one scan."""

    policy: Policy
    complete: bool
    failing: tuple[m.Finding, ...]
    passing: tuple[m.Finding, ...]
    accepted: int
    below_threshold: int

    @property
    def passed(self) -> bool:
        """True when no finding fails the policy (an incomplete scan is judged apart)."""
        return not self.failing

    @property
    def status(self) -> str:
        """``incomplete`` (errors win), ``failed`` or ``passed``."""
        if not self.complete:
            return "incomplete"
        return "passed" if self.passed else "failed"

    def exit_status(self) -> int:
        """0 passed, 1 findings fail the policy, 2 the scan is incomplete (errors win)."""
        return {"passed": 0, "failed": 1, "incomplete": 2}[self.status]

    def why(self) -> str:
        """One sentence: what failed the gate and why, what passed it."""
        policy = self.policy.describe()
        if self.failing:
            said = _said(_counts(self.failing))
            secrets = len({f.secret_sha256 for f in self.failing})
            line = (
                f"FAILED: {_n(len(self.failing), 'finding')} of {_n(secrets, 'secret')} "
                f"({said}) match --fail-on {policy}"
            )
        else:
            line = f"passed: no finding matches --fail-on {policy}"
        if self.passing:
            line += f"; {_n(len(self.passing), 'finding')} ({_said(_counts(self.passing))}) "
            line += "shown but let through"
        if self.accepted:
            line += f"; {self.accepted} accepted"
        if not self.complete:
            line += "; the scan is INCOMPLETE, which fails the gate whatever was found"
        return line

    def as_dict(self) -> dict[str, Any]:
        """The ``gate`` object of the JSON report."""
        return {
            "status": self.status,
            "passed": self.complete and self.passed,
            "policy": {
                "fail_on": self.policy.describe(),
                "places": list(self.policy.places),
                "min_confidence": self.policy.min_confidence,
            },
            "failed": {
                "findings": len(self.failing),
                "secrets": len({f.secret_sha256 for f in self.failing}),
                "by_place": _counts(self.failing),
                "fingerprints": sorted({f.fingerprint for f in self.failing}),
            },
            "let_through": {
                "findings": len(self.passing),
                "by_place": _counts(self.passing),
            },
            "accepted": self.accepted,
            "below_threshold": self.below_threshold,
            "why": self.why(),
        }


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _said(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {p}" for p, n in counts.items())


def judge(report: m.ScanReport, policy: Policy) -> Gate:
    """The gate's verdict on ``report`` under ``policy``."""
    findings = report.findings
    return Gate(
        policy=policy,
        complete=report.complete,
        failing=tuple(f for f in findings if policy.fails(f)),
        passing=tuple(f for f in findings if not policy.fails(f)),
        accepted=sum(n for image in report.images for _, n in image.suppressed),
        below_threshold=sum(image.below_threshold for image in report.images),
    )


def policy_for(flags: Sequence[str] | None, config_path: str | None = None) -> Policy:
    """The policy of a command: ``--fail-on`` flags when given, else the settings file's
    ``fail-on``, else the default (every finding shown fails)."""
    if flags:
        return parse_fail_on(flags)
    from leakscan.settings import load_config

    config = load_config(config_path)
    if config.fail_on:
        return parse_fail_on(config.fail_on, f"config {config.source}: fail-on")
    return Policy()
