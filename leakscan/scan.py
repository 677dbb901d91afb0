"""The scan: a source's images in, a :class:`ScanReport` out. The library never prints;
progress goes through a callback."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING

from leakscan import model as m
from leakscan.detectors import (
    Confidence,
    DetectorConfig,
    Detectors,
    FileScanner,
    Match,
    Subject,
    build_detectors,
    default_detectors,
)
from leakscan.detectors.tokens import pairs_apart
from leakscan.errors import LeakscanError
from leakscan.findings import ImageScan, image_report, spelled_in_places
from leakscan.layers.archives import ArchiveLimits
from leakscan.layerscan import LayerScan, scan_layer
from leakscan.metadata import (
    HistoryMap,
    Text,
    config_texts,
    history_texts,
    image_texts,
    map_history,
)
from leakscan.provenance import AttestationTexts, attestation_texts
from leakscan.recall import Recall
from leakscan.redact import Redactor, redact_report
from leakscan.sources import open_source
from leakscan.sources.auth import RegistryOptions
from leakscan.store import open_store
from leakscan.store.codec import CodecError
from leakscan.store.keys import detection_fingerprint
from leakscan.store.reports import IMAGE, Settings, keep_report, report_key
from leakscan.suppress import Suppressions

if TYPE_CHECKING:  # imported when workers start: a scan from the store starts none
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
    # how to reach registries: credentials, TLS
    registry: RegistryOptions = field(default_factory=RegistryOptions)
    # the result store: a SQLite file or redis://HOST:PORT/DB (None: no store)
    cache: str | None = None


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


class NotStored(Exception):
    """A scan asked to answer from the result store alone met something to scan."""


class _Engines:
    """The engines and worker pool, built on first use: an image whose every layer and
    string the store answers never loads the rule catalog nor starts a worker."""

    def __init__(
        self, options: ScanOptions, given: Detectors | None, stored_only: bool = False
    ) -> None:
        self.options = options
        self._engines = given
        self._given = given is not None
        self._pool: LayerPool | None = None
        self.stored_only = stored_only

    def get(self) -> Detectors:
        """The engines (raises ValueError when a detect-secrets plugin does not load, and
        NotStored in a scan from the store alone)."""
        if self._engines is None:
            if self.stored_only:
                raise NotStored
            config = self.options.detectors
            self._engines = (
                default_detectors() if config == DetectorConfig() else build_detectors(config)
            )
        return self._engines

    def loading(self) -> bool:
        """Whether the engines would wait for the rule catalog, still loading on the
        thread ``python -m leakscan`` started (kingfisher.preload)."""
        if self._engines is not None:
            return False
        kingfisher = sys.modules.get("leakscan.detectors.kingfisher")
        return kingfisher is not None and bool(kingfisher.preloading())

    def scanner(self, subject: Subject) -> FileScanner | None:
        """The engines' scanner for ``subject`` (this object stands for the engines in a
        layer scan): the engines are built when a file first needs them."""
        return self.get().scanner(subject)

    def prepare(self) -> None:
        """Import what building the engines imports besides the catalog (detect-secrets,
        ~0.15 s), so that building them once it has loaded is quick."""
        if self.options.detectors.detect_secrets:
            import leakscan.detectors.detect_secrets  # noqa: F401

    def pool(self) -> LayerPool | None:
        """Worker processes (None with engines the caller gave: those cannot travel).
        While the catalog loads, the pool is made without engines: the caller gives them
        (``pool.engines``) before its first task, so that forked workers inherit them."""
        if self._given:
            return None
        if self._pool is None:
            # this process scans too: N processes in all take N-1 workers
            workers = (self.options.workers or os.cpu_count() or 1) - 1
            from leakscan.workers import LayerPool

            built = None if self.loading() and not self.stored_only else self.get()
            self._pool = LayerPool(self.options.detectors, workers, built)
        return self._pool

    def close(self, abort: bool = False) -> None:
        """Stop the workers (``abort``: at once, their layers unfinished)."""
        if self._pool is not None:
            self._pool.close(abort)
            self._pool = None


def scan_from_store(
    image: str, options: ScanOptions, warn: Callable[[str], None] | None = None
) -> m.ScanReport | None:
    """The report :func:`scan` gives, when the result store answers every layer and string
    of ``image``: no engine is loaded and no layer read. None as soon as something would
    need scanning (the store's hit counts are then left as they were)."""
    if options.cache is None or options.show_secrets or options.detectors.detect_secrets_plugins:
        return None
    try:
        return scan(image, options, warn=warn, _stored_only=True)
    except NotStored:
        return None


def scan(
    image: str,
    options: ScanOptions | None = None,
    progress: ProgressCallback | None = None,
    detectors: Detectors | None = None,
    warn: Callable[[str], None] | None = None,
    _stored_only: bool = False,
) -> m.ScanReport:
    """Scan every image ``image`` names (one per platform) and report what leaked where.

    Problems do not raise: they are in the report's ``errors`` (a report with errors is
    an incomplete scan), next to whatever could still be scanned. ``detectors`` replaces
    the engines of ``options.detectors``; such engines cannot travel to worker processes,
    so the layers are then scanned in this process. ``warn`` hears what does not stop a
    scan but a user should know (a result store that cannot be used).
    """
    options = options or ScanOptions()
    scanned: list[ImageScan] = []
    errors: list[m.Problem] = []
    engines = _Engines(options, detectors, _stored_only)
    if options.detectors.detect_secrets_plugins:
        try:  # a plugin file that does not load is refused before anything is read
            engines.get()
        except ValueError as exc:
            return m.ScanReport(image, (), (m.Problem(str(exc)),))
    recall = _recall(options, warn)
    try:
        with closing(open_source(image, options.registry)) as source:
            for found in source.images(options.platforms):
                scanned.append(_scan_image(found, engines, recall, options, progress))
    except LeakscanError as exc:
        errors.append(m.Problem(str(exc)))
    except NotStored:
        if recall is not None:
            recall.store.forget_counts()  # the scan that follows counts its own
        raise
    except BaseException:
        # Ctrl-C, a signal, a bug: the workers' layers are not wanted any more
        engines.close(abort=True)
        raise
    finally:
        engines.close()
        if recall is not None:
            recall.store.close()
    if not scanned and not errors:
        wanted = ", ".join(options.platforms)
        errors.append(
            m.Problem(
                f"{image}: no image for platform {wanted}" if wanted else f"{image}: holds no image"
            )
        )
    report = _report(image, scanned, errors, options, engines)
    if recall is not None:
        report = replace(report, cache=_cache_info(recall))
        if detectors is None:  # engines given by the caller are not in the fingerprint
            _keep_report(image, scanned, report, options, recall)
    return report


def _recall(options: ScanOptions, warn: Callable[[str], None] | None) -> Recall | None:
    if options.cache is None:
        return None
    store = open_store(options.cache, warn)
    if not store.enabled:
        return None
    fingerprint = detection_fingerprint(options.detectors, options.archives, options.max_file_size)
    return Recall(store, fingerprint, warn=warn)


def _cache_info(recall: Recall) -> m.CacheInfo:
    s = recall.stats
    return m.CacheInfo(s.layers_cached, s.layers_scanned, s.texts_cached, s.texts_scanned)


def report_settings(options: ScanOptions) -> Settings:
    """What a report depends on besides its images and the detection fingerprint."""
    return Settings(
        options.min_confidence,
        tuple(sorted(options.suppressions.fingerprints)),
        options.suppressions.rules,
        options.suppressions.paths,
        options.platforms,
    )


def _keep_report(
    reference: str,
    scanned: list[ImageScan],
    report: m.ScanReport,
    options: ScanOptions,
    recall: Recall,
) -> None:
    """Keep the whole report for the next re-scan of the same images (leakscan.quick reads
    it): only when every layer was read whole, its digests checked, or came from the
    store, and nothing went wrong."""
    if options.show_secrets or not scanned or not report.complete or recall.store.failed:
        return
    if options.cache is None or "://" in options.cache:
        return  # a shared store is never read before the CLI loads: nothing would use it
    for one in scanned:
        for blob, layer in zip(one.image.layers, one.layers, strict=True):
            if (
                layer.errors
                or blob.unavailable
                or not blob.diff_id
                or layer.diff_id != blob.diff_id
            ):
                return
    s = recall.stats
    key = report_key(
        recall.fingerprint, reference, [one.image for one in scanned], report_settings(options)
    )
    with open_store(options.cache) as store:
        store.counts.add(IMAGE, 0, 1)  # this scan was not answered whole
        keep_report(
            store, key, report, s.layers_cached + s.layers_scanned, s.texts_cached + s.texts_scanned
        )


def _scan_image(
    image: m.SourceImage,
    engines: _Engines,
    recall: Recall | None,
    options: ScanOptions,
    progress: ProgressCallback | None,
) -> ImageScan:
    label = image.reference + (f" ({image.platform})" if image.platform else "")
    count = len(image.layers)

    def done(blob: m.LayerBlob, bytes_read: int) -> None:
        if progress:
            progress(Progress(label, blob.index, count, bytes_read, blob.size, layer_done=True))

    def here(blob: m.LayerBlob, alone: bool, tick: Callable[[], object] | None = None) -> LayerScan:
        """Scan ``blob`` in this process (``tick`` is called after each file)."""

        def moved(bytes_read: int) -> None:
            if progress:
                progress(Progress(label, blob.index, count, bytes_read, blob.size))
            if tick is not None:
                tick()

        result = scan_layer(
            blob,
            engines if engines.loading() else engines.get(),
            options.archives,
            moved,
            options.max_file_size,
            helper_thread=alone,
            memo=memo,
        )
        if memo is not None:
            memo.flush()
        return result

    # file contents seen before come from the store too (not to show secrets: it has none)
    memo = recall.memo() if recall is not None and not options.show_secrets else None

    recalled = recall.layers(image.layers) if recall is not None else {}
    if options.show_secrets:
        # the store keeps no secret: layers that hold one are read again to show it
        recalled = {i: r for i, r in recalled.items() if not r.scan.hits}
    by_index: dict[int, LayerScan] = {i: r.scan for i, r in recalled.items()}
    for i in recalled:
        done(image.layers[i], image.layers[i].size or 0)
    todo = [blob for blob in image.layers if blob.index not in recalled]
    fresh: list[tuple[m.LayerBlob, LayerScan]] = []
    pool = engines.pool() if todo else None
    # the catalog still loading, and a result store to look files up in (a re-scan finds
    # most of them there): this process walks its share meanwhile, and forks the workers
    # once the engines are built, so that they inherit them (a re-layered image of known
    # files: its first layer started 0.15 s sooner)
    early = pool is not None and pool.engines is None and memo is not None
    if pool is not None and pool.worth_it(todo, later=pool.engines is None):
        from leakscan.workers import Handout

        mine, theirs = pool.share(todo)
        shared = (options.cache, recall.fingerprint) if memo and recall and options.cache else None
        helped = lopsided(mine, todo, pool.workers + 1)
        handout = Handout(pool, theirs, options.archives, options.max_file_size, shared)
        started = False

        def start_workers(wait: bool = True) -> None:
            """Start the workers on their share; without ``wait``, only once the catalog has
            loaded and its thread has ended (a process is forked only with one thread)."""
            nonlocal started
            if started or pool is None:
                return
            if not wait and (engines.loading() or threading.active_count() > 1):
                return
            if pool.engines is None:
                pool.engines = engines.get()
            handout.start()
            started = True

        if early and not helped:  # (a helper thread would keep this process from forking)
            engines.prepare()
        else:
            start_workers()
        for blob in mine:
            tick = None if started else partial(start_workers, wait=False)
            fresh.append((blob, here(blob, helped, tick)))
            done(blob, blob.size or 0)
        start_workers()
        # the workers' layers none has been handed yet: this process takes them, the smallest
        # first, while the workers go on from the largest (re-layered bench image: 7% faster
        # with the early walk above, the same on images of many small layers)
        while True:
            while (back := handout.take_back()) is not None:
                fresh.append((back, here(back, alone=False)))
                done(back, back.size or 0)
            if handout.settled():
                break
        for blob, result in handout.results():
            fresh.append((blob, result))
            done(blob, blob.size or 0)
    else:
        for blob in todo:
            fresh.append((blob, here(blob, alone=True)))
            done(blob, blob.size or 0)
    # a layer may hold in a path (a whiteout, say) a secret another layer holds
    secrets = {form for _, r in fresh for h in r.hits for x in h.seen for form in x.forms()}
    secrets.update(spelled_in_places(r for _, r in fresh))
    for blob, result in fresh:
        by_index[blob.index] = result
        if recall is not None:
            recall.keep_layer(blob, result, engines.get().scan, secrets)
            recall.stats.layers_scanned += 1
    layers = [by_index[blob.index] for blob in image.layers]
    errors = list(image.errors)
    if recalled:
        if recall is not None:
            recall.stats.layers_cached += len(recalled)
        if any(layer.hits for layer in layers):
            # whiteouts matter only to files that hold a secret
            for i, one in recalled.items():
                try:
                    one.scan.record = one.record()
                except CodecError as exc:  # a damaged entry: read the layer again
                    by_index[i] = here(image.layers[i], alone=True)
                    layers[i] = by_index[i]
                    if recall is not None:
                        recall.warn_once(str(exc))
    history, texts, attested = image_strings(image)
    errors.extend(attested.errors)
    # the same string in many places (an attestation's build steps repeat their keys and
    # commands hundreds of times) is scanned once
    seen: dict[bytes, list[Match]] = {}

    def scan_text(data: bytes) -> list[Match]:
        if data not in seen:
            seen[data] = engines.get().scan(data)
        return seen[data]

    if recall is not None:
        hits = recall.texts(texts, lambda many: [scan_text(data) for data in many])
    else:
        hits = [(text, match) for text in texts for match in scan_text(text.text.encode())]
    # an id and its secret in two strings (two ENV instructions, two Env variables) are one
    # credential as much as the two in one file
    hits.extend(pairs_apart(hits))
    if history.problem:
        errors.append(m.Problem(history.problem))
    from_store = frozenset(i for i, r in recalled.items() if layers[i] is r.scan)
    return ImageScan(image, layers, history, hits, errors, from_store, attested.skipped)


def image_strings(image: m.SourceImage) -> tuple[HistoryMap, list[Text], AttestationTexts]:
    """An image's history, every string of its history, config, manifests and attestations
    (each judged alone), and what its attestations said of themselves (errors, skips)."""
    history = map_history(image.config, len(image.layers))
    texts = list(history_texts(history, image.config.get("history")))
    texts.extend(config_texts(image.config, image.annotations))
    texts.extend(image_texts(image))
    attested = attestation_texts(image)
    texts.extend(attested.texts)
    return history, texts, attested


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
    engines: _Engines,
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
    for problem in _problems(report, scanned):
        for text in (problem.message, problem.path):
            if text:
                found = engines.get().scan(text.encode("utf-8", "replace"))
                secrets.update(x.secret for x in found)
    return redact_report(report, Redactor(secrets))


def _problems(report: m.ScanReport, scanned: list[ImageScan]) -> list[m.Problem]:
    """Every problem to look for secrets in: not the skips of layers from the result store,
    whose messages were looked at and masked when they were stored."""
    found = list(report.errors)
    for image, one in zip(report.images, scanned, strict=True):
        found.extend(image.errors)
        found.extend(p for p in image.skipped if p.layer_index not in one.recalled)
    return found
