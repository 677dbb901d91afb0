"""The scan: a source's images in, a :class:`ScanReport` out. The library never prints;
progress goes through a callback."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass, field, replace

from leakscan import model as m
from leakscan.detectors import (
    CONFIDENCE_RANK,
    Confidence,
    DetectorConfig,
    Detectors,
    Match,
    build_detectors,
    default_detectors,
)
from leakscan.detectors.context import in_context
from leakscan.errors import LeakscanError
from leakscan.layers.archives import ArchiveLimits
from leakscan.layers.status import fate
from leakscan.layerscan import LayerScan, scan_layer
from leakscan.metadata import HistoryMap, Text, config_texts, history_texts, map_history
from leakscan.redact import Redactor, mask
from leakscan.sources import open_source
from leakscan.sources.auth import RegistryOptions
from leakscan.suppress import Suppressions
from leakscan.workers import LayerPool

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
    detectors: DetectorConfig = field(default_factory=DetectorConfig)
    # processes that scan layers side by side; 0 means one per CPU, 1 none
    workers: int = 0
    archives: ArchiveLimits = field(default_factory=ArchiveLimits)
    # files bigger than this are listed in skipped, not scanned (None: no limit)
    max_file_size: int | None = None
    # how to reach registries: credentials, TLS (issue 4)
    registry: RegistryOptions = field(default_factory=RegistryOptions)


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


@dataclass
class _ImageScan:
    image: m.SourceImage
    layers: list[LayerScan]
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
    an incomplete scan), next to whatever could still be scanned. ``detectors`` replaces
    the engines of ``options.detectors``; such engines cannot travel to worker processes,
    so the layers are then scanned in this process.
    """
    options = options or ScanOptions()
    scanned: list[_ImageScan] = []
    errors: list[m.Problem] = []
    pool = None
    if detectors is not None:
        engines = detectors
    else:
        try:
            engines = (
                default_detectors()
                if options.detectors == DetectorConfig()
                else build_detectors(options.detectors)
            )
        except ValueError as exc:  # a detect-secrets plugin file that does not load
            return m.ScanReport(image, (), (m.Problem(str(exc)),))
        # this process scans too: N processes in all take N-1 workers
        pool = LayerPool(options.detectors, (options.workers or os.cpu_count() or 1) - 1, engines)
    try:
        with closing(open_source(image, options.registry)) as source:
            for found in source.images(options.platforms):
                scanned.append(_scan_image(found, engines, pool, options, progress))
    except LeakscanError as exc:
        errors.append(m.Problem(str(exc)))
    finally:
        if pool is not None:
            pool.close()
    if not scanned and not errors:
        wanted = ", ".join(options.platforms)
        errors.append(
            m.Problem(
                f"{image}: no image for platform {wanted}" if wanted else f"{image}: holds no image"
            )
        )
    return _report(image, scanned, errors, options)


def _scan_image(
    image: m.SourceImage,
    engines: Detectors,
    pool: LayerPool | None,
    options: ScanOptions,
    progress: ProgressCallback | None,
) -> _ImageScan:
    label = image.reference + (f" ({image.platform})" if image.platform else "")
    count = len(image.layers)

    def done(blob: m.LayerBlob, bytes_read: int) -> None:
        if progress:
            progress(Progress(label, blob.index, count, bytes_read, blob.size, layer_done=True))

    def here(blob: m.LayerBlob, alone: bool) -> LayerScan:
        def moved(bytes_read: int) -> None:
            if progress:
                progress(Progress(label, blob.index, count, bytes_read, blob.size))

        return scan_layer(
            blob, engines, options.archives, moved, options.max_file_size, helper_thread=alone
        )

    by_index: dict[int, LayerScan] = {}
    if pool is not None and pool.worth_it(image.layers):
        mine, theirs = pool.share(image.layers)
        futures = pool.submit(theirs, options.archives, options.max_file_size)
        helped = lopsided(mine, image.layers, pool.workers + 1)
        for blob in mine:
            by_index[blob.index] = here(blob, alone=helped)
            done(blob, blob.size or 0)
        for blob, result in pool.collect(futures):
            by_index[blob.index] = result
            done(blob, blob.size or 0)
    else:
        for blob in image.layers:
            by_index[blob.index] = here(blob, alone=True)
            done(blob, blob.size or 0)
    layers = [by_index[blob.index] for blob in image.layers]
    history = map_history(image.config, len(image.layers))
    texts = list(history_texts(history, image.config.get("history")))
    texts.extend(config_texts(image.config, image.annotations))
    hits = [(text, match) for text in texts for match in engines.scan(text.text.encode())]
    errors = list(image.errors)
    if history.problem:
        errors.append(m.Problem(history.problem))
    return _ImageScan(image, layers, history, hits, errors)


# a share this much larger than an even one keeps its process busy long after the others
# have finished: it gets a helper thread (a 75% share of the 400 MB bench image scanned 8%
# faster with one, a 54% share no faster, for more CPU time)
LOPSIDED = 1.25


def lopsided(mine: Sequence[m.LayerBlob], layers: Sequence[m.LayerBlob], processes: int) -> bool:
    """Whether ``mine`` is so large a part of ``layers`` that its process, one of
    ``processes``, should scan it with a helper thread."""
    total = sum(blob.size or 0 for blob in layers)
    return total > 0 and sum(blob.size or 0 for blob in mine) > LOPSIDED * total / processes


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
    # the most confident engine's view of the secret (its exact extent) is the one reported,
    # each engine's confidence judged in the light of where the file is
    path = loc.path if isinstance(loc, m.FileLocation) else None
    rated = [(in_context(x.rule_id, x.confidence, path), x) for x in matches]
    confidence, best = max(rated, key=lambda pair: CONFIDENCE_RANK[pair[0]])
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
        confidence=confidence,
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
            clusters = places.setdefault(("file", hit.layer_index, hit.shown), [])
            if not _merge(clusters, hit.match):
                where = fate(records, hit.layer_index, hit.path, hit.digest)
                file_loc = m.FileLocation(
                    layer_index=hit.layer_index,
                    diff_id=layer_infos[hit.layer_index].diff_id,
                    path=hit.shown,
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
