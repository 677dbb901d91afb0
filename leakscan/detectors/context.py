"""Where a match sits changes what it is worth.

Upstream projects ship sample keys, example JWTs and URLs with passwords in their tests,
examples and docs, and distributions compile test keys into libraries: a clean Debian,
Python or npm install holds dozens. A generic match (a private key, a JWT, a URL with a
password, a keyword or an entropy hit) in vendored code or in a test, example or
documentation file is therefore low confidence. A token in an issuer's own format
(``ghp_``, ``npm_``, ``AKIA``, ``xoxb-``...) keeps its confidence wherever it is: no
upstream project ships a live one, and one found there is a leak all the same.
"""

from __future__ import annotations

import re

from leakscan.detectors import Confidence

# rules whose matches look the same in sample data as in a leak
_GENERIC_RULE = re.compile(
    r"private-key|generic|jwt|basic-auth|keyword|entropy|telegram|credential-uri|password"
    r"|curl-auth|named-",
    re.IGNORECASE,
)

# code installed by a package manager or a distribution, not written for this image
_VENDORED = re.compile(
    r"""(^|/)(node_modules|site-packages|dist-packages|bower_components|vendor)/
      | ^/usr/(lib|lib32|lib64|libexec|share|include|bin|sbin)/
      | ^/(lib|lib32|lib64|bin|sbin)/
      | ^/usr/local/lib/python\d[^/]*/
    """,
    re.VERBOSE,
)

# tests, examples and docs, by folder or by file name (OUTER!/INNER paths included)
_SAMPLE = re.compile(
    r"""(^|/)(tests?|testing|testdata|test_data|__tests__|spec|specs|examples?|samples?
             |docs?|fixtures?|certdata)/
      | (^|/)[^/]*(example|sample|test|spec|fixture|changelog|readme)[^/]*$
    """,
    re.IGNORECASE | re.VERBOSE,
)


def is_vendored(path: str) -> bool:
    """Whether ``path`` is in a tree that a package manager or a distribution installs."""
    return _VENDORED.search(path) is not None


def in_context(rule_id: str, confidence: Confidence, path: str | None) -> Confidence:
    """The confidence of a match of ``rule_id`` in the file at ``path`` (None for history
    and config strings, which keep theirs)."""
    if path is None or confidence == "low":
        return confidence
    # leakscan's own rules read a place or a format; a value found by its name alone is as
    # generic as a keyword match
    if rule_id.startswith("leakscan.") and not rule_id.startswith("leakscan.named-"):
        return confidence
    if not _GENERIC_RULE.search(rule_id):
        return confidence
    if is_vendored(path) or _SAMPLE.search(path):
        return "low"
    return confidence
