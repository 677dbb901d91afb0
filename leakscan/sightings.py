"""Matches as the rest of leakscan keeps them: each engine's match of a secret reduced to
what a report needs (rule, confidence, line, the secret's hash and masked form), and the
matches of one secret at one place merged into one sighting.

Merging needs the secrets in clear, so it happens where they are found; what is merged can
then be kept (in the result store) without them. The clear value travels beside, only for
as long as the scan needs it (to mask it elsewhere, or to show it with --show-secrets).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, replace

from leakscan.detectors import Match
from leakscan.redact import mask
from leakscan.terms import Confidence

# two engines' values on one line are one secret when one holds the other and is this long
MIN_MERGE_LENGTH = 8


@dataclass(frozen=True)
class Seen:
    """One engine's match, reduced. ``secret`` and ``raw`` (the form in the input when it
    differs, e.g. base64) are there while the match is fresh, never once it was stored."""

    rule_id: str
    description: str
    detector: str
    confidence: Confidence
    line: int
    start: int
    end: int
    secret_sha256: str
    masked: str
    secret: str | None = None
    raw: str | None = None

    def forms(self) -> tuple[str, ...]:
        """The clear forms of the secret this match knows (to be masked elsewhere)."""
        return tuple(x for x in (self.secret, self.raw) if x)


def secret_sha256(secret: str) -> str:
    """The hash a report names a secret by."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def seen(match: Match) -> Seen:
    """``match`` reduced, its clear forms still beside it."""
    return Seen(
        rule_id=match.rule_id,
        description=match.description,
        detector=match.detector,
        confidence=match.confidence,
        line=match.line,
        start=match.start,
        end=match.end,
        secret_sha256=secret_sha256(match.secret),
        masked=mask(match.secret),
        secret=match.secret,
        raw=match.raw,
    )


def merged(matches: Iterable[Match]) -> list[tuple[Seen, ...]]:
    """The matches of one place grouped by secret: the same value anywhere in the place,
    or on the same line a value that contains it or is contained in it (engines differ in
    where a secret starts and ends). Groups keep the order their first match came in."""
    groups: list[list[Match]] = []
    for match in matches:
        for group in groups:
            if any(_same(other, match) for other in group):
                group.append(match)
                break
        else:
            groups.append([match])
    return [tuple(seen(m) for m in group) for group in groups]


def _same(a: Match, b: Match) -> bool:
    shorter, longer = sorted((a.secret, b.secret), key=len)
    return shorter == longer or (
        a.line == b.line and len(shorter) >= MIN_MERGE_LENGTH and shorter in longer
    )


def sealed(group: tuple[Seen, ...]) -> tuple[Seen, ...]:
    """``group`` without its clear forms: what may be stored."""
    return tuple(replace(s, secret=None, raw=None) for s in group)
