"""The adapter's pure parts: scan request validation, Harbor's authorization value as
registry credentials, the severity map, and findings as Harbor vulnerability items (held to
the spec's report schema)."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.append(str(Path(__file__).resolve().parent))

import openapi  # noqa: E402

from leakscan import model as m  # noqa: E402
from leakscan.harbor import api  # noqa: E402
from leakscan.harbor.report import SeverityMap, harbor_report  # noqa: E402

DIGEST = "sha256:" + "ab" * 32
DIFF = "sha256:" + "cd" * 32
CONFIG = "sha256:" + "ef" * 32


def _request(**registry: Any) -> bytes:
    body = {
        "registry": {"url": "https://harbor.example.internal", **registry},
        "artifact": {
            "repository": "library/app",
            "digest": DIGEST,
            "tag": "1.0",
            "mime_type": api.MIME_DOCKER_MANIFEST,
        },
    }
    openapi.check("ScanRequest", body)
    return json.dumps(body).encode()


def test_a_scan_request_names_the_image_for_the_registry_source() -> None:
    req = api.parse_scan_request(_request())
    assert req.reference == f"docker://harbor.example.internal/library/app@{DIGEST}"
    assert req.artifact() == {
        "repository": "library/app",
        "digest": DIGEST,
        "tag": "1.0",
        "mime_type": api.MIME_DOCKER_MANIFEST,
    }
    assert not req.registry_options(None, True).plain_http
    plain = api.parse_scan_request(_request(url="http://harbor-core:8080/"))
    assert plain.registry_options(None, True).plain_http
    assert plain.reference.startswith("docker://harbor-core:8080/library/app@")


def test_authorization_becomes_credentials_never_shown() -> None:
    password = "pw-" + "q" * 20
    basic = "Basic " + base64.b64encode(f"robot$proj+scan:{password}".encode()).decode()
    req = api.parse_scan_request(_request(authorization=basic))
    creds = req.credentials()
    assert creds is not None and (creds.username, creds.password) == ("robot$proj+scan", password)
    for text in (repr(req), repr(creds), str(creds), repr(req.registry_options(None, True))):
        assert password not in text and basic.split()[1] not in text
    bearer = api.parse_scan_request(_request(authorization="Bearer tok-" + "z" * 30)).credentials()
    assert bearer is not None and bearer.registry_token == "tok-" + "z" * 30
    assert not bearer.has_password
    # two robot accounts never share a scan; the same one does
    other = api.parse_scan_request(_request(authorization="Bearer tok-" + "y" * 30))
    again = api.parse_scan_request(_request(authorization="Bearer tok-" + "z" * 30))
    assert bearer != other and other.key != again.key
    assert api.parse_scan_request(_request(authorization="Bearer tok-" + "z" * 30)).key == again.key


@pytest.mark.parametrize(
    ("value", "status"),
    [
        ("Basic", 422),
        ("Basic bm9jb2xvbg==", 422),  # "nocolon"
        ("Token abc", 422),
        ("Bearer", 422),
    ],
)
def test_malformed_authorization_is_refused_without_quoting_it(value: str, status: int) -> None:
    with pytest.raises(api.RequestError) as caught:
        api.parse_scan_request(_request(authorization=value))
    assert caught.value.status == status
    rest = value.partition(" ")[2]
    assert not rest or rest not in caught.value.message


def test_report_kind_from_accept() -> None:
    assert api.report_kind(None) == "harbor"
    assert api.report_kind(api.MIME_REPORT) == "harbor"
    assert api.report_kind("application/vnd.security.vulnerability.report;version=1.1") == "harbor"
    assert api.report_kind(api.MIME_REPORT_V10) == "harbor"
    assert api.report_kind(api.MIME_RAW) == "raw"
    assert api.report_kind("application/vnd.security.sbom.report+json; version=1.0") is None


def test_severity_map_defaults_and_overrides() -> None:
    default = SeverityMap()
    table = {(p, c): s for p, c, s in default.table}
    assert table[("present", "high")] == "Critical"
    assert table[("deleted", "high")] == "High"
    assert table[("overwritten", "low")] == "Low"
    assert table[("history", "medium")] == "High"
    changed = SeverityMap.parse(["deleted.high=critical", "overwritten=Medium", "*.low=Negligible"])
    table = {(p, c): s for p, c, s in changed.table}
    assert table[("deleted", "high")] == "Critical"
    assert table[("overwritten", "high")] == table[("overwritten", "medium")] == "Medium"
    assert table[("present", "low")] == table[("deleted", "low")] == "Negligible"
    assert table[("present", "high")] == "Critical"  # untouched
    for wrong in ("deleted.high", "gone.high=High", "deleted.sure=High", "deleted.high=Severe"):
        with pytest.raises(ValueError, match="PLACE.CONFIDENCE=SEVERITY"):
            SeverityMap.parse([wrong])


def _finding(loc: m.Location, confidence: str = "high", rule: str = "r.one") -> m.Finding:
    return m.Finding(
        rule_id=rule,
        description="A token",
        secret_sha256="0" * 64,
        redacted="ghp_********",
        fingerprint="f" * 16,
        location=loc,
        confidence=confidence,  # type: ignore[arg-type]
        detectors=("kingfisher",),
        remediation="Remove it and rotate it.",
    )


def _image(findings: tuple[m.Finding, ...]) -> m.ImageReport:
    layers = tuple(
        m.LayerInfo(i, None, DIFF if i == 1 else f"sha256:{i:064x}", None, 10, i, f"RUN step {i}")
        for i in range(3)
    )
    return m.ImageReport(
        "docker://r.example.internal/app@" + DIGEST, "registry", "linux/amd64", DIGEST, CONFIG,
        layers, (), findings, (), (),
    )  # fmt: skip


def test_findings_become_vulnerability_items() -> None:
    deleted = m.FileLocation(1, DIFF, "/root/.npmrc", 1, "deleted", 2)
    present = m.FileLocation(1, DIFF, "/app/.env", 3, "present", None)
    history = m.HistoryLocation(4, 1, "RUN |1 TOKEN=ghp_******** make")
    config = m.ConfigLocation("Env", "GITHUB_TOKEN")
    findings = (
        _finding(deleted),
        _finding(present, "medium"),
        _finding(history),
        _finding(config, "low"),
        # the same rule twice in one file of one layer: one item, as Harbor keys them
        _finding(m.FileLocation(1, DIFF, "/app/.env", 9, "present", None), "high"),
    )
    report = m.ScanReport("ref", (_image(findings),))
    artifact = {"repository": "app", "digest": DIGEST}
    scanner = {"name": "leakscan", "vendor": "leakscan", "version": "0"}
    doc = harbor_report(report, artifact, scanner, SeverityMap(), "2026-12-05T00:00:00.000Z")
    openapi.check("HarborVulnerabilityReport", doc)
    items = {v["package"]: v for v in doc["vulnerabilities"]}
    assert set(items) == {"/root/.npmrc", "/app/.env", "history 4", "config Env GITHUB_TOKEN"}
    assert items["/root/.npmrc"]["severity"] == "High"
    assert items["/root/.npmrc"]["version"] == "cd" * 6
    assert "deleted in layer 2, still in the image" in items["/root/.npmrc"]["description"]
    assert "made by: RUN step 1" in items["/root/.npmrc"]["description"]
    env = items["/app/.env"]
    assert env["severity"] == "Critical"  # the higher of the two
    assert "line 3" in env["description"] and "Also:" in env["description"]
    assert env["vendor_attributes"]["leakscan"]["also"][0]["line"] == 9
    assert items["history 4"]["severity"] == "Critical"
    assert items["history 4"]["version"] == "cd" * 6  # the layer the entry made
    assert items["config Env GITHUB_TOKEN"]["severity"] == "Medium"
    assert items["config Env GITHUB_TOKEN"]["version"] == "ef" * 6
    assert all(v["id"] == "r.one" and v["fix_version"] == "" for v in doc["vulnerabilities"])
    assert doc["severity"] == "Critical"
    assert doc["vulnerabilities"][0]["severity"] == "Critical"  # most severe first
