"""The JSON report, as the schema shipped beside this module (schema.json, schema_version 1)
defines it; ``leakscan schema`` prints that schema."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from leakscan import __version__
from leakscan import model as m
from leakscan.policy import Gate

SCHEMA_VERSION = 1


def _problem(p: m.Problem, key: str) -> dict[str, Any]:
    return {key: p.message, "layer_index": p.layer_index, "path": p.path}


def _git(git: m.GitPlace) -> dict[str, Any]:
    return {
        "git_dir": git.git_dir,
        "part": git.part,
        "object_id": git.object_id,
        "commit": git.commit,
        "short_commit": git.commit[:7] if git.commit else None,
        "author_date": git.author_date,
        "subject": git.subject,
        "path": git.repo_path,
    }


def _location(loc: m.Location) -> dict[str, Any]:
    if isinstance(loc, m.FileLocation):
        return {
            "kind": "file",
            "layer_index": loc.layer_index,
            "diff_id": loc.diff_id,
            "path": loc.path,
            "line": loc.line,
            "status": loc.status,
            "removed_in_layer": loc.removed_in_layer,
            **({"git": _git(loc.git)} if loc.git is not None else {}),
        }
    if isinstance(loc, m.HistoryLocation):
        return {
            "kind": "history",
            "history_index": loc.history_index,
            "layer_index": loc.layer_index,
            "created_by": loc.created_by,
        }
    if isinstance(loc, m.AttestationLocation):
        return {
            "kind": "attestation",
            "attestation_digest": loc.attestation_digest,
            "predicate_type": loc.predicate_type,
            "path": loc.path,
            "line": loc.line,
            "subject": loc.subject,
        }
    return {"kind": "config", "field": loc.field, "key": loc.key}


def finding_dict(f: m.Finding) -> dict[str, Any]:
    """One finding as the schema spells it; ``secret`` only when the scan kept it."""
    out: dict[str, Any] = {
        "rule_id": f.rule_id,
        "description": f.description,
        "secret_sha256": f.secret_sha256,
        "redacted": f.redacted,
        "fingerprint": f.fingerprint,
        "location": _location(f.location),
        "confidence": f.confidence,
        "detectors": list(f.detectors),
        "remediation": f.remediation,
    }
    if f.secret is not None:
        out["secret"] = f.secret
    return out


def image_dict(image: m.ImageReport) -> dict[str, Any]:
    """One platform image."""
    return {
        "reference": image.reference,
        "source": image.source,
        "platform": image.platform,
        "manifest_digest": image.manifest_digest,
        "config_digest": image.config_digest,
        "layers": [
            {
                "index": layer.index,
                "digest": layer.digest,
                "diff_id": layer.diff_id,
                "media_type": layer.media_type,
                "size": layer.size,
                "history_index": layer.history_index,
                "created_by": layer.created_by,
            }
            for layer in image.layers
        ],
        "history": [
            {
                "index": h.index,
                "created_by": h.created_by,
                "created": h.created,
                "empty_layer": h.empty_layer,
                "layer_index": h.layer_index,
            }
            for h in image.history
        ],
        "findings": [finding_dict(f) for f in image.findings],
        "errors": [_problem(p, "message") for p in image.errors],
        "skipped": [_problem(p, "reason") for p in image.skipped],
        "below_threshold": image.below_threshold,
        "suppressed": dict(image.suppressed),
        "attestations": [
            {
                "digest": a.digest,
                "layer_digest": a.layer_digest,
                "predicate_type": a.predicate_type,
                "media_type": a.media_type,
                "subject": a.subject,
                "via": a.via,
                "read": a.problem is None,
            }
            for a in image.attestations
        ],
    }


def _tool() -> dict[str, Any]:
    """leakscan's version and which rule catalog: the one loaded, else (a scan the result
    store answered whole) the one last compiled; nothing is compiled for it."""
    # not the engine's module: a store-served scan has not loaded it (its native module
    # alone is ~15-20 ms); the loaded catalog's identity when a scan did load it
    from leakscan.catalog import stored_info

    tool: dict[str, Any] = {"name": "leakscan", "version": __version__}
    info = stored_info()
    if info is not None:
        tool["rules"] = dataclasses.asdict(info)
    return tool


def report_dict(report: m.ScanReport) -> dict[str, Any]:
    """The whole report as plain data."""
    out: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "tool": _tool(),
        "reference": report.reference,
        "images": [image_dict(image) for image in report.images],
        "errors": [_problem(p, "message") for p in report.errors],
    }
    if report.cache is not None:
        out["cache"] = dataclasses.asdict(report.cache)
    return out


def render(
    report: m.ScanReport, *, color: bool = False, width: int | None = None, gate: Gate | None = None
) -> str:
    """The JSON text; with ``gate``, the verdict of --fail-on under ``gate``."""
    out = report_dict(report)
    if gate is not None:
        out["gate"] = gate.as_dict()
    return json.dumps(out, indent=2, ensure_ascii=False) + "\n"
