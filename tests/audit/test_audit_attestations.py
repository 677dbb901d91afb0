"""``leakscan audit`` reads what travels with each image too: a build argument recorded in
the provenance attestation of an image pushed with ``skopeo copy --all`` is a finding of
that image in the audit, as in a scan of the image alone."""

from __future__ import annotations

from pathlib import Path

from auditkit import Fill
from helpers import scan_ref
from imagebuilder import Image, Index, Layer, fake_token, write_oci_layout
from provenancekit import ARGS_PATH, V1, predicate
from regkit import start_registry

from leakscan import model as m
from leakscan.audit import AuditOptions, audit
from leakscan.audit.report import audit_dict
from leakscan.detectors import Detectors
from leakscan.scan import ScanOptions


def test_audit_finds_a_build_argument_in_provenance(
    fill: Fill, tmp_path: Path, detectors: Detectors
) -> None:
    # ``fill``: the session's skopeo policy and tools (its images are not used)
    del fill
    token = fake_token("npm")
    _, pred = predicate("v1", args={"NPM_TOKEN": token})
    image = Image(
        layers=[Layer().file("app/package.json", "{}\n")], provenance=pred, provenance_type=V1
    )
    layout = write_oci_layout(tmp_path / "layout", Index([image], attestations=True), tag="1")
    registry = start_registry(tmp_path / "registry", "attested")
    try:
        registry.push(f"oci:{layout}:1", "attested/app:1", "--all")
        report = audit(
            registry.host,
            AuditOptions(scan=ScanOptions(cache=None), db=str(tmp_path / "audit.db")),
        )
        alone = scan_ref(f"docker://{registry.host}/attested/app:1", detectors)
    finally:
        registry.stop()
    (entry,) = report.images
    (finding,) = entry.report.findings
    loc = finding.location
    assert isinstance(loc, m.AttestationLocation)
    assert loc.path == ARGS_PATH[V1].format("NPM_TOKEN")
    assert [f.fingerprint for f in alone.findings] == [finding.fingerprint]
    assert token not in repr(audit_dict(report))
