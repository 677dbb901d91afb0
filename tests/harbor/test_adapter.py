"""``leakscan serve --harbor`` as Harbor uses it: a real process, a real registry with TLS and
htpasswd auth, scan requests shaped as Harbor sends them, every answer held to the schemas of
the adapter API's OpenAPI document (vendored in spec/)."""

from __future__ import annotations

import json
import threading
from datetime import datetime
from typing import Any

import openapi
from harborkit import REPORT, Adapter, HarborWorld, StartAdapter
from schema import validate_report

RAW = "application/vnd.scanner.adapter.vuln.report.raw"


def _no_secret(world: HarborWorld, *texts: str | bytes) -> None:
    for text in texts:
        body = text.decode(errors="replace") if isinstance(text, bytes) else text
        for value in world.forbidden:
            assert value not in body


def _items(report: dict[str, Any], package: str) -> list[dict[str, Any]]:
    return [v for v in report["vulnerabilities"] if v["package"] == package]


def test_metadata_follows_the_spec(adapter: Adapter) -> None:
    answer = adapter.request("GET", "/api/v1/metadata")
    assert answer.status == 200
    assert answer.headers["Content-Type"] in openapi.media_types("/metadata", "get", "200")
    doc = answer.json()
    openapi.check("ScannerAdapterMetadata", doc)
    assert doc["scanner"]["name"] == "leakscan"
    (capability,) = doc["capabilities"]
    assert capability["type"] == "vulnerability"
    assert set(capability["consumes_mime_types"]) == {
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    }
    assert capability["produces_mime_types"] == [REPORT, RAW]
    props = doc["properties"]
    assert props["org.leakscan/rules"].startswith("kingfisher ")  # the catalog the scans use
    assert "secrets" in props["org.leakscan/finds"]


def test_leaking_image_report(adapter: Adapter, harbor_world: HarborWorld) -> None:
    request = harbor_world.scan_request(harbor_world.leaky)
    openapi.check("ScanRequest", request)
    answer = adapter.request("POST", "/api/v1/scan", request)
    assert answer.status == 202, answer.body
    assert answer.headers["Content-Type"] in openapi.media_types("/scan", "post", "202")
    openapi.check("ScanResponse", answer.json())
    scan_id = answer.json()["id"]

    got = adapter.report(scan_id)
    assert got.status == 200, got.body
    assert got.headers["Content-Type"] == REPORT
    report = got.json()
    openapi.check("HarborVulnerabilityReport", report)
    datetime.fromisoformat(report["generated_at"].replace("Z", "+00:00"))
    assert report["artifact"] == {
        "repository": harbor_world.leaky.repository,
        "digest": harbor_world.leaky.digest,
        "tag": "1",
        "mime_type": harbor_world.leaky.mime_type,
    }
    assert report["severity"] == "Critical"
    s = harbor_world.secrets
    # the .npmrc written in layer 1 and deleted in layer 2: still shipped, one step down
    npmrc = _items(report, "/root/.npmrc")[0]
    attrs = npmrc["vendor_attributes"]["leakscan"]
    assert (attrs["status"], attrs["layer_index"], attrs["removed_in_layer"]) == ("deleted", 1, 2)
    assert npmrc["version"] == attrs["diff_id"].split(":")[1][:12]
    assert npmrc["fix_version"] == ""
    assert npmrc["severity"] == {"high": "High", "medium": "Medium"}[attrs["confidence"]]
    assert s.npm[:4] + "********" in npmrc["description"]
    assert "deleted in layer 2" in npmrc["description"]
    assert "Fix: " in npmrc["description"]
    # present in the final filesystem, and the config's Env
    env_items = _items(report, "/app/.env")
    assert env_items and env_items[0]["severity"] == "Critical"
    assert any(v["package"].startswith("config Env") for v in report["vulnerabilities"])
    for item in report["vulnerabilities"]:
        assert item["id"] and item["severity"] in ("Critical", "High", "Medium", "Low")
    _no_secret(harbor_world, got.body)

    raw = adapter.report(scan_id, accept=RAW)
    assert raw.status == 200 and raw.headers["Content-Type"] == RAW
    validate_report(raw.json())  # leakscan's own JSON report
    assert len(raw.json()["images"][0]["findings"]) >= len(report["vulnerabilities"])
    _no_secret(harbor_world, raw.body, adapter.log())


def test_clean_image_report(adapter: Adapter, harbor_world: HarborWorld) -> None:
    scan_id = adapter.scan(harbor_world.scan_request(harbor_world.clean))
    got = adapter.report(scan_id)
    assert got.status == 200, got.body
    report = got.json()
    openapi.check("HarborVulnerabilityReport", report)
    assert report["vulnerabilities"] == []
    assert report["severity"] == "Unknown"


def test_harbor_and_scanner_authentication(adapter: Adapter, harbor_world: HarborWorld) -> None:
    body = harbor_world.scan_request(harbor_world.clean)
    for token in ("wrong-" + adapter.token, None):
        for method, path, payload in (
            ("GET", "/api/v1/metadata", None),
            ("POST", "/api/v1/scan", body),
            ("GET", "/api/v1/scan/anything/report", None),
            ("GET", "/metrics", None),
        ):
            answer = adapter.request(method, path, payload, token=token)
            assert answer.status == 401, (method, path)
            assert answer.headers["WWW-Authenticate"].startswith("Bearer")
            openapi.check("ErrorResponse", answer.json())
    # the probes are for the orchestrator: no token
    assert adapter.request("GET", "/probe/healthy", token=None).status == 200
    assert adapter.request("GET", "/probe/ready", token=None).status == 200
    # Harbor's other way of sending the same credential
    key = {"X-ScannerAdapter-API-Key": adapter.token}
    assert adapter.request("GET", "/api/v1/metadata", token=None, headers=key).status == 200
    assert adapter.token not in adapter.log()


def test_bad_requests(adapter: Adapter, harbor_world: HarborWorld) -> None:
    good = harbor_world.scan_request(harbor_world.clean)
    art = good["artifact"]
    cases: list[tuple[Any, int]] = [
        (b"{not json", 400),
        (b"[]", 400),
        ({**good, "registry": "https://x.example.internal"}, 400),
        ({**good, "artifact": {**art, "digest": 7}}, 400),
        ({"registry": good["registry"]}, 422),
        ({**good, "artifact": {**art, "digest": "sha256:1234"}}, 422),
        ({**good, "artifact": {k: v for k, v in art.items() if k != "repository"}}, 422),
        ({**good, "artifact": {**art, "repository": "UPPER/Case"}}, 422),
        (
            {**good, "artifact": {**art, "mime_type": "application/vnd.oci.image.index.v1+json"}},
            422,
        ),
        ({**good, "registry": {"url": "ftp://x.example.internal"}}, 422),
        ({**good, "registry": {**good["registry"], "authorization": "Digest abc"}}, 422),
        ({**good, "registry": {**good["registry"], "authorization": "Basic %%%"}}, 422),
        ({**good, "enabled_capabilities": [{"type": "sbom"}]}, 501),
    ]
    before = adapter.metrics()["requests"]
    for body, status in cases:
        answer = adapter.request("POST", "/api/v1/scan", body)
        assert answer.status == status, (body, answer.body)
        assert answer.headers["Content-Type"] in openapi.media_types("/scan", "post", str(status))
        openapi.check("ErrorResponse", answer.json())
        assert answer.json()["error"]["message"]
    assert adapter.metrics()["requests"] == before  # none of them was queued
    unknown = adapter.request("GET", "/api/v1/scan/no-such-id/report")
    assert unknown.status == 404
    sbom = adapter.scan(good)
    answer = adapter.request(
        "GET", f"/api/v1/scan/{sbom}/report",
        headers={"Accept": "application/vnd.security.sbom.report+json; version=1.0"},
    )  # fmt: skip
    assert answer.status == 501


def test_registry_down_gives_a_500_report(
    adapter: Adapter, harbor_world: HarborWorld, tmp_path: Any
) -> None:
    from regkit import start_registry

    gone = start_registry(tmp_path / "gone", "gone")
    port = gone.port
    gone.kill()
    body = harbor_world.scan_request(harbor_world.clean)
    body["registry"] = {"url": f"http://127.0.0.1:{port}"}
    got = adapter.report(adapter.scan(body))
    assert got.status == 500
    assert got.headers["Content-Type"] in openapi.media_types(
        "/scan/{scan_request_id}/report", "get", "500"
    )
    openapi.check("ErrorResponse", got.json())
    assert "cannot reach" in got.json()["error"]["message"]


def test_wrong_registry_credentials_fail_without_quoting_them(
    adapter: Adapter, harbor_world: HarborWorld
) -> None:
    import base64

    bad = "Basic " + base64.b64encode(b"robot$leakscan:not-the-password-" + b"x" * 8).decode()
    body = harbor_world.scan_request(harbor_world.clean)
    body["registry"]["authorization"] = bad
    got = adapter.report(adapter.scan(body))
    assert got.status == 500
    assert "authentication failed" in got.json()["error"]["message"]
    for text in (got.body.decode(), adapter.log()):
        assert "not-the-password" not in text and bad.split()[1] not in text


def test_concurrent_requests_for_five_digests_are_five_scans(
    start_adapter: StartAdapter, harbor_world: HarborWorld
) -> None:
    adapter = start_adapter("--workers", "2")
    images = harbor_world.many
    bodies = [harbor_world.scan_request(images[n % 5]) for n in range(20)]
    ids: list[str | None] = [None] * 20
    gate = threading.Barrier(20)

    def send(n: int) -> None:
        gate.wait()
        ids[n] = adapter.scan(bodies[n])

    threads = [threading.Thread(target=send, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert None not in ids and len(set(ids)) == 20  # every request its own id
    for n, scan_id in enumerate(ids):
        assert scan_id is not None
        got = adapter.report(scan_id)
        assert got.status == 200, got.body
        assert got.json()["artifact"]["digest"] == images[n % 5].digest
    metrics = adapter.metrics()
    assert (metrics["requests"], metrics["scans_started"], metrics["deduplicated"]) == (20, 5, 15)
    started = [line for line in adapter.log_lines() if line["msg"] == "scan started"]
    assert sorted(line["digest"] for line in started) == sorted(i.digest for i in images)


def test_bounded_queue_timeout_and_graceful_stop(
    start_adapter: StartAdapter, harbor_world: HarborWorld, stalling_registry: str
) -> None:
    adapter = start_adapter("--workers", "1", "--queue-size", "1", "--scan-timeout", "3s",
                            "--grace", "1s")  # fmt: skip

    def stalled(n: int) -> dict[str, Any]:
        body = harbor_world.scan_request(harbor_world.many[n])
        body["registry"] = {"url": f"https://{stalling_registry}"}
        return body

    first = adapter.scan(stalled(0))
    adapter.wait_for("the first scan to run", lambda: adapter.metrics()["running"] == 1)
    second = adapter.scan(stalled(1))  # waits in the queue
    full = adapter.request("POST", "/api/v1/scan", stalled(2))
    assert full.status == 429
    openapi.check("ErrorResponse", full.json())
    assert int(full.headers["Retry-After"]) > 0
    # a stalled registry: the scan is stopped at the timeout and reported as failed
    got = adapter.report(first)
    assert got.status == 500
    assert "longer than 3 s" in got.json()["error"]["message"]
    adapter.wait_for("the second scan to run", lambda: adapter.metrics()["running"] == 1)
    third = adapter.scan(stalled(3))  # queued behind the running one
    assert adapter.stop() == 0  # SIGTERM: the running scan is stopped after the grace
    lines = adapter.log_lines()
    msgs = [line["msg"] for line in lines]
    assert "stopping: no new scans; running ones get the grace period" in msgs
    assert msgs[-1] == "stopped"
    finished = {line["scan"]: line for line in lines if line["msg"] == "scan finished"}
    assert len(finished) >= 2 and all(line["state"] == "failed" for line in finished.values())
    assert second and third


def test_adapter_over_tls_forgets_reports_after_their_ttl(
    start_adapter: StartAdapter, harbor_world: HarborWorld
) -> None:
    tls = harbor_world.tls
    adapter = start_adapter("--result-ttl", "2s", tls=(tls.cert, tls.key))
    assert adapter.request("GET", "/api/v1/metadata").status == 200
    scan_id = adapter.scan(harbor_world.scan_request(harbor_world.clean))
    assert adapter.report(scan_id).status == 200
    path = f"/api/v1/scan/{scan_id}/report"
    adapter.wait_for("the report to expire", lambda: adapter.request("GET", path).status == 404)
    metrics = adapter.metrics()
    assert metrics["expired_ids"] == 1 and metrics["ids_kept"] == 0


def test_logs_are_json_lines_without_credentials(
    adapter: Adapter, harbor_world: HarborWorld
) -> None:
    lines = adapter.log_lines()  # fails on a line that is not JSON
    assert any(line["msg"] == "listening" for line in lines)
    assert any(line["msg"] == "http" and line["status"] == 202 for line in lines)
    text = json.dumps(lines)
    _no_secret(harbor_world, text)
    assert adapter.token not in text


def test_a_registry_bearer_token_is_used_as_given(
    adapter: Adapter, harbor_world: HarborWorld, tmp_path: Any
) -> None:
    """Harbor may hand a registry token instead of a robot's Basic pair: it is sent as it is
    (never exchanged at the token server), and a token without access fails the scan."""
    import hashlib
    import secrets

    import regkit
    from regkit import TokenServer, start_registry

    server = TokenServer(tmp_path, {"tokenuser": "tk-" + secrets.token_hex(12)})
    registry = start_registry(tmp_path / "token", "token", token=server)
    try:
        layout = harbor_world.tmp / "oci-clean"
        registry.push(f"oci:{layout}:1", "private/app:1")
        raw = regkit.run(["skopeo", "inspect", "--raw", "--tls-verify=false", "--creds",
                          f"{registry.user}:{registry.password}",
                          f"docker://{registry.host}/private/app:1"])  # fmt: skip
        digest = "sha256:" + hashlib.sha256(raw.encode()).hexdigest()
        body = {
            "registry": {"url": f"http://{registry.host}"},
            "artifact": {"repository": "private/app", "digest": digest, "tag": "1",
                         "mime_type": json.loads(raw)["mediaType"]},
        }  # fmt: skip
        asked = len(server.requests)
        good = server.sign("tokenuser", ["repository:private/app:pull"])
        body["registry"]["authorization"] = f"Bearer {good}"
        got = adapter.report(adapter.scan(body))
        assert got.status == 200, got.body
        assert got.json()["artifact"]["digest"] == digest
        assert len(server.requests) == asked  # the adapter asked the token server nothing
        narrow = server.sign("tokenuser", ["repository:other/app:pull"])
        body["registry"]["authorization"] = f"Bearer {narrow}"
        got = adapter.report(adapter.scan(body))
        assert got.status == 500
        assert "authentication failed" in got.json()["error"]["message"]
        for token in (good, narrow):
            assert token not in adapter.log() and token not in got.body.decode()
    finally:
        registry.stop()
        server.close()
