"""A leakscan report as Harbor's vulnerability report (``HarborVulnerabilityReport`` of the
adapter API), so that Harbor's UI and its "prevent vulnerable images from running" policy
work on leaked secrets unchanged.

Each finding is one vulnerability item: ``id`` the rule id, ``package`` where the secret
is (a layer file's path, ``history N``, ``config FIELD KEY``), ``version`` the short diff_id
of the layer it is in (the short config digest for the config), ``fix_version`` empty, the
severity from the finding's place and confidence (:class:`SeverityMap`), and a description
that holds the masked secret, its status, the instruction that made the layer and the fix.
Every string comes from a report leakscan has already masked: no secret is in clear.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from leakscan import model as m

SEVERITIES = ("Unknown", "Negligible", "Low", "Medium", "High", "Critical")
PLACES = ("present", "deleted", "overwritten", "history", "config", "attestation")
CONFIDENCES = ("high", "medium", "low")

# A secret in the final filesystem, the history or the config is readable by anyone who
# runs or pulls the image; a deleted or overwritten one only by whoever unpacks the layers,
# one step less exposed (still shipped, still to rotate). Confidence lowers both.
_IN_CLEAR = ("present", "history", "config", "attestation")
DEFAULT_SEVERITIES: dict[tuple[str, str], str] = {
    **{(p, "high"): "Critical" for p in _IN_CLEAR},
    **{(p, "medium"): "High" for p in _IN_CLEAR},
    **{(p, "low"): "Medium" for p in _IN_CLEAR},
    **{(p, "high"): "High" for p in ("deleted", "overwritten")},
    **{(p, "medium"): "Medium" for p in ("deleted", "overwritten")},
    **{(p, "low"): "Low" for p in ("deleted", "overwritten")},
}


@dataclass(frozen=True)
class SeverityMap:
    """The Harbor severity of a finding by place (``present``, ``deleted``,
    ``overwritten``, ``history``, ``config``, ``attestation``) and confidence (``high``,
    ``medium``, ``low``)."""

    table: tuple[tuple[str, str, str], ...] = field(
        default_factory=lambda: tuple((p, c, s) for (p, c), s in DEFAULT_SEVERITIES.items())
    )

    def of(self, finding: m.Finding) -> str:
        """The severity of ``finding``."""
        wanted = (place_of(finding.location), finding.confidence)
        for place, confidence, severity in self.table:
            if (place, confidence) == wanted:
                return severity
        return "Unknown"

    @classmethod
    def parse(cls, overrides: Sequence[str]) -> SeverityMap:
        """The defaults changed by ``PLACE.CONFIDENCE=SEVERITY`` items (``*`` for every
        place or confidence; ``PLACE=SEVERITY`` for every confidence of a place). Raises
        ValueError naming the item that is wrong."""
        table = dict(DEFAULT_SEVERITIES)
        for item in overrides:
            what, eq, severity = item.partition("=")
            place, _, confidence = what.strip().partition(".")
            confidence = confidence or "*"
            severity = severity.strip().capitalize()
            places = PLACES if place == "*" else (place,)
            confidences = CONFIDENCES if confidence == "*" else (confidence,)
            if (
                not eq
                or severity not in SEVERITIES
                or not set(places) <= set(PLACES)
                or not set(confidences) <= set(CONFIDENCES)
            ):
                raise ValueError(
                    f"--severity {item!r}: expected PLACE.CONFIDENCE=SEVERITY with PLACE one of "
                    f"{', '.join(PLACES)} or *, CONFIDENCE one of {', '.join(CONFIDENCES)} or *, "
                    f"SEVERITY one of {', '.join(SEVERITIES)}"
                )
            for p in places:
                for c in confidences:
                    table[(p, c)] = severity
        return cls(tuple((p, c, s) for (p, c), s in table.items()))

    def describe(self) -> str:
        """The table as ``PLACE.CONFIDENCE=SEVERITY`` items (for the metadata and logs)."""
        return ",".join(f"{p}.{c}={s}" for p, c, s in self.table)


def place_of(location: m.Location) -> str:
    """``present``, ``deleted``, ``overwritten``, ``history`` or ``config``."""
    if isinstance(location, m.FileLocation):
        return location.status
    return location.kind


def _short(digest: str | None) -> str:
    if not digest:
        return ""
    return digest.split(":", 1)[-1][:12]


def _package(location: m.Location) -> str:
    if isinstance(location, m.FileLocation):
        return location.path
    if isinstance(location, m.HistoryLocation):
        return f"history {location.history_index}"
    if isinstance(location, m.ConfigLocation):
        return f"config {location.field}" + (f" {location.key}" if location.key else "")
    # a kind of place this module does not know by name: its kind and path, if any
    return f"{location.kind} {getattr(location, 'path', '')}".strip()


def _version(location: m.Location, image: m.ImageReport) -> str:
    if isinstance(location, m.FileLocation):
        return _short(location.diff_id)
    if isinstance(location, m.HistoryLocation):
        if location.layer_index is not None and location.layer_index < len(image.layers):
            return _short(image.layers[location.layer_index].diff_id)
        return ""
    if isinstance(location, m.ConfigLocation):
        return _short(image.config_digest)
    return _short(getattr(location, "attestation_digest", None))


def _where(location: m.Location, image: m.ImageReport) -> str:
    if isinstance(location, m.FileLocation):
        line = f" line {location.line}" if location.line else ""
        made = ""
        if location.layer_index < len(image.layers):
            by = image.layers[location.layer_index].created_by
            made = f", made by: {by}" if by else ""
        status = {
            "present": "present in the final filesystem",
            "deleted": f"deleted in layer {location.removed_in_layer}, still in the image",
            "overwritten": f"overwritten in layer {location.removed_in_layer}, still in the image",
        }[location.status]
        return f"{location.path}{line} in layer {location.layer_index}{made}; {status}"
    if isinstance(location, m.HistoryLocation):
        by = f": {location.created_by}" if location.created_by else ""
        return f"image history entry {location.history_index}{by}"
    return _package(location).replace("config ", "image config ", 1)


def vulnerability(
    finding: m.Finding, image: m.ImageReport, severities: SeverityMap
) -> dict[str, Any]:
    """One finding as a ``VulnerabilityItem``."""
    loc = finding.location
    status = place_of(loc)
    description = (
        f"Leaked secret {finding.redacted} ({finding.description}; {finding.confidence} "
        f"confidence) at {_where(loc, image)}. Fix: {finding.remediation}"
    )
    attrs: dict[str, Any] = {
        "redacted": finding.redacted,
        "status": status,
        "confidence": finding.confidence,
        "fingerprint": finding.fingerprint,
        "secret_sha256": finding.secret_sha256,
        "detectors": list(finding.detectors),
        "remediation": finding.remediation,
        "platform": image.platform,
    }
    if isinstance(loc, m.FileLocation):
        attrs.update(
            layer_index=loc.layer_index,
            diff_id=loc.diff_id,
            line=loc.line,
            removed_in_layer=loc.removed_in_layer,
        )
    elif isinstance(loc, m.HistoryLocation):
        attrs.update(history_index=loc.history_index, layer_index=loc.layer_index)
    elif isinstance(loc, m.ConfigLocation):
        attrs.update(field=loc.field, key=loc.key)
    return {
        "id": finding.rule_id,
        "package": _package(loc),
        "version": _version(loc, image),
        "fix_version": "",
        "severity": severities.of(finding),
        "description": description,
        "links": [],
        "vendor_attributes": {"leakscan": attrs},
    }


def _merge(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One item per (id, package, version), as Harbor stores them: the same rule twice in a
    file of a layer becomes one item with the highest severity and every place described."""
    merged: dict[tuple[str, str, str], dict[str, Any]] = {}
    for item in items:
        key = (item["id"], item["package"], item["version"])
        first = merged.get(key)
        if first is None:
            merged[key] = item
            continue
        if SEVERITIES.index(item["severity"]) > SEVERITIES.index(first["severity"]):
            first["severity"] = item["severity"]
        first["description"] += f"\nAlso: {item['description']}"
        also = first["vendor_attributes"]["leakscan"].setdefault("also", [])
        also.append(item["vendor_attributes"]["leakscan"])
    return list(merged.values())


def highest(items: Sequence[dict[str, Any]]) -> str:
    """The report's severity: its highest item's, ``Unknown`` with none (as Harbor's own
    adapters answer for an image without vulnerabilities)."""
    found = [SEVERITIES.index(i["severity"]) for i in items]
    return SEVERITIES[max(found)] if found else "Unknown"


def harbor_report(
    report: m.ScanReport,
    artifact: dict[str, str],
    scanner: dict[str, str],
    severities: SeverityMap,
    generated_at: str,
) -> dict[str, Any]:
    """The ``HarborVulnerabilityReport`` of a scan (every platform image in it)."""
    items: list[dict[str, Any]] = []
    for image in report.images:
        items.extend(vulnerability(f, image, severities) for f in image.findings)
    items = _merge(items)
    order = {s: n for n, s in enumerate(SEVERITIES)}
    items.sort(key=lambda i: (-order[i["severity"]], i["package"], i["id"]))
    return {
        "generated_at": generated_at,
        "artifact": artifact,
        "scanner": scanner,
        "severity": highest(items),
        "vulnerabilities": items,
    }
