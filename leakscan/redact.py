"""Masking secrets in everything leakscan prints: one redactor, applied to every string of a
report in one step."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from typing import TypeVar, cast

# a secret this short cannot be masked without mangling ordinary words, and reveals little
MIN_MASKED_LENGTH = 3


def mask(secret: str) -> str:
    """A masked form that never reveals the whole secret: a long one keeps the first four
    characters (often a public prefix such as ``ghp_``), a short one keeps nothing."""
    if len(secret) >= 16:
        return secret[:4] + "*" * 8
    return "*" * 8


class Redactor:
    """Replaces every known secret in a string with its masked form."""

    def __init__(self, secrets: Iterable[str]) -> None:
        unique = {s for s in secrets if len(s) >= MIN_MASKED_LENGTH}
        # longest first, so a secret that contains another is masked whole
        ordered = sorted(unique, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(s) for s in ordered)) if ordered else None

    def __call__(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(lambda m: mask(m.group(0)), text)

    def optional(self, text: str | None) -> str | None:
        """Like calling the redactor, for values that may be missing."""
        return None if text is None else self(text)


# fields that hold no text from an image: hashes of our own making, the fixed words of the
# schema (a secret that happens to spell "present" must not break the report's shape), and
# the secret itself, which is only there when the user asked to see it
_KEEP = frozenset(
    {"secret", "secret_sha256", "fingerprint", "kind", "status", "source", "confidence"}
)

T = TypeVar("T")


def redact_report(report: T, redact: Redactor) -> T:
    """``report`` (a tree of frozen dataclasses, tuples and strings) with every string
    passed through ``redact``: the one redaction step every output goes through, whatever
    field a string is in."""
    return cast(T, _scrub(report, redact))


def _scrub(value: object, redact: Redactor) -> object:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, tuple):
        return tuple(_scrub(item, redact) for item in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {
            f.name: _scrub(getattr(value, f.name), redact)
            for f in dataclasses.fields(value)
            if f.name not in _KEEP
        }
        return dataclasses.replace(value, **changes)
    return value
