"""SARIF 2.1.0, for code-scanning dashboards (GitHub code scanning first).

Every result has a physical location, as code scanning requires:

* a file of a layer is the path in the image, relative to the base id ``IMAGE_ROOT``
  (``image://REFERENCE/rootfs/``): ``root/.npmrc``, an archive member ``app/a.jar!/x.properties``;
* a history or config finding is on the stable artifact ``image-history`` or ``image-config``
  relative to ``IMAGE_METADATA`` (``image://REFERENCE/metadata/``); a history entry is line
  ``index + 1`` of the history, as ``docker history`` lists it oldest first.

``partialFingerprints`` carry leakscan's fingerprint (the one baselines use), as
``primaryLocationLineHash`` too: that is the key code scanning tracks alerts by, and it cannot
compute one for a file that is not in the repository. Accepted findings (baseline, ignored
rules and paths) are results with an accepted external suppression, not dropped.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from leakscan import __version__, provenance
from leakscan import model as m
from leakscan.policy import Gate
from leakscan.terms import CONFIDENCE_RANK

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
FINGERPRINT_KEY = "leakscan/v2"
ROOT_BASE, META_BASE = "IMAGE_ROOT", "IMAGE_METADATA"
HISTORY_URI, CONFIG_URI = "image-history", "image-config"
# the attestations pushed with the image (provenance, SBOMs, signatures)
ATTESTATION_URI = "image-attestations"
# code scanning rejects a run of more results; the most severe are kept and the rest counted
MAX_RESULTS = 25_000
_LEVEL = {"high": "error", "medium": "warning", "low": "note"}
# a secret shipped in an image is critical when its format is certain (code scanning: over
# 9.0 critical, 7.0-8.9 high, 4.0-6.9 medium)
_SEVERITY = {"high": "9.5", "medium": "7.5", "low": "4.0"}
_PRECISION = {"high": "high", "medium": "medium", "low": "low"}
_TAGS = ["security", "secret", "container-image", "external/cwe/cwe-798"]
_MAX_TEXT = 1024
_HELP = (
    "A secret in a container image ships to everyone who can pull the image: in a layer's file "
    "(deleting or overwriting it in a later layer does not remove it from the layer that wrote "
    "it), in the image history (build arguments and instructions), in the image config (ENV, "
    "LABEL, Cmd), or in an attestation pushed with it (provenance records build arguments and the"
    " Dockerfile). Rotate the secret, then keep it out of the image: a build secret mount (RUN "
    "--mount=type=secret,id=NAME ...) instead of ARG or a file, a build stage the final image "
    "does not copy from, .dockerignore for credential files in the build context, and run-time "
    "injection (an orchestrator secret, a mounted file) instead of ENV or LABEL. Each result says"
    " what to do for its place."
)
_HELP_MARKDOWN = (
    "A secret in a container image ships to everyone who can pull the image:\n\n"
    "* in a **layer's file**: deleting or overwriting it in a later layer does not remove it "
    "from the layer that wrote it;\n"
    "* in the **image history**: build arguments (`ARG`) and instructions are recorded;\n"
    "* in the **image config**: `ENV`, `LABEL`, `Cmd`;\n"
    "* in an **attestation** pushed with it: provenance records build arguments and the "
    "Dockerfile.\n\n"
    "**Rotate the secret**, then keep it out of the image:\n\n"
    "* a build secret mount, `RUN --mount=type=secret,id=NAME ...` "
    "(`docker build --secret id=NAME,...`), instead of `ARG` or a file;\n"
    "* a build stage the final image does not copy from;\n"
    "* `.dockerignore` for credential files in the build context;\n"
    "* run-time injection (an orchestrator secret, a mounted file) instead of `ENV` or "
    "`LABEL`.\n\n"
    "Each result's message says what to do for its place."
)


def _cut(text: str, size: int = _MAX_TEXT) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


def _uri(path: str) -> str:
    """A path in the image as a relative URI reference (percent-encoded, no leading /)."""
    return quote(path.lstrip("/"), safe="/!-._~@")


def _base(reference: str, part: str) -> dict[str, Any]:
    return {
        "uri": f"image://{quote(reference, safe='')}/{part}/",
        "description": {"text": f"the {part} of the image {reference}"},
    }


def _where(f: m.Finding) -> tuple[dict[str, Any], str]:
    """The physical location of a finding, and the place said in words."""
    loc = f.location
    if isinstance(loc, m.FileLocation):
        artifact = {"uri": _uri(loc.path), "uriBaseId": ROOT_BASE}
        line = loc.line or 1
        text = f"{loc.path} (layer {loc.layer_index}), {loc.status}"
        if loc.removed_in_layer is not None:
            text += f" in layer {loc.removed_in_layer} but still shipped in layer {loc.layer_index}"
        if loc.git is not None and loc.git.commit is not None:
            git = loc.git
            text += f"; in the git history: commit {git.commit[:7]}"  # type: ignore[index]
            text += f" {git.author_date or ''} {git.subject or ''!r}".rstrip()
    elif isinstance(loc, m.HistoryLocation):
        artifact = {"uri": HISTORY_URI, "uriBaseId": META_BASE}
        line = loc.history_index + 1
        layer = f" (layer {loc.layer_index})" if loc.layer_index is not None else ""
        text = f"the image history, entry {loc.history_index}{layer}: {loc.created_by or '-'}"
    elif isinstance(loc, m.AttestationLocation):
        artifact = {"uri": ATTESTATION_URI, "uriBaseId": META_BASE}
        line = loc.line or 1
        text = f"an {provenance.where(loc)} that travels with the image"
    else:
        artifact = {"uri": CONFIG_URI, "uriBaseId": META_BASE}
        line = 1
        text = f"the image config, {loc.field}" + (f" {loc.key}" if loc.key else "")
    region = {"startLine": line, "startColumn": 1, "endLine": line, "endColumn": 2}
    return {"physicalLocation": {"artifactLocation": artifact, "region": region}}, text


def _rule(f: m.Finding) -> dict[str, Any]:
    description = f.description or f.rule_id
    return {
        "id": f.rule_id,
        "name": _cut(f.rule_id, 255),
        "shortDescription": {"text": _cut(description)},
        "fullDescription": {
            "text": _cut(
                f"{description} ({f.rule_id}) in a container image: a file of a layer, the "
                "history, the config or an attestation."
            )
        },
        "help": {"text": _HELP, "markdown": _HELP_MARKDOWN},
        "defaultConfiguration": {"level": _LEVEL[f.confidence]},
        "properties": {
            "tags": list(_TAGS),
            "precision": _PRECISION[f.confidence],
            "security-severity": _SEVERITY[f.confidence],
        },
    }


def _stronger(rule: dict[str, Any], f: m.Finding) -> None:
    """A rule's level and severity are those of its most confident finding."""
    levels = {v: k for k, v in _LEVEL.items()}
    current = levels[rule["defaultConfiguration"]["level"]]
    if CONFIDENCE_RANK[f.confidence] > CONFIDENCE_RANK[current]:
        rule["defaultConfiguration"]["level"] = _LEVEL[f.confidence]
        rule["properties"]["precision"] = _PRECISION[f.confidence]
        rule["properties"]["security-severity"] = _SEVERITY[f.confidence]


def _result(
    image: m.ImageReport, f: m.Finding, why: str | None, gate: Gate | None
) -> dict[str, Any]:
    location, where = _where(f)
    platform = f" [{image.platform}]" if image.platform else ""
    status = f.location.status if isinstance(f.location, m.FileLocation) else f.location.kind
    message = (
        f"{f.description or f.rule_id} {f.redacted} in {where}, in {image.reference}{platform}. "
        f"{f.remediation}"
    )
    result: dict[str, Any] = {
        "ruleId": f.rule_id,
        "level": _LEVEL[f.confidence],
        "message": {"text": message},
        "locations": [location],
        "partialFingerprints": {
            "primaryLocationLineHash": f.fingerprint,
            FINGERPRINT_KEY: f.fingerprint,
        },
        "properties": {
            "image": image.reference,
            "platform": image.platform,
            "config_digest": image.config_digest,
            "status": status,
            "confidence": f.confidence,
            "secret_sha256": f.secret_sha256,
            "detectors": list(f.detectors),
            "remediation": f.remediation,
            **({"secret": f.secret} if f.secret is not None else {}),
        },
    }
    if isinstance(f.location, m.FileLocation):
        result["properties"]["layer_index"] = f.location.layer_index
        result["properties"]["diff_id"] = f.location.diff_id
    if why is not None:
        result["suppressions"] = [
            {"kind": "external", "status": "accepted", "justification": f"accepted: {why}"}
        ]
    elif gate is not None:
        result["properties"]["gate"] = "fail" if gate.policy.fails(f) else "let through"
    return result


def _order(item: tuple[m.ImageReport, m.Finding, str | None]) -> tuple[int, int]:
    """Reported findings before accepted ones, the most confident first (for the cap)."""
    _, f, why = item
    return (why is not None, -CONFIDENCE_RANK[f.confidence])


def render(
    report: m.ScanReport,
    *,
    color: bool = False,
    width: int | None = None,
    gate: Gate | None = None,
) -> str:
    """The SARIF log: one run, one result per finding (a finding of several platforms
    once), accepted ones suppressed."""
    items: list[tuple[m.ImageReport, m.Finding, str | None]] = []
    for image in report.images:
        items.extend((image, f, None) for f in image.findings)
        items.extend((image, f, why) for why, f in image.accepted)
    items.sort(key=_order)
    rules: dict[str, dict[str, Any]] = {}
    results: list[dict[str, Any]] = []
    by_print: dict[str, dict[str, Any]] = {}
    for image, f, why in items:
        same = by_print.get(f.fingerprint)
        if same is not None:
            platforms = same["properties"].setdefault("platforms", [same["properties"]["platform"]])
            if image.platform not in platforms:
                platforms.append(image.platform)
            continue
        if len(results) == MAX_RESULTS:
            break
        if f.rule_id in rules:
            _stronger(rules[f.rule_id], f)
        else:
            rules[f.rule_id] = _rule(f)
        result = _result(image, f, why, gate)
        by_print[f.fingerprint] = result
        results.append(result)
    order = sorted(rules)
    index = {rule_id: n for n, rule_id in enumerate(order)}
    for result in results:
        result["ruleIndex"] = index[result["ruleId"]]
    notifications: list[dict[str, Any]] = [
        {"level": "error", "message": {"text": p.message}}
        for p in list(report.errors) + [p for image in report.images for p in image.errors]
    ]
    left_out = len({f.fingerprint for _, f, _ in items}) - len(results)
    if left_out > 0:
        notifications.append(
            {
                "level": "warning",
                "message": {
                    "text": f"{left_out} more results left out: code scanning takes at most "
                    f"{MAX_RESULTS} per run (the JSON report has every finding)"
                },
            }
        )
    invocation: dict[str, Any] = {
        "executionSuccessful": report.complete,
        "toolExecutionNotifications": notifications,
    }
    if gate is not None:
        invocation["exitCode"] = gate.exit_status()
        invocation["properties"] = {"gate": gate.as_dict()}
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "leakscan",
                "version": __version__,
                "rules": [rules[rule_id] for rule_id in order],
            }
        },
        "originalUriBaseIds": {
            ROOT_BASE: _base(report.reference, "rootfs"),
            META_BASE: _base(report.reference, "metadata"),
        },
        "results": results,
        "invocations": [invocation],
    }
    log = {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}
    return json.dumps(log, indent=2, ensure_ascii=False) + "\n"
