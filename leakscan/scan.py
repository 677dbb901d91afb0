"""The scan: a source's images in, a :class:`ScanReport` out. The library never prints;
progress goes through a callback."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from contextlib import closing
from dataclasses import dataclass, field, replace

from leakscan import model as m
from leakscan.detectors import (
    CONFIDENCE_RANK,
    Confidence,
    Detectors,
    Match,
    Subject,
    default_detectors,
)
from leakscan.detectors.stream import scan_stream
from leakscan.errors import LeakscanError
from leakscan.layers.compression import HashingReader, decompressed
from leakscan.layers.status import fate
from leakscan.layers.walker import LayerRecord, walk
from leakscan.metadata import HistoryMap, Text, config_texts, history_texts, map_history
from leakscan.redact import Redactor, mask
from leakscan.sources import open_source
from leakscan.suppress import Suppressions

UNKNOWN_DIGEST = "sha256:unknown"
# two engines' values on one line are one secret when one holds the other and is this long
MIN_MERGE_LENGTH = 8


@dataclass(frozen=True)
class ScanOptions:
    """What to scan and what to report."""

    platforms: tuple[str, ...] = ()
    min_confidence: Confidence = "medium"
    show_secrets: bool = False
    suppressions: Suppressions = field(default_factory=Suppressions)


@dataclass(frozen=True)
class Progress:
    """Where a scan is: sent to the progress callback as layers are read."""

    image: str
    layer_index: int
    layer_count: int
    bytes_read: int
    bytes_total: int | None
    layer_done: bool = False


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class _FileHit:
    layer_index: int
    path: str
    digest: bytes
    match: Match


@dataclass
class _LayerScan:
    record: LayerRecord = field(default_factory=LayerRecord)
    hits: list[_FileHit] = field(default_factory=list)
    errors: list[m.Problem] = field(default_factory=list)
    skipped: list[m.Problem] = field(default_factory=list)
    diff_id: str | None = None


@dataclass
class _ImageScan:
    image: m.SourceImage
    layers: list[_LayerScan]
    history: HistoryMap
    texts: list[tuple[Text, Match]]
    errors: list[m.Problem]


def scan(
    image: str,
    options: ScanOptions | None = None,
    progress: ProgressCallback | None = None,
    detectors: Detectors | None = None,
) -> m.ScanReport:
    """Scan every image ``image`` names (one per platform) and report what leaked where.

    Problems do not raise: they are in the report's ``errors`` (a report with errors is
    an incomplete scan), next to whatever could still be scanned.
    """
    options = options or ScanOptions()
    engines = detectors or default_detectors()
    scanned: list[_ImageScan] = []
    errors: list[m.Problem] = []
    try:
        with closing(open_source(image)) as source:
            for found in source.images(options.platforms):
                scanned.append(_scan_image(found, engines, progress))
    except LeakscanError as exc:
        errors.append(m.Problem(str(exc)))
    if not scanned and not errors:
        wanted = ", ".join(options.platforms)
        errors.append(
            m.Problem(
                f"{image}: no image for platform {wanted}" if wanted else f"{image}: holds no image"
            )
        )
    return _report(image, scanned, errors, options)


def _scan_image(
    image: m.SourceImage, engines: Detectors, progress: ProgressCallback | None
) -> _ImageScan:
    label = image.reference + (f" ({image.platform})" if image.platform else "")
    layers = [
        _scan_layer(blob, len(image.layers), engines, label, progress) for blob in image.layers
    ]
    history = map_history(image.config, len(image.layers))
    texts = list(history_texts(history, image.config.get("history")))
    texts.extend(config_texts(image.config, image.annotations))
    hits = [(text, match) for text in texts for match in engines.scan(text.text.encode())]
    errors = list(image.errors)
    if history.problem:
        errors.append(m.Problem(history.problem))
    return _ImageScan(image, layers, history, hits, errors)


def _scan_layer(
    blob: m.LayerBlob,
    count: int,
    engines: Detectors,
    label: str,
    progress: ProgressCallback | None,
) -> _LayerScan:
    out = _LayerScan(diff_id=blob.diff_id)
    i = blob.index
    if blob.unavailable:
        out.skipped.append(m.Problem(blob.unavailable, layer_index=i))
        return out
    path = None
    try:
        with blob.opener() as fh:
            raw = HashingReader(fh)
            _, stream = decompressed(raw)  # type: ignore[arg-type]
            tar = HashingReader(stream)
            for entry in walk(tar, out.record):  # type: ignore[arg-type]
                path = entry.path
                scanner = engines.scanner(Subject(entry.path, entry.size))
                matches = scan_stream(scanner, entry.stream) if scanner else []
                if matches:
                    digest = entry.digest()
                    out.hits.extend(_FileHit(i, entry.path, digest, x) for x in matches)
                if progress:
                    progress(Progress(label, i, count, raw.count, blob.size))
            path = None
            # the tar's end-of-archive marker may be followed by padding: hash it all
            tar.drain()
            raw.drain()
    except LeakscanError as exc:
        out.errors.append(m.Problem(f"layer {i}: {exc}", layer_index=i, path=path))
        return out
    except OSError as exc:
        out.errors.append(m.Problem(f"layer {i}: read failed: {exc}", layer_index=i, path=path))
        return out
    actual = tar.digest()
    if blob.diff_id is None:
        out.diff_id = actual
    elif blob.diff_id.startswith("sha256:") and actual != blob.diff_id:
        out.errors.append(
            m.Problem(f"layer {i}: content does not match its diff_id {blob.diff_id}", i)
        )
    if blob.digest and blob.digest.startswith("sha256:") and raw.digest() != blob.digest:
        out.errors.append(m.Problem(f"layer {i}: blob does not match its digest {blob.digest}", i))
    if progress:
        progress(Progress(label, i, count, raw.count, blob.size, layer_done=True))
    return out


# --- from raw matches to the report ----------------------------------------------------------

_REMEDIATION = {
    "present": "The file is in the final image. Remove it, and pass the secret at build time "
    "with RUN --mount=type=secret (or at run time) instead; rotate it.",
    "deleted": "Deleting the file in a later layer does not remove it: the layer that wrote it "
    "still ships in the image. Use RUN --mount=type=secret or a multi-stage build so it never "
    "lands in a layer, and rotate the secret.",
    "overwritten": "Overwriting the file in a later layer does not remove it: the layer that "
    "wrote it still ships in the image. Use RUN --mount=type=secret or a multi-stage build, "
    "and rotate the secret.",
    "history": "Build arguments and instructions are recorded in the image history for anyone "
    "who pulls it. Pass secrets with RUN --mount=type=secret, not ARG or ENV; rotate it.",
    "config": "The image config ships with the image. Inject the secret at run time "
    "(orchestrator secrets, a mounted file) instead of ENV or LABEL; rotate it.",
}


def _fingerprint(rule_id: str, secret_sha: str, place: str) -> str:
    # the place leaves out layer digests and line numbers, so an accepted finding keeps its
    # fingerprint when unrelated files of its layer change
    return hashlib.sha256(f"v1\0{rule_id}\0{secret_sha}\0{place}".encode()).hexdigest()


def _place(loc: m.Location) -> str:
    if isinstance(loc, m.FileLocation):
        return f"file\0{loc.path}"
    if isinstance(loc, m.HistoryLocation):
        return f"history\0{loc.history_index}"
    return f"config\0{loc.field}\0{loc.key or ''}"


@dataclass
class _Cluster:
    """Matches of one secret at one place, from any engine and rule."""

    location: m.Location
    matches: list[Match]


def _merge(clusters: list[_Cluster], match: Match) -> bool:
    """Add ``match`` to the cluster of the same secret at this place, if there is one: the
    same value anywhere in the place, or on the same line a value that contains it or is
    contained in it (engines differ in where a secret starts and ends)."""
    for cluster in clusters:
        for other in cluster.matches:
            shorter, longer = sorted((other.secret, match.secret), key=len)
            if shorter == longer or (
                other.line == match.line and len(shorter) >= MIN_MERGE_LENGTH and shorter in longer
            ):
                cluster.matches.append(match)
                return True
    return False


def _redacted(loc: m.Location, redact: Redactor) -> m.Location:
    if isinstance(loc, m.FileLocation):
        return replace(loc, path=redact(loc.path))
    if isinstance(loc, m.HistoryLocation):
        return replace(loc, created_by=redact.optional(loc.created_by))
    return replace(loc, key=redact.optional(loc.key))


def _finding(loc: m.Location, matches: list[Match], redact: Redactor, show: bool) -> m.Finding:
    """One finding from every match of one secret at one place (the location in clear: the
    fingerprint must not depend on whether secrets are shown)."""
    # the most confident engine's view of the secret (its exact extent) is the one reported
    best = max(matches, key=lambda x: CONFIDENCE_RANK[x.confidence])
    secret_sha = hashlib.sha256(best.secret.encode("utf-8", "surrogatepass")).hexdigest()
    key = loc.status if isinstance(loc, m.FileLocation) else loc.kind
    detectors = tuple(sorted({f"{x.detector}:{x.rule_id}" for x in matches}))
    return m.Finding(
        rule_id=best.rule_id,
        description=best.description,
        secret_sha256=secret_sha,
        redacted=mask(best.secret),
        fingerprint=_fingerprint(best.rule_id, secret_sha, _place(loc)),
        location=_redacted(loc, redact),
        confidence=best.confidence,
        detectors=detectors,
        remediation=_REMEDIATION[key],
        secret=best.secret if show else None,
    )


def _report(
    reference: str, scanned: list[_ImageScan], errors: list[m.Problem], options: ScanOptions
) -> m.ScanReport:
    secrets: set[str] = set()
    for one in scanned:
        for layer in one.layers:
            secrets.update(h.match.secret for h in layer.hits)
            secrets.update(h.match.raw for h in layer.hits if h.match.raw)
        secrets.update(x.secret for _, x in one.texts)
        secrets.update(x.raw for _, x in one.texts if x.raw)
    redact = Redactor(() if options.show_secrets else secrets)
    images = tuple(_image_report(one, redact, options) for one in scanned)
    return m.ScanReport(reference, images, tuple(_redact_problems(errors, redact)))


def _redact_problems(problems: Iterable[m.Problem], redact: Redactor) -> list[m.Problem]:
    return [replace(p, message=redact(p.message), path=redact.optional(p.path)) for p in problems]


def _image_report(one: _ImageScan, redact: Redactor, options: ScanOptions) -> m.ImageReport:
    image = one.image
    history = one.history
    records = [layer.record for layer in one.layers]
    layer_infos = []
    for blob, layer in zip(image.layers, one.layers, strict=True):
        h_index = history.layer_history[blob.index]
        created_by = history.entries[h_index].created_by if h_index is not None else None
        layer_infos.append(
            m.LayerInfo(
                index=blob.index,
                digest=blob.digest,
                diff_id=layer.diff_id or blob.digest or UNKNOWN_DIGEST,
                media_type=blob.media_type,
                size=blob.size,
                history_index=h_index,
                created_by=redact.optional(created_by),
            )
        )
    places: dict[tuple[str | int, ...], list[_Cluster]] = {}
    for layer in one.layers:
        for hit in layer.hits:
            clusters = places.setdefault(("file", hit.layer_index, hit.path), [])
            if not _merge(clusters, hit.match):
                where = fate(records, hit.layer_index, hit.path, hit.digest)
                file_loc = m.FileLocation(
                    layer_index=hit.layer_index,
                    diff_id=layer_infos[hit.layer_index].diff_id,
                    path=hit.path,
                    line=hit.match.line,
                    status=where.status,
                    removed_in_layer=where.removed_in_layer,
                )
                clusters.append(_Cluster(file_loc, [hit.match]))
    for text, match in one.texts:
        clusters = places.setdefault((text.location.kind, _place(text.location)), [])
        if not _merge(clusters, match):
            clusters.append(_Cluster(text.location, [match]))
    grouped = [(c.location, c.matches) for group in places.values() for c in group]
    threshold = CONFIDENCE_RANK[options.min_confidence]
    findings = []
    below = 0
    suppressed: dict[str, int] = {}
    for loc, matches in grouped:
        finding = _finding(loc, matches, redact, options.show_secrets)
        if CONFIDENCE_RANK[finding.confidence] < threshold:
            below += 1
            continue
        # suppressions see the path in clear, as the user wrote the glob against it
        why = options.suppressions.reason(replace(finding, location=loc))
        if why is not None:
            suppressed[why] = suppressed.get(why, 0) + 1
        else:
            findings.append(finding)
    errors = list(one.errors)
    skipped: list[m.Problem] = []
    for layer in one.layers:
        errors.extend(layer.errors)
        skipped.extend(layer.skipped)
    return m.ImageReport(
        reference=image.reference,
        source=image.source,
        platform=image.platform,
        manifest_digest=image.manifest_digest,
        config_digest=image.config_digest,
        layers=tuple(layer_infos),
        history=tuple(
            replace(h, created_by=redact.optional(h.created_by)) for h in history.entries
        ),
        findings=tuple(findings),
        errors=tuple(_redact_problems(errors, redact)),
        skipped=tuple(_redact_problems(skipped, redact)),
        below_threshold=below,
        suppressed=tuple(sorted(suppressed.items())),
    )
