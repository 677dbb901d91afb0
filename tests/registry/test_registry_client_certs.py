"""Mutual TLS as docker and podman do it: a registry that asks for a client certificate
(distribution's ``http.tls.clientcas``) gets the ``NAME.cert`` and ``NAME.key`` of its certs.d
folder (``HOST:PORT/``, under docker's or the containers' root), with no flag; without one,
or with one it did not sign, the scan stops with one line that says so."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from regkit import Registry, Timer, Tls, World, run, start_registry


@dataclass(frozen=True)
class Client:
    cert: Path
    key: Path


def _client(root: Path, name: str) -> tuple[Path, Client]:
    """A client CA of its own (apart from the server's) and a client certificate it signed."""
    root.mkdir(parents=True)
    ca_key, ca = root / "client-ca.key", root / "client-ca.crt"
    key, csr, cert = root / f"{name}.key", root / f"{name}.csr", root / f"{name}.cert"
    ext = root / "client.ext"
    ext.write_text("extendedKeyUsage=clientAuth\n")
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "2", "-subj", f"/CN=leakscan test {name} CA",
         "-keyout", str(ca_key), "-out", str(ca)])  # fmt: skip
    run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(csr)])  # fmt: skip
    run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
         "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert)])  # fmt: skip
    return ca, Client(cert, key)


@dataclass(frozen=True)
class Mtls:
    registry: Registry
    client: Client
    stranger: Client  # signed by a CA the registry does not know


@pytest.fixture(scope="module")
def mtls(world: World) -> Iterator[Mtls]:
    root = world.tmp / "mtls"
    with Timer("mutual TLS material (openssl)"):
        client_ca, client = _client(root / "client", "client")
        _, stranger = _client(root / "stranger", "stranger")
    # skopeo pushes with the client certificate from its cert dir, as docker would
    cert_dir = root / "push-certs"
    cert_dir.mkdir()
    shutil.copy(world.tls_material.ca, cert_dir / "ca.crt")
    shutil.copy(client.cert, cert_dir / "client.cert")
    shutil.copy(client.key, cert_dir / "client.key")
    server = world.tls_material
    tls = Tls(server.ca, server.cert, server.key, cert_dir)
    with Timer("start mutual-TLS registry"):
        registry = start_registry(
            root / "registry",
            "mtls",
            tls=tls,
            client_ca=client_ca,
            client=(client.cert, client.key),
        )
    try:
        registry.push(f"oci:{world.single}:1", "leaky/app:1")
        yield Mtls(registry, client, stranger)
    finally:
        registry.stop()


def _certs_d(root: Path, host: str, ca: Path, client: Client | None, stem: str = "client") -> Path:
    folder = root / host
    folder.mkdir(parents=True)
    shutil.copy(ca, folder / "ca.crt")
    if client is not None:
        shutil.copy(client.cert, folder / f"{stem}.cert")
        shutil.copy(client.key, folder / f"{stem}.key")
    return root


def test_client_certificate_from_certs_d(
    mtls: Mtls, world: World, cli: Any, tmp_path: Path
) -> None:
    host = mtls.registry.host
    image = f"docker://{host}/leaky/app:1"
    # docker's root holds the CA, the containers' root the client pair: both are read
    docker_root = _certs_d(tmp_path / "docker", host, world.tls_material.ca, None)
    containers_root = tmp_path / "containers"
    (containers_root / host).mkdir(parents=True)
    shutil.copy(mtls.client.cert, containers_root / host / "me.cert")
    shutil.copy(mtls.client.key, containers_root / host / "me.key")
    roots = f"{containers_root}:{docker_root}"
    run = cli([image, "--format", "json", "--no-cache"], env={"LEAKSCAN_CERTS_DIRS": roots})
    assert run.code == 1, run.err
    found = {f["secret_sha256"] for i in run.report["images"] for f in i["findings"]}
    assert found, run.out
    # the key's contents never show
    key_text = mtls.client.key.read_text()
    body = "".join(key_text.splitlines()[1:-1])
    assert body[:32] not in run.out + run.err


def test_no_client_certificate_is_said(mtls: Mtls, world: World, cli: Any, tmp_path: Path) -> None:
    host = mtls.registry.host
    roots = _certs_d(tmp_path / "certs.d", host, world.tls_material.ca, None)
    run = cli(
        [f"docker://{host}/leaky/app:1", "--no-cache"], env={"LEAKSCAN_CERTS_DIRS": str(roots)}
    )
    assert run.code == 2
    assert "asks for a TLS client certificate" in run.err, run.err
    assert len(run.err.strip().splitlines()) == 1, run.err


def test_a_certificate_it_did_not_sign_is_refused(
    mtls: Mtls, world: World, cli: Any, tmp_path: Path
) -> None:
    host = mtls.registry.host
    roots = _certs_d(tmp_path / "certs.d", host, world.tls_material.ca, mtls.stranger)
    run = cli(
        [f"docker://{host}/leaky/app:1", "--no-cache"], env={"LEAKSCAN_CERTS_DIRS": str(roots)}
    )
    assert run.code == 2
    # Go's TLS 1.3 server hangs up rather than naming the unknown CA
    assert "client certificate of its certs.d folder: not one it accepts" in run.err, run.err
    assert len(run.err.strip().splitlines()) == 1, run.err


def test_a_certificate_without_its_key_is_refused(
    mtls: Mtls, world: World, cli: Any, tmp_path: Path
) -> None:
    host = mtls.registry.host
    roots = _certs_d(tmp_path / "certs.d", host, world.tls_material.ca, mtls.client)
    (roots / host / "client.key").unlink()
    run = cli(
        [f"docker://{host}/leaky/app:1", "--no-cache"], env={"LEAKSCAN_CERTS_DIRS": str(roots)}
    )
    assert run.code == 2
    assert "client certificate client.cert has no client.key" in run.err, run.err
