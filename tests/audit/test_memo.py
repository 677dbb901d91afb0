"""Image reports kept in the audit database: read back exactly, or refused."""

from __future__ import annotations

import json
import zlib

import pytest

from leakscan import model as m
from leakscan.audit.memo import MemoError, decode_reports, encode_reports, schema_digest


def _report() -> m.ImageReport:
    file_finding = m.Finding(
        rule_id="github-pat",
        description="GitHub token",
        secret_sha256="0" * 64,
        redacted="ghp_****",
        fingerprint="f" * 64,
        location=m.FileLocation(1, "sha256:" + "1" * 64, "/srv/.env", 1, "deleted", 2),
        confidence="high",
        detectors=("kingfisher:github",),
        remediation="rotate it",
    )
    history_finding = m.Finding(
        rule_id="npm",
        description="npm token",
        secret_sha256="2" * 64,
        redacted="npm_****",
        fingerprint="e" * 64,
        location=m.HistoryLocation(3, 1, "RUN |1 NPM_TOKEN=npm_**** sh"),
        confidence="medium",
        detectors=("veles:npm",),
        remediation="use a secret mount",
    )
    return m.ImageReport(
        reference="",
        source="registry",
        platform="linux/arm64/v8",
        manifest_digest="sha256:" + "3" * 64,
        config_digest="sha256:" + "4" * 64,
        layers=(m.LayerInfo(0, "sha256:" + "5" * 64, "sha256:" + "6" * 64, None, 10, 0, None),),
        history=(m.HistoryInfo(0, "ADD x /", None, False, 0),),
        findings=(file_finding, history_finding),
        errors=(),
        skipped=(m.Problem("layer 0: /big skipped", 0, "/big"),),
        below_threshold=2,
        suppressed=(("baseline", 1),),
    )


def test_round_trip() -> None:
    reports = (_report(), _report())
    assert decode_reports(encode_reports(reports)) == reports
    assert len(schema_digest()) == 64


def _tampered(change: str) -> bytes:
    data = json.loads(zlib.decompress(encode_reports([_report()])))
    one = data[0]
    if change == "class":
        one["findings"][0]["location"]["@"] = "Secret"
    elif change == "bool-for-int":
        one["below_threshold"] = True
    elif change == "literal":
        one["findings"][0]["confidence"] = "certain"
    elif change == "unknown-field":
        one["extra"] = 1
    elif change == "missing-field":
        del one["config_digest"]
    return zlib.compress(json.dumps(data).encode())


@pytest.mark.parametrize(
    "change", ["class", "bool-for-int", "literal", "unknown-field", "missing-field"]
)
def test_what_this_leakscan_did_not_write_is_refused(change: str) -> None:
    with pytest.raises(MemoError):
        decode_reports(_tampered(change))


def test_garbage_is_refused() -> None:
    for value in (b"", b"not zlib", zlib.compress(b"[]"), zlib.compress(b'{"a": 1}')):
        with pytest.raises(MemoError):
            decode_reports(value)
