"""An audit pairs an AWS key id and its secret in two config strings as a scan does: one
credential at high, the same findings and fingerprints as a scan of the image alone."""

from __future__ import annotations

import secrets
import string
from pathlib import Path

from auditkit import Fill
from helpers import scan_ref
from imagebuilder import Image, Index, Layer, fake_token, write_oci_layout
from regkit import start_registry

from leakscan.audit import AuditOptions, audit
from leakscan.detectors import Detectors
from leakscan.detectors.tokens import AWS_PAIR
from leakscan.scan import ScanOptions


def _aws_secret() -> str:
    # no leading "/": the test is about pairing, not about what a path looks like
    alphabet = string.ascii_letters + string.digits
    while True:
        value = "".join(secrets.choice(alphabet) for _ in range(40))
        if any(c.isdigit() for c in value) and any(c.isupper() for c in value):
            return value


def test_audit_pairs_an_id_and_its_secret_across_env_strings(
    fill: Fill, tmp_path: Path, detectors: Detectors
) -> None:
    del fill  # the session's skopeo policy and tools
    key_id, secret = fake_token("aws"), _aws_secret()
    first = Layer(created_by="ADD file:base in / ").file("bin/sh", "sh")
    image = Image(
        layers=[first],
        history=[{"created_by": first.created_by}],
        env=[f"AWS_ACCESS_KEY_ID={key_id}", "PATH=/bin", f"AWS_SECRET_ACCESS_KEY={secret}"],
    )
    layout = write_oci_layout(tmp_path / "layout", Index([image]), tag="1")
    registry = start_registry(tmp_path / "registry", "paired")
    try:
        registry.push(f"oci:{layout}:1", "paired/app:1")
        report = audit(
            registry.host,
            AuditOptions(scan=ScanOptions(cache=None), db=str(tmp_path / "audit.db")),
        )
        alone = scan_ref(f"docker://{registry.host}/paired/app:1", detectors)
    finally:
        registry.stop()
    (entry,) = report.images
    audited = {(f.secret_sha256, f.rule_id, f.confidence, f.fingerprint)
               for f in entry.report.findings}  # fmt: skip
    scanned = {(f.secret_sha256, f.rule_id, f.confidence, f.fingerprint) for f in alone.findings}
    assert audited == scanned
    assert {(rule, level) for _, rule, level, _ in audited} == {(AWS_PAIR, "high")}
