"""Masking secrets in everything leakscan prints."""

from __future__ import annotations

import re
from collections.abc import Iterable

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
