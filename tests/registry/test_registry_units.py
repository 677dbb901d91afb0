"""The registry source's parts that need no registry: references, challenges, scheme choice,
credential lookup, redaction and pickling."""

from __future__ import annotations

import base64
import json
import pickle
from pathlib import Path
from typing import Any

import pytest

from leakscan.cli import _tls_verify_spelling
from leakscan.errors import InputError, SourceError
from leakscan.sources.auth import (
    Credentials,
    RegistryOptions,
    lookup_credentials,
    parse_challenges,
    parse_creds,
)
from leakscan.sources.blobstream import BlobOpener
from leakscan.sources.reference import parse_reference
from leakscan.sources.registry_client import RegistryClient, _NotTls, is_loopback

HEX = "a" * 64


@pytest.mark.parametrize(
    ("text", "domain", "repo", "tag", "digest"),
    [
        ("myapp", "docker.io", "library/myapp", "latest", None),
        ("myapp:latest", "docker.io", "library/myapp", "latest", None),
        ("user/app:1", "docker.io", "user/app", "1", None),
        ("docker.io/myapp", "docker.io", "library/myapp", "latest", None),
        ("index.docker.io/u/a", "docker.io", "u/a", "latest", None),
        ("host:5000/a/b:tag", "host:5000", "a/b", "tag", None),
        ("localhost/x", "localhost", "x", "latest", None),
        ("localhost:5000/x:y", "localhost:5000", "x", "y", None),
        ("127.0.0.1:5000/a-b/c_d.e:v1.2-rc", "127.0.0.1:5000", "a-b/c_d.e", "v1.2-rc", None),
        ("reg.example.internal/a", "reg.example.internal", "a", "latest", None),
        ("Host/app", "Host", "app", "latest", None),
        (f"repo@sha256:{HEX}", "docker.io", "library/repo", None, f"sha256:{HEX}"),
        (f"repo:tag@sha256:{HEX}", "docker.io", "library/repo", "tag", f"sha256:{HEX}"),
        (f"h:1/r@sha512:{'b' * 128}", "h:1", "r", None, f"sha512:{'b' * 128}"),
    ],
)
def test_reference_docker_rules(
    text: str, domain: str, repo: str, tag: str | None, digest: str | None
) -> None:
    ref = parse_reference(text)
    assert (ref.domain, ref.repository, ref.tag, ref.digest) == (domain, repo, tag, digest)
    # the Hub's API is served by another host than its name in references
    assert ref.api_host == ("registry-1.docker.io" if domain == "docker.io" else domain)
    # the digest wins over the tag
    assert ref.ref == (digest or tag)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty"),
        ("MyApp", "lower-case"),
        ("user/MyApp", "lower-case"),
        ("app:", "invalid tag"),
        ("app:-x", "invalid tag"),
        ("app@sha256:abc", "sha256:<64"),
        (f"app@md5:{HEX}", "sha256:<64 hex> or sha512"),
        ("user:hunter2pass@reg.example.internal/app", "credentials go in --creds"),
        (f"app@sha256:{'A' * 64}", "lower-case hex"),
        ("a//b", "component ''"),
        ("a/b_/c", "component 'b_'"),
        ("bad_host!:5000/x", "invalid"),
        ("https://host/x", "no scheme"),
        ("x" * 300, "longer than 255"),
    ],
)
def test_reference_invalid(text: str, needle: str) -> None:
    with pytest.raises(InputError) as exc:
        parse_reference(text)
    assert needle in str(exc.value)
    assert "hunter2pass" not in str(exc.value)


def test_reference_str_is_canonical() -> None:
    assert str(parse_reference("myapp")) == "docker.io/library/myapp:latest"
    assert str(parse_reference(f"h:1/a:t@sha256:{HEX}")) == f"h:1/a:t@sha256:{HEX}"


def test_challenges() -> None:
    got = parse_challenges(
        'Bearer realm="https://auth.example.internal/token",service="reg.example.internal",'
        'scope="repository:a/b:pull,push"'
    )
    assert len(got) == 1 and got[0].scheme == "bearer"
    assert got[0].get("realm") == "https://auth.example.internal/token"
    assert got[0].get("Service") == "reg.example.internal"
    assert got[0].get("scope") == "repository:a/b:pull,push"
    two = parse_challenges('Basic realm="x y", Bearer realm="https://a.example.internal/t"')
    assert [c.scheme for c in two] == ["basic", "bearer"]
    assert two[0].get("realm") == "x y"
    assert parse_challenges('Basic realm="a \\"quoted\\" b"')[0].get("realm") == 'a "quoted" b'
    assert parse_challenges("") == []


def test_loopback() -> None:
    for host in ("localhost", "localhost:5000", "127.0.0.1:5000", "127.1.2.3", "[::1]:5000"):
        assert is_loopback(host), host
    for host in ("reg.example.internal:5000", "10.0.0.1:5000", "[fe80::1]:5000"):
        assert not is_loopback(host), host


def test_tls_verify_spelling() -> None:
    assert _tls_verify_spelling(["x", "--tls-verify=false", "--tls-verify=TRUE"]) == [
        "x",
        "--no-tls-verify",
        "--tls-verify",
    ]
    assert _tls_verify_spelling(["--", "--tls-verify=false"]) == ["--", "--tls-verify=false"]


PASSWORD = "pw-never-shown-3f9a"
TOKEN = "tok-never-shown-77c1"


def test_credentials_never_in_repr_or_pickle_text() -> None:
    creds = parse_creds(f"user:{PASSWORD}:with:colons")
    assert creds.password == f"{PASSWORD}:with:colons"
    options = RegistryOptions(creds=creds)
    client = RegistryClient(parse_reference("reg.example.internal/a/b"), options)
    client._authorization = f"Bearer {TOKEN}"
    opener = BlobOpener(client, f"sha256:{HEX}", 10)
    for obj in (creds, options, client, opener):
        assert PASSWORD not in repr(obj) and PASSWORD not in str(obj)
        assert TOKEN not in repr(obj)
        assert "user" not in repr(creds)
    # the opener travels to worker processes whole, auth material included
    back = pickle.loads(pickle.dumps(opener))
    assert back.client._authorization == f"Bearer {TOKEN}"
    assert back.client.options.creds == creds
    assert back.client._session is None


@pytest.mark.parametrize("bad", ["nocolon", ":pw", ""])
def test_creds_parse_errors_do_not_quote(bad: str) -> None:
    with pytest.raises(InputError) as exc:
        parse_creds(bad)
    assert "USER:PASSWORD" in str(exc.value)
    if bad:
        assert bad not in str(exc.value)


def _scheme_probe(monkeypatch: pytest.MonkeyPatch, host: str, plain: bool = False) -> list[str]:
    """Which URLs connect() tries when nothing speaks TLS."""
    tried: list[str] = []

    def fake_send(self: RegistryClient, method: str, url: str, **kw: Any) -> Any:
        tried.append(url)
        if url.startswith("https://"):
            raise _NotTls("no TLS")

        class Resp:
            status_code = 200
            headers: dict[str, str] = {}
            content = b""

            def __enter__(self) -> Any:
                return self

            def __exit__(self, *a: object) -> None:
                return None

        return Resp()

    monkeypatch.setattr(RegistryClient, "_send", fake_send)
    client = RegistryClient(parse_reference(f"{host}/a"), RegistryOptions(plain_http=plain))
    try:
        client.connect()
    except SourceError as exc:
        tried.append(f"error: {exc}")
    return tried


def test_plain_http_fallback_only_for_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _scheme_probe(monkeypatch, "127.0.0.1:5000") == [
        "https://127.0.0.1:5000/v2/",
        "http://127.0.0.1:5000/v2/",
    ]
    assert _scheme_probe(monkeypatch, "localhost:5000")[-1] == "http://localhost:5000/v2/"
    far = _scheme_probe(monkeypatch, "reg.example.internal:5000")
    assert far[0] == "https://reg.example.internal:5000/v2/"
    assert "--plain-http" in far[-1] and len(far) == 2
    assert _scheme_probe(monkeypatch, "reg.example.internal:5000", plain=True) == [
        "http://reg.example.internal:5000/v2/"
    ]


def _auth_b64(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_credential_order_and_namespaces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docker_dir = tmp_path / "docker"
    docker_dir.mkdir()
    (docker_dir / "config.json").write_text(
        json.dumps(
            {
                "auths": {
                    "https://reg.example.internal/v1/": {"auth": _auth_b64("dockeruser", "d")},
                    "tok.example.internal": {"identitytoken": TOKEN},
                }
            }
        )
    )
    auth_file = tmp_path / "auth.json"
    auth_file.write_text(
        json.dumps(
            {
                "auths": {
                    "reg.example.internal/team": {"auth": _auth_b64("teamuser", "t")},
                    "reg.example.internal/team/app": {"auth": _auth_b64("appuser", "a")},
                }
            }
        )
    )
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_dir))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    found = lookup_credentials("reg.example.internal", "team/app")
    assert found is not None and found.username == "dockeruser"
    assert "docker config" in found.origin
    ident = lookup_credentials("tok.example.internal", "x")
    assert ident is not None and ident.identity_token == TOKEN and not ident.has_password
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth_file))
    # the longest namespace wins; the auth file comes before the docker config
    app = lookup_credentials("reg.example.internal", "team/app")
    assert app is not None and app.username == "appuser"
    other = lookup_credentials("reg.example.internal", "team/other")
    assert other is not None and other.username == "teamuser"
    # a namespaced key is not a host-wide one: the docker config answers
    outside = lookup_credentials("reg.example.internal", "else/x")
    assert outside is not None and outside.username == "dockeruser"
    assert lookup_credentials("none.example.internal", "x") is None


def test_cred_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    helper = tmp_path / "bin" / "docker-credential-lsunit"
    helper.parent.mkdir()
    helper.write_text(
        "#!/bin/sh\nread server\n"
        'if [ "$server" = "reg.example.internal" ]; then\n'
        f'  echo \'{{"Username":"helperuser","Secret":"{PASSWORD}"}}\'\n'
        'elif [ "$server" = "tok.example.internal" ]; then\n'
        f'  echo \'{{"Username":"<token>","Secret":"{TOKEN}"}}\'\n'
        'elif [ "$server" = "broken.example.internal" ]; then\n'
        f'  echo "oops {PASSWORD}" >&2; exit 3\n'
        "else\n  echo 'credentials not found in native keychain'; exit 1\nfi\n"
    )
    helper.chmod(0o755)
    docker_dir = tmp_path / "docker"
    docker_dir.mkdir()
    (docker_dir / "config.json").write_text(json.dumps({"credsStore": "lsunit"}))
    monkeypatch.setenv("PATH", f"{helper.parent}:/usr/bin:/bin")
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_dir))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    got = lookup_credentials("reg.example.internal", "a")
    assert got == Credentials(
        "helperuser", PASSWORD, origin="credential helper docker-credential-lsunit"
    )
    tok = lookup_credentials("tok.example.internal", "a")
    assert tok is not None and tok.identity_token == TOKEN
    assert lookup_credentials("nothing.example.internal", "a") is None
    with pytest.raises(SourceError) as exc:
        lookup_credentials("broken.example.internal", "a")
    assert "docker-credential-lsunit failed" in str(exc.value)
    assert PASSWORD not in str(exc.value)


def test_registry_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from leakscan.cli import _registry_options
    from leakscan.errors import LeakscanError

    monkeypatch.setattr("sys.stdin", io.StringIO(f"{PASSWORD}\n"))
    got = _registry_options(None, "me", True, None, True, False)
    assert got.creds == Credentials("me", PASSWORD, origin="--username/--password-stdin")
    assert _registry_options(f"u:{PASSWORD}", None, False, "ca.pem", False, True) == (
        RegistryOptions(creds=Credentials("u", PASSWORD), ca_file="ca.pem", tls_verify=False,
                        plain_http=True)
    )  # fmt: skip
    for bad in [("u:p", "me", True), (None, "me", False), (None, None, True)]:
        with pytest.raises(LeakscanError):
            _registry_options(bad[0], bad[1], bad[2], None, True, False)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(LeakscanError, match="no password on stdin"):
        _registry_options(None, "me", True, None, True, False)
