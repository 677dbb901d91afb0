"""A scan's whole report, kept under what it was made from: a re-scan of an image the store
knows reads one entry back instead of every layer's record and every string's matches,
and builds no finding again.

The key names everything the report is a function of: the detection fingerprint (code,
engines, settings that change a layer scan), the reference as given, the report settings
(threshold, suppressions, platforms) and every image as its source described it: the
manifest and config digests, the layers' digests, the config itself, the annotations and
the attestations' statements. The history and config strings are thus still matched by
their content, as the per-string entries are: the same strings, the same fingerprint, the
same matches. Only a report of a scan that read or recalled every layer whole (digests
verified) and met no error is kept; the report kept is the one shown without
``--show-secrets``: masked, no secret in it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from leakscan import model as m
from leakscan.store import ResultStore

IMAGE = "image"
# bump when what a key covers or how a report is written changes
FORMAT = 1

# the report's classes an entry may name, and nothing else
_CLASSES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        m.ScanReport,
        m.ImageReport,
        m.LayerInfo,
        m.HistoryInfo,
        m.Finding,
        m.FileLocation,
        m.GitPlace,
        m.HistoryLocation,
        m.ConfigLocation,
        m.AttestationLocation,
        m.Problem,
        m.Attestation,
        m.Annotation,
    )
}


class ReportCodecError(ValueError):
    """A stored report this leakscan did not write (or one it must not keep)."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a report depends on besides the images and the detection fingerprint."""

    min_confidence: str
    # fingerprints a baseline accepts, rules and path patterns ignored
    accepted: tuple[str, ...]
    rules: tuple[str, ...]
    paths: tuple[str, ...]
    platforms: tuple[str, ...]


def _problem(p: m.Problem | None) -> list[Any] | None:
    return None if p is None else [p.message, p.layer_index, p.path]


def _image(image: m.SourceImage) -> list[Any]:
    """An image as its source described it, as plain data (its layers' openers aside)."""
    return [
        image.reference,
        image.source,
        image.platform,
        image.manifest_digest,
        image.config_digest,
        image.config,
        [[b.index, b.diff_id, b.digest, b.media_type, b.size, b.unavailable] for b in image.layers],
        [[a.where, a.key, a.value] for a in image.annotations],
        [_problem(p) for p in image.errors],
        [
            [
                a.digest, a.layer_digest, a.predicate_type, a.media_type, a.subject, a.via,
                a.statement, [[n.where, n.key, n.value] for n in a.annotations],
                _problem(a.problem), a.skipped,
            ]
            for a in image.attestations
        ],
    ]  # fmt: skip


def report_key(
    fingerprint: str, reference: str, images: Sequence[m.SourceImage], settings: Settings
) -> str:
    """Where the report of scanning ``images`` (what ``reference`` names) is kept."""
    parts = [FORMAT, fingerprint, reference, dataclasses.astuple(settings)]
    parts.append([_image(image) for image in images])
    # a statement read as text rather than JSON is a str; anything else is named by repr
    text = json.dumps(parts, sort_keys=True, default=repr, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _plain(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_plain(x) for x in value]
    if isinstance(value, m.Finding) and value.secret is not None:
        raise ReportCodecError("a report that shows secrets is never stored")
    if isinstance(value, m.Attestation) and value.statement is not None:
        raise ReportCodecError("an attestation's statement is not part of a report")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if _CLASSES.get(name) is not type(value):
            raise ReportCodecError(f"{name} is not part of a report")
        out = {"@": name}
        out.update((f.name, _plain(getattr(value, f.name))) for f in dataclasses.fields(value))
        return out
    if value is None or isinstance(value, (str, int, float)):
        return value
    raise ReportCodecError(f"{type(value).__name__} is not part of a report")


def _back(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_back(x) for x in value)
    if isinstance(value, dict):
        cls = _CLASSES.get(value.pop("@", None))
        if cls is None:
            raise ReportCodecError("a stored report names no class of the report")
        return cls(**{k: _back(v) for k, v in value.items()})
    return value


def encode_report(report: m.ScanReport, layers: int, texts: int) -> bytes:
    """``report`` (its cache statistics left out) and how many layers and strings it was
    made from, as stored."""
    body = _plain(dataclasses.replace(report, cache=None))
    return json.dumps({"layers": layers, "texts": texts, "report": body}).encode()


def decode_report(value: bytes) -> m.ScanReport:
    """The stored report, its cache statistics saying the store answered all of it."""
    try:
        data = json.loads(value)
        report = _back(data["report"])
        layers, texts = data["layers"], data["texts"]
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ReportCodecError(f"a damaged stored report ({type(exc).__name__})") from None
    if not isinstance(report, m.ScanReport) or not all(isinstance(n, int) for n in (layers, texts)):
        raise ReportCodecError("a damaged stored report")
    return dataclasses.replace(report, cache=m.CacheInfo(layers, 0, texts, 0))


def recall_report(store: ResultStore, key: str) -> m.ScanReport | None:
    """The report kept under ``key``; None when there is none (or a damaged one: the
    scan that follows writes it anew)."""
    value = store.get(IMAGE, key)
    if value is None:
        return None
    try:
        return decode_report(value)
    except ReportCodecError:
        return None


def keep_report(
    store: ResultStore, key: str, report: m.ScanReport, layers: int, texts: int
) -> None:
    """Keep ``report`` under ``key`` (nothing when it cannot be kept: one that shows
    secrets, or holds what a report does not)."""
    try:
        value = encode_report(report, layers, texts)
    except ReportCodecError:
        return
    store.put_many(IMAGE, [(key, value)])
