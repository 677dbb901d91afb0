"""Where credentials and CAs are looked up: podman's auth files, certs.d folders."""

from __future__ import annotations

import os
from pathlib import Path

import certifi
import pytest

from leakscan.sources.auth import (
    RegistryOptions,
    certs_roots,
    containers_auth_files,
    registry_cas,
)

PEM = "-----BEGIN CERTIFICATE-----\nMIIB{}\n-----END CERTIFICATE-----\n"


def test_containers_auth_files_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert containers_auth_files() == (
        str(tmp_path / "run" / "containers" / "auth.json"),
        str(tmp_path / "cfg" / "containers" / "auth.json"),
    )
    # no runtime folder in the environment: podman's own for the user (root: /run/containers/0)
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert containers_auth_files()[0] == f"/run/containers/{os.getuid()}/auth.json"


def test_certs_roots_default_and_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEAKSCAN_CERTS_DIRS", raising=False)
    roots = certs_roots()
    assert roots[0] == "/etc/containers/certs.d" and roots[-1] == "/etc/docker/certs.d"
    monkeypatch.setenv("LEAKSCAN_CERTS_DIRS", f"/a{os.pathsep}/b")
    assert certs_roots() == ("/a", "/b")


def test_registry_cas_and_bundle(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    docker, containers = tmp_path / "docker", tmp_path / "containers"
    (docker / "reg.example.internal:5000").mkdir(parents=True)
    (containers / "reg.example.internal:5000").mkdir(parents=True)
    (docker / "reg.example.internal:5000" / "ca.crt").write_text(PEM.format("docker"))
    # client certificate and key: not trust
    (docker / "reg.example.internal:5000" / "client.cert").write_text(PEM.format("client"))
    (docker / "reg.example.internal:5000" / "client.key").write_text("key")
    (containers / "reg.example.internal:5000" / "b.crt").write_text(PEM.format("podman"))
    (docker / "other.example.internal").mkdir()
    (docker / "other.example.internal" / "ca.crt").write_text(PEM.format("other"))
    monkeypatch.setenv("LEAKSCAN_CERTS_DIRS", f"{containers}{os.pathsep}{docker}")
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    host = "reg.example.internal:5000"
    assert registry_cas(host) == (
        str(containers / host / "b.crt"),
        str(docker / host / "ca.crt"),
    )
    assert registry_cas("..") == () and registry_cas("nowhere:1") == ()
    bundle = RegistryOptions().verify(host)
    assert isinstance(bundle, str)
    text = Path(bundle).read_text()
    # the default trust stays, the registry's CAs are added, nobody else's
    assert Path(certifi.where()).read_text().strip() in text
    assert "MIIBdocker" in text and "MIIBpodman" in text
    assert "MIIBother" not in text and "MIIBclient" not in text
    assert RegistryOptions().verify("nowhere:1") is True
    # --ca-file alone when given; --tls-verify=false: nothing
    ca = tmp_path / "mine.pem"
    ca.write_text(PEM.format("mine"))
    assert RegistryOptions(ca_file=str(ca)).verify(host) == str(ca)
    assert RegistryOptions(tls_verify=False).verify(host) is False


def test_client_certificate_pairs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """NAME.cert with NAME.key, as docker and podman pair them; the first root and name
    win; a half pair is an error that names the file, not a certificate passed over."""
    from leakscan.errors import InputError
    from leakscan.sources.auth import registry_client_cert

    host = "reg.example.internal:5000"
    first, second = tmp_path / "containers", tmp_path / "docker"
    for root in (first, second):
        (root / host).mkdir(parents=True)
        (root / host / "ca.crt").write_text(PEM.format("ca"))
    monkeypatch.setenv("LEAKSCAN_CERTS_DIRS", f"{first}{os.pathsep}{second}")
    assert registry_client_cert(host) is None
    assert RegistryOptions().client_cert(host) is None
    for name in ("b", "a"):
        (second / host / f"{name}.cert").write_text(PEM.format(name))
        (second / host / f"{name}.key").write_text("key")
    pair = (str(second / host / "a.cert"), str(second / host / "a.key"))
    assert registry_client_cert(host) == pair
    # with certificate verification off the registry still asks for one: it is sent
    assert RegistryOptions(tls_verify=False).client_cert(host) == pair
    assert RegistryOptions().client_cert(None) is None
    (first / host / "me.cert").write_text(PEM.format("me"))
    (first / host / "me.key").write_text("key")
    assert registry_client_cert(host) == (
        str(first / host / "me.cert"),
        str(first / host / "me.key"),
    )
    (first / host / "me.key").unlink()
    with pytest.raises(InputError, match=r"client certificate me.cert has no me.key"):
        registry_client_cert(host)
    (first / host / "me.cert").unlink()
    (first / host / "lost.key").write_text("key")
    with pytest.raises(InputError, match=r"key lost.key has no client certificate lost.cert"):
        registry_client_cert(host)
    # a host name cannot reach outside the roots, nor another host's folder
    assert registry_client_cert("..") is None and registry_client_cert("nowhere:1") is None
