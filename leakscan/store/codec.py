"""A layer's scan result as the store keeps it, and back.

Two parts, each zlib-compressed JSON: the findings part (its secrets grouped and reduced,
what was skipped) and the record part (every path of the layer, for the whiteout logic),
which is read only when some layer of the image holds a secret. The secrets themselves are
never stored, only their hashes and masked forms; messages and commit subjects that hold one
(and skipped files' names) are stored masked. A result with a secret it holds, or its image
holds, in a path (a file or folder named after a token, an archive member, a whiteout) is
not stored at all: masked, the path would no longer
be the one a cold scan judges (which later layer deletes it, the finding's fingerprint), and
in clear the store would hold the secret. Such a layer is scanned again each time.

Values come from a database another machine may share, so decoding checks every field and
raises :class:`CodecError` rather than build a wrong result.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

from leakscan import model as m
from leakscan.layers.walker import EntryRecord, LayerRecord
from leakscan.layerscan import FileHit, FileResult, LayerScan
from leakscan.redact import MIN_MASKED_LENGTH, Redactor, mask
from leakscan.sightings import Seen, sealed

FORMAT = 2
_KINDS = ("file", "hardlink", "dir", "symlink", "other")
_CONFIDENCES = ("high", "medium", "low")
_HEAD = struct.Struct(">BI")  # format, length of the findings part


class CodecError(ValueError):
    """A stored value that is not what this leakscan writes."""


def _row(x: Seen) -> list[Any]:
    return [
        x.rule_id,
        x.description,
        x.detector,
        x.confidence,
        x.line,
        x.start,
        x.end,
        x.secret_sha256,
        x.masked,
    ]


def encode_file(result: FileResult) -> bytes | None:
    """One file content's result as stored, or None when an archive member's name in it
    holds one of its secrets (see the module's docstring)."""
    if not result.groups and not result.skipped:  # most files: nothing to mask or check
        return _NOTHING
    redact = Redactor({form for _, group in result.groups for x in group for form in x.forms()})
    suffixes = [suffix for suffix, _ in result.groups] + [suffix for suffix, _ in result.skipped]
    if any(redact(suffix) != suffix for suffix in suffixes):
        return None
    value = {
        "groups": [[suffix, [_row(x) for x in sealed(group)]] for suffix, group in result.groups],
        "skipped": [[suffix, redact(reason)] for suffix, reason in result.skipped],
    }
    text = json.dumps(value, separators=(",", ":")).encode()
    if len(text) < _SMALL:
        return _HEAD.pack(FORMAT, _RAW) + text
    return _HEAD.pack(FORMAT, _ZLIB) + zlib.compress(text, 6)


# a file result's second header field says how its JSON is kept: most results are empty or
# a few dozen bytes, which zlib makes no smaller and costs ~0.1 ms each to set up for (a
# cold scan stores thousands)
_ZLIB, _RAW = 0, 1
_SMALL = 512
_NOTHING = _HEAD.pack(FORMAT, _RAW) + b'{"groups":[],"skipped":[]}'


def decode_file(value: bytes) -> FileResult:
    """A stored file result; raises CodecError when it is not one this leakscan wrote."""
    if len(value) < _HEAD.size:
        raise CodecError("stored file result of another format")
    version, how = _HEAD.unpack_from(value)
    if version != FORMAT or how not in (_ZLIB, _RAW):
        raise CodecError("stored file result of another format")
    if value == _NOTHING:
        return _EMPTY
    try:
        body = value[_HEAD.size :]
        data = json.loads(zlib.decompress(body) if how == _ZLIB else body)
        groups = tuple(
            (_str(suffix), tuple(_seen(x) for x in group)) for suffix, group in data["groups"]
        )
        skipped = tuple((_str(suffix), _str(reason)) for suffix, reason in data["skipped"])
    except CodecError:
        raise
    except (zlib.error, KeyError, TypeError, ValueError, RecursionError) as exc:
        raise CodecError(f"stored file result unreadable: {type(exc).__name__}") from None
    if any(not group for _, group in groups):
        raise CodecError("stored file result: an empty group")
    return FileResult(groups, skipped)


_EMPTY = FileResult((), ())


def encode_layer(
    scan: LayerScan, also: Iterable[str] = (), image: Iterable[str] = ()
) -> bytes | None:
    """``scan`` (a complete, verified layer) as stored bytes, messages, skipped paths and
    commit subjects masked for its own secrets, ``also`` (what the engines found in its
    skip messages and paths) and ``image`` (the secrets of the other layers of its image);
    None when one of its own or ``image``'s secrets is in a path the fate or the
    fingerprint of a finding is judged by (see the module's docstring)."""
    own = {form for hit in scan.hits for x in hit.seen for form in x.forms()}
    rec = scan.record
    judged = _maskable(own | set(image))
    every = _maskable(own | set(also) | set(image))
    # most layers' images hold no secret: then no path can hold one (nor be joined)
    joined = (
        "\0".join([*rec.entries, *rec.whiteouts, *rec.opaques, *rec.odd_whiteouts])
        if every
        else ""
    )
    if judged:
        paths = [p for h in scan.hits for p in (h.path, h.shown, *_git_paths(h.git))]
        paths.append(joined)
        if any(secret in p for p in paths for secret in judged):
            return None
    redact = Redactor(every)
    # the record's paths masked one by one only when a secret is in one of them (what the
    # engines found in a skipped file's name): 28,000 regular-expression passes otherwise
    record = _encode_record(rec, redact if any(s in joined for s in every) else None)
    head = {
        "diff_id": scan.diff_id,
        "hits": [
            [
                h.path,
                h.shown,
                h.digest.hex(),
                [_row(x) for x in sealed(h.seen)],
                *([_git_row(h.git, redact)] if h.git is not None else []),
            ]
            for h in scan.hits
        ],
        "skipped": [[redact(p.message), redact.optional(p.path)] for p in scan.skipped],
    }
    first = zlib.compress(json.dumps(head, separators=(",", ":")).encode(), 6)
    return _HEAD.pack(FORMAT, len(first)) + first + record


# the record part: a small JSON header, then every path (NUL-separated: a tar name holds no
# NUL), one letter per entry for its kind, and the raw digests of the entries that have
# one, in order. Reading 28,000 entries back this way takes a fraction of what JSON lists did.
_SIZES = struct.Struct(">III")
_KIND_CODE = {kind: kind[0] for kind in _KINDS}  # file, hardlink, dir, symlink, other
_CODE_KIND = {code: kind for kind, code in _KIND_CODE.items()}
_CODES = set(_CODE_KIND) | {code.upper() for code in _CODE_KIND}
_TEXT = ("utf-8", "surrogatepass")


def _encode_record(rec: LayerRecord, redact: Redactor | None) -> bytes:
    # what ``redact`` changes here is what the engines found in skipped files' names:
    # paths no finding of this layer is at (encode_layer stores none with its own secrets);
    # None when no path holds anything to mask
    masked = redact or _as_is
    meta = {
        "whiteouts": sorted(masked(p) for p in rec.whiteouts),
        "opaques": sorted(masked(p) for p in rec.opaques),
        "odd_whiteouts": [masked(p) for p in rec.odd_whiteouts],
        "too_long": rec.too_long,
    }
    names = rec.entries if redact is None else (redact(p) for p in rec.entries)
    paths = "\0".join(names).encode(*_TEXT)
    kinds = "".join(
        _KIND_CODE[e.kind].upper() if e.digest else _KIND_CODE[e.kind] for e in rec.entries.values()
    ).encode()
    digests = b"".join(e.digest for e in rec.entries.values() if e.digest)
    head = json.dumps(meta, separators=(",", ":")).encode()
    body = _SIZES.pack(len(head), len(paths), len(kinds)) + head + paths + kinds + digests
    # level 1: a base layer's record (1 MB of paths and digests) in 9 ms rather than 15, 5%
    # larger (its digests do not compress at any level)
    return zlib.compress(body, 1)


def _as_is(text: str) -> str:
    return text


def _maskable(secrets: Iterable[str]) -> set[str]:
    """The secrets a :class:`Redactor` changes wherever they are: long enough to be masked,
    and not their own masked form."""
    return {s for s in secrets if len(s) >= MIN_MASKED_LENGTH and mask(s) != s}


def _parts(value: bytes) -> tuple[Any, bytes]:
    if len(value) < _HEAD.size:
        raise CodecError("stored layer too short")
    version, length = _HEAD.unpack_from(value)
    if version != FORMAT:
        raise CodecError(f"stored layer format {version}")
    try:
        head = json.loads(zlib.decompress(value[_HEAD.size : _HEAD.size + length]))
    except (zlib.error, ValueError, RecursionError) as exc:
        raise CodecError(f"stored layer unreadable: {type(exc).__name__}") from None
    return head, value[_HEAD.size + length :]


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise CodecError("stored layer: a string expected")
    return value


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise CodecError("stored layer: a number expected")
    return value


def _seen(item: Any) -> Seen:
    if not isinstance(item, list) or len(item) != 9:
        raise CodecError("stored layer: a match of the wrong shape")
    rule, desc, det, conf, line, start, end, sha, masked = item
    if conf not in _CONFIDENCES:
        raise CodecError("stored layer: unknown confidence")
    return Seen(
        _str(rule),
        _str(desc),
        _str(det),
        conf,
        _int(line),
        _int(start),
        _int(end),
        _str(sha),
        _str(masked),
    )


_GIT_FIELDS = (
    "git_dir",
    "object_id",
    "part",
    "blob_sha256",
    "commit",
    "author_date",
    "subject",
    "repo_path",
    "blob_digest",
)


def _git_paths(git: m.GitPlace | None) -> tuple[str, ...]:
    """The fields of ``git`` a finding's place and fate are judged by."""
    if git is None:
        return ()
    return tuple(p for p in (git.git_dir, git.repo_path, git.object_id) if p is not None)


def _git_row(git: m.GitPlace, redact: Redactor) -> list[Any]:
    # a commit subject may hold the secret itself: stored masked, as a report shows it
    # (the paths are in clear: encode_layer stores no result with a secret in a path)
    return [redact.optional(getattr(git, name)) for name in _GIT_FIELDS]


def _git_place(item: Any) -> m.GitPlace:
    if not isinstance(item, list) or len(item) != len(_GIT_FIELDS):
        raise CodecError("stored layer: a git place of the wrong shape")
    values = dict(zip(_GIT_FIELDS, item, strict=True))
    if values["part"] not in ("blob", "message"):
        raise CodecError("stored layer: unknown git part")
    for name in ("git_dir", "object_id"):
        _str(values[name])
    for name in _GIT_FIELDS[3:]:
        if values[name] is not None:
            _str(values[name])
    return m.GitPlace(**values)


def decode_layer(value: bytes, index: int) -> tuple[LayerScan, bytes]:
    """The stored result as layer ``index`` of an image, without its record (see
    :func:`decode_record`), and the record part to decode when it is needed."""
    head, rest = _parts(value)
    try:
        hits = [
            FileHit(
                index,
                _str(path),
                _str(shown),
                bytes.fromhex(_str(digest)),
                tuple(_seen(x) for x in group),
                _git_place(git[0]) if git else None,
            )
            for path, shown, digest, group, *git in head["hits"]
        ]
        skipped = [
            m.Problem(_str(msg), index, None if path is None else _str(path))
            for msg, path in head["skipped"]
        ]
        diff_id = head["diff_id"]
        if diff_id is not None:
            _str(diff_id)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, CodecError):
            raise
        raise CodecError(f"stored layer of the wrong shape: {type(exc).__name__}") from None
    if any(not hit.seen for hit in hits):
        raise CodecError("stored layer: an empty group")
    return LayerScan(hits=hits, skipped=skipped, diff_id=diff_id), rest


class _PackedEntries(dict[str, EntryRecord]):
    """A stored layer's entries, looked up where they are packed: a warm re-scan asks the
    records for a few paths (files with findings and their folders), and building a dict
    of every entry of every layer was most of its time. ``get``, ``in`` and ``[]`` read
    the packed form; anything else unpacks every entry first, into the dict this is."""

    def __init__(self, paths: str, kinds: str, digests: bytes) -> None:
        super().__init__()
        # NUL-framed, so that a path is found whole: "\0/a\0" is not inside "\0/x/a\0"
        self._paths: str | None = "\0" + paths + "\0" if kinds else None
        self._kinds = kinds
        self._digests = digests

    def _find(self, path: str) -> EntryRecord | None:
        packed = self._paths
        if packed is None:
            return super().get(path)
        # the last entry of a path wins, as in a dict filled in order
        at = packed.rfind("\0" + path + "\0") if "\0" not in path else -1
        if at < 0:
            return None
        index = packed.count("\0", 0, at)
        code = self._kinds[index]
        kind = _CODE_KIND[code.lower()]
        if code.islower():
            return _SHARED_RECORDS[code]
        # digests are in entry order, one per entry whose code is upper case
        k = sum(self._kinds.count(c, 0, index) for c in _UPPER)
        return EntryRecord(kind, self._digests[32 * k : 32 * k + 32])  # type: ignore[arg-type]

    def _unpack(self) -> None:
        packed, self._paths = self._paths, None
        if packed is None:
            return
        held = iter([self._digests[d : d + 32] for d in range(0, len(self._digests), 32)])
        records = [
            _SHARED_RECORDS[c] if c.islower() else EntryRecord(_CODE_KIND[c.lower()], next(held))  # type: ignore[arg-type]
            for c in self._kinds
        ]
        super().update(zip(packed[1:-1].split("\0"), records, strict=True))

    def get(self, path: str, default: Any = None) -> Any:
        found = self._find(path)
        return default if found is None else found

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and self._find(path) is not None

    def __getitem__(self, path: str) -> EntryRecord:
        found = self._find(path)
        if found is None:
            raise KeyError(path)
        return found

    def __setitem__(self, path: str, record: EntryRecord) -> None:
        self._unpack()
        super().__setitem__(path, record)

    def __iter__(self) -> Iterator[str]:
        self._unpack()
        return super().__iter__()

    def __len__(self) -> int:
        self._unpack()
        return super().__len__()

    def __eq__(self, other: object) -> bool:
        self._unpack()
        return super().__eq__(other)

    __hash__ = None

    def __repr__(self) -> str:
        self._unpack()
        return super().__repr__()

    def keys(self) -> Any:
        self._unpack()
        return super().keys()

    def values(self) -> Any:
        self._unpack()
        return super().values()

    def items(self) -> Any:
        self._unpack()
        return super().items()

    def copy(self) -> dict[str, EntryRecord]:
        self._unpack()
        return dict(super().items())

    def __reduce__(self) -> Any:  # pickled (to a worker process) as the plain dict
        self._unpack()
        return (dict, (dict(super().items()),))


_SHARED_RECORDS = {code: EntryRecord(kind) for code, kind in _CODE_KIND.items()}  # type: ignore[arg-type]
_UPPER = tuple(code.upper() for code in _CODE_KIND)


def decode_record(part: bytes) -> LayerRecord:
    """The record part of a stored layer."""
    try:
        body = zlib.decompress(part)
        n_head, n_paths, n_kinds = _SIZES.unpack_from(body)
        at = _SIZES.size
        data = json.loads(body[at : at + n_head])
        at += n_head
        paths = body[at : at + n_paths].decode(*_TEXT)
        at += n_paths
        kinds = body[at : at + n_kinds].decode("ascii")
        digests = bytes(body[at + n_kinds :])
        if (paths.count("\0") + 1 if n_paths else 0) != len(kinds):
            raise CodecError("stored layer record: paths and kinds disagree")
        if not set(kinds) <= _CODES:
            raise CodecError("stored layer record: unknown entry kind")
        if len(digests) != 32 * sum(kinds.count(code.upper()) for code in _CODE_KIND):
            raise CodecError("stored layer record: digests missing or left over")
        entries = _PackedEntries(paths, kinds, digests)
        return LayerRecord(
            entries=entries,
            whiteouts={_str(p) for p in data["whiteouts"]},
            opaques={_str(p) for p in data["opaques"]},
            odd_whiteouts=[_str(p) for p in data["odd_whiteouts"]],
            too_long=_int(data["too_long"]),
        )
    except CodecError:
        raise
    except (zlib.error, struct.error, KeyError, TypeError, ValueError, RecursionError) as exc:
        raise CodecError(f"stored layer record unreadable: {type(exc).__name__}") from None
