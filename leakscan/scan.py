"""The scan: a source's images in, a :class:`ScanReport` out. The library never prints;
progress goes through a callback."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field

from leakscan import model as m
from leakscan.detectors import (
    Confidence,
    DetectorConfig,
    Detectors,
    build_detectors,
    default_detectors,
)
from leakscan.errors import LeakscanError
from leakscan.findings import ImageScan, image_report
from leakscan.layers.archives import ArchiveLimits
from leakscan.layerscan import LayerScan, scan_layer
from leakscan.metadata import config_texts, history_texts, image_texts, map_history
from leakscan.redact import Redactor, redact_report
from leakscan.sources import open_source
from leakscan.sources.auth import RegistryOptions
from leakscan.suppress import Suppressions
from leakscan.workers import LayerPool


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
    scanned: list[ImageScan] = []
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
    return _report(image, scanned, errors, options, engines)


def _scan_image(
    image: m.SourceImage,
    engines: Detectors,
    pool: LayerPool | None,
    options: ScanOptions,
    progress: ProgressCallback | None,
) -> ImageScan:
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
    texts.extend(image_texts(image))
    hits = [(text, match) for text in texts for match in engines.scan(text.text.encode())]
    errors = list(image.errors)
    if history.problem:
        errors.append(m.Problem(history.problem))
    return ImageScan(image, layers, history, hits, errors)


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


def _report(
    reference: str,
    scanned: list[ImageScan],
    errors: list[m.Problem],
    options: ScanOptions,
    engines: Detectors,
) -> m.ScanReport:
    images = tuple(
        image_report(one, options.min_confidence, options.suppressions, options.show_secrets)
        for one in scanned
    )
    report = m.ScanReport(reference, images, tuple(errors))
    if options.show_secrets:
        return report
    secrets = {secret for one in scanned for secret in one.secrets()}
    # a problem's message or path may quote what a damaged image holds (a media type, a
    # blob name, a file path) where no engine looked: what they find there is masked too
    for problem in _problems(report):
        for text in (problem.message, problem.path):
            if text:
                secrets.update(x.secret for x in engines.scan(text.encode("utf-8", "replace")))
    return redact_report(report, Redactor(secrets))


def _problems(report: m.ScanReport) -> list[m.Problem]:
    found = list(report.errors)
    for image in report.images:
        found.extend(image.errors)
        found.extend(image.skipped)
    return found
