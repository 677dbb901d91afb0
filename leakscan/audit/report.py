"""An audit's report as JSON (the scan report's schema, with ``registry``, ``stats``, and
``repository`` and ``tag`` on every image) and as a table for a terminal or a log."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from json.encoder import encode_basestring as _quote
from typing import Any

from leakscan import __version__, provenance
from leakscan import model as m
from leakscan.audit.result import AuditedImage, AuditReport
from leakscan.report.json import SCHEMA_VERSION, finding_dict
from leakscan.report.json import image_dict as _scan_image_dict


def iso(seconds: float) -> str:
    """A UTC time as ISO 8601, to the second."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def image_dict(entry: AuditedImage) -> dict[str, Any]:
    """One image of an audit as plain data."""
    one = _scan_image_dict(entry.report)
    firsts = dict(entry.first_seen)
    one["findings"] = [
        dict(finding_dict(f), first_seen=iso(firsts[f.fingerprint])) for f in entry.report.findings
    ]
    one["repository"] = entry.repository
    one["tag"] = entry.tag
    return one


def audit_dict(report: AuditReport) -> dict[str, Any]:
    """The whole audit as plain data."""
    out: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "leakscan", "version": __version__},
        "reference": report.registry,
        "registry": report.registry,
        "images": [image_dict(entry) for entry in report.images],
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


# where an image's text starts in the report: the third level ({"images": [{...)
_IMAGE_INDENT = "\n    "


def image_text(entry: AuditedImage) -> str:
    """One image's text as :func:`render_json` writes it inside the report (so that it can
    be written before the rest of the report is known: the re-audit makes its images'
    while it waits for the registry)."""
    return _dumps(image_dict(entry), _IMAGE_INDENT)


def render_json(report: AuditReport, images: Sequence[str] | None = None) -> str:
    """The JSON text: ``dumps_indented(audit_dict(report))``. ``images``: the text of each
    of ``report.images``, as :func:`image_text` gives it, made already."""
    texts = [image_text(e) for e in report.images] if images is None else list(images)
    if len(texts) != len(report.images):
        raise ValueError("an image's text for each image")
    data = audit_dict(replace(report, images=()))
    out: list[str] = []
    sep = "{\n  "
    for key, value in data.items():
        out.append(f"{sep}{_quote(key)}: ")
        if key == "images" and texts:
            out.append("[" + _IMAGE_INDENT + ("," + _IMAGE_INDENT).join(texts) + "\n  ]")
        else:
            out.append(_dumps(value, "\n  "))
        sep = ",\n  "
    return "".join(out) + "\n}\n"


def _dumps(value: Any, newline: str) -> str:
    """``value`` as :func:`dumps_indented` writes it at the indent ``newline``."""
    out: list[str] = []
    try:
        _indented(value, newline, out.append)
    except _NotPlain:
        # json's text, each line but the first moved in (no JSON string holds a newline)
        return json.dumps(value, indent=2, ensure_ascii=False).replace("\n", newline)
    return "".join(out)


class _NotPlain(Exception):
    """A value :func:`dumps_indented` leaves to :func:`json.dumps`."""


def dumps_indented(value: Any) -> str:
    """``json.dumps(value, indent=2, ensure_ascii=False)``, to the byte, in less than half
    its time: with an indent, :mod:`json` encodes in Python generators (its C encoder
    takes no indent), which an audit's report of a megabyte or more waits on. Strings are
    still escaped by json's own C function; anything but str keys and JSON's own kinds of
    value goes to :func:`json.dumps` whole, which says what is wrong with it."""
    return _dumps(value, "\n")


def _scalar(value: Any) -> str:
    """A value that is neither str, dict nor list, as json writes it."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value in (float("inf"), float("-inf")):
            return "Infinity" if value > 0 else "-Infinity"
        return float.__repr__(value)
    raise _NotPlain


def _indented(value: Any, newline: str, write: Callable[[str], object]) -> None:
    """Write ``value`` at the indent ``newline`` (a newline and the current indent)."""
    if isinstance(value, str):
        write(_quote(value))
    elif isinstance(value, dict):
        if not value:
            write("{}")
            return
        inner = newline + "  "
        sep = "{" + inner
        for key, item in value.items():
            if not isinstance(key, str):
                raise _NotPlain
            # the common leaves without a call each
            if isinstance(item, str):
                write(f"{sep}{_quote(key)}: {_quote(item)}")
            elif isinstance(item, (dict, list, tuple)):
                write(f"{sep}{_quote(key)}: ")
                _indented(item, inner, write)
            else:
                write(f"{sep}{_quote(key)}: {_scalar(item)}")
            sep = "," + inner
        write(newline + "}")
    elif isinstance(value, (list, tuple)):
        if not value:
            write("[]")
            return
        inner = newline + "  "
        sep = "[" + inner
        for item in value:
            write(sep)
            _indented(item, inner, write)
            sep = "," + inner
        write(newline + "]")
    else:
        write(_scalar(value))


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
