"""Values that stand where a secret would, but are not one: documentation placeholders,
templated values, the documented example keys. Judged in one place for every engine."""

from __future__ import annotations

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
    )$""",
    re.X | re.S,
)

# AWS's documentation keys and their kin end in EXAMPLE / EXAMPLEKEY
_EXAMPLE_SUFFIX = re.compile(r"EXAMPLE(KEY)?$")


def is_placeholder(value: str) -> bool:
    """True when ``value`` is a stand-in for a secret rather than a secret."""
    v = value.strip().strip("\"'`")
    if not v:
        return True
    if _TEMPLATED.match(v):
        return True
    if len(set(v.lower())) == 1:  # xxxxxxxx, ********, 00000000
        return True
    if _EXAMPLE_SUFFIX.search(v):
        return True
    return re.sub(r"[-_\s.]", "", v).lower() in _WORDS
