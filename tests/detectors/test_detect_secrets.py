"""The detect-secrets engine behind the seam: formats, offsets, confidence, placeholders,
which files it wants, user plugin files, and that its global settings stay contained.

Every token here is generated at run time: no real credential is ever written down.
"""

from __future__ import annotations

import base64
import json
import pickle
import random
import string
import subprocess
import sys
from pathlib import Path

import pytest
from imagebuilder import fake_token

import leakscan.detectors.detect_secrets as ds
from leakscan.detectors import (
    DetectorConfig,
    Detectors,
    Match,
    RuleInfo,
    Subject,
    build_detectors,
    default_detectors,
)
from leakscan.detectors.detect_secrets import DetectSecretsDetector

ENV = Subject("/app/.env")
RNG = random.Random(20240601)
_ALNUM = string.ascii_letters + string.digits


@pytest.fixture(scope="module")
def engine() -> DetectSecretsDetector:
    return DetectSecretsDetector()


def _pick(n: int, alphabet: str = _ALNUM) -> str:
    return "".join(RNG.choice(alphabet) for _ in range(n))


def _jwt() -> str:
    def part(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return ".".join(
        [part({"alg": "HS256", "typ": "JWT"}), part({"sub": _pick(10)}), _pick(43, _ALNUM + "-_")]
    )


def _in_file(line: str) -> bytes:
    # filler before and after, so that line numbers and offsets are checked
    return f"# config\nname = demo\n\n{line}\nport = 8080\n".encode()


def _only(found: list[Match], rule_id: str) -> Match:
    hits = [m for m in found if m.rule_id == rule_id]
    assert len(hits) == 1, found
    return hits[0]


def _check_place(data: bytes, match: Match) -> None:
    assert data[match.start : match.end].decode() == match.secret
    assert match.line == data[: match.start].count(b"\n") + 1
    assert match.detector == "detect-secrets"


# --- high-confidence formats ---------------------------------------------------------------

HIGH = [
    ("github", lambda t: f"GITHUB_TOKEN={t}", "detect-secrets.github-token"),
    ("gitlab", lambda t: f"gitlab_token: {t}", "detect-secrets.gitlab-token"),
    ("npm", lambda t: f"//registry.npmjs.org/:_authToken={t}  # ci", "detect-secrets.npm-tokens"),
    ("slack", lambda t: f'SLACK="{t}"', "detect-secrets.slack-token"),
    ("aws", lambda t: f"aws_access_key_id = {t}", "detect-secrets.aws-access-key"),
]


@pytest.mark.parametrize(("kind", "make_line", "rule_id"), HIGH)
def test_high_confidence_format(
    engine: DetectSecretsDetector, kind: str, make_line: object, rule_id: str
) -> None:
    token = fake_token(kind)
    assert callable(make_line)
    data = _in_file(make_line(token))
    match = _only(engine.scan(data, ENV), rule_id)
    # detect-secrets 1.5.0 reports "ghp", "glpat" and "npm_... # ci": the adapter repairs them
    assert match.secret == token
    assert match.confidence == "high"
    assert match.line == 4
    _check_place(data, match)


@pytest.mark.parametrize(
    ("token", "rule_id"),
    [
        ("sk_live_" + _pick(24), "detect-secrets.stripe-access-key"),
        ("SG." + _pick(22) + "." + _pick(43), "detect-secrets.sendgrid-api-key"),
        ("pypi-AgEIcHlwaS5vcmc" + _pick(80), "detect-secrets.pypi-token"),
        (f"{RNG.randint(10**8, 10**9 - 1)}:{_pick(35)}", "detect-secrets.telegram-bot-token"),
        (_jwt(), "detect-secrets.json-web-token"),
    ],
)
def test_more_high_confidence_formats(
    engine: DetectSecretsDetector, token: str, rule_id: str
) -> None:
    data = _in_file(f"value: {token}")
    match = _only(engine.scan(data, ENV), rule_id)
    assert (match.secret, match.confidence) == (token, "high")  # the JWT with its signature
    _check_place(data, match)


def test_private_key_is_the_whole_block(engine: DetectSecretsDetector) -> None:
    key = fake_token("private_key")
    data = b"# deploy key\n" + key.encode() + b"after = 1\n"
    match = _only(engine.scan(data, Subject("/root/.ssh/id_rsa")), "detect-secrets.private-key")
    assert match.secret == key.rstrip("\n")
    assert (match.line, match.confidence) == (2, "high")
    _check_place(data, match)


def test_private_key_without_its_end_is_the_header(engine: DetectSecretsDetector) -> None:
    data = b"x\n-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n"
    match = _only(engine.scan(data, Subject("/k.pem")), "detect-secrets.private-key")
    assert match.secret == "BEGIN RSA PRIVATE KEY"
    _check_place(data, match)


def test_aws_secret_key_by_its_name_is_medium(engine: DetectSecretsDetector) -> None:
    secret = fake_token("aws_secret")
    data = _in_file(f"aws_secret_access_key = '{secret}'")
    found = engine.scan(data, Subject("/root/.aws/credentials"))
    match = _only(found, "detect-secrets.aws-access-key")
    assert (match.secret, match.confidence) == (secret, "medium")
    _check_place(data, match)


def test_offsets_are_bytes_past_non_utf8_and_multibyte_text(engine: DetectSecretsDetector) -> None:
    token = fake_token("github")
    data = b"caf\xc3\xa9 \xff\xfe broken\n" + f"h\u00e9llo \u2603 token={token}\n".encode()
    match = _only(engine.scan(data, ENV), "detect-secrets.github-token")
    assert match.secret == token
    _check_place(data, match)


def test_invalid_utf8_inside_a_value(engine: DetectSecretsDetector) -> None:
    # detect-secrets hashes every value as UTF-8: undecodable bytes must not reach it raw
    data = b'x = 1\nDB_PASSWORD="h\xffunter\xc3(2pass"\n'
    match = _only(engine.scan(data, ENV), "detect-secrets.secret-keyword")
    assert (match.line, match.confidence) == (2, "low")
    assert data[match.start : match.end] == b"h\xffunter\xc3(2pass"
    assert match.secret == data[match.start : match.end].decode("utf-8", "replace")


def test_crlf_lines(engine: DetectSecretsDetector) -> None:
    token = fake_token("slack")
    data = f"a=1\r\nSLACK={token}\r\nb=2\r\n".encode()
    match = _only(engine.scan(data, ENV), "detect-secrets.slack-token")
    assert (match.secret, match.line) == (token, 2)
    _check_place(data, match)


# --- low confidence and placeholders -------------------------------------------------------


def test_keyword_and_entropy_findings_are_low(engine: DetectSecretsDetector) -> None:
    password = _pick(14)
    b64 = _pick(40, _ALNUM + "+/")
    hexa = _pick(40, "0123456789abcdef")
    data = (
        f'DB_PASSWORD="{password}"\n'
        f'blob = "{b64}"\n'
        f'digest = "{hexa}"\n'
        f"url = https://deploy:{password}@git.example.com/repo.git\n"
    ).encode()
    found = engine.scan(data, Subject("/srv/app.cfg"))
    expected = {
        ("detect-secrets.secret-keyword", password, 1),
        ("detect-secrets.base64-high-entropy-string", b64, 2),
        ("detect-secrets.hex-high-entropy-string", hexa, 3),
        ("detect-secrets.basic-auth-credentials", password, 4),
    }
    assert expected <= {(m.rule_id, m.secret, m.line) for m in found}
    for match in found:
        assert match.confidence == "low"
        _check_place(data, match)


def test_keyword_syntax_follows_the_file(engine: DetectSecretsDetector) -> None:
    # .env, shell and Dockerfile values are bare; JSON values are quoted, so a bare
    # "password=..." in JSON is not an assignment
    line = _in_file(f"export DB_PASSWORD={_pick(16)}")
    for path in ("/app/.env.production", "/app/run.sh", "/app/Dockerfile", None):
        assert engine.scan(line, Subject(path)), path
    assert not engine.scan(line, Subject("/app/config.json"))


PLACEHOLDERS = [
    "password=changeme",  # detect-secrets: a keyword finding, low
    "password=${DB_PASSWORD}",  # templated: filtered
    "token: <token>",  # "token" is not one of detect-secrets' keywords
    "password: xxxxxxxx",  # detect-secrets reports it; leakscan drops one repeated character
    "aws_access_key_id=AKIAIOSFODNN7EXAMPLE",  # detect-secrets: AWS key, high; leakscan drops it
    "password = get_secret('db')",  # an indirect reference: filtered
    'secret: "{{ .Values.secret }}"',  # templated
]


@pytest.mark.parametrize("line", PLACEHOLDERS)
@pytest.mark.parametrize("path", ["/app/.env", "/app/values.yaml", None])
def test_placeholders_are_silent_or_low(
    engine: DetectSecretsDetector, line: str, path: str | None
) -> None:
    for match in engine.scan(_in_file(line), Subject(path)):
        assert match.confidence == "low", match


def test_integrity_hashes_are_not_secrets(engine: DetectSecretsDetector) -> None:
    digest = base64.b64encode(RNG.randbytes(64)).decode()
    data = _in_file(f'  "integrity": "sha512-{digest}",')
    assert engine.scan(data, Subject("/app/node_modules/x/package.json")) == []


def test_which_placeholders_are_silent(engine: DetectSecretsDetector) -> None:
    found = {line: engine.scan(_in_file(line), ENV) for line in PLACEHOLDERS}
    assert [m.secret for m in found["password=changeme"]] == ["changeme"]
    assert {line for line, matches in found.items() if matches} == {"password=changeme"}


# --- what it wants ---------------------------------------------------------------------------

WANTS = [
    ("/app/.env", True),
    ("/app/.env.production", True),
    ("/srv/prod.env", True),
    ("/etc/app.ini", True),
    ("/etc/pip.conf", True),
    ("/srv/setup.cfg", True),
    ("/app.jar!/BOOT-INF/classes/application.properties", True),
    ("/srv/values.yaml", True),
    ("/srv/docker-compose.prod.yml", True),
    ("/srv/package.json", True),
    ("/srv/Cargo.toml", True),
    ("/srv/web.xml", True),
    ("/root/.npmrc", True),
    ("/root/.pypirc", True),
    ("/root/.netrc", True),
    ("/root/_netrc", True),
    ("/root/.git-credentials", True),
    ("/root/.gitconfig", True),
    ("/root/.aws/credentials", True),
    ("/root/.aws/config", True),
    ("/root/.docker/config", True),
    ("/root/.kube/config", True),
    ("/etc/kubeconfig", True),
    ("/entrypoint.sh", True),
    ("/root/.bashrc.bash", True),
    ("/root/x.zsh", True),
    ("/src/Dockerfile", True),
    ("/src/DOCKERFILE", True),
    ("/infra/main.tf", True),
    ("/infra/prod.tfvars", True),
    ("/app/mysite/settings.py", True),
    ("/var/www/wp-config.php", True),
    ("/etc/ssl/server.pem", True),
    ("/etc/ssl/private/tls.key", True),
    ("/root/.ssh/id_rsa", True),
    ("/root/.ssh/id_ed25519", True),
    ("/root/.ssh/id_ecdsa", True),
    ("/root/.ssh/id_dsa", True),
    ("/layers.tar!/app.tgz!/srv/.env", True),
    ("/usr/bin/python3", False),
    ("/app/main.py", False),
    ("/app/README.md", False),
    ("/root/.ssh/id_rsa.pub", False),
    ("/usr/lib/python3/config", False),  # "config" only under .aws, .docker, .kube
    ("/app/package-lock.json", False),  # a lock file: hashes, not secrets
    ("/app/node_modules/.package-lock.json", False),
    ("/app/pnpm-lock.yaml", False),
    ("/app/swagger/api.yaml", False),  # detect-secrets skips swagger files
    ("/app/settings.json!/lib/x.so", False),  # the last part of the path decides
    ("/app.jar!/BOOT-INF/lib/dep.jar", False),
]


@pytest.mark.parametrize(("path", "wanted"), WANTS)
def test_wants(engine: DetectSecretsDetector, path: str, wanted: bool) -> None:
    assert engine.wants(Subject(path, 100)) is wanted


def test_wants_strings_and_small_files_only(engine: DetectSecretsDetector) -> None:
    assert engine.wants(Subject())
    assert engine.wants(Subject("/app/.env"))  # size unknown
    assert engine.wants(Subject("/app/.env", 1 << 20))
    assert not engine.wants(Subject("/app/.env", (1 << 20) + 1))
    small = DetectSecretsDetector(max_file_size=10)
    assert small.wants(Subject("/app/.env", 10)) and not small.wants(Subject("/app/.env", 11))


def test_binary_data_gives_nothing(engine: DetectSecretsDetector) -> None:
    data = b"\x7fELF\x00\x01" + f"\nTOKEN={fake_token('github')}\n".encode()
    assert engine.scan(data, ENV) == []
    assert engine.scan(b"", ENV) == []


# --- user plugins, rules, isolation ------------------------------------------------------------

PLUGIN = """
import re

from detect_secrets.plugins.base import RegexBasedDetector
from detect_secrets.plugins.aws import AWSKeyDetector  # a built-in: not the user's plugin


class LeakscanTestDetector(RegexBasedDetector):
    \"\"\"Finds leakscan's test tokens.\"\"\"

    secret_type = "Leakscan Test Token"
    denylist = (re.compile(r"LEAKSCANTEST-[0-9a-f]{16}"),)
"""
TEST_RULE = "detect-secrets.leakscan-test-token"


@pytest.fixture
def plugin_file(tmp_path: Path) -> str:
    path = tmp_path / "leakscan_test_plugin.py"
    path.write_text(PLUGIN)
    return str(path)


def _test_token() -> str:
    return "LEAKSCANTEST-" + _pick(16, "0123456789abcdef")


def test_user_plugin_is_loaded(plugin_file: str) -> None:
    engine = DetectSecretsDetector(plugin_files=[plugin_file])
    token = _test_token()
    data = _in_file(f"TEST={token}")
    match = _only(engine.scan(data, ENV), TEST_RULE)
    assert (match.secret, match.description, match.confidence) == (
        token,
        "Leakscan Test Token",
        "medium",
    )
    _check_place(data, match)
    rules = engine.rules()
    assert RuleInfo(TEST_RULE, "Leakscan Test Token", "detect-secrets") in rules
    assert len({r.rule_id for r in rules}) == len(rules)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("import re\nclass Broken(:\n", "SyntaxError"),
        ("raise RuntimeError('no')\n", "error at import"),
        ("X = 1\n", "no plugin"),
        (
            "from detect_secrets.plugins.base import RegexBasedDetector\n"
            "class NoDenylist(RegexBasedDetector):\n    secret_type = 'x'\n",
            "abstract",
        ),
    ],
)
def test_broken_plugin_file_raises_naming_it(tmp_path: Path, content: str, reason: str) -> None:
    path = tmp_path / "broken_plugin.py"
    path.write_text(content)
    with pytest.raises(ValueError, match="broken_plugin.py"):
        DetectSecretsDetector(plugin_files=[str(path)])


def test_missing_plugin_file_raises_naming_it(tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere.py")
    with pytest.raises(ValueError, match="nowhere.py"):
        DetectSecretsDetector(plugin_files=[missing])


def test_detectors_with_different_plugins_do_not_interfere(plugin_file: str) -> None:
    from detect_secrets.settings import get_settings

    settings = get_settings()
    before = (dict(settings.plugins), dict(settings.filters))
    plain = DetectSecretsDetector()
    custom = DetectSecretsDetector(plugin_files=[plugin_file])
    later = DetectSecretsDetector()
    data = _in_file(f"TEST={_test_token()} GH={fake_token('github')}")
    for engine, has_test_rule in ((plain, False), (custom, True), (later, False), (plain, False)):
        rules = {m.rule_id for m in engine.scan(data, ENV)}
        assert "detect-secrets.github-token" in rules
        assert (TEST_RULE in rules) is has_test_rule
        assert any(r.rule_id == TEST_RULE for r in engine.rules()) is has_test_rule
    # detect-secrets' own global settings were never touched
    settings = get_settings()
    assert (dict(settings.plugins), dict(settings.filters)) == before


def test_refuses_to_scan_when_verification_is_on(engine: DetectSecretsDetector) -> None:
    # verifying would send each secret found to its service: refuse rather than leak
    from detect_secrets.settings import transient_settings

    verify = "detect_secrets.filters.common.is_ignored_due_to_verification_policies"
    with (
        transient_settings({"filters_used": [{"path": verify, "min_level": 2}]}),
        pytest.raises(RuntimeError, match="verifying secrets"),
    ):
        engine.scan(_in_file(f"GH={fake_token('github')}"), ENV)
    assert engine.scan(_in_file(f"GH={fake_token('github')}"), ENV)


def test_rules_list_the_built_ins(engine: DetectSecretsDetector) -> None:
    rules = {r.rule_id: r for r in engine.rules()}
    for rule_id in (
        "detect-secrets.aws-access-key",
        "detect-secrets.secret-keyword",
        "detect-secrets.base64-high-entropy-string",
        "detect-secrets.hex-high-entropy-string",
        "detect-secrets.github-token",
        "detect-secrets.private-key",
        "detect-secrets.basic-auth-credentials",
    ):
        assert rules[rule_id].detector == "detect-secrets"
    assert rules["detect-secrets.aws-access-key"].description == "AWS Access Key"
    assert not any("ip" in r.split(".")[1].split("-") for r in rules)  # no public-IP plugin
    assert all(r == r.lower() and " " not in r for r in rules)


# --- the cheap pre-pass finds the same secrets as handing every line to every plugin ----------


def _corpus() -> bytes:
    hexa = "0123456789abcdef"
    lines = [
        f"GH={fake_token('github')}",
        f"gl: {fake_token('gitlab')} and GR1348941{_pick(20)}",
        f"//npm.example.com/:_authToken={fake_token('npm')}",
        f"SLACK={fake_token('slack').upper()}",  # Slack's pattern is case-insensitive
        f"hook https://hooks.slack.com/services/T{_pick(8)}/B{_pick(8)}/{_pick(24)}",
        f"id={fake_token('aws')}   ",  # trailing blanks
        f'aws_secret_access_key = "{fake_token("aws_secret")}"',
        f"CLOUDANT_PASSWORD = '{_pick(64, hexa)}'",
        f"https://acct:{_pick(64, hexa)}@acct.cloudant.com",
        f"IBM_CLOUD_IAM_API_KEY: {_pick(44)}",
        f"COS_HMAC_SECRET_ACCESS_KEY = {_pick(48, hexa)}",
        f"softlayer_api_key = {_pick(64, string.ascii_lowercase + string.digits)}",
        f"https://api.softlayer.com/soap/v3/{_pick(64, string.ascii_lowercase)}",
        f"art AKC{_pick(20)}",
        f'x="AP6{_pick(12)}"',
        f"AP1{_pick(12)}",
        f"mc {_pick(32, string.ascii_lowercase)}-us12",
        f"sid AC{_pick(32, string.ascii_lowercase)}",
        f"AccountKey={_pick(86, _ALNUM + '+/')}==;",
        f"jwt {_jwt()}",
        f'pw_secure = "{_pick(12)}"',
        f"\tPASSWORD={_pick(12)}\r",
        f"contrase\u00f1a: {_pick(10)}",
        f"\u0130stanbul secret: {_pick(10)}",  # lower-casing changes this line's length
        f"b64 '{_pick(23, _ALNUM)}' '{_pick(22, _ALNUM)}' \"{_pick(50, _ALNUM + '/+')}\"",
        f"hex \"{_pick(9, hexa)}\" '{_pick(8, hexa)}'",
        f"url: postgres://admin:{_pick(12)}@db:5432/app",
        fake_token("private_key"),
        "",
        "   ",
    ]
    return "\n".join(lines).encode()


def test_pre_pass_finds_what_every_line_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _corpus()
    fast = DetectSecretsDetector()
    monkeypatch.setattr(ds, "_triggers", lambda plugin: None)
    slow = DetectSecretsDetector()
    for path in ("/app/.env", "/app/config.json", "/app/settings.py", None):
        subject = Subject(path)
        expected = slow.scan(data, subject)
        assert fast.scan(data, subject) == expected
        assert len({m.rule_id for m in expected}) >= 15
        for match in expected:
            _check_place(data, match)


# --- the seam's config ---------------------------------------------------------------------------


class _FakeKingfisher:
    name = "kingfisher"

    def wants(self, subject: Subject) -> bool:
        return True

    def scan(self, data: bytes, subject: Subject) -> list[Match]:
        return []

    def rules(self) -> list[RuleInfo]:
        return []


def test_build_detectors(monkeypatch: pytest.MonkeyPatch, plugin_file: str) -> None:
    import leakscan.detectors.kingfisher as kingfisher

    monkeypatch.setattr(kingfisher, "KingfisherDetector", _FakeKingfisher)
    names = [e.name for e in build_detectors().engines]
    # leakscan's credential-file readers, then its token rules (last: see build_detectors)
    assert names == ["kingfisher", "leakscan", "detect-secrets", "leakscan"]
    off = DetectorConfig(detect_secrets=False)
    assert [e.name for e in build_detectors(off).engines] == ["kingfisher", "leakscan", "leakscan"]
    config = DetectorConfig(detect_secrets_plugins=(plugin_file,), detect_secrets_max_file_size=5)
    assert pickle.loads(pickle.dumps(config)) == config
    engine = build_detectors(config).engines[-2]
    assert isinstance(engine, DetectSecretsDetector)
    assert engine.max_file_size == 5
    assert any(r.rule_id == TEST_RULE for r in engine.rules())
    with pytest.raises(ValueError, match="nope.py"):
        build_detectors(DetectorConfig(detect_secrets_plugins=("/nope.py",)))


def test_default_detectors_are_built_once() -> None:
    first = default_detectors()
    assert default_detectors() is first
    assert isinstance(first, Detectors)
    assert [e.name for e in first.engines] == [
        "kingfisher",
        "leakscan",
        "detect-secrets",
        "leakscan",
    ]


def test_importing_the_adapter_leaves_warnings_alone() -> None:
    # detect_secrets' import turns on logging.captureWarnings for the whole process
    code = (
        "import warnings; show = warnings.showwarning; "
        "import leakscan.detectors.detect_secrets; "
        "assert warnings.showwarning is show"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
