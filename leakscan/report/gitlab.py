"""GitLab's Secret Detection report (``gl-secret-detection-report.json``, schema 15.0.7), the
artifact a GitLab CI job hands over with ``artifacts: reports: secret_detection:`` so that
findings show in merge requests, pipelines and the vulnerability report.

What GitLab asks of each vulnerability and how leakscan fills it:

* ``identifiers``: the first (primary) one is leakscan's fingerprint, the one baselines use,
  so GitLab tracks a finding across rebuilds as leakscan does (a history finding whose
  instruction moved is the same vulnerability); the rule id follows;
* ``location``: a file of a layer by its path in the image and its line; a history or config
  finding on a stable pseudo-file (``image-history``, ``image-config/Env/NAME``) with no line,
  because a history index moves when an instruction is added before it. ``commit.sha``, which
  the schema requires, is the pipeline's commit (``CI_COMMIT_SHA``) or else the image's
  config digest: what was scanned;
* ``severity``: Critical for a high-confidence finding, High for medium, Medium for low (as
  the SARIF log's security-severity);
* ``solution``: the finding's remediation.

Secrets are never in clear here, ``--show-secrets`` or not: the report is an artifact many
can download. GitLab has no suppressed state, so accepted findings are left out and counted
in the scan's messages, as are findings below the confidence threshold and what could not be
read.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from leakscan import __version__
from leakscan import model as m
from leakscan.policy import Gate
from leakscan.redact import Redactor, redact_report

SCHEMA_VERSION = "15.0.7"
SCHEMA_URL = (
    "https://gitlab.com/gitlab-org/security-products/security-report-schemas/-/raw/"
    f"v{SCHEMA_VERSION}/dist/secret-detection-report-format.json"
)
DEFAULT_FILE = "gl-secret-detection-report.json"
HISTORY_FILE, CONFIG_FILE = "image-history", "image-config"
_SEVERITY = {"high": "Critical", "medium": "High", "low": "Medium"}
_TOOL = {
    "id": "leakscan",
    "name": "leakscan",
    "version": __version__,
    "vendor": {"name": "leakscan"},
}
# the schema's limits
_MAX_NAME, _MAX_SOLUTION, _MAX_DESCRIPTION = 255, 7000, 1 << 20


def _cut(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


def _stamp(moment: float) -> str:
    """The schema's time: UTC, to the second, no zone suffix."""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _started(now: float) -> float:
    """When this process started (the scan's start), from /proc; ``now`` where unknown."""
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            # the fields after the command name, which may hold spaces and parentheses
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime", encoding="ascii") as f:
            uptime = float(f.read().split()[0])
        age = uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return now
    return now - max(age, 0.0)


def _where(image: m.ImageReport, f: m.Finding) -> tuple[dict[str, Any], str]:
    """The location GitLab shows, and the place said in words."""
    loc = f.location
    out: dict[str, Any]
    if isinstance(loc, m.FileLocation):
        out = {"file": loc.path.lstrip("/") or loc.path}
        if loc.line is not None:
            out.update(start_line=loc.line, end_line=loc.line)
        text = f"{loc.path} in layer {loc.layer_index}, {loc.status}"
        if loc.removed_in_layer is not None:
            text += f" in layer {loc.removed_in_layer} (still shipped in layer {loc.layer_index})"
    elif isinstance(loc, m.HistoryLocation):
        out = {"file": HISTORY_FILE}
        layer = f" (layer {loc.layer_index})" if loc.layer_index is not None else ""
        text = f"the image history, entry {loc.history_index}{layer}: {loc.created_by or '-'}"
    elif isinstance(loc, m.ConfigLocation):
        out = {"file": "/".join(x for x in (CONFIG_FILE, loc.field, loc.key) if x)}
        text = f"the image config, {loc.field}" + (f" {loc.key}" if loc.key else "")
    else:  # a place of a kind this format does not know by name: by its kind
        kind = str(getattr(loc, "kind", "metadata"))
        path = getattr(loc, "path", None)
        out = {"file": f"image-{kind}" + (f"/{str(path).lstrip('/')}" if path else "")}
        text = f"the image's {kind}" + (f", {path}" if path else "")
    image_name = image.reference + (f" ({image.platform})" if image.platform else "")
    return out, f"{text}, in the image {image_name}"


def _vulnerability(image: m.ImageReport, f: m.Finding, commit: str) -> dict[str, Any]:
    location, place = _where(image, f)
    location["commit"] = {"sha": commit}
    # unique in the report (one secret at one place of one platform image), the same in the
    # next report for the same finding
    key = f"{image.reference}\0{image.platform or ''}\0{f.fingerprint}".encode()
    ident = uuid.uuid5(uuid.NAMESPACE_URL, "leakscan:" + key.hex())
    description = f"{f.description or f.rule_id}: {f.redacted} at {place}."
    details: dict[str, Any] = {
        "image": {"name": "Image", "type": "text", "value": image.reference},
        "confidence": {"name": "Confidence", "type": "text", "value": f.confidence},
        "secret_sha256": {"name": "Secret SHA-256", "type": "text", "value": f.secret_sha256},
        "detectors": {
            "name": "Found by",
            "type": "list",
            "items": [{"type": "text", "value": d} for d in f.detectors],
        },
    }
    if isinstance(f.location, m.FileLocation):
        details["status"] = {"name": "Status", "type": "text", "value": f.location.status}
        details["layer"] = {"name": "Layer", "type": "value", "value": f.location.layer_index}
    if image.platform:
        details["platform"] = {"name": "Platform", "type": "text", "value": image.platform}
    return {
        "id": str(ident),
        "name": _cut(f.description or f.rule_id, _MAX_NAME),
        "description": _cut(description, _MAX_DESCRIPTION),
        "severity": _SEVERITY[f.confidence],
        "solution": _cut(f.remediation, _MAX_SOLUTION),
        "identifiers": [
            {
                "type": "leakscan_fingerprint",
                "name": f"leakscan fingerprint {f.fingerprint[:12]}",
                "value": f.fingerprint,
            },
            {
                "type": "leakscan_rule_id",
                "name": _cut(f.description or f.rule_id, _MAX_NAME),
                "value": f.rule_id,
            },
        ],
        "location": location,
        "details": details,
    }


def _messages(report: m.ScanReport, gate: Gate | None) -> list[dict[str, str]]:
    messages: list[dict[str, str]] = []
    for problem in report.errors:
        messages.append({"level": "fatal", "value": problem.message or "the scan stopped"})
    for image in report.images:
        name = image.reference + (f" ({image.platform})" if image.platform else "")
        for problem in image.errors:
            where = f" (layer {problem.layer_index})" if problem.layer_index is not None else ""
            messages.append({"level": "warn", "value": f"{name}{where}: {problem.message}"})
        for why, count in image.suppressed:
            messages.append(
                {"level": "info", "value": f"{name}: {count} accepted findings left out ({why})"}
            )
        if image.below_threshold:
            messages.append(
                {
                    "level": "info",
                    "value": f"{name}: {image.below_threshold} findings below the "
                    "confidence threshold left out",
                }
            )
    if gate is not None:
        messages.append({"level": "info", "value": f"gate: {gate.status}: {gate.why()}"})
    return messages


def report_dict(
    report: m.ScanReport, gate: Gate | None = None, commit: str | None = None
) -> dict[str, Any]:
    """The report as GitLab's schema spells it. ``commit`` names the commit the findings
    are attributed to (default: ``CI_COMMIT_SHA``, else the image's config digest)."""
    now = time.time()
    # with --show-secrets the report comes in clear: here it is masked all the same
    shown = [
        f.secret
        for image in report.images
        for f in (*image.findings, *(x for _, x in image.accepted))
        if f.secret
    ]
    if shown:
        report = redact_report(report, Redactor(shown))
    vulnerabilities: list[dict[str, Any]] = []
    for image in report.images:
        sha = commit or os.environ.get("CI_COMMIT_SHA") or image.config_digest.split(":")[-1]
        vulnerabilities.extend(_vulnerability(image, f, sha or "unknown") for f in image.findings)
    scan: dict[str, Any] = {
        "analyzer": dict(_TOOL),
        "scanner": dict(_TOOL),
        "type": "secret_detection",
        "start_time": _stamp(_started(now)),
        "end_time": _stamp(now),
        # failure: the source stopped before any image could be read; a partial read is a
        # warning beside what was found
        "status": "failure" if report.errors or not report.images else "success",
    }
    messages = _messages(report, gate)
    if messages:
        scan["messages"] = messages
    return {
        "version": SCHEMA_VERSION,
        "schema": SCHEMA_URL,
        "scan": scan,
        "vulnerabilities": vulnerabilities,
    }


def render(
    report: m.ScanReport,
    *,
    color: bool = False,
    width: int | None = None,
    gate: Gate | None = None,
) -> str:
    """The GitLab Secret Detection report as JSON text (``color`` and ``width`` unused)."""
    del color, width
    return json.dumps(report_dict(report, gate), indent=2, ensure_ascii=False) + "\n"
