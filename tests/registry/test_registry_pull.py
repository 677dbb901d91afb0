"""Pulling from real registries: the same image gives the same findings through ``oci:`` and
through every registry (plain, TLS + Basic, token auth), by tag and by digest, for OCI
indexes, Docker manifest lists and zstd layers; layers opened in worker processes."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
from helpers import scan_ref, summary
from imagebuilder import Image, Layer, fake_token, write_oci_layout
from regkit import Timer, World

from leakscan.detectors import DetectorConfig, Detectors
from leakscan.layers.archives import ArchiveLimits
from leakscan.sources.auth import Credentials, RegistryOptions
from leakscan.sources.registry import RegistrySource
from leakscan.workers import LayerPool

pytestmark = pytest.mark.real

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
OCI_ACCEPT = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"


def findings_of(report: dict[str, Any]) -> list[tuple[Any, ...]]:
    """What must not depend on where the image came from."""
    out = []
    for image in report["images"]:
        for f in image["findings"]:
            loc = f["location"]
            out.append(
                (
                    image["platform"],
                    f["rule_id"],
                    f["secret_sha256"],
                    f["fingerprint"],
                    loc["kind"],
                    loc.get("path"),
                    loc.get("line"),
                    loc.get("status"),
                    loc.get("layer_index"),
                    loc.get("removed_in_layer"),
                    loc.get("field"),
                    loc.get("key"),
                )
            )
    return sorted(out, key=repr)


@pytest.fixture(scope="module")
def oci_report(world: World) -> dict[str, Any]:
    from regkit import run_cli

    run = run_cli([f"oci:{world.single}:1", "--format", "json"])
    assert run.code == 1, run.err
    report = run.report
    kinds = {(f["location"]["kind"], f["location"].get("status")) for f in findings_of_raw(report)}
    # the image really leaks in every way: a deleted file, a present one, the config
    assert {("file", "deleted"), ("file", "present"), ("config", None)} <= kinds
    return report


def findings_of_raw(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for image in report["images"] for f in image["findings"]]


def manifest_digest(layout: Path) -> str:
    index = json.loads((layout / "index.json").read_text())
    return str(index["manifests"][0]["digest"])


def test_same_findings_through_oci_and_every_registry(
    world: World, cli: Any, oci_report: dict[str, Any]
) -> None:
    expected = findings_of(oci_report)
    token = world.token
    runs = {
        "plain": cli([f"docker://{world.plain.host}/leaky/app:1", "--format", "json"]),
        "tls+basic": cli(
            [
                f"docker://{world.tls.host}/leaky/app:1",
                "--format",
                "json",
                "--ca-file",
                str(world.tls_material.ca),
                "--creds",
                f"{world.tls.user}:{world.tls.password}",
            ]
        ),
        "token": cli(
            [f"docker://{token.host}/leaky/app:1", "--format", "json", "--username", "tokenuser"]
            + ["--password-stdin"],
            stdin=f"{token.password}\n",
        ),
        "token, anonymous": cli([f"docker://{token.host}/public/app:1", "--format", "json"]),
    }
    for name, run in runs.items():
        assert run.code == 1, (name, run.err)
        assert run.err == "", (name, run.err)
        report = run.report
        assert findings_of(report) == expected, name
        image = report["images"][0]
        assert image["source"] == "registry"
        assert image["manifest_digest"] == oci_report["images"][0]["manifest_digest"], name
        assert image["layers"] == oci_report["images"][0]["layers"], name
        for secret in world.all_secrets():
            assert secret not in run.out + run.err, name
    # the Bearer flow really ran against the real registry's validation
    assert token.token_server is not None
    users = [r["user"] for r in token.token_server.requests]
    assert "tokenuser" in users and None in users


def test_plain_name_and_digest_references(world: World, cli: Any, detectors: Detectors) -> None:
    digest = manifest_digest(world.single)
    host = world.plain.host
    expected = summary(scan_ref(f"oci:{world.single}:1", detectors).images[0])
    for ref in (
        f"{host}/leaky/app:1",  # a plain name: no daemon answers, so the registry
        f"docker://{host}/leaky/app@{digest}",
        f"docker://{host}/leaky/app:nosuchtag@{digest}",  # the digest wins
    ):
        report = scan_ref(ref, detectors)
        assert report.complete, (ref, report.errors)
        image = report.images[0]
        assert image.manifest_digest == digest and image.source == "registry"
        assert summary(image) == expected, ref
    run = cli([f"{host}/leaky/app:1"])
    assert run.code == 1 and "deleted in layer 2" in run.out, run.err


def test_multi_platform_index_attestations_skipped(world: World, detectors: Detectors) -> None:
    ref = f"docker://{world.plain.host}/multi/app:1"
    report = scan_ref(ref, detectors)
    assert report.complete, report.errors
    assert [i.platform for i in report.images] == ["linux/amd64", "linux/arm64/v8"]
    assert [len(i.findings) for i in report.images] == [0, 1]
    local = scan_ref(f"oci:{world.multi}:1", detectors)
    assert [summary(i) for i in report.images] == [summary(i) for i in local.images]
    only = scan_ref(ref, detectors, platforms=("linux/arm64",))
    assert [i.platform for i in only.images] == ["linux/arm64/v8"]
    none = scan_ref(ref, detectors, platforms=("linux/s390x",))
    assert not none.images and "no image for platform" in none.errors[0].message


def test_docker_manifest_list(world: World, detectors: Detectors) -> None:
    status, body = world.plain.raw_get(
        "/v2/dlist/app/manifests/1",
        {"Accept": "application/vnd.docker.distribution.manifest.list.v2+json"},
    )
    assert status == 200
    listing = json.loads(body)
    assert listing["mediaType"] == "application/vnd.docker.distribution.manifest.list.v2+json"
    assert {m["mediaType"] for m in listing["manifests"]} == {
        "application/vnd.docker.distribution.manifest.v2+json"
    }
    report = scan_ref(f"docker://{world.plain.host}/dlist/app:1", detectors)
    assert report.complete, report.errors
    local = scan_ref(f"oci:{world.dlist}:1", detectors)
    assert [i.platform for i in report.images] == ["linux/amd64", "linux/arm64/v8"]
    assert [summary(i) for i in report.images] == [summary(i) for i in local.images]


def test_zstd_layers(world: World, detectors: Detectors) -> None:
    # skopeo reuses blobs a registry already has: only a fresh one gets zstd copies
    fresh = world.fresh_registry("zstd")
    fresh.push(f"oci:{world.single}:1", "zstd/app:1", "--dest-compress-format", "zstd")
    status, body = fresh.raw_get("/v2/zstd/app/manifests/1", {"Accept": OCI_ACCEPT})
    assert status == 200
    manifest = json.loads(body)
    assert {layer["mediaType"] for layer in manifest["layers"]} == {
        "application/vnd.oci.image.layer.v1.tar+zstd"
    }
    for layer in manifest["layers"]:
        status, blob = fresh.raw_get(f"/v2/zstd/app/blobs/{layer['digest']}")
        assert status == 200 and blob[:4] == ZSTD_MAGIC
    report = scan_ref(f"docker://{fresh.host}/zstd/app:1", detectors)
    assert report.complete, report.errors
    expected = summary(scan_ref(f"oci:{world.single}:1", detectors).images[0])
    assert summary(report.images[0]) == expected


def test_layers_opened_in_worker_processes_with_a_token(world: World) -> None:
    """The openers cross into worker processes with their auth material and stream there."""
    token = world.token
    options = RegistryOptions(creds=Credentials("tokenuser", str(token.password)))
    name = f"{token.host}/leaky/app:1"
    source = RegistrySource.open(f"docker://{name}", name, options)
    pool = LayerPool(DetectorConfig(), 2)
    try:
        image = next(iter(source.images(())))
        with Timer("scan 4 layers in 2 worker processes"):
            done = pool.scan(image.layers, ArchiveLimits())
            results = {blob.index: scan for blob, scan in done}
    finally:
        pool.close()
        source.close()
    assert sorted(results) == [0, 1, 2, 3]
    for scan in results.values():
        assert not scan.errors, scan.errors
    assert any(hit.path == "root/.npmrc" or hit.path.endswith(".npmrc") for hit in results[1].hits)


@pytest.mark.parametrize("how", ["docker-config", "auth-file", "cred-helper", "identity-token"])
def test_stored_credentials(world: World, cli: Any, tmp_path: Path, how: str) -> None:
    token = world.token
    assert token.token_server is not None
    docker_dir = tmp_path / "docker"
    docker_dir.mkdir()
    env = {"DOCKER_CONFIG": str(docker_dir)}
    pair = f"{token.user}:{token.password}"
    entry = {"auth": base64.b64encode(pair.encode()).decode()}
    config: dict[str, Any] = {}
    if how == "docker-config":
        config = {"auths": {token.host: entry}}
    elif how == "auth-file":
        # REGISTRY_AUTH_FILE comes first: the docker config's entry is wrong on purpose
        config = {"auths": {token.host: {"auth": base64.b64encode(b"tokenuser:nope").decode()}}}
        auth_file = tmp_path / "auth.json"
        auth_file.write_text(json.dumps({"auths": {f"{token.host}/leaky": entry}}))
        env["REGISTRY_AUTH_FILE"] = str(auth_file)
    elif how == "cred-helper":
        helper = tmp_path / "bin" / "docker-credential-lstest"
        helper.parent.mkdir()
        answer = json.dumps(
            {"ServerURL": token.host, "Username": token.user, "Secret": token.password}
        )
        helper.write_text(f"#!/bin/sh\nread server\necho '{answer}'\n")
        helper.chmod(0o755)
        config = {"credHelpers": {token.host: "lstest"}}
        env["PATH"] = f"{helper.parent}:{os.environ['PATH']}"
    else:
        identity = next(iter(token.token_server.identity_tokens))
        config = {"auths": {token.host: {"identitytoken": identity}}}
    (docker_dir / "config.json").write_text(json.dumps(config))
    run = cli([f"docker://{token.host}/leaky/app:1", "--debug"], env=env)
    assert run.code == 1, run.err
    assert "deleted in layer 2" in run.out
    for secret in world.all_secrets():
        assert secret not in run.out + run.err


def test_ca_from_environment_and_tls_verify_false(world: World, cli: Any) -> None:
    tls = world.tls
    ref = f"docker://{tls.host}/leaky/app:1"
    creds = ["--creds", f"{tls.user}:{tls.password}"]
    run = cli([ref, *creds], env={"SSL_CERT_FILE": str(world.tls_material.ca)})
    assert run.code == 1 and run.err == "", run.err
    # skopeo's spelling (--no-tls-verify is the same flag, see test_tls_verify_spelling)
    run = cli([ref, *creds, "--tls-verify=false"])
    assert run.code == 1 and run.err == "", run.err


def test_baseline_command_takes_registry_flags(world: World, cli: Any, tmp_path: Path) -> None:
    tls = world.tls
    out = tmp_path / "baseline.json"
    ref = f"docker://{tls.host}/leaky/app:1"
    flags = ["--ca-file", str(world.tls_material.ca), "--creds", f"{tls.user}:{tls.password}"]
    run = cli(["baseline", ref, "-o", str(out), *flags])
    assert run.code == 0, run.err
    assert str(tls.password) not in out.read_text()
    run = cli([ref, "--baseline", str(out), *flags])
    assert run.code == 0, run.err


def test_foreign_layer_listed_as_skipped(
    world: World, detectors: Detectors, tmp_path: Path
) -> None:
    """A non-distributable layer is not fetched (its blob is elsewhere): it is skipped, with
    the reason, and the other layers are scanned."""
    token = fake_token("github")
    image = Image(
        layers=[
            Layer().file("etc/os-release", "ID=x\n"),
            Layer(created_by="ADD windows-base /").file("base/file", "from elsewhere\n"),
            Layer(created_by="COPY .env /app/").file("app/.env", f"GITHUB_TOKEN={token}\n"),
        ]
    )
    layout = write_oci_layout(tmp_path / "foreign", image, tag="1")
    index = json.loads((layout / "index.json").read_text())

    def blob(digest: str) -> bytes:
        return (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()

    manifest = json.loads(blob(index["manifests"][0]["digest"]))
    repo = "foreign/app"
    world.plain.upload_blob(repo, blob(manifest["config"]["digest"]))
    for i in (0, 2):
        world.plain.upload_blob(repo, blob(manifest["layers"][i]["digest"]))
    manifest["layers"][1]["mediaType"] = (
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    )
    manifest["layers"][1]["urls"] = ["https://blobs.example.internal/base.tar.gz"]
    world.plain.put_manifest(repo, "1", manifest)
    report = scan_ref(f"docker://{world.plain.host}/{repo}:1", detectors)
    assert report.complete, report.errors
    only = report.images[0]
    assert [(p.layer_index, p.message) for p in only.skipped] == [
        (1, "foreign layer: not distributed by the registry, not scanned")
    ]
    assert [f.location.layer_index for f in only.findings if f.location.kind == "file"] == [2]


def test_cli_forks_workers_that_stream_from_the_token_registry(
    world: World, cli: Any, tmp_path: Path
) -> None:
    """A fresh CLI process forks its workers for an image this size (over 32 MB, several
    layers): each worker must open its own connection to the registry, with the auth the
    calling process obtained, and give what an in-process scan of the same layout gives."""
    token = world.token
    secret = fake_token("github")
    filler = Layer(created_by="COPY data /opt/data").file("opt/data/blob.bin", os.urandom(34 << 20))
    leak = Layer(created_by="COPY . /srv").file("srv/.env", f"GITHUB_TOKEN={secret}\n")
    layout = write_oci_layout(tmp_path / "big", Image(layers=[filler, leak]), tag="1")
    token.push(f"oci:{layout}:1", "big/app:1")
    local = cli([f"oci:{layout}:1", "--format", "json", "--workers", "1"])
    run = cli(
        [f"docker://{token.host}/big/app:1", "--format", "json", "--username", "tokenuser"]
        + ["--password-stdin"],
        stdin=f"{token.password}\n",
    )
    assert run.code == local.code == 1, run.err
    assert findings_of(run.report) == findings_of(local.report)
    assert {f["location"]["path"] for f in findings_of_raw(run.report)} == {"/srv/.env"}
