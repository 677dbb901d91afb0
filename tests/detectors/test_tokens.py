"""leakscan's token rules: each format with a real (made-up) token and its look-alikes, named
values by their name and their randomness, id+secret pairs at high, where they read."""

from __future__ import annotations

import random

import pytest
from tokencorpus import KINDS, Kind, lookalike_values, render

from leakscan.detectors import Subject, default_detectors
from leakscan.detectors.context import in_context
from leakscan.detectors.tokens import (
    ALIBABA_PAIR,
    AWS_PAIR,
    FORMATS,
    NAMED,
    TokenRulesDetector,
    find,
    looks_random,
    names_a_secret,
)

ENGINE = TokenRulesDetector()


def kind(provider: str, name: str) -> Kind:
    return next(k for k in KINDS if k.provider == provider and k.kind == name)


def scan(path: str, text: str) -> list[tuple[str, str, str]]:
    """(rule, secret, confidence) of what the engine finds through the seam."""
    data = text.encode()
    subject = Subject(path, len(data))
    assert ENGINE.wants(subject)
    from leakscan.detectors import Detectors

    return [(m.rule_id, m.secret, m.confidence) for m in Detectors([ENGINE]).scan(data, subject)]


# each format rule: the kind of the corpus that is written in it, and the syntaxes it is
# checked in (the issue's: Java, Kotlin and Makefile for AWS key ids)
FORMAT_KINDS = {
    "leakscan.aws-access-key-id": [("AWS", "temporary key id (ASIA)"), ("AWS", "key id (ABIA)"),
                                   ("AWS", "key id (ACCA)"), ("AWS", "access key id")],
    "leakscan.alibaba-access-key-id": [("Alibaba Cloud", "access key id")],
    "leakscan.harness-token": [("Harness", "PAT"), ("Harness", "service account token")],
    "leakscan.jfrog-api-key": [("JFrog", "Artifactory API key")],
    "leakscan.jfrog-reference-token": [("JFrog", "identity token")],
    "leakscan.azure-ad-client-secret": [("Azure", "AD client secret")],
    "leakscan.clickhouse-cloud-key-secret": [("ClickHouse", "cloud key secret")],
    "leakscan.atlassian-api-token": [("Atlassian", "API token")],
    "leakscan.stripe-secret-key": [("Stripe", "test secret key"), ("Stripe", "restricted key"),
                                   ("Stripe", "live secret key")],
    "leakscan.flyio-token": [("Fly.io", "macaroon token"), ("Fly.io", "API token")],
    "leakscan.freemius-secret-key": [("Freemius", "secret key")],
    "leakscan.nuget-config-password": [("NuGet", "nuget.config password")],
    "leakscan.nuget-api-key": [("NuGet", "API key")],
    "leakscan.discord-webhook-url": [("Discord", "webhook URL")],
    "leakscan.microsoft-teams-webhook-url": [("Microsoft Teams", "webhook URL")],
    "leakscan.hubspot-private-app-token": [("HubSpot", "private app token")],
    "leakscan.braintree-access-token": [("Braintree", "access token")],
    "leakscan.gcp-service-account-key": [("Google Cloud", "service account key")],
}  # fmt: skip
SYNTAXES = ("java", "kotlin", "makefile", "env", "yaml", "json", "python", "properties")


def test_every_format_rule_is_tested() -> None:
    assert {f.rule_id for f in FORMATS} == set(FORMAT_KINDS)


@pytest.mark.parametrize("rule", sorted(FORMAT_KINDS))
def test_format_finds_its_tokens_in_every_syntax(rule: str) -> None:
    r = random.Random(rule)
    for provider, name in FORMAT_KINDS[rule]:
        k = kind(provider, name)
        for syntax in SYNTAXES if k.render is None else ("own",):
            token = k.make(r)
            if k.render is not None:
                path, text = k.render(token, r)
            else:
                path, text = render(syntax, [("CONFIG_VALUE", k.template.format(token))])
            found = scan("/srv/" + path, text)
            hits = [f for f in found if f[0] == rule]
            assert hits, (rule, syntax, text)
            # the rule's value is the token (escaped as JSON writes a key, for the key file)
            assert any(token in s or token.replace("\n", "\\n") in s for _, s, _ in hits)
            assert all(c == "high" or rule == "leakscan.nuget-config-password" for *_, c in hits)


@pytest.mark.parametrize("rule", sorted(FORMAT_KINDS))
def test_format_is_silent_on_its_lookalikes(rule: str) -> None:
    r = random.Random(rule)
    for provider, name in FORMAT_KINDS[rule]:
        k = kind(provider, name)
        for fake in lookalike_values(k, k.make(r)):
            if k.render is not None:
                path, text = k.render(fake, r)
            else:
                path, text = render("env", [(k.var, k.template.format(fake))])
            assert scan("/srv/" + path, text) == [], (rule, fake)


@pytest.mark.parametrize(
    "text",
    [
        # AKIA in a word, a longer run, lower case: not a key id
        "NOTAKIAABCDEFGHIJKLMNOP2\nakia2bcdefghijklmnop\nAKIA2BCDEFGHIJKLMNOP7Q\n",
        # "pat." in prose and a version string
        "see pat.example for the pattern\nversion = pat.1.2.3\n",
        # Q~ in an unrelated place
        "path = ~Q~/data\nmatch: [a-z]Q~\n",
        # sk_live_ shorter than any key
        "prefix = 'sk_live_'\nlabel = sk_test_abc\n",
    ],
)
def test_formats_need_their_whole_shape(text: str) -> None:
    assert [f for f in find(text) if f.rule_id != NAMED] == []


# --- named values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("AWS_SECRET_ACCESS_KEY", True), ("awsSecretAccessKey", True),
        ("aws.secret.access.key", True),
        ("STRIPE_API_KEY", True), ("DD_APP_KEY", True), ("ALGOLIA_ADMIN_KEY", True),
        ("GITHUB_TOKEN", True), ("db_password", True), ("dbPassword", True), ("SECRET", True),
        ("client_secret", True), ("AZURE_DEVOPS_PAT", True), ("NGROK_AUTHTOKEN", True),
        ("AccountKey", True), ("SharedAccessKey", True), ("SECRET_KEY", True),
        # names of things next to a secret, not of the secret
        ("AWS_ACCESS_KEY_ID", False), ("CLIENT_ID", False), ("TOKEN_URL", False),
        ("password_file", False), ("token_ttl", False), ("api_key_header", False),
        ("PUBLIC_KEY", False), ("CACHE_KEY", False), ("sort_key", False), ("key", False),
        ("PRIMARY_KEY", False), ("stripe_publishable_key", False), ("TOKEN_TYPE", False),
    ],
)  # fmt: skip
def test_names_a_secret(name: str, secret: bool) -> None:
    assert names_a_secret(name) is secret


@pytest.mark.parametrize(
    ("value", "random_"),
    [
        ("wJ8rXUtnFEMI/K7MDENG/bPxRfiCYz3kq9LmN2aQ", True), ("Tr0ub4dor&3xyz", True),
        ("3f2c9a1e-7b4d-4e8a-9c1f-0a2b3c4d5e6f", True), ("kq3ZbX9wPm2LrT7vYc4N", True),
        # references, paths, URLs, identifiers, words, stand-ins
        ("${DB_PASSWORD}", False), ("/run/secrets/db_password", False), ("./secret.txt", False),
        ("https://vault.acme.internal/v1/secret", False), ("os.environ", False),
        ("settings.SECRET_KEY", False), ("db-password-secret", False), ("required", False),
        ("changeme", False), ("abc123", False), ("xxxxxxxxxxxxxxxx", False),
        ("1234567890abcdef1234", False), ("aaaaaaaa11111111", False), ("classpath:keys/app", False),
        # words and numbers, code, references
        ("MyPassword", False), ("Welcome1", False), ("PasswordValue", False), ("config52", False),
        ("apiKey91", False), ("MySecretToken2024", False), ("@db.password@", False),
        ("apiKey.data=const", False), ("a||b&&c=d", False), ("$(cat /x)", False),
        ("x9#(-_=+)k2!@Zq8vN3kLp2Xw7", True), ("$9kQ2#zLm8vN4", True),
        # a secret access key may start with "/" (base64's alphabet); a path has no such runs
        ("/RLz7fvCe/+aGQI8NdgaceNf4kT8CsC9A8dEX4Ye", True),
        ("/owm/Cl4NyM/RJUjhBP9B3e4/4rIqhgSYHexycLv", True),
        ("/usr/lib/python3.11/site-packages", False), ("/home/App/Config2024", False),
        ("/opt/MyApp2/Config3/Data4/v1.2.3/bin", False),
        ("/var/lib/docker/overlay2/3f2a9c3f2a9c3f2a9c3f2a9c3f2a9c3f2a9c", False),
        # regular expressions (IPV4_PAT = "(?:[0-9]{1,3}...")
        ("(?:[0-9]{1,3}", False), ("[A-Fa-f0-9]{32}", False), ("^sk_.*$", False),
    ],
)  # fmt: skip
def test_looks_random(value: str, random_: bool) -> None:
    assert looks_random(value) is random_


@pytest.mark.parametrize(
    "syntax",
    ["env", "yaml", "python", "js", "go", "properties", "kotlin", "java", "makefile", "json",
     "shell", "toml", "ruby", "dockerfile"],
)  # fmt: skip
def test_a_named_secret_is_medium_in_every_syntax(syntax: str) -> None:
    r = random.Random(syntax)
    value = "".join(
        r.choice("abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(28)
    )
    path, text = render(syntax, [("BILLING_API_TOKEN", value)])
    assert (NAMED, value, "medium") in scan("/srv/app/" + path, text)


def test_named_values_in_xml_and_history_strings() -> None:
    assert find("<password>Zq8vN3kLp2Xw7Rt5</password>")[0].secret == "Zq8vN3kLp2Xw7Rt5"
    assert find('<add key="ApiKey" value="Zq8vN3kLp2Xw7Rt5Ym4b" />')[0].secret == (
        "Zq8vN3kLp2Xw7Rt5Ym4b"
    )
    history = Subject()
    assert ENGINE.wants(history)
    matches = ENGINE.scan(b"ENV SMTP_PASSWORD=Zq8vN3kLp2Xw7Rt5", history)
    assert [(m.rule_id, m.secret, m.confidence) for m in matches] == [
        (NAMED, "Zq8vN3kLp2Xw7Rt5", "medium")
    ]


def test_named_secret_is_silent_on_references_and_calls() -> None:
    text = (
        'DB_PASSWORD = os.environ["DB_PASSWORD"]\napi_key = get_api_key()\n'
        "password: ${{ secrets.DB_PASSWORD }}\nif token == 'Zq8vN3kLp2Xw7Rt5':\n"
        "SECRET_KEY = settings.SECRET_KEY\n"
    )
    assert find(text) == []


def test_source_code_values_are_quoted_literals() -> None:
    """In source code what follows ``=`` unquoted is code, however random it looks."""
    code = "api_token = kq3ZbX9wPm2LrT7vYc4N\nconst secretKey = cfg.k9Zq8vN3kLp2Xw7Rt5;\n"
    assert scan("/srv/app/main.py", code) == []
    assert scan("/srv/app/main.js", code) == []
    # the same bare value in configuration is a value
    assert scan("/srv/app/app.env", "API_TOKEN=kq3ZbX9wPm2LrT7vYc4N\n") == [
        (NAMED, "kq3ZbX9wPm2LrT7vYc4N", "medium")
    ]


def test_provider_names_pin_the_rule() -> None:
    found = {f.rule_id for f in find(
        "ETSY_API_KEY=k3q9z8x7w6v5u4t3s2r1p0nm\nALGOLIA_ADMIN_KEY=9f1c2b3a4d5e6f708192a3b4c5d6e7f8\n"
        "CODECOV_TOKEN=3f2c9a1e-7b4d-4e8a-9c1f-0a2b3c4d5e6f\nJIRA_API_TOKEN=Zq8vN3kLp2Xw7Rt5Ym4bQ9cE\n"
    )}  # fmt: skip
    assert found == {
        "leakscan.etsy-api-key", "leakscan.algolia-admin-key", "leakscan.codecov-token",
        "leakscan.atlassian-api-token",
    }  # fmt: skip


# --- pairs -----------------------------------------------------------------------------------


def test_aws_id_and_secret_in_one_file_are_reported_together_at_high() -> None:
    key_id, secret = "ASIAQ7RZ4KM2XW6TPL3N", "wJ8rXUtnFEMI/K7MDENG/bPxRfiCYz3kq9LmN2aQ"
    path, text = render("java", [("AWS_ACCESS_KEY_ID", key_id), ("AWS_SECRET_ACCESS_KEY", secret)])
    found = scan("/srv/app/" + path, text)
    assert (AWS_PAIR, key_id, "high") in found
    assert (AWS_PAIR, secret, "high") in found
    # the secret alone is a named secret, medium
    alone = scan("/srv/app/.env", f"AWS_SECRET_ACCESS_KEY={secret}\n")
    assert alone == [(NAMED, secret, "medium")]


def test_alibaba_id_and_secret_are_reported_together_at_high() -> None:
    text = (
        "ALIBABA_CLOUD_ACCESS_KEY_ID=LTAI5tQ8vN3kLp2Xw7Rt5Ym4\n"
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET=Zq8vN3kLp2Xw7Rt5Ym4bQ9cE1dF6gH\n"
    )
    found = scan("/srv/app/.env", text)
    assert (ALIBABA_PAIR, "LTAI5tQ8vN3kLp2Xw7Rt5Ym4", "high") in found
    assert (ALIBABA_PAIR, "Zq8vN3kLp2Xw7Rt5Ym4bQ9cE1dF6gH", "high") in found


def test_a_documentation_key_id_pairs_with_nothing() -> None:
    text = "AWS_ACCESS_KEY_ID=AKIAXXXXXXXXXXXXXXXX\nAWS_SECRET_ACCESS_KEY=" + "x" * 40 + "\n"
    assert scan("/srv/app/.env", text) == []


# --- where the rules read ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "wanted"),
    [
        ("/app/.env", True), ("/app/.env.production", True), ("/srv/Makefile", True),
        ("/srv/src/Keys.kt", True), ("/srv/app.properties", True), ("/srv/nuget.config", True),
        ("/app/lib.jar!/BOOT-INF/classes/application.yml", True), ("/srv/Dockerfile", True),
        ("/usr/lib/python3.11/site-packages/x/settings.py", False),
        ("/app/node_modules/x/config.json", False), ("/usr/bin/python3", False),
        ("/opt/lib/libfoo.so.1", False), ("/srv/data.bin", False), ("/srv/notes.txt", False),
        ("/usr/local/lib/python3.11/ensurepip/_bundled/pip.whl!/pip/_vendor/url.py", False),
    ],
)  # fmt: skip
def test_wants(path: str, wanted: bool) -> None:
    assert ENGINE.wants(Subject(path, 100)) is wanted
    assert not ENGINE.wants(Subject(path, 2 << 20))


def test_binary_data_and_offsets() -> None:
    assert ENGINE.scan(b"\0\0AWS_SECRET_ACCESS_KEY=Zq8vN3kLp2Xw7Rt5", Subject("/a/.env", 40)) == []
    data = "# clé d'accès\nAPI_TOKEN=Zq8vN3kLp2Xw7Rt5Ym4b\n".encode()
    (match,) = ENGINE.scan(data, Subject("/a/.env", len(data)))
    assert data[match.start : match.end] == b"Zq8vN3kLp2Xw7Rt5Ym4b"
    assert match.line == 2


def test_named_secrets_are_low_in_vendored_and_sample_files() -> None:
    assert in_context(NAMED, "medium", "/usr/lib/python3/dist-packages/x/conf.py") == "low"
    assert in_context(NAMED, "medium", "/app/tests/fixtures/settings.py") == "low"
    assert in_context(NAMED, "medium", "/app/.env.example") == "low"
    assert in_context(NAMED, "medium", "/app/.env") == "medium"
    # a format keeps its confidence wherever it is
    assert in_context("leakscan.alibaba-access-key-id", "high", "/app/tests/x.py") == "high"
    assert in_context(AWS_PAIR, "high", "/app/docs/setup.md") == "high"


# a module docstring that shows how the code is called, a made-up password in the call
_DOCUMENTED = '''"""Helpers for the build farm's web hooks.

Example usage:

import farmhooks

hook = farmhooks.Hook()
hook.add_password(realm='Build Farm',
                  uri='https://ci.example.internal/hooks',
                  user='ops',
                  passwd='kupfer$gold')
"""

def serve():
    return 0
'''


def test_a_named_value_in_a_docstring_example_is_low() -> None:
    """A usage example of a docstring is written for the reader, as in an examples folder:
    low, wherever the file is (a repository's own history is not vendored by its path)."""
    assert scan("/srv/app/.git!/farmhooks/client.py", _DOCUMENTED) == [
        (NAMED, "kupfer$gold", "low")
    ]
    doctest = '''def connect(url):
    """Open a session.

    >>> connect("https://ci.example.internal").login(password="kupfer$gold")
    """
'''
    assert scan("/srv/app/farmhooks/session.py", doctest) == [(NAMED, "kupfer$gold", "low")]


def test_the_same_value_outside_an_example_stays_medium() -> None:
    # the call itself, in code: a literal a developer committed
    code = _DOCUMENTED.replace("Example usage:", "").replace('"""', "#", 1)
    code = code.replace('"""\n', "\n")
    assert '"""' not in code
    assert scan("/srv/app/farmhooks/client.py", code) == [(NAMED, "kupfer$gold", "medium")]
    # a docstring that only mentions it, with no example heading or prompt
    plain = _DOCUMENTED.replace("Example usage:", "Defaults of the farm:")
    assert scan("/srv/app/farmhooks/client.py", plain) == [(NAMED, "kupfer$gold", "medium")]
    # after the docstring is closed: code again
    after = _DOCUMENTED + "\nDEFAULT = dict(passwd='kupfer$gold')\n"
    assert scan("/srv/app/farmhooks/client.py", after) == [
        (NAMED, "kupfer$gold", "low"),
        (NAMED, "kupfer$gold", "medium"),
    ]
    # not Python: the docstring rule is Python's
    assert scan("/srv/app/farmhooks/client.rb", _DOCUMENTED)[0][2] == "medium"


def test_every_rule_is_listed() -> None:
    listed = {r.rule_id for r in default_detectors().rules() if r.detector == "leakscan"}
    assert {r.rule_id for r in ENGINE.rules()} <= listed
    assert {f.rule_id for f in FORMATS} | {NAMED, AWS_PAIR, ALIBABA_PAIR} <= listed
