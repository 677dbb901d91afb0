"""What the scan asks the result store, and tells it: layer results by the layer's digests,
and the matches of history and config strings by their content. Nothing here reads an
image or runs an engine; the scan does both for whatever the store does not answer.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from leakscan import model as m
from leakscan.detectors import Match
from leakscan.layers.walker import LayerRecord
from leakscan.layerscan import FileResult, LayerScan
from leakscan.metadata import Text
from leakscan.store import CONTENT, HEAD, LAYER, ResultStore
from leakscan.store.codec import (
    CodecError,
    decode_file,
    decode_layer,
    decode_record,
    encode_file,
    encode_layer,
)
from leakscan.store.keys import content_key, layer_key

TEXT = "text"


@dataclass
class CacheStats:
    """What the store answered in one scan."""

    layers_cached: int = 0
    layers_scanned: int = 0
    texts_cached: int = 0
    texts_scanned: int = 0


@dataclass
class Recalled:
    """A layer's result from the store; its record is read only when needed."""

    scan: LayerScan
    packed_record: bytes

    def record(self) -> LayerRecord:
        """The layer's record (raises CodecError when it is damaged)."""
        return decode_record(self.packed_record)


def _keys(fingerprint: str, blob: m.LayerBlob) -> list[str]:
    # the diff_id names the layer's content whatever its compression; the blob digest the
    # stored bytes; either one seen before names the same result
    # stored bytes; either one seen before names the same result. Only sha256 digests:
    # those are the ones a scan checks, so the only ones an entry can be trusted under
    digests = dict.fromkeys(d for d in (blob.diff_id, blob.digest) if d and d.startswith("sha256:"))
    return [layer_key(fingerprint, d) for d in digests]


@dataclass
class Recall:
    """The store, as one scan uses it."""

    store: ResultStore
    fingerprint: str
    stats: CacheStats = field(default_factory=CacheStats)
    warn: Callable[[str], None] | None = None
    _damaged: bool = False

    def warn_once(self, why: str) -> None:
        """Say once per scan that a stored value was damaged (it is scanned again)."""
        if not self._damaged and self.warn is not None:
            self.warn(f"result store: {why}; scanning that again")
        self._damaged = True

    def memo(self) -> StoreMemo:
        """File contents seen before, for the layer scans of this process."""
        return StoreMemo(self.store, self.fingerprint)

    def layers(self, blobs: Sequence[m.LayerBlob]) -> dict[int, Recalled]:
        """The stored results of those ``blobs`` the store holds, by layer index."""
        wanted = {blob.index: _keys(self.fingerprint, blob) for blob in blobs}
        found = self.store.get_many(LAYER, sorted({k for ks in wanted.values() for k in ks}))
        out: dict[int, Recalled] = {}
        for index, keys in wanted.items():
            value = next((found[k] for k in keys if k in found), None)
            if value is None:
                continue
            try:
                scan, record = decode_layer(value, index)
            except CodecError as exc:
                self.warn_once(str(exc))
                continue
            out[index] = Recalled(scan, record)
        return out

    def keep_layer(
        self,
        blob: m.LayerBlob,
        scan: LayerScan,
        find: Callable[[bytes], list[Match]],
        secrets: Iterable[str] = (),
    ) -> None:
        """Store ``scan`` when it read the whole layer and its digests were checked in
        that read: a partial or unverified result must never answer for the layer. ``find``
        (the engines) looks for secrets in its skip messages and paths, which are stored
        masked, so that a scan from the store need not look again. ``secrets``: the others
        found in its image (a whiteout may be named after one). Not stored either when a
        path of it holds one of those secrets (see :mod:`leakscan.store.codec`)."""
        if scan.errors or blob.unavailable or not blob.diff_id or scan.diff_id != blob.diff_id:
            return
        found = {
            x.secret
            for p in scan.skipped
            for text in (p.message, p.path)
            if text
            for x in find(text.encode("utf-8", "replace"))
        }
        value = encode_layer(scan, found, secrets)
        if value is None:
            return
        self.store.put_many(LAYER, [(k, value) for k in _keys(self.fingerprint, blob)])

    def texts(
        self, texts: Sequence[Text], scan: Callable[[list[bytes]], list[list[Match]]]
    ) -> list[tuple[Text, Match]]:
        """Every match in ``texts``: from the store where it holds the string's matches,
        from ``scan`` for the others (all of them in one call, each distinct string once;
        their matches are then stored)."""
        keys = [content_key(self.fingerprint, _sha(t.text)) for t in texts]
        found = self.store.get_many(TEXT, sorted(set(keys)))
        known: dict[str, list[Match]] = {}
        todo: dict[str, Text] = {}
        for text, key in zip(texts, keys, strict=True):
            if key in known or key in todo:
                continue
            matches = _recover(found[key], text.text) if key in found else None
            if matches is None:
                todo[key] = text
            else:
                known[key] = matches
        fresh: dict[str, bytes] = {}
        if todo:
            scanned = scan([t.text.encode() for t in todo.values()])
            for (key, text), matches in zip(todo.items(), scanned, strict=True):
                known[key] = matches
                packed = _pack(matches, text.text)
                if packed is not None:
                    fresh[key] = packed
        out: list[tuple[Text, Match]] = []
        for text, key in zip(texts, keys, strict=True):
            if key in todo:
                self.stats.texts_scanned += 1
            else:
                self.stats.texts_cached += 1
            out.extend((text, x) for x in known[key])
        self.store.put_many(TEXT, fresh.items())
        return out


# file results written in one transaction (a layer's worth at once: each row written gives the
# GIL up, and while the engines' thread runs that costs a wait; and every transaction of rows
# at random keys rewrites most pages of the table into the write-ahead log: 4096 at a time,
# a cold scan of a 400 MiB image wrote 10.8 MB there for a 3 MB table). About 8 MB held
MEMO_BATCH = 32768


class StoreMemo:
    """File contents seen before, as the layer scan asks for them (a ContentMemo): looked
    up and written in batches. What waits to be written answers too: the git blobs of a
    layer are looked up right after its files, before the layer's results are written."""

    def __init__(self, store: ResultStore, fingerprint: str) -> None:
        self.store = store
        self.fingerprint = fingerprint
        self._pending: dict[str, bytes] = {}
        self._heads: set[str] = set()

    def recall_many(self, keys: list[str]) -> dict[str, FileResult]:
        """See :class:`leakscan.layerscan.ContentMemo`."""
        stored = {content_key(self.fingerprint, key): key for key in keys}
        values = {where: v for where in stored if (v := self._pending.get(where)) is not None}
        values.update(self.store.get_many(CONTENT, [w for w in stored if w not in values]))
        out: dict[str, FileResult] = {}
        for where, value in values.items():
            with contextlib.suppress(CodecError):  # a damaged one is scanned and stored anew
                out[stored[where]] = decode_file(value)
        return out

    def keep(self, key: str, result: FileResult, head: str | None = None) -> None:
        """See :class:`leakscan.layerscan.ContentMemo`."""
        value = encode_file(result)
        if value is None:  # a member named after its secret: scanned again next time
            return
        self._pending[content_key(self.fingerprint, key)] = value
        if head is not None:
            self._heads.add(content_key(self.fingerprint, head))
        if len(self._pending) >= MEMO_BATCH:
            self.flush()

    def knows_head(self, head: str) -> bool:
        """See :class:`leakscan.layerscan.ContentMemo`."""
        where = content_key(self.fingerprint, head)
        return where in self._heads or bool(self.store.get_many(HEAD, [where]))

    def flush(self) -> None:
        """Write what is waiting."""
        pending, self._pending = self._pending, {}
        heads, self._heads = self._heads, set()
        # in key order: SQLite inserts rows in order into its tree ~7% faster than at random
        self.store.put_many(CONTENT, sorted(pending.items()))
        self.store.put_many(HEAD, [(where, b"") for where in sorted(heads)])


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _pack(matches: list[Match], text: str) -> bytes | None:
    """The matches of ``text`` without the secrets: where each stands in the text instead.
    None when a secret is not in the text as it stands (decoded from base64, say): such a
    string is scanned every time, since the store must not hold the secret."""
    rows = []
    for x in matches:
        at = text.find(x.secret)
        raw_at = text.find(x.raw) if x.raw else -1
        if at < 0 or (x.raw and raw_at < 0):
            return None
        rows.append(
            [x.rule_id, x.description, x.detector, x.confidence, x.line, x.start, x.end,
             [at, len(x.secret)], [raw_at, len(x.raw)] if x.raw else None]
        )
    return json.dumps(rows, separators=(",", ":")).encode()


def _recover(value: bytes, text: str) -> list[Match] | None:
    """The stored matches of ``text``, secrets read back from the text; None when the value
    is not one this leakscan wrote."""
    try:
        rows = json.loads(value)
        out = []
        for rule, desc, det, conf, line, start, end, (at, n), raw in rows:
            secret = text[at : at + n]
            raw_text = text[raw[0] : raw[0] + raw[1]] if raw else None
            if len(secret) != n or conf not in ("high", "medium", "low"):
                return None
            out.append(Match(rule, desc, secret, start, end, line, conf, det, raw_text))
        return out
    except (ValueError, TypeError, RecursionError):
        return None
