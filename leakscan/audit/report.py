"""An audit's report as JSON (the scan report's schema, with ``registry``, ``stats``, and
``repository`` and ``tag`` on every image) and as a table for a terminal or a log."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

from leakscan import __version__, provenance
from leakscan import model as m
from leakscan.audit.result import AuditReport
from leakscan.report.json import SCHEMA_VERSION, finding_dict, image_dict


def iso(seconds: float) -> str:
    """A UTC time as ISO 8601, to the second."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def audit_dict(report: AuditReport) -> dict[str, Any]:
    """The whole audit as plain data."""
    images = []
    for entry in report.images:
        one = image_dict(entry.report)
        firsts = dict(entry.first_seen)
        one["findings"] = [
            dict(finding_dict(f), first_seen=iso(firsts[f.fingerprint]))
            for f in entry.report.findings
        ]
        one["repository"] = entry.repository
        one["tag"] = entry.tag
        images.append(one)
    out: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "leakscan", "version": __version__},
        "reference": report.registry,
        "registry": report.registry,
        "images": images,
        "errors": [
            {"message": p.message, "layer_index": p.layer_index, "path": p.path}
            for p in report.errors
        ],
        "stats": dataclasses.asdict(report.stats),
        "audit": {
            "id": report.audit_id,
            "started": iso(report.started),
            "new_only": report.new_only,
            "since": iso(report.since) if report.since is not None else None,
        },
    }
    return out


def render_json(report: AuditReport) -> str:
    """The JSON text."""
    return json.dumps(audit_dict(report), indent=2, ensure_ascii=False) + "\n"


def _name(repository: str, tag: str | None, image: m.ImageReport) -> str:
    name = f"{repository}:{tag}" if tag else f"{repository}@{image.config_digest[:19]}"
    return name + (f" ({image.platform})" if image.platform else "")


def _where(f: m.Finding) -> str:
    loc = f.location
    if isinstance(loc, m.FileLocation):
        return f"layer {loc.layer_index} {loc.path} [{loc.status}]"
    if isinstance(loc, m.HistoryLocation):
        return f"history {loc.history_index}"
    if isinstance(loc, m.AttestationLocation):
        return provenance.where(loc)
    return f"config {loc.field}" + (f" {loc.key}" if loc.key else "")


def summary_lines(report: AuditReport) -> list[str]:
    """What the audit covered, in a few lines."""
    s = report.stats
    findings = report.findings
    leaky = sum(1 for i in report.images if i.report.findings)
    failed = len(report.errors) + sum(1 for i in report.images if i.report.errors)
    scope = " (new only)" if report.new_only else ""
    if report.since is not None:
        scope = f" (first seen since {iso(report.since)})"
    return [
        f"audit of {report.registry}: {s.repositories} repositories, {s.images} images, "
        f"{s.seconds:.1f} s",
        f"layers: {s.layers_total} in all, {s.layers_unique} unique, {s.layers_scanned} scanned "
        f"({s.bytes_scanned / (1 << 20):.1f} MiB), {s.layers_cached} known from earlier",
        f"findings{scope}: {len(findings)} in {leaky} images; could not be audited: {failed}",
    ]


def render_table(report: AuditReport) -> str:
    """The summary, then per image with findings one line per finding, then the problems."""
    lines = summary_lines(report)
    for entry in report.images:
        image = entry.report
        if not image.findings:
            continue
        firsts = dict(entry.first_seen)
        lines.append("")
        lines.append(_name(entry.repository, entry.tag, image))
        for f in image.findings:
            lines.append(
                f"  {f.confidence:<6} {f.rule_id}  {f.redacted}  {_where(f)}  "
                f"first seen {iso(firsts[f.fingerprint])}"
            )
    problems = [p.message for p in report.errors]
    for entry in report.images:
        problems += [
            f"{_name(entry.repository, entry.tag, entry.report)}: {p.message}"
            for p in entry.report.errors
        ]
    if problems:
        lines.append("")
        lines.append("could not be audited:")
        lines += [f"  {p}" for p in problems]
    return "\n".join(lines) + "\n"
