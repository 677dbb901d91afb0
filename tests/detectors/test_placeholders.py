"""One placeholder filter at the seam, for every engine: stand-ins are silent, made-up tokens
in every documented format of the labelled corpus are not."""

from __future__ import annotations

import base64
import random

import pytest
from tokencorpus import B64, KINDS, lookalike_values, mixed

from leakscan.detectors import Detector, Detectors, Subject, default_detectors
from leakscan.detectors.placeholders import is_placeholder


@pytest.mark.parametrize(
    "value",
    [
        "changeme", "password", "Password", "pass", "${DB_PASSWORD}", "$DB_PASSWORD", "<token>",
        "<your-api-key>", "xxxxxxxx", "********", "{{ .Values.password }}", "%(db_password)s",
        "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "your_password",
        "'changeme'", "[YOUR_TOKEN]", "%API_KEY%", "", "#{environment.API_TOKEN}", "ENC(x1y2)",
        # documentation examples in an issuer's format
        "ghp_" + "x" * 36, "AKIAXXXXXXXXXXXXXXXX", "glpat-XXXXXXXXXXXXXXXXXXXX",
        "xoxb-000000000000-0000000000000-xxxxxxxxxxxxxxxxxxxxxxxx",
        "123456789:ABCdefGhIJKlmNoPQRsTUVwxyZ", "00000000000000000000000000000000-us1",
        "sk_live_1234567890abcdef1234567890abcdef", "npm_" + "a1B2" * 9,
        "sk_live_YOUR_SECRET_KEY_HERE", "xoxb-your-bot-token", "ghp_abcd****************",
        "sk-…", "token: ...",
        # PEM blocks whose body is not base64, as written and escaped in JSON
        "-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----",
        "-----BEGIN PRIVATE KEY-----\n<paste your key here>\n-----END PRIVATE KEY-----",
        "-----BEGIN PRIVATE KEY-----\\nMIIE...\\n-----END PRIVATE KEY-----",
        # base64 of a stand-in (a Kubernetes Secret's data, a docker auth)
        "password: " + base64.b64encode(b"changeme").decode(),
        base64.b64encode(b"deploy:xxxxxxxxxxxx").decode(),
    ],
)  # fmt: skip
def test_placeholders(value: str) -> None:
    assert is_placeholder(value)


@pytest.mark.parametrize("seed", range(25))
def test_made_up_tokens_of_every_kind_are_no_placeholders(seed: int) -> None:
    """Every documented format of the corpus, filled at random, passes: the filter's tests
    are ones a random token fails with a negligible probability."""
    r = random.Random(seed)
    for kind in KINDS:
        token = kind.make(r)
        assert not is_placeholder(token), (kind.provider, kind.kind, token)


def test_random_passwords_and_keys_are_no_placeholders() -> None:
    r = random.Random(99)
    for _ in range(2000):
        assert not is_placeholder(mixed(r, r.randint(12, 64)))
    assert not is_placeholder("hunter2hunter2")
    assert not is_placeholder("Xk29vLq8mPz3Wd")
    body = "\n".join(mixed(r, 64, B64) for _ in range(10))
    assert not is_placeholder(
        f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----"
    )
    assert not is_placeholder(f"-----BEGIN PRIVATE KEY-----\\n{body}\\n-----END PRIVATE KEY-----")
    # a DER key's zero padding and a bearer token's fixed head are runs of "A"
    assert not is_placeholder("AAAAAAAAAAAAAAAAAAAAA" + mixed(r, 60))


def test_lookalikes_of_every_kind_are_placeholders() -> None:
    r = random.Random(5)
    for kind in KINDS:
        for fake in lookalike_values(kind, kind.make(r)):
            assert is_placeholder(kind.template.format(fake)) or is_placeholder(fake), (
                kind.provider,
                kind.kind,
                fake,
            )


# --- per engine: the seam filters every engine's matches --------------------------------------


def _engine(name: str, kind: type | None = None) -> Detector:
    engines = [e for e in default_detectors().engines if e.name == name]
    if kind is not None:
        engines = [e for e in engines if type(e).__name__ == kind.__name__]
    return engines[0]


def _alone(engine: Detector, path: str, text: str) -> list[str]:
    """What ``engine``, alone behind the seam, finds in ``text`` at ``path``."""
    data = text.encode()
    subject = Subject(path, len(data))
    if not engine.wants(subject):
        return []
    return [m.secret for m in Detectors([engine]).scan(data, subject)]


def _hex(r: random.Random, n: int) -> str:
    return "".join(r.choice("0123456789abcdef") for _ in range(n))


CASES = [
    # (engine, class name or None, path, line of a real token, the same with a stand-in)
    ("kingfisher", None, "/app/.env", lambda r: f"SONAR_TOKEN=squ_{_hex(r, 40)}\n",
     "SONAR_TOKEN=squ_" + "x" * 40 + "\n"),
    ("kingfisher", None, "/app/.env", lambda r: f"SONAR_TOKEN=squ_{_hex(r, 40)}\n",
     "SONAR_TOKEN=squ_1234567890abcdef1234567890abcdef12345678\n"),
    ("kingfisher", None, "/app/notify.py",
     lambda r: f'URL = "https://hooks.slack.com/services/T{mixed(r, 10, "ABCDEFGH0123456789")}/'
               f'B{mixed(r, 10, "ABCDEFGH0123456789")}/{mixed(r, 24)}"\n',
     'URL = "https://hooks.slack.com/services/XXXXXXXXXXX/XXXXXXXXXXX/XXXXXXXXXXXXXXXXXXXXXXXX"\n'),
    ("detect-secrets", None, "/app/.env", lambda r: f"GITHUB_TOKEN=ghp_{mixed(r, 36)}\n",
     "GITHUB_TOKEN=ghp_" + "x" * 36 + "\n"),
    ("detect-secrets", None, "/app/.env",
     lambda r: f"AWS_ACCESS_KEY_ID=AKIA{mixed(r, 16, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567')}\n",
     "AWS_ACCESS_KEY_ID=AKIAXXXXXXXXXXXXXXXX\n"),
    ("detect-secrets", None, "/app/.env",
     lambda r: f"MAILCHIMP_API_KEY={_hex(r, 32)}-us6\n",
     "MAILCHIMP_API_KEY=00000000000000000000000000000000-us1\n"),
    ("detect-secrets", None, "/etc/ssl/private/app.key",
     lambda r: "-----BEGIN RSA PRIVATE KEY-----\n"
               + "\n".join(mixed(r, 64) for _ in range(8)) + "\n-----END RSA PRIVATE KEY-----\n",
     "-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----\n"),
    ("leakscan", "CredentialFilesDetector", "/root/.netrc",
     lambda r: f"machine git.acme.internal login ci password {mixed(r, 20)}\n",
     "machine git.acme.internal login ci password abcd****************\n"),
    ("leakscan", "CredentialFilesDetector", "/root/.docker/config.json",
     lambda r: '{"auths": {"r.acme.internal": {"auth": "'
               + base64.b64encode(f"ci:{mixed(r, 20)}".encode()).decode() + '"}}}',
     '{"auths": {"r.acme.internal": {"auth": "'
     + base64.b64encode(b"ci:xxxxxxxxxxxxxxxx").decode() + '"}}}'),
    ("leakscan", "TokenRulesDetector", "/app/config.py",
     lambda r: f'AWS_SECRET_ACCESS_KEY = "{mixed(r, 40)}"\n',
     'AWS_SECRET_ACCESS_KEY = "' + "X" * 40 + '"\n'),
    ("leakscan", "TokenRulesDetector", "/app/Makefile",
     lambda r: f"ALIBABA_ID ?= LTAI{mixed(r, 20)}\n", "ALIBABA_ID ?= LTAIxxxxxxxxxxxxxxxxxxxx\n"),
    ("leakscan", "TokenRulesDetector", "/app/config.yaml",
     lambda r: f"api_token: {mixed(r, 20)}\n", "api_token: 1234567890abcdef1234\n"),
]  # fmt: skip


@pytest.mark.parametrize(("engine", "cls", "path", "real", "stand_in"), CASES)
def test_each_engine_finds_the_token_and_not_its_stand_in(
    engine: str, cls: str | None, path: str, real: object, stand_in: str
) -> None:
    chosen = _engine(engine, type(cls, (), {}) if cls else None)
    assert callable(real)
    assert _alone(chosen, path, real(random.Random(1))), "the engine finds the real token"
    assert _alone(chosen, path, stand_in) == []
