"""Turning one layer file into the leaves to scan: archives opened recursively, to a depth
limit, each member handed out or opened as the next level."""

from __future__ import annotations

import posixpath
from typing import BinaryIO

from leakscan.layers.archives.decoders import Decoded, codec
from leakscan.layers.archives.limits import (
    HEAD_SIZE,
    ArchiveKind,
    ArchiveLimits,
    Budget,
    Entry,
    Items,
    Member,
    Skipped,
    Walk,
    archive_kind,
)
from leakscan.layers.archives.sources import Capped, Limited, Reader, Source, binary
from leakscan.layers.archives.tars import walk_tar
from leakscan.layers.archives.zips import walk_zip
from leakscan.layers.compression import Prefixed

# single-stream suffixes and what the decompressed file is called
_SUFFIXES = {
    ".gz": "",
    ".gzip": "",
    ".bz2": "",
    ".bz": "",
    ".xz": "",
    ".zst": "",
    ".zstd": "",
    ".tgz": ".tar",
    ".taz": ".tar",
    ".tbz": ".tar",
    ".tbz2": ".tar",
    ".txz": ".tar",
    ".tzst": ".tar",
}


def expand(
    path: str,
    stream: BinaryIO,
    limits: ArchiveLimits,
    depth: int = 0,
    *,
    size: int | None = None,
) -> Items:
    """Yield the leaves of the file at ``path`` (its bytes in ``stream``, read once, front
    to back, never seeking), recursing into nested archives up to ``limits.max_depth``
    levels below it, and a :class:`Skipped` for whatever a limit or damage stops.

    A file that is not an archive is its own single leaf (``path`` unchanged, ``size``
    passed through), so every layer file can go through here. ``depth`` is the number of
    archive levels already opened above ``path``. Damaged or hostile input never raises;
    errors raised by ``stream.read`` itself (a truncated layer) do propagate.
    """
    budget = Budget(limits)
    src = Source(stream)
    head = src.read_exact(HEAD_SIZE)
    src.unread(head)
    kind = archive_kind(path, head)
    if kind is None:
        yield Member(path, size, binary(Limited(src, None)))
        return
    yield from _open(budget, path, kind, src, depth)


def _open(budget: Budget, path: str, kind: ArchiveKind, src: Source, depth: int) -> Items:
    """Open the archive at ``path``, ``depth`` levels below the layer file."""
    limit = budget.limits.max_depth
    if depth >= limit:
        yield Skipped(path, f"archive depth limit {limit} reached")
        return
    if kind == "zip":
        yield from _members(budget, walk_zip(budget, path, src), depth + 1)
    elif kind == "tar":
        yield from _members(budget, walk_tar(budget, path, src), depth + 1)
    else:
        yield from _single(budget, path, kind, src, depth + 1)


def _members(budget: Budget, walk: Walk, level: int) -> Items:
    """What an archive walk reaches, each member handed out or opened in turn (the walk
    goes on past a member only once that is done)."""
    for item in walk:
        if isinstance(item, Entry):
            yield from _member(budget, item.path, item.size, item.reader, level)
        else:
            yield item


def _inner_name(path: str) -> str:
    """What a compressed file decompresses to: ``app.log.gz`` -> ``app.log``."""
    base = posixpath.basename(path)
    stem, ext = posixpath.splitext(base)
    replacement = _SUFFIXES.get(ext.lower())
    if replacement is None or not stem:
        return base
    return stem + replacement


def _single(budget: Budget, path: str, kind: ArchiveKind, src: Source, level: int) -> Items:
    """A gzip / bzip2 / xz / zstd file: one leaf, or an archive one level down; a tar
    inside is the same level (``x.tar.gz!/member``, as tar.gz is one format to people)."""
    decoder = Decoded(budget, codec(kind, src, budget.limits), src, kind)
    name = _inner_name(path)
    head = _read_head(decoder)
    if head and archive_kind(name, head) == "tar":
        yield from _members(budget, walk_tar(budget, path, Source(decoder, head)), level)
    else:
        yield from _member(budget, f"{path}!/{name}", None, decoder, level, head)
    if decoder.problem:
        yield Skipped(path, decoder.problem)


def _read_head(reader: Reader) -> bytes:
    parts = []
    got = 0
    while got < HEAD_SIZE and (data := reader.read(HEAD_SIZE - got)):
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def _member(
    budget: Budget,
    path: str,
    size: int | None,
    reader: Reader,
    level: int,
    head: bytes | None = None,
) -> Items:
    """One member's content: handed out as a leaf, or opened as the next archive level."""
    if head is None:
        head = _read_head(reader)
    if not head and reader.cut():
        return  # nothing to show; the owner of the stream reports why
    kind = archive_kind(path, head)
    if kind is not None:
        yield from _open(budget, path, kind, Source(reader, head), level)
        return
    stream = Prefixed(head, reader)
    cap = budget.limits.max_member_size
    if cap is None or size is not None:
        yield Member(path, size, binary(stream))
        return
    capped = Capped(stream, cap)
    yield Member(path, size, binary(capped))
    if capped.problem:
        yield Skipped(path, capped.problem)
