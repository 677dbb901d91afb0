"""Values that stand where a secret would, but are not one: documentation placeholders,
templated and redacted values, the documented example keys, and tokens in an issuer's
format whose random part is not random (``ghp_xxxx...``, ``AKIAXXXXXXXXXXXXXXXX``,
``sk_live_1234567890abcdef...``). Judged in one place, at the seam, for every engine's
matches: an engine's pattern knows a format, not whether the value in it was ever issued.

Every test here is one a random token fails with a negligible probability: a run of six
identical or six consecutive characters, a body that repeats a short unit, a word such as
``example`` or ``your`` between separators. A real token is random where its format says
it is; a stand-in for one is not.
"""

from __future__ import annotations

import base64
import binascii
import re

# the words people write instead of a secret, compared without case, "-", "_" or spaces
_WORDS = {
    "password", "passwd", "pass", "pwd", "secret", "token", "apikey", "key", "changeme",
    "changeit", "example", "sample", "dummy", "test", "testing", "placeholder", "redacted",
    "hidden", "masked", "none", "null", "nil", "undefined", "empty", "default", "mypassword",
    "yourpassword", "yourtoken", "yoursecret", "yourapikey", "mysecret", "mytoken",
    "secretpassword", "password123", "admin", "root", "user", "username", "foobar", "foo", "bar",
    "todo", "fixme", "replaceme", "insertkeyhere", "yourkeyhere", "notset", "unset",
}  # fmt: skip

# words that, standing alone between separators anywhere in a value, mark it as a stand-in
# ("your_api_key_here", "sk_live_REPLACE_ME", "xoxb-your-token"). "test" is not one: a
# Stripe test key (sk_test_...) is a real secret
_MARKERS = {
    "your", "here", "example", "placeholder", "redacted", "changeme", "replace", "replaceme",
    "insert", "dummy", "sample", "fake", "xxx", "xxxx", "todo", "fixme",
}  # fmt: skip

_TEMPLATED = re.compile(
    r"""^(
        \$\{[^}]*\}        # ${VAR}
      | \$\(\S*\)          # $(cmd)
      | \$[A-Za-z_]\w*     # $VAR
      | \{\{.*\}\}         # {{ template }}
      | \{%.*%\}           # {% template %}
      | <[^<>]*>           # <token>
      | %\([^)]*\)[sd]     # %(name)s
      | %[A-Za-z_]\w*%     # %VAR%
      | \[[A-Z_ ]+\]       # [YOUR_TOKEN]
      | \#\{[^}]*\}        # #{expression}
      | ENC\([^)]*\)       # an encrypted-property reference
    )$""",
    re.X | re.S,
)

# AWS's documentation keys and their kin end in EXAMPLE / EXAMPLEKEY
_EXAMPLE = re.compile(r"EXAMPLE(KEY)?\b|EXAMPLE(KEY)?$")

# six identical characters in a row. Not "A": base64 of zero bytes (a DER key's padding,
# a bearer token's fixed head) is AAAAAAAA in real secrets
_RUN = re.compile(r"([B-Za-z0-9])\1{5}")
# a masked value: ****, ••••, ####, or an ellipsis standing for the rest
_MASK = re.compile(r"[*•#]{4}|…|\.\.\.")

_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(?P<body>.*?)(?:-----END \1-----|$)", re.S)
_PEM_HEADER_LINE = re.compile(r"^[A-Za-z-]+:.*$", re.M)  # Proc-Type: and DEK-Info: lines
_BASE64_BODY = re.compile(r"[A-Za-z0-9+/=\s]+")
_BASE64_VALUE = re.compile(r"[A-Za-z0-9+/]{8,}={0,2}")


def _consecutive_run(text: str, length: int = 6) -> bool:
    """``length`` characters in a row that go up or down one code point at a time among
    letters and digits (123456, abcdef, 987654)."""
    up = down = 1
    for a, b in zip(text, text[1:], strict=False):
        if a.isalnum() and b.isalnum():
            step = ord(b) - ord(a)
            up = up + 1 if step == 1 else 1
            down = down + 1 if step == -1 else 1
            if up >= length or down >= length:
                return True
        else:
            up = down = 1
    return False


def _periodic(text: str) -> bool:
    """The end of ``text``'s letters and digits repeats a unit of at most 16 characters at
    least eight characters on (abcd1234abcd1234..., 1234567890abcdef1234567890abcdef)."""
    chars = re.sub(r"[^A-Za-z0-9]", "", text)
    for period in range(1, 17):
        window = period + 8
        if len(chars) < max(window, 2 * period):
            break
        tail = chars[-window:]
        if all(tail[i] == tail[i + period] for i in range(len(tail) - period)):
            return True
    return False


def _bad_pem(value: str) -> bool:
    """A PEM block whose body is not base64 (``...``, ``<your key here>``, stars)."""
    # a key inside a JSON string has its line breaks escaped
    found = _PEM.search(value.replace("\\n", "\n"))
    if found is None:
        return False
    body = _PEM_HEADER_LINE.sub("", found.group("body"))
    compact = "".join(body.split())
    return len(compact) < 64 or _BASE64_BODY.fullmatch(body) is None


def _decoded(value: str) -> str | None:
    """``value``'s last word decoded, when it is base64 of printable text (a Kubernetes
    Secret's data, a docker ``auth``)."""
    word = value.split()[-1] if value.split() else ""
    if _BASE64_VALUE.fullmatch(word) is None or len(word) % 4:
        return None
    try:
        text = base64.b64decode(word, validate=True).decode("ascii")
    except (binascii.Error, ValueError):
        return None
    return text if text.isprintable() else None


def is_placeholder(value: str, _depth: int = 0) -> bool:
    """True when ``value`` is a stand-in for a secret rather than a secret."""
    v = value.strip().strip("\"'`")
    if not v:
        return True
    if _TEMPLATED.match(v):
        return True
    if len(set(v.lower())) == 1:  # xxxxxxxx, ********, 00000000
        return True
    if re.sub(r"[-_\s.]", "", v).lower() in _WORDS:
        return True
    if v.startswith("-----BEGIN"):
        return _bad_pem(v)
    if _EXAMPLE.search(v) or _MASK.search(v):
        return True
    if _RUN.search(v) or _consecutive_run(v) or _periodic(v):
        return True
    words = re.split(r"[^A-Za-z0-9]+", v.lower())
    if len(words) > 1 and not _MARKERS.isdisjoint(words):
        return True
    if _depth == 0:
        decoded = _decoded(v)
        if decoded is not None and decoded != v:
            # a user:password pair: the password part is what stands in
            inner = decoded.rsplit(":", 1)[-1] if ":" in decoded else decoded
            return is_placeholder(inner, 1)
    return False
