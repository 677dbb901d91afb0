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

import bisect
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


# where a Python docstring shows how code is used: a heading of its own ("Example usage:",
# "Examples", "Usage::") or a doctest line
_EXAMPLE_HEADING = re.compile(
    r"^[ \t]*(?:examples?|example[ \t]+usage|usage)[ \t]*:{0,2}[ \t]*$", re.IGNORECASE | re.M
)
_DOCTEST = re.compile(r"^[ \t]*(?:>>>|\.\.\.)[ \t].*$", re.M)
_TRIPLE = re.compile(r'"""|\'\'\'')


def documented_examples(text: str) -> list[tuple[int, int]]:
    """Where Python source ``text`` shows usage examples in its docstrings (sorted spans of
    characters): in a triple-quoted string, doctest lines and what follows a line that
    heads an example. A value there is written for the reader, as in an examples folder
    (see in_context). One pass over the text, however many values are judged."""
    spans: list[tuple[int, int]] = []
    opened, start = None, 0
    for quote in _TRIPLE.finditer(text):
        if opened is None:
            opened, start = quote.group(), quote.end()
        elif quote.group() == opened:
            _examples_in(text, start, quote.start(), spans)
            opened = None
    if opened is not None:
        _examples_in(text, start, len(text), spans)
    return spans


def _examples_in(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> None:
    heading = _EXAMPLE_HEADING.search(text, start, end)
    below = heading.start() if heading is not None else end
    spans.extend(line.span() for line in _DOCTEST.finditer(text, start, below))
    if heading is not None:
        spans.append((heading.start(), end))


def in_spans(spans: list[tuple[int, int]], at: int) -> bool:
    """Whether character ``at`` is in one of ``spans`` (sorted, not overlapping)."""
    k = bisect.bisect_right(spans, at, key=lambda span: span[0]) - 1
    return k >= 0 and spans[k][0] <= at < spans[k][1]


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
