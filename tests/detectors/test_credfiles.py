"""Credential files found by their format, and placeholders silent in every engine."""

from __future__ import annotations

import base64
import json
import secrets
import string

import pytest

from leakscan.detectors import Subject, default_detectors
from leakscan.detectors.credfiles import CredentialFilesDetector

ALNUM = string.ascii_letters + string.digits


def pw(n: int = 20) -> str:
    return "".join(secrets.choice(ALNUM) for _ in range(n))


ENGINE = CredentialFilesDetector()


def found(path: str, text: str) -> list[tuple[str, str, int]]:
    data = text.encode()
    subject = Subject(path, len(data))
    assert ENGINE.wants(subject), path
    out = []
    for m in ENGINE.scan(data, subject):
        assert data[m.start : m.end].decode() == m.secret
        out.append((m.rule_id, m.secret, m.line))
    return out


def test_docker_config_auth_and_tokens() -> None:
    password, token = pw(), pw(40)
    auth = base64.b64encode(f"deploy:{password}".encode()).decode()
    empty = base64.b64encode(b"deploy:").decode()
    doc = {
        "auths": {
            "registry.example.internal": {"auth": auth},
            "other.example.internal": {"auth": empty, "identitytoken": token},
        },
        "credsStore": "desktop",
    }
    got = found("/root/.docker/config.json", json.dumps(doc, indent=2))
    assert ("leakscan.docker-config-auth", auth, 4) in got
    assert ("leakscan.docker-config-identitytoken", token, 8) in got
    assert len(got) == 2
    legacy = found("/home/app/.dockercfg", json.dumps({"r.example.internal": {"auth": auth}}))
    assert [g[1] for g in legacy] == [auth]
    podman = found("/run/containers/0/containers/auth.json", json.dumps(doc))
    assert len(podman) == 2


def test_netrc_pypirc_aws_npmrc() -> None:
    p1, p2, key, session, npm = pw(), pw(), pw(40), pw(60), pw(30)
    assert found("/root/.netrc", f"machine h.example.internal\n  login me\n  password {p1}\n") == [
        ("leakscan.netrc-password", p1, 3)
    ]
    pypirc = f"[distutils]\nindex-servers = pypi\n[pypi]\nusername = me\npassword = {p2}\n"
    assert found("/root/.pypirc", pypirc) == [("leakscan.pypirc-password", p2, 5)]
    aws = (
        f"[default]\naws_access_key_id = AKIA{pw(16).upper()}\naws_secret_access_key = {key}\n"
        f"aws_session_token={session}\n"
    )
    assert found("/root/.aws/credentials", aws) == [
        ("leakscan.aws-secret-access-key", key, 3),
        ("leakscan.aws-session-token", session, 4),
    ]
    npmrc = f"registry=https://npm.example.internal/\n//npm.example.internal/:_auth={npm}\n"
    assert found("/app/.npmrc", npmrc) == [("leakscan.npmrc-credential", npm, 2)]


def test_kubeconfig_and_kubernetes_secret() -> None:
    token, key = pw(40), base64.b64encode(pw(60).encode()).decode()
    kube = (
        "apiVersion: v1\nkind: Config\nusers:\n- name: ci\n  user:\n"
        f"    token: {token}\n    client-key-data: {key}\n"
    )
    assert found("/root/.kube/config", kube) == [
        ("leakscan.kubeconfig-token", token, 6),
        ("leakscan.kubeconfig-client-key", key, 7),
    ]
    value = pw(24)
    encoded = base64.b64encode(value.encode()).decode()
    manifest = (
        "apiVersion: v1\nkind: ConfigMap\ndata:\n  plain: notasecret\n---\n"
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ntype: Opaque\n"
        f"data:\n  password: {encoded}\n  binary: AAEC/w==\nstringData:\n  token: {value}x\n"
    )
    got = found("/deploy/secrets.yaml", manifest)
    assert [(g[1], g[2]) for g in got] == [(encoded, 12), (value + "x", 15)]


@pytest.mark.parametrize(
    ("path", "wanted"),
    [
        ("/root/.docker/config.json", True),
        ("/app/config.json", False),
        ("/root/.aws/config", True),
        ("/etc/config", False),
        ("/x/app.jar!/BOOT-INF/.netrc", True),
        ("/deploy/a.yml", True),
        ("/usr/bin/python3", False),
    ],
)
def test_wants(path: str, wanted: bool) -> None:
    assert ENGINE.wants(Subject(path, 100)) is wanted
    assert not ENGINE.wants(Subject(path, 2 << 20))


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("/app/README.md", "clone with https://user:pass@example.com/repo.git\n"),
        ("/app/.env", "PASSWORD=changeme\nAPI_TOKEN=${API_TOKEN}\nSECRET=<secret>\nKEY=xxxxxxxx\n"),
        ("/root/.netrc", "machine x login y password changeme\n"),
        ("/root/.aws/credentials", "[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\n"
         "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"),
        ("/app/values.yaml", "db:\n  password: {{ .Values.password }}\n  user: admin\n"),
        ("/app/settings.py", "DB_PASSWORD = '%(db_password)s'\nAPI_KEY = 'your_api_key'\n"),
        ("/app/mysql.cfg", "url = mysql://root:password@localhost/db\n"),
    ],
)  # fmt: skip
def test_placeholders_silent_in_every_engine(path: str, text: str) -> None:
    data = text.encode()
    assert default_detectors().scan(data, Subject(path, len(data))) == []
