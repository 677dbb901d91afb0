"""What goes wrong with registries, each one clear line on stderr with exit status 2 (no
traceback, no credential or token anywhere, ``--debug`` included), and the faults that a
retry or a resumed download gets over."""

from __future__ import annotations

import base64
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from helpers import scan_ref, summary
from imagebuilder import Image, Layer, write_oci_layout
from regkit import CliRun, FaultProxy, Faults, World, free_port

from leakscan.cli import exit_status
from leakscan.detectors import Detectors
from leakscan.scan import Progress, ScanOptions, scan
from leakscan.sources.auth import RegistryOptions

pytestmark = pytest.mark.real

WRONG = "wrong-" + base64.b32encode(os.urandom(10)).decode().lower()


def one_line(run: CliRun, needle: str, world: World, code: int = 2) -> str:
    """The run failed with exactly one stderr line holding ``needle``, and leaked nothing."""
    assert run.code == code, (run.code, run.err)
    lines = run.err.strip().splitlines()
    assert len(lines) == 1, run.err
    assert needle in lines[0], run.err
    assert "Traceback" not in run.err
    for secret in [*world.all_secrets(), WRONG]:
        assert secret not in run.out + run.err
    return lines[0]


def layer_digests(layout: Path) -> list[str]:
    index = json.loads((layout / "index.json").read_text())
    hexpart = index["manifests"][0]["digest"].split(":", 1)[1]
    manifest = json.loads((layout / "blobs" / "sha256" / hexpart).read_text())
    return [layer["digest"] for layer in manifest["layers"]]


@pytest.mark.parametrize("which", ["tls+basic", "token"])
def test_wrong_password(world: World, cli: Any, which: str) -> None:
    registry = world.tls if which == "tls+basic" else world.token
    args = [f"docker://{registry.host}/leaky/app:1", "--creds", f"{registry.user}:{WRONG}"]
    args += ["--ca-file", str(world.tls_material.ca), "--debug"]
    one_line(cli(args), f"authentication failed for {registry.host}/leaky/app", world)


def test_credentials_required(world: World, cli: Any) -> None:
    run = cli([f"docker://{world.tls.host}/leaky/app:1", "--ca-file", str(world.tls_material.ca)])
    one_line(run, f"authentication required for {world.tls.host}/leaky/app", world)
    # the token server gives anonymous callers nothing outside public/
    run = cli([f"docker://{world.token.host}/leaky/app:1", "--debug"])
    one_line(run, f"access to {world.token.host}/leaky/app denied", world)


def test_unknown_repository_and_tag(world: World, cli: Any, detectors: Detectors) -> None:
    plain = world.plain.host
    run = cli([f"docker://{plain}/nosuch/repo:1"])
    one_line(run, f"image not found: {plain}/nosuch/repo:1", world)
    # a plain name, and no docker daemon answers: the registry alone is named
    report = scan_ref(f"{plain}/leaky/app:nosuchtag", detectors)
    assert [p.message for p in report.errors] == [f"image not found: {plain}/leaky/app:nosuchtag"]
    token = world.token
    args = [f"docker://{token.host}/nosuch/repo", "--creds", f"{token.user}:{token.password}"]
    one_line(cli([*args, "--debug"]), f"image not found: {token.host}/nosuch/repo:latest", world)


def test_untrusted_tls_certificate(world: World, cli: Any) -> None:
    tls = world.tls
    run = cli([f"docker://{tls.host}/leaky/app:1", "--creds", f"{tls.user}:{tls.password}"])
    one_line(run, f"TLS certificate of {tls.host} not trusted (use --ca-file)", world)


def test_connection_refused(world: World, cli: Any) -> None:
    port = free_port()
    run = cli([f"docker://127.0.0.1:{port}/leaky/app:1"])
    one_line(run, f"cannot reach 127.0.0.1:{port}: connection refused", world)


def test_invalid_reference(world: World, cli: Any) -> None:
    one_line(cli(["docker://127.0.0.1:1/Leaky/App"]), "must be lower-case", world)


def test_500_twice_then_success(
    world: World, proxy: FaultProxy, cli: Any, detectors: Detectors
) -> None:
    layers = layer_digests(world.single)
    proxy.reset(Faults(fail={"/manifests/1": 2, layers[1]: 2, layers[3]: 2}))
    run = cli([f"docker://{proxy.host}/leaky/app:1", "--format", "json"])
    assert run.code == 1 and run.err == "", run.err
    statuses = [status for _, _, _, status in proxy.log]
    assert statuses.count(500) == 6, proxy.log
    direct = scan_ref(f"docker://{world.plain.host}/leaky/app:1", detectors).images[0]
    got = run.report["images"][0]["findings"]
    assert sorted(f["fingerprint"] for f in got) == sorted(f.fingerprint for f in direct.findings)


@pytest.mark.parametrize("refuse_range", [False, True], ids=["range", "no-range"])
def test_truncated_blob_resumes(
    world: World, proxy: FaultProxy, detectors: Detectors, refuse_range: bool
) -> None:
    layers = layer_digests(world.single)
    proxy.reset(Faults(truncate={layers[1]: "once", layers[3]: "once"}, refuse_range=refuse_range))
    report = scan_ref(f"docker://{proxy.host}/leaky/app:1", detectors)
    assert report.complete, report.errors
    expected = summary(scan_ref(f"oci:{world.single}:1", detectors).images[0])
    assert summary(report.images[0]) == expected
    resumed = [(rng, status) for _, path, rng, status in proxy.log if layers[3] in path]
    assert len(resumed) == 2, proxy.log
    if refuse_range:
        # the registry never saw the Range header: the whole blob again, the start skipped
        assert resumed[1][1] == 200
    else:
        assert resumed[1][0] is not None and resumed[1][0].startswith("bytes=")
        assert resumed[1][0] != "bytes=0-" and resumed[1][1] == 206


def test_truncated_blob_without_range_fails_clearly(
    world: World, proxy: FaultProxy, cli: Any
) -> None:
    layers = layer_digests(world.single)
    proxy.reset(Faults(truncate={layers[3]: "always"}, refuse_range=True))
    run = cli([f"docker://{proxy.host}/leaky/app:1"])
    line = one_line(run, f"blob {layers[3]} broke off at byte", world)
    assert "gave up after 4 retries" in line and "layer 3" in line
    assert "does not resume downloads" in line
    # what could be read is still reported: the deleted .npmrc of layer 1
    assert "deleted in layer 2" in run.out


def test_digest_mismatch(world: World, cli: Any) -> None:
    fresh = world.fresh_registry("tampered")
    fresh.push(f"oci:{world.single}:1", "leaky/app:1")
    digest = layer_digests(world.single)[3]
    hexpart = digest.split(":", 1)[1]
    data = fresh.root / "storage/docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart / "data"
    blob = bytearray(data.read_bytes())
    assert blob[:2] == b"\x1f\x8b"
    # the gzip header's mtime: the blob no longer matches its digest, yet decompresses to
    # the very same layer, so that only the blob digest check can catch it
    blob[4:8] = b"\x01\x02\x03\x04"
    data.write_bytes(bytes(blob))
    run = cli([f"docker://{fresh.host}/leaky/app:1"])
    one_line(run, f"layer 3: blob does not match its digest {digest}", world)


def test_registry_killed_mid_blob(world: World, detectors: Detectors) -> None:
    doomed = world.fresh_registry("doomed")
    big = Layer(created_by="COPY big /big")
    for i in range(40):
        big.file(f"big/part{i:02d}", os.urandom(1 << 20))
    image = Image(layers=[Layer().file("etc/hostname", "doomed\n"), big])
    layout = write_oci_layout(world.tmp / "big", image, tag="1")
    doomed.push(f"oci:{layout}:1", "big/app:1")
    digest = layer_digests(layout)[1]
    killed_at: list[int] = []
    lock = threading.Lock()

    def progress(event: Progress) -> None:
        with lock:
            if event.layer_index == 1 and event.bytes_read > 0 and not killed_at:
                doomed.kill()
                killed_at.append(event.bytes_read)

    options = ScanOptions(registry=RegistryOptions(retries=2), workers=1)
    report = scan(f"docker://{doomed.host}/big/app:1", options, progress, detectors)
    assert killed_at and killed_at[0] < 20 << 20, killed_at
    errors = [p.message for p in report.errors] + [
        p.message for i in report.images for p in i.errors
    ]
    assert len(errors) == 1, errors
    assert "\n" not in errors[0]
    assert f"layer 1: {doomed.host}/big/app: blob {digest} broke off at byte" in errors[0]
    assert "could not resume" in errors[0] and "connection refused" in errors[0]
    assert exit_status(report) == 2


def test_token_signing_key_forms(world: World) -> None:
    """Which JOSE headers distribution 2.8 takes to find a token's key (see conftest)."""
    import http.client

    ts = world.token.token_server
    assert ts is not None

    def status(token: str) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", world.token.port, timeout=10)
        try:
            conn.request(
                "GET",
                "/v2/leaky/app/manifests/1",
                headers={
                    "Authorization": f"Bearer {token}",
                    "Accept": "application/vnd.oci.image.manifest.v1+json",
                },
            )
            return conn.getresponse().status
        finally:
            conn.close()

    scope = ["repository:leaky/app:pull"]
    assert status(ts.sign("tokenuser", scope, form="kid")) == 200
    assert status(ts.sign("tokenuser", scope, form="x5c")) == 200
    assert status(ts.sign("tokenuser", scope, form="none")) == 401
    good = ts.sign("tokenuser", scope, form="kid")
    head, claims, sig = good.split(".")
    forged = base64.urlsafe_b64encode(
        json.dumps({"typ": "JWT", "alg": "ES256", "kid": "AAAA:" * 11 + "AAAA"}).encode()
    )
    assert status(f"{forged.decode().rstrip('=')}.{claims}.{sig}") == 401
    assert status(f"{head}.{claims}.{sig[:-4]}AAAA") == 401
    # a token for another repository does not open this one
    assert status(ts.sign("tokenuser", ["repository:other/app:pull"])) == 401
