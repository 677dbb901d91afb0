"""Generic matches in vendored code and sample files are low confidence; tokens in an
issuer's format keep theirs everywhere."""

from __future__ import annotations

import pytest

from leakscan.detectors.context import documented_examples, in_context, in_spans, is_vendored


@pytest.mark.parametrize(
    ("rule", "path", "expected"),
    [
        ("betterleaks.private-key", "/usr/lib/x86_64-linux-gnu/libgnutls.so.30", "low"),
        ("betterleaks.private-key", "/usr/local/lib/python3.11/test/certdata/k.pem", "low"),
        ("betterleaks.private-key", "/app/node_modules/x/key.pem", "low"),
        ("betterleaks.jwt", "/srv/aws-sdk/apis/sso.examples.json", "low"),
        ("betterleaks.generic-credential-uri", "/app/docs/setup.md", "low"),
        ("betterleaks.curl-auth-user", "/usr/share/man/man1/curl.1.gz!/curl.1", "low"),
        ("detect-secrets.telegram-bot-token", "/opt/x/site-packages/b/examples-1.json", "low"),
        # the image's own files keep their confidence
        ("betterleaks.private-key", "/root/.ssh/id_ed25519", "high"),
        ("betterleaks.private-key", "/etc/ssl/private/server.key", "high"),
        ("betterleaks.generic-credential-uri", "/app/.env", "high"),
        ("betterleaks.private-key", "/usr/local/bin/tool", "high"),
        # issuer-format tokens keep theirs everywhere
        ("betterleaks.github-pat", "/app/node_modules/x/test/fixture.js", "high"),
        ("veles.secrets/npmjsaccesstoken", "/usr/lib/node_modules/npm/.npmrc", "high"),
        ("leakscan.netrc-password", "/app/tests/.netrc", "high"),
    ],
)
def test_in_context(rule: str, path: str, expected: str) -> None:
    assert in_context(rule, "high", path) == expected


def test_strings_and_low_unchanged() -> None:
    assert in_context("betterleaks.private-key", "high", None) == "high"
    assert in_context("betterleaks.private-key", "low", "/root/.ssh/id_rsa") == "low"


@pytest.mark.parametrize(
    ("path", "vendored"),
    [
        ("/usr/lib/python3/dist-packages/a.py", True),
        ("/usr/share/doc/x/README", True),
        ("/bin/busybox", True),
        ("/usr/local/bin/tool", False),
        ("/app/main.py", False),
        ("/app/lib.jar!/node_modules/x.js", True),
        ("/root/.npmrc", False),
    ],
)
def test_is_vendored(path: str, vendored: bool) -> None:
    assert is_vendored(path) is vendored


def test_documented_examples_of_python_docstrings() -> None:
    text = (
        'def f():\n    """Call it.\n\n    >>> f(token="a")\n    Returns nothing.\n\n'
        '    Examples::\n\n        f(token="b")\n    """\n    token = "c"\n'
        "x = '''no example here: token=\"d\"'''\n"
        '"""\nUsage:\n  f(token="e")\n'  # a docstring left open at the end of the file
    )
    spans = documented_examples(text)
    inside = {v for v in "abcde" if in_spans(spans, text.index(f'"{v}"'))}
    assert inside == {"a", "b", "e"}
    assert not in_spans(spans, text.index("Returns"))
    assert documented_examples("token = 'x'\n") == [] and not in_spans([], 0)
