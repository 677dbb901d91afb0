"""Helpers for scenario tests: write an image in a named layout, scan it, pick findings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imagebuilder import (
    Image,
    Index,
    write_docker_archive,
    write_oci_archive,
    write_oci_layout,
)
from schema import validate_report

from leakscan import model as m
from leakscan.detectors import Detectors
from leakscan.report.json import report_dict
from leakscan.scan import ScanOptions, scan

# every layout a local image can come in, and the reference that names it
LAYOUTS = [
    "docker-legacy",
    "docker25",
    "docker-skopeo",
    "docker-gzip-blobs",
    "oci-dir",
    "oci-archive",
    "plain-tar",
    "plain-oci-tar",
    "plain-dir",
]


def write(layout: str, root: Image | Index, tmp: Path) -> str:
    """Write ``root`` in ``layout`` under ``tmp`` and return the reference to scan."""
    if layout in ("docker-legacy", "plain-tar"):
        assert isinstance(root, Image)
        path = write_docker_archive(tmp / "save.tar", root, layout="legacy")
        return str(path) if layout == "plain-tar" else f"docker-archive:{path}"
    if layout == "docker25":
        assert isinstance(root, Image)
        return f"docker-archive:{write_docker_archive(tmp / 'save25.tar', root, 'docker25')}"
    if layout == "docker-skopeo":
        assert isinstance(root, Image)
        return f"docker-archive:{write_docker_archive(tmp / 'skopeo.tar', root, 'skopeo')}"
    if layout == "docker-gzip-blobs":
        assert isinstance(root, Image)
        path = write_docker_archive(tmp / "gz.tar", root, "docker25", gzip_blobs=True)
        return f"docker-archive:{path}"
    if layout in ("oci-dir", "plain-dir"):
        path = write_oci_layout(tmp / "layout", root, tag="latest")
        return str(path) if layout == "plain-dir" else f"oci:{path}:latest"
    if layout in ("oci-archive", "plain-oci-tar"):
        path = write_oci_archive(tmp / "oci.tar", root, tag="latest")
        return str(path) if layout == "plain-oci-tar" else f"oci-archive:{path}"
    raise ValueError(layout)


def scan_ref(ref: str, detectors: Detectors, **options: Any) -> m.ScanReport:
    """Scan through the library and validate the JSON form of the report."""
    report = scan(ref, ScanOptions(**options), detectors=detectors)
    validate_report(report_dict(report))
    return report


def only_image(report: m.ScanReport) -> m.ImageReport:
    assert len(report.images) == 1, [i.platform for i in report.images]
    return report.images[0]


def file_findings(image: m.ImageReport, path: str | None = None) -> list[m.Finding]:
    return [
        f
        for f in image.findings
        if isinstance(f.location, m.FileLocation) and (path is None or f.location.path == path)
    ]


def meta_findings(image: m.ImageReport, kind: str) -> list[m.Finding]:
    return [f for f in image.findings if f.location.kind == kind]


def summary(image: m.ImageReport) -> set[tuple[Any, ...]]:
    """What must be identical whatever the layout: rule, place, status, instruction."""
    out: set[tuple[Any, ...]] = set()
    for f in image.findings:
        loc = f.location
        if isinstance(loc, m.FileLocation):
            created_by = image.layers[loc.layer_index].created_by
            out.add(
                (
                    f.rule_id,
                    f.secret_sha256,
                    "file",
                    loc.path,
                    loc.line,
                    loc.status,
                    loc.layer_index,
                    loc.removed_in_layer,
                    created_by,
                )
            )
        elif isinstance(loc, m.HistoryLocation):
            out.add((f.rule_id, f.secret_sha256, "history", loc.history_index, loc.layer_index))
        elif isinstance(loc, m.AttestationLocation):
            out.add((f.rule_id, f.secret_sha256, "attestation", loc.predicate_type, loc.path))
        else:
            out.add((f.rule_id, f.secret_sha256, "config", loc.field, loc.key))
    return out
