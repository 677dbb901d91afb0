"""The audit: every image of a registry (or a docker engine), each unique layer scanned once.

1. Walk: repositories and tags, each resolved to its platform images (manifests and
   configs only).
2. Scan: the unique layers (by diff_id) that neither the audit database nor the result
   store know, wherever the fan-out runs them; each result is committed as it arrives.
3. Fan out: each image's report is assembled from the audit-wide table of layer results,
   every layer at its index in that image, so that a secret's status is the one it has in
   that image (``findings.image_report`` on the image's own layer records).

Every layer result goes through the store's encoding (no secret in clear, strings masked)
before any image uses it, so a report is the same whether its layers were scanned now, in
an audit killed before, or by an earlier one.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field, replace

from leakscan import model as m
from leakscan.audit import referrers
from leakscan.audit.catalog import (
    UNTAGGED,
    Failed,
    Resolved,
    Tagged,
    Target,
    Unchanged,
    engine_images,
    parse_target,
    referrers_now,
    repositories,
    resolve_registry,
    root_client,
)
from leakscan.audit.db import AuditDb, default_path
from leakscan.audit.fanout import Fanout, ScanSettings, build_engines, fanout
from leakscan.audit.memo import MemoError, decode_reports, encode_reports, settings_key
from leakscan.audit.result import (
    AuditCallback,
    AuditProgress,
    AuditReport,
    AuditStats,
    audited,
    kept_layer_ids,
    record,
)
from leakscan.audit.target import repository_names
from leakscan.detectors import Detectors, Match
from leakscan.detectors.tokens import pairs_apart
from leakscan.errors import InputError, LeakscanError
from leakscan.findings import ImageScan, image_report
from leakscan.layerscan import LayerScan
from leakscan.metadata import Text
from leakscan.recall import Recall
from leakscan.redact import Redactor, redact_report
from leakscan.scan import ScanOptions, image_strings
from leakscan.sources.registry_client import RegistryClient
from leakscan.store import LAYER, open_store
from leakscan.store.codec import CodecError, decode_layer, decode_record, encode_layer
from leakscan.store.keys import detection_fingerprint, layer_key

# where the OCI distribution spec's tag schema keeps the referrers of sha256:HEX
_REFERRERS_TAG = re.compile(r"sha256-[0-9a-f]{64}")
# decoded-from-the-database layer results kept at hand while images are assembled
_HELD = 256
# calls that may have the fan-out (a Dask worker) scan this process's strings before it
# loads the engines itself: a call is a round trip through the scheduler (~10 ms), a load of
# the rule catalog 0.3 s of CPU
REMOTE_TEXT_CALLS = 16


@dataclass(frozen=True)
class AuditOptions:
    """What to audit and how; ``scan`` holds what a single scan would take (confidence,
    suppressions, detectors, limits, registry access, the result store)."""

    scan: ScanOptions = field(default_factory=ScanOptions)
    # repository globs (names without a glob are used as they are when no catalog is read)
    repos: tuple[str, ...] = ()
    repos_from: str | None = None
    tag_pattern: str | None = None
    db: str | None = None
    workers: int = 1
    dask: str | None = None
    new_only: bool = False
    since: float | None = None
    # entries per page of _catalog and tags/list
    page_size: int = 1000


def layer_id(blob: m.LayerBlob) -> str:
    """A layer's identity in the audit: its diff_id, else its blob digest."""
    if blob.diff_id and blob.diff_id.startswith("sha256:"):
        return blob.diff_id
    return blob.digest or f"unknown:{blob.index}"


def _reindexed(scan: LayerScan, index: int) -> LayerScan:
    """A result that is not stored as layer ``index`` of another image."""
    if not scan.errors and not scan.skipped and not scan.hits:
        return scan

    def problem(p: m.Problem) -> m.Problem:
        message = p.message
        if p.layer_index is not None and message.startswith(f"layer {p.layer_index}:"):
            message = f"layer {index}:" + message[len(f"layer {p.layer_index}:") :]
        return replace(p, message=message, layer_index=index)

    return LayerScan(
        record=scan.record,
        hits=[replace(h, layer_index=index) for h in scan.hits],
        errors=[problem(p) for p in scan.errors],
        skipped=[problem(p) for p in scan.skipped],
        diff_id=scan.diff_id,
    )


class _Audit:
    """One audit's state: the database, the store, the table of layer results."""

    def __init__(
        self,
        options: AuditOptions,
        db: AuditDb,
        recall: Recall | None,
        fan: Fanout,
        progress: AuditCallback | None,
    ) -> None:
        self.options = options
        s = options.scan
        self.settings = ScanSettings(s.detectors, s.archives, s.max_file_size)
        self.fingerprint = detection_fingerprint(s.detectors, s.archives, s.max_file_size)
        self.db = db
        self.recall = recall
        self.fan = fan
        self.progress = progress
        self.known: set[str] = set()  # layers whose result is in the database
        # results held here, not in the database: layers that could not be read this audit,
        # and layers with a secret in a path (see leakscan.store.codec): read again next time
        self.unstored: dict[str, LayerScan] = {}
        self.inflight: set[str] = set()  # layers handed to the fan-out, not back yet
        self.held: OrderedDict[str, bytes] = OrderedDict()
        self.layers_total = 0
        self.unique: set[str] = set()
        self.scanned = 0
        self.scanned_ids: set[str] = set()
        self.reused: set[str] = set()  # layers whose result the database or store had
        self.bytes = 0
        self._engines: Detectors | None = None
        self._texts: dict[str, list[Match]] = {}
        self._primed: dict[str, list[Match]] = {}  # matches of each string, by prime()
        self._remote_texts = 0  # calls that had the fan-out scan strings

    def engines(self) -> Detectors:
        if self._engines is None:
            self._engines = build_engines(self.options.scan.detectors)
        return self._engines

    def _say(self, phase: str, done: int, total: int | None, what: str = "") -> None:
        if self.progress is not None:
            self.progress(AuditProgress(phase, done, total, what))

    # -- 2. scan what nobody knows

    def submit_missing(self, images: Sequence[m.SourceImage]) -> None:
        """Start scanning the layers of ``images`` that have no result yet (in the
        database, in the result store, or on their way)."""
        wanted: dict[str, m.LayerBlob] = {}
        for image in images:
            self.layers_total += len(image.layers)
            for blob in image.layers:
                lid = layer_id(blob)
                self.unique.add(lid)
                if blob.unavailable or lid in self.known or lid in self.unstored:
                    continue
                if lid in self.inflight:
                    continue
                wanted.setdefault(lid, blob)
        if not wanted:
            return
        stored = self.db.layers(self.fingerprint, list(wanted))
        for lid, value in stored.items():
            try:
                decode_layer(value, 0)
            except CodecError:
                self.db.forget_layer(self.fingerprint, lid)
                continue
            self.known.add(lid)
            self.reused.add(lid)
            del wanted[lid]
        if wanted and self.recall is not None:
            self._from_store(wanted)
        if wanted:
            self.inflight.update(wanted)
            self.fan.submit(list(wanted.values()))

    def take(self, results: Iterator[tuple[m.LayerBlob, LayerScan]]) -> None:
        """Commit each result as it comes (a killed audit loses none that was done)."""
        for blob, result in results:
            lid = layer_id(blob)
            self.inflight.discard(lid)
            self.scanned_ids.add(lid)
            self.scanned += 1
            self.bytes += blob.size or 0
            if result.errors or result.diff_id != blob.diff_id or not blob.diff_id:
                self.unstored[lid] = result
            else:
                value = encode_layer(result, self._skip_secrets(result))
                if value is None:
                    self.unstored[lid] = result
                    self._say("scan", self.scanned, self.scanned + len(self.inflight), lid)
                    continue
                self.db.keep_layer(self.fingerprint, lid, value)
                self.known.add(lid)
                if self.recall is not None:
                    # the same entry a scan keeps: scans and audits answer each other
                    items = [(k, value) for k in self._store_keys(blob)]
                    self.recall.store.put_many(LAYER, items)
            self._say("scan", self.scanned, self.scanned + len(self.inflight), lid)

    def settled(self, image: m.SourceImage) -> bool:
        """Whether no layer of ``image`` is still being scanned."""
        return not any(layer_id(blob) in self.inflight for blob in image.layers)

    def scan_missing(self, images: Sequence[m.SourceImage]) -> None:
        """Make sure every readable layer of ``images`` has a result: from the database,
        the result store, or a scan now (committed as each one is done)."""
        self.submit_missing(images)
        self.take(self.fan.drain())

    # -- tags unchanged since the last audit

    def remembered(self, reports: Sequence[m.ImageReport]) -> None:
        """Count the layers of reports kept from an earlier audit (none is scanned)."""
        lids = kept_layer_ids(reports)
        self.layers_total += len(lids)
        self.unique.update(lids)
        self.reused.update(lids)

    @property
    def cached(self) -> int:
        """Unique layers whose result was there before (none scanned in this audit)."""
        return len(self.reused - self.scanned_ids)

    def _skip_secrets(self, scan: LayerScan) -> set[str]:
        """Secrets in a layer's skip messages and paths (a file named after a token): they
        are stored masked, and a scan from the store does not look at them again."""
        quoted = [
            text.encode("utf-8", "replace")
            for problem in scan.skipped
            for text in (problem.message, problem.path)
            if text
        ]
        return {x.secret for found in self._scan_texts(quoted) for x in found}

    def _store_keys(self, blob: m.LayerBlob) -> list[str]:
        """Where the result store keeps a layer: under its diff_id and its blob digest, as
        a scan keeps it (sha256 only: the digests a scan checks)."""
        digests = dict.fromkeys(
            d for d in (blob.diff_id, blob.digest) if d and d.startswith("sha256:")
        )
        return [layer_key(self.fingerprint, d) for d in digests]

    def _from_store(self, wanted: dict[str, m.LayerBlob]) -> None:
        """Results the shared result store has (scans and other audits put them there)."""
        assert self.recall is not None
        keys = {lid: self._store_keys(blob) for lid, blob in wanted.items()}
        found = self.recall.store.get_many(LAYER, sorted({k for ks in keys.values() for k in ks}))
        for lid, ks in keys.items():
            value = next((found[k] for k in ks if k in found), None)
            if value is None:
                continue
            try:
                decode_layer(value, 0)
            except CodecError:
                continue
            self.db.keep_layer(self.fingerprint, lid, value)
            self.known.add(lid)
            self.reused.add(lid)
            del wanted[lid]

    # -- 3. one image's report from the table

    def _value(self, lid: str) -> bytes | None:
        value = self.held.get(lid)
        if value is not None:
            self.held.move_to_end(lid)
            return value
        value = self.db.layers(self.fingerprint, [lid]).get(lid)
        if value is not None:
            self.held[lid] = value
            if len(self.held) > _HELD:
                self.held.popitem(last=False)
        return value

    def _layer(self, blob: m.LayerBlob) -> tuple[LayerScan, bytes | None]:
        lid = layer_id(blob)
        if blob.unavailable:
            return LayerScan(
                diff_id=blob.diff_id, skipped=[m.Problem(blob.unavailable, blob.index)]
            ), None
        if lid in self.unstored:
            return _reindexed(self.unstored[lid], blob.index), None
        value = self._value(lid)
        if value is not None:
            try:
                return decode_layer(value, blob.index)
            except CodecError as exc:
                why = f"layer {blob.index}: stored result unreadable ({exc})"
        else:
            why = f"layer {blob.index}: no result (it was not scanned)"
        return LayerScan(diff_id=blob.diff_id, errors=[m.Problem(why, blob.index)]), None

    def _scan_texts(self, many: Sequence[bytes]) -> list[list[Match]]:
        """The matches in each of ``many`` (each distinct string scanned once an audit):
        scanned where the layers are (a Dask worker) while this process has no engines
        of its own, else here."""
        keys = [data.decode("utf-8", "surrogateescape") for data in many]
        todo = list(dict.fromkeys(k for k in keys if k not in self._texts))
        if todo:
            data = [k.encode("utf-8", "surrogateescape") for k in todo]
            found = None
            if self._engines is None and self._remote_texts < REMOTE_TEXT_CALLS:
                self._remote_texts += 1
                found = self.fan.scan_texts(data)
            if found is None:
                engines = self.engines()
                found = [engines.scan(d) for d in data]
            self._texts.update(zip(todo, found, strict=True))
        return [self._texts[k] for k in keys]

    def prime(self, images: Sequence[m.SourceImage]) -> None:
        """Look every history, config and manifest string of ``images`` up at once (each
        distinct string once, one read and one write of the result store for them all),
        for :meth:`assemble` to take from: strings repeat across the tags of a registry,
        and a lookup per image costs a store transaction each."""
        wanted: dict[str, Text] = {}
        for image in images:
            for text in image_strings(image)[1]:
                if text.text not in self._primed:
                    wanted.setdefault(text.text, text)
        if not wanted:
            return
        found: dict[str, list[Match]] = {text: [] for text in wanted}
        if self.recall is not None:
            for text, match in self.recall.texts(list(wanted.values()), self._scan_texts):
                found[text.text].append(match)
        else:
            found = dict(zip(wanted, self._scan_texts([t.encode() for t in wanted]), strict=True))
        self._primed.update(found)

    def assemble(self, image: m.SourceImage) -> m.ImageReport:
        """The report of ``image``, its layers taken from the audit's table."""
        layers: list[LayerScan] = []
        packed: dict[int, bytes] = {}
        for blob in image.layers:
            scan, record = self._layer(blob)
            layers.append(scan)
            if record is not None:
                packed[blob.index] = record
        if any(layer.hits for layer in layers):
            # whiteouts matter only to files that hold a secret
            for i, record in packed.items():
                try:
                    layers[i].record = decode_record(record)
                except CodecError as exc:
                    layers[i].errors.append(
                        m.Problem(f"layer {i}: stored record unreadable ({exc})", i)
                    )
        history, texts, attested = image_strings(image)
        if all(t.text in self._primed for t in texts):
            hits = [(t, x) for t in texts for x in self._primed[t.text]]
        elif self.recall is not None:
            hits = self.recall.texts(texts, self._scan_texts)
        else:
            scanned = self._scan_texts([t.text.encode() for t in texts])
            hits = [(t, x) for t, found in zip(texts, scanned, strict=True) for x in found]
        # an id and its secret in two strings are one credential, as in a scan
        hits.extend(pairs_apart(hits))
        errors = list(image.errors)
        if history.problem:
            errors.append(m.Problem(history.problem))
        errors.extend(attested.errors)
        one = ImageScan(image, layers, history, hits, errors, skipped=attested.skipped)
        s = self.options.scan
        report = image_report(one, s.min_confidence, s.suppressions, False)
        secrets = set(one.secrets())
        unstored = {i for i, blob in enumerate(image.layers) if layer_id(blob) in self.unstored}
        fresh = [p for p in report.skipped if p.layer_index in unstored]
        # a problem may quote a path or a name where no engine looked (stored skips were
        # looked at when they were stored)
        problems = report.errors + tuple(fresh)
        quoted = [t.encode() for p in problems for t in (p.message, p.path) if t]
        for found in self._scan_texts(quoted):
            secrets.update(x.secret for x in found)
        return redact_report(report, Redactor(secrets))


# --- 1. the walk -----------------------------------------------------------------------------


def _repository_names(
    target: Target, options: AuditOptions, root: RegistryClient | None = None
) -> list[str]:
    """The repositories to audit: named ones as they are, globs against the catalog."""
    return repository_names(
        options.repos,
        options.repos_from,
        lambda: repositories(target, options.page_size, root),
    )


def _daemon_batches(
    options: AuditOptions, tag_filter: re.Pattern[str] | None
) -> Iterator[tuple[list[Resolved], Callable[[], None]]]:
    """One batch per engine image: its layers are read from its ``docker save``, which is
    gone once the batch is closed."""
    from leakscan.sources.daemon import open_daemon

    for entry in engine_images():
        names: list[tuple[str, str | None]] = [
            (r, t) for r, t in entry.names if tag_filter is None or tag_filter.search(t)
        ]
        if entry.names and not names:
            continue
        if not entry.names:
            if tag_filter is not None:
                continue
            names = [(UNTAGGED, None)]
        try:
            source = open_daemon(f"docker-daemon:{entry.image_id}")
        except LeakscanError as exc:
            yield [Failed(r, t or entry.image_id, str(exc)) for r, t in names], lambda: None
            continue
        try:
            found = list(source.images(()))
        except LeakscanError as exc:
            source.close()
            yield [Failed(r, t or entry.image_id, str(exc)) for r, t in names], lambda: None
            continue
        resolved: list[Resolved] = []
        for repository, tag in names:
            for image in found:
                reference = f"{repository}:{tag}" if tag else entry.image_id
                resolved.append(Tagged(repository, tag, replace(image, reference=reference)))
        yield resolved, source.close


def _settings_key(options: AuditOptions) -> str:
    """Everything a kept image report depends on besides the image: what detects (the
    detection fingerprint: leakscan, engines, limits), what is reported (confidence,
    suppressions) and the shape of the report."""
    s = options.scan
    sup = s.suppressions
    return settings_key(
        detection_fingerprint(s.detectors, s.archives, s.max_file_size),
        s.min_confidence,
        sup.fingerprints,
        sup.rules,
        sup.paths,
    )


def _registry_audit(
    run: _Audit,
    target: Target,
    options: AuditOptions,
    tag_filter: re.Pattern[str] | None,
    remembered: dict[tuple[str, str], str],
    settings: str,
    entries: list[tuple[str, str | None, m.ImageReport]],
    errors: list[m.Problem],
    repos: set[str],
) -> dict[tuple[str, str], str]:
    """Walk the registry, handing each new layer to the fan-out as soon as a tag shows it,
    then assemble every image in the walk's order. Returns the tags read in full whose
    reports may be kept for the next audit (by the digest each named)."""
    root = root_client(target)
    # in the walk's order: an image read now, or a tag unchanged since the last audit
    walked: list[Tagged | Unchanged] = []
    kept: dict[tuple[str, str], str] = {}
    moved_referrers: set[tuple[str, str]] = set()
    try:
        names = _repository_names(target, options, root)
        for item in resolve_registry(
            target, names, tag_filter, options.page_size, remembered=remembered, root=root
        ):
            repos.add(item.repository)
            if not isinstance(item, Unchanged) and item.tag and _REFERRERS_TAG.fullmatch(item.tag):
                # the referrers of a digest, by the OCI tag schema, new or changed: what an
                # earlier audit kept for that digest lacks them
                moved_referrers.add((item.repository, "sha256:" + item.tag[len("sha256-") :]))
            if isinstance(item, Failed):
                name = item.repository + (f":{item.tag}" if item.tag else "")
                errors.append(m.Problem(f"{name}: {item.reason}"))
                continue
            walked.append(item)
            if isinstance(item, Tagged):
                run.submit_missing([item.image])
                run.take(run.fan.ready())
            run._say("walk", len(walked), None)
        # while the last layers are scanned: the strings of every image, then each image
        # as soon as its layers are in
        fresh = [w.image for w in walked if isinstance(w, Tagged)]
        run.prime(fresh)
        reports: dict[int, m.ImageReport] = {}
        # the images still waiting for a layer, and for how many
        waiting: dict[int, int] = {}
        by_layer: dict[str, list[int]] = {}
        for i, item in enumerate(walked):
            if not isinstance(item, Tagged):
                continue
            lids = {layer_id(b) for b in item.image.layers} & run.inflight
            if not lids:
                reports[i] = run.assemble(item.image)
                continue
            waiting[i] = len(lids)
            for lid in lids:
                by_layer.setdefault(lid, []).append(i)
        for blob, result in run.fan.drain():
            run.take(iter([(blob, result)]))
            for i in by_layer.pop(layer_id(blob), []):
                waiting[i] -= 1
                if waiting[i] == 0:
                    del waiting[i]
                    item = walked[i]
                    assert isinstance(item, Tagged)
                    reports[i] = run.assemble(item.image)
                    run._say("report", len(reports), None)
        for i in list(waiting):  # not expected: every layer handed out comes back
            item = walked[i]
            assert isinstance(item, Tagged)
            reports[i] = run.assemble(item.image)
        unchanged = sorted({w.digest for w in walked if isinstance(w, Unchanged)})
        held = run.db.reports(settings, unchanged)
        usable: dict[int, tuple[m.ImageReport, ...]] = {}
        late: dict[tuple[str, str], list[m.ImageReport]] = {}
        tops: dict[tuple[str, str], str | None] = {}
        founds = {
            i: (item, _kept_reports(held.get(item.digest), item, target))
            for i, item in enumerate(walked)
            if isinstance(item, Unchanged)
        }
        subjects = {
            i: referrers.subjects(item.repository, item.digest, found)
            for i, (item, found) in founds.items()
            if found is not None
        }
        pairs = sorted({pair for both in subjects.values() for pair in both})
        # referrers attached through the API leave the digest of their subject as it was:
        # what the API lists now is held against what the kept reports read
        listed = referrers_now(root, pairs) if pairs else None
        for i, (item, found) in founds.items():
            if found is None or any(pair in moved_referrers for pair in subjects[i]):
                late[(item.repository, item.tag)] = []  # damaged, or referrers came
            elif referrers.moved(found, subjects[i], listed):
                late[(item.repository, item.tag)] = []  # referrers came or went (the API)
            else:
                usable[i] = found
        if late:
            # read in full after all (their repositories listed again: rare)
            names = sorted({r for r, _ in late})
            again = resolve_registry(
                target, names, None, options.page_size, root=root, only=set(late)
            )
            images = []
            for t in again:
                if isinstance(t, Tagged) and t.tag is not None and (t.repository, t.tag) in late:
                    images.append(t)
                    tops[(t.repository, t.tag)] = t.top
            run.scan_missing([t.image for t in images])
            for t in images:
                assert t.tag is not None
                late[(t.repository, t.tag)].append(run.assemble(t.image))
        used = (item.digest for item in walked if isinstance(item, Unchanged))
        run.db.used_reports(settings, used, time.time())
        for i, item in enumerate(walked):
            if isinstance(item, Tagged):
                entries.append((item.repository, item.tag, reports[i]))
                top = item.top
            elif i in usable:
                run.remembered(usable[i])
                entries.extend((item.repository, item.tag, r) for r in usable[i])
                continue
            else:
                entries.extend(
                    (item.repository, item.tag, r) for r in late[(item.repository, item.tag)]
                )
                top = tops.get((item.repository, item.tag))
            if item.tag is not None and top is not None:
                kept[(item.repository, item.tag)] = top
    finally:
        root.close()
    return kept


def _kept_reports(
    value: bytes | None, item: Unchanged, target: Target
) -> tuple[m.ImageReport, ...] | None:
    """The reports an earlier audit kept for the digest an unchanged tag names, as this
    tag's (None when there are none or they cannot be read)."""
    if value is None:
        return None
    try:
        reports = decode_reports(value)
    except MemoError:
        return None
    reference = f"{target.host}/{item.repository}:{item.tag}"
    return tuple(replace(r, reference=reference) for r in reports)


def _keep_reports(
    db: AuditDb,
    target: str,
    settings: str,
    kept: dict[tuple[str, str], str],
    entries: list[tuple[str, str | None, m.ImageReport]],
) -> None:
    """Keep, for the next audit, the reports of every tag read in full whose images all
    were audited without an error (one that failed is read again next time)."""
    by_tag: dict[tuple[str, str], list[m.ImageReport]] = {}
    for repository, tag, report in entries:
        if tag is not None and (repository, tag) in kept:
            by_tag.setdefault((repository, tag), []).append(report)
    tags: list[tuple[str, str, str]] = []
    values: dict[str, bytes] = {}
    for (repository, tag), reports in by_tag.items():
        if any(r.errors for r in reports):
            continue
        digest = kept[(repository, tag)]
        if digest not in values:
            try:
                values[digest] = encode_reports([replace(r, reference="") for r in reports])
            except MemoError:
                continue
        tags.append((repository, tag, digest))
    db.remember(target, settings, tags, values)


def _daemon_audit(
    run: _Audit,
    options: AuditOptions,
    tag_filter: re.Pattern[str] | None,
    entries: list[tuple[str, str | None, m.ImageReport]],
    errors: list[m.Problem],
    repos: set[str],
) -> None:
    """Every image of the engine, one ``docker save`` at a time (each is gone once its
    images are assembled)."""
    for resolved, close in _daemon_batches(options, tag_filter):
        try:
            tagged = [r for r in resolved if isinstance(r, Tagged)]
            for r in resolved:
                repos.add(r.repository)
                if isinstance(r, Failed):
                    name = r.repository + (f":{r.tag}" if r.tag else "")
                    errors.append(m.Problem(f"{name}: {r.reason}"))
            run._say("walk", len(entries) + len(tagged), None)
            run.scan_missing([t.image for t in tagged])
            for t in tagged:
                entries.append((t.repository, t.tag, run.assemble(t.image)))
                run._say("report", len(entries), None, t.image.reference)
        finally:
            close()


# --- the audit -------------------------------------------------------------------------------


def audit(
    target_text: str,
    options: AuditOptions | None = None,
    progress: AuditCallback | None = None,
    warn: Callable[[str], None] | None = None,
) -> AuditReport:
    """Audit every image of ``target_text`` (a registry or ``docker-daemon:``).

    One repository, tag, image or layer that fails is reported in the result and does not
    stop the audit; InputError for a target or option that makes no sense, SourceError
    when the catalog itself cannot be read.
    """
    options = options or AuditOptions()
    t0 = time.monotonic()
    started = time.time()
    target = parse_target(target_text, options.scan.registry)
    if target.daemon and options.dask:
        raise InputError("--dask needs a registry: a docker engine's layers are local files")
    try:
        tag_filter = re.compile(options.tag_pattern) if options.tag_pattern else None
    except re.error as exc:
        raise InputError(f"--tag {options.tag_pattern!r}: {exc}") from None
    if options.scan.detectors.detect_secrets_plugins:
        try:  # a plugin file that does not load is refused before anything is read
            build_engines(options.scan.detectors)
        except ValueError as exc:
            raise InputError(str(exc)) from None
    db_path = options.db or str(default_path(options.scan.cache))
    from leakscan.audit.db import AuditDbError

    try:
        db = AuditDb(db_path)
    except AuditDbError as exc:
        raise InputError(f"audit database: {exc}") from None
    recall = None
    if options.scan.cache is not None:
        store = open_store(options.scan.cache, warn)
        if store.enabled:
            s = options.scan
            fp = detection_fingerprint(s.detectors, s.archives, s.max_file_size)
            recall = Recall(store, fp, warn=warn)
    settings = _settings_key(options)
    with closing(db):
        audit_id = db.start(target.name, started)
        # the tags whose reports an earlier audit kept, by the digest they named then
        remembered = {} if target.daemon else db.remembered(target.name, settings)
        memo_spec = None
        if recall is not None and options.scan.cache is not None:
            memo_spec = (options.scan.cache, recall.fingerprint)
        fan = fanout(
            ScanSettings(options.scan.detectors, options.scan.archives, options.scan.max_file_size),
            options.workers,
            options.dask,
            memo_spec,
            recall.memo() if recall is not None else None,
        )
        run = _Audit(options, db, recall, fan, progress)
        entries: list[tuple[str, str | None, m.ImageReport]] = []
        errors: list[m.Problem] = []
        repos: set[str] = set()
        kept: dict[tuple[str, str], str] = {}
        try:
            if target.daemon:
                _daemon_audit(run, options, tag_filter, entries, errors, repos)
            else:
                if not remembered:
                    # nothing to go by: layers will be scanned while the walk goes on, by
                    # workers forked now (they cannot be once the walk's threads run)
                    fan.start()
                kept = _registry_audit(
                    run, target, options, tag_filter, remembered, settings, entries, errors, repos
                )
        finally:
            fan.close()
            if recall is not None:
                recall.store.close()
        now = time.time()
        sightings = record(db, target.name, audit_id, entries, now)
        if kept:
            _keep_reports(db, target.name, settings, kept, entries)
        # what a tag named before it moved is never read again
        db.drop_unnamed_reports()
        db.finish(audit_id, now)
    images = audited(entries, sightings, audit_id, options.new_only, options.since)
    stats = AuditStats(
        repositories=len(repos),
        images=len(images),
        layers_total=run.layers_total,
        layers_unique=len(run.unique),
        layers_scanned=run.scanned,
        layers_cached=run.cached,
        bytes_scanned=run.bytes,
        seconds=round(time.monotonic() - t0, 3),
    )
    return AuditReport(
        target.name,
        images,
        tuple(errors),
        stats,
        audit_id,
        started,
        options.new_only,
        options.since,
    )
