"""SARIF 2.1.0, for code-scanning dashboards. Files are artifacts (their path in the
image); history and config findings are logical locations."""

from __future__ import annotations

import json
from typing import Any

from leakscan import __version__
from leakscan import model as m

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL = {"high": "error", "medium": "warning", "low": "note"}


def _where(f: m.Finding) -> tuple[dict[str, Any], str]:
    loc = f.location
    if isinstance(loc, m.FileLocation):
        region = {"startLine": loc.line} if loc.line else {}
        physical: dict[str, Any] = {"artifactLocation": {"uri": loc.path.lstrip("/")}}
        if region:
            physical["region"] = region
        text = f"{loc.path} in layer {loc.layer_index} ({loc.status})"
        if loc.removed_in_layer is not None:
            text += f", removed in layer {loc.removed_in_layer}"
        return {"physicalLocation": physical}, text
    if isinstance(loc, m.HistoryLocation):
        name = f"history[{loc.history_index}]"
        return {"logicalLocations": [{"name": name, "kind": "instruction"}]}, (
            f"image history entry {loc.history_index}: {loc.created_by or ''}".rstrip()
        )
    name = loc.field + (f".{loc.key}" if loc.key else "")
    return {"logicalLocations": [{"name": name, "kind": "config"}]}, f"image config {name}"


def render(
    report: m.ScanReport, *, color: bool = False, width: int | None = None, gate: object = None
) -> str:
    """The SARIF log: one run, one result per finding of every image."""
    rules: dict[str, dict[str, Any]] = {}
    results = []
    for image in report.images:
        for f in image.findings:
            rules.setdefault(
                f.rule_id,
                {
                    "id": f.rule_id,
                    "shortDescription": {"text": f.description or f.rule_id},
                    "help": {"text": f.remediation},
                },
            )
            location, text = _where(f)
            platform = f" [{image.platform}]" if image.platform else ""
            results.append(
                {
                    "ruleId": f.rule_id,
                    "level": _LEVEL[f.confidence],
                    "message": {
                        "text": f"{f.description or f.rule_id}: {f.redacted} at {text}"
                        f" in {image.reference}{platform}"
                    },
                    "locations": [location],
                    "partialFingerprints": {"leakscan/v1": f.fingerprint},
                    "properties": {
                        "image": image.reference,
                        "platform": image.platform,
                        "config_digest": image.config_digest,
                        "confidence": f.confidence,
                        "secret_sha256": f.secret_sha256,
                        "detectors": list(f.detectors),
                        **({"secret": f.secret} if f.secret is not None else {}),
                    },
                }
            )
    notifications = [
        {"level": "error", "message": {"text": p.message}}
        for p in list(report.errors) + [p for image in report.images for p in image.errors]
    ]
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "leakscan",
                "version": __version__,
                "rules": sorted(rules.values(), key=lambda r: str(r["id"])),
            }
        },
        "results": results,
        "invocations": [
            {"executionSuccessful": report.complete, "toolExecutionNotifications": notifications}
        ],
    }
    log = {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}
    return json.dumps(log, indent=2, ensure_ascii=False) + "\n"
