"""The streaming tar walk of one layer.

The walker reads a layer once, front to back, never seeking and never extracting. It hands
each regular file to the caller as a stream and writes down what the layer does to the
filesystem (a :class:`LayerRecord`): the entries it adds and the whiteouts and opaque
markers it carries. It records whiteouts but does not interpret them; that happens in
exactly one place, :mod:`leakscan.layers.status`.

Tar headers are parsed by :mod:`leakscan.layers.tarparse`, the parser tars inside layer
files go through too. The layer is read in large pieces; headers and member data are slices
of the current piece.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol, cast

import blake3

from leakscan.errors import LayerError
from leakscan.layers import tarparse
from leakscan.layers.compression import HashingReader
from leakscan.layers.tarparse import BLOCK, EntryKind

# the layer is read in pieces of this size: large enough that the Python work per read is
# noise, small enough that a piece stays in the CPU cache through the copies and hashing the
# decompression chain does on it (1 MiB pieces made a walk through it 60% slower). A
# multiple of the tar block, so that headers, which are block-aligned, straddle two pieces
# only when the stream returns short reads. (A stream that fails inside a read, such as a
# truncated gzip, takes with it what that read had gathered: the files in up to one piece
# before the damage go unscanned; the layer is an error either way.)
READ_SIZE = 256 << 10

# no container filesystem holds a longer path (Linux PATH_MAX): such entries are still
# scanned, but not recorded for status (a hostile layer of 64 KiB names would otherwise
# hold gigabytes of them)
PATH_MAX = 4096

# what may follow a tar's end-of-archive marker (tar writers pad to a 10 KiB record); a
# decompression bomb hides its zeros there, so no more is read
MAX_TRAILING = 1 << 20

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"


@dataclass(frozen=True, slots=True)
class EntryRecord:
    """One path a layer adds, with the raw digest of its bytes (:func:`file_digest`) for
    files and hard links.

    Records live until the whole image is walked, one per path of every layer: they are kept
    small (slots, 32-byte digests, one shared record for each kind without content).
    """

    kind: EntryKind
    digest: bytes | None = None


_SHARED = {kind: EntryRecord(kind) for kind in ("dir", "symlink", "other", "hardlink")}


@dataclass
class LayerRecord:
    """What one layer does to the filesystem, exactly as its tar says it."""

    entries: dict[str, EntryRecord] = field(default_factory=dict)
    whiteouts: set[str] = field(default_factory=set)
    opaques: set[str] = field(default_factory=set)
    # whiteout names that name nothing (a bare ".wh."): ignored, so said in the report
    odd_whiteouts: list[str] = field(default_factory=list)
    # entries whose path is longer than PATH_MAX: scanned, not recorded, so said in the report
    too_long: int = 0

    def oddities(self) -> list[tuple[str, str | None]]:
        """What the report should say of entries scanned but whose status rests on an
        assumption: per kind, a reason with a count, and the first path where one helps."""
        out: list[tuple[str, str | None]] = []
        if self.too_long:
            why = f"longer than {PATH_MAX} bytes: scanned, status taken as present"
            out.append((f"{_count(self.too_long, 'path')} {why}", None))
        if self.odd_whiteouts:
            why = "naming no file: ignored, nothing beside them taken as removed"
            out.append(
                (f"{_count(len(self.odd_whiteouts), 'bare whiteout')} {why}", self.odd_whiteouts[0])
            )
        return out


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


class _Tape:
    """The layer stream, read front to back in pieces of READ_SIZE bytes.

    ``buf`` is the current piece and ``pos`` how much of it is used; at most one piece is
    held (two while a header or a pax payload straddles pieces).
    """

    __slots__ = ("_raw", "buf", "pos", "ended")

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.buf = b""
        self.pos = 0
        self.ended = False

    def _next_piece(self) -> bool:
        """Replace the used-up piece with the next one; False at the end of the stream."""
        while not self.ended:
            data = self._raw.read(READ_SIZE)
            if data:
                self.buf = data
                self.pos = 0
                return True
            # a stream is not read again once it said it ended
            self.ended = True
        return False

    def exact(self, n: int) -> bytes:
        """The next ``n`` bytes; fewer only at the end of the stream."""
        pos = self.pos
        end = pos + n
        if end <= len(self.buf):
            self.pos = end
            return self.buf[pos:end]
        parts = [self.buf[pos:]]
        have = len(parts[0])
        self.buf = b""
        self.pos = 0
        while have < n and self._next_piece():
            take = min(n - have, len(self.buf))
            parts.append(self.buf[:take])
            self.pos = take
            have += take
        return b"".join(parts)

    def take(self, n: int) -> bytes:
        """Up to ``n`` (> 0) bytes, as one slice of the current piece; b"" at the end."""
        if self.pos >= len(self.buf) and not self._next_piece():
            return b""
        pos = self.pos
        end = min(pos + n, len(self.buf))
        self.pos = end
        # a slice of a whole piece is the piece itself, not a copy
        return self.buf[pos:end]

    def view(self, n: int) -> memoryview:
        """Like :meth:`take`, without copying (the view keeps its whole piece alive)."""
        if self.pos >= len(self.buf) and not self._next_piece():
            return memoryview(b"")
        pos = self.pos
        end = min(pos + n, len(self.buf))
        self.pos = end
        return memoryview(self.buf)[pos:end]

    def views(self, n: int) -> list[memoryview]:
        """The next ``n`` bytes as views of the pieces that hold them, none copied (each
        view keeps its whole piece alive); fewer bytes only at the end of the stream."""
        out: list[memoryview] = []
        while n > 0 and (view := self.view(n)):
            out.append(view)
            n -= len(view)
        return out

    def skip(self, n: int) -> bool:
        """Pass over ``n`` bytes; False if the stream ended first."""
        while True:
            room = len(self.buf) - self.pos
            if n <= room:
                self.pos += n
                return True
            n -= room
            self.pos = len(self.buf)
            if not self._next_piece():
                return False

    def rest(self, limit: int) -> int:
        """Read to the end of the stream, but stop once more than ``limit`` bytes are read:
        return how many bytes there were (``> limit``: more than that)."""
        total = len(self.buf) - self.pos
        self.pos = len(self.buf)
        while total <= limit and self._next_piece():
            total += len(self.buf)
            self.pos = len(self.buf)
        return total


class _MemberReader(HashingReader):
    """A tar member's bytes, hashed as they pass; valid until the walk moves on.

    A tar that ends inside the member is a LayerError here too, since the caller, not the
    walker, is the one reading.
    """

    def __init__(
        self,
        tape: _Tape,
        size: int,
        path: str,
        prefix: bytes = b"",
        hasher: Hasher | None = None,
    ) -> None:
        # HashingReader's own reading (through ``_raw``) is overridden whole, and its hash
        # too: a file's digest is :func:`file_digest`'s
        super().__init__(cast(BinaryIO, None))
        self._tape = tape
        self._path = path
        # ``size`` bytes are left on the tape; ``prefix`` (the file's first bytes, taken
        # from the tape and hashed into ``hasher`` already) is handed out before them
        self.left = size
        self._prefix = prefix
        self.hasher = hasher if hasher is not None else _FILE_HASH.copy()  # type: ignore[assignment]

    def _truncated(self) -> LayerError:
        # ``left`` stays: every later read, and the walk itself, fail the same way
        return LayerError(f"tar stream is truncated in {self._path}")

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (all that is left when negative); fewer only at the end."""
        want = -1 if size is None or size < 0 else size
        prefix = self._prefix
        if not prefix:
            return self._take(want)
        if 0 <= want <= len(prefix):
            self._prefix = prefix[want:]
            self.count += want
            return prefix[:want]
        self._prefix = b""
        self.count += len(prefix)
        rest = self._take(want - len(prefix) if want > 0 else -1)
        return prefix + rest if rest else prefix

    def _take(self, size: int) -> bytes:
        """Up to ``size`` bytes from the tape (all that is left when negative), hashed."""
        left = self.left
        want = left if size < 0 else min(size, left)
        if want <= 0:
            return b""
        data = self._tape.exact(want)
        if len(data) < want:
            raise self._truncated()
        self.left = left - want
        self.count += want
        if self.hashing:
            self.hasher.update(data)
        return data

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        """Read to the end of the member so the hash covers every byte."""
        while self.left > 0:
            view = self._tape.view(min(self.left, READ_SIZE))
            if not view:
                raise self._truncated()
            self.left -= len(view)
            self.count += len(view)
            if self.hashing:
                self.hasher.update(view)


class Hasher(Protocol):
    """What the walk needs of a hash object."""

    def update(self, data: bytes | memoryview, /) -> object: ...

    def digest(self) -> bytes: ...

    def copy(self) -> Hasher: ...


# A file's digest is BLAKE3, not the sha256 layers are named by: every byte of every layer
# is hashed once for the layer's digest (sha256, which must verify) and once file by file,
# and BLAKE3 takes a third of sha256's time here (5.6 GB/s against 1.9 GB/s with the CPU's
# sha256 instructions; a re-scan of known files in new layers spends most of its CPU on
# the two hashes). A file's digest is compared only with other files' digests (records,
# content keys), never with a digest from outside. Each file's hasher is a copy of this one.
_FILE_HASH: Hasher = blake3.blake3()


def file_digest(data: bytes | memoryview) -> bytes:
    """The digest the walk gives a file of these bytes (32 bytes)."""
    hasher = _FILE_HASH.copy()
    hasher.update(data)
    return hasher.digest()


class FileEntry:
    """A regular file met in the walk, valid until the next entry: its bytes as a
    ``stream``, or all at once by :meth:`parts`."""

    # one per file of every layer: the reader object (an io.RawIOBase, costly to make and
    # to drop) is made only for a caller that streams the file; a file read whole, as
    # most are, is read from the layer's piece without one
    __slots__ = ("path", "size", "_tape", "_reader", "_digest", "_head", "_hasher")

    def __init__(self, path: str, size: int, tape: _Tape) -> None:
        self.path = path
        self.size = size
        self._tape = tape
        self._reader: _MemberReader | None = None
        self._digest: bytes | None = None
        # the first bytes, once :meth:`head` took them, and the hash they began
        self._head = b""
        self._hasher: Hasher | None = None

    def head(self, n: int) -> bytes:
        """The file's first ``n`` bytes (all of them when it is shorter), before anything
        else has read it; its stream, :meth:`parts` and :meth:`digest` still start from
        its first byte (raises LayerError when the tar ends inside them)."""
        if self._digest is not None or self._reader is not None or self._hasher is not None:
            raise ValueError("the file was read already")
        take = min(n, self.size)
        data = self._tape.exact(take) if take else b""
        if len(data) < take:
            raise _truncated("in", self.path)
        hasher = _FILE_HASH.copy()
        hasher.update(data)
        self._head, self._hasher = data, hasher
        return data

    @property
    def reader(self) -> HashingReader:
        """The file's bytes, hashed as they are read (none left once :meth:`parts` or
        :meth:`digest` has read them)."""
        if self._reader is None:
            if self._digest is not None:
                self._reader = _MemberReader(self._tape, 0, self.path)
            else:
                left = self.size - len(self._head)
                self._reader = _MemberReader(
                    self._tape, left, self.path, self._head, self._hasher
                )
        return self._reader

    @property
    def stream(self) -> BinaryIO:
        """The file's bytes."""
        return self.reader  # type: ignore[return-value]

    def parts(self) -> list[bytes | memoryview]:
        """Every byte of the file at once, before anything else has read it, not copied:
        its head, then views of the layer's pieces that hold the rest. They stay valid
        after the walk moves on (each keeps its piece alive); hashed as they are taken.
        Raises LayerError when the tar ends inside them."""
        if self._digest is not None or self._reader is not None:
            raise ValueError("the file was read already")
        head = self._head
        size = self.size - len(head)
        views = self._tape.views(size) if size else []
        hasher = self._hasher or _FILE_HASH.copy()
        for view in views:
            hasher.update(view)
            size -= len(view)
        if size:
            raise _truncated("in", self.path)
        self._digest = hasher.digest()
        return [head, *views] if head else list(views)

    def digest(self) -> bytes:
        """Raw digest of the whole file, :func:`file_digest`'s (reads whatever the caller
        left unread)."""
        if self._digest is None and self._reader is not None:
            self._reader.drain()
            self._digest = self._reader.hasher.digest()
        if self._digest is None:
            # nobody read it (beyond its head): hashed where it lies in the layer's pieces
            hasher = self._hasher or _FILE_HASH.copy()
            left = self.size - len(self._head)
            while left > 0:
                view = self._tape.view(min(left, READ_SIZE))
                if not view:
                    raise LayerError(f"tar stream is truncated in {self.path}")
                hasher.update(view)
                left -= len(view)
            self._digest = hasher.digest()
        return self._digest


def display_name(name: str) -> str:
    """Make a tar name printable: bytes that are not UTF-8 become backslash escapes."""
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeError:
        return name.encode("utf-8", "backslashreplace").decode("utf-8")


def normalize(name: str) -> str:
    """Absolute, normalised path for a tar member name (``./a/../b/`` -> ``/b``).

    ``..`` cannot climb above the root, so a hostile name stays inside the image.
    """
    return _absolute(display_name(name))


def _absolute(name: str) -> str:
    path = posixpath.normpath("/" + name)
    # normpath keeps a leading "//" (POSIX allows it to be special); the image root is one
    return "/" + path.lstrip("/")


def _raw_path(name: bytes) -> str:
    """:func:`normalize` of a name as stored: decoding the bytes with backslash escapes is
    what ``display_name`` makes of tarfile's surrogateescape decoding, in one step."""
    return _absolute(name.decode("utf-8", "backslashreplace"))


# --- the walk --------------------------------------------------------------------------------


def _truncated(prep: str, path: str) -> LayerError:
    return LayerError(
        f"tar stream is truncated {prep} {path}" if path else "tar stream is truncated"
    )


def _corrupt(path: str, why: object) -> LayerError:
    return LayerError(
        f"tar stream is corrupt after {path}: {why}" if path else f"tar stream is corrupt: {why}"
    )


def _next_header(headers: tarparse.Headers, path: str) -> tarparse.Header | None:
    """The next entry after ``path`` (the last one met), its damage worded for a layer."""
    try:
        return headers.next()
    except tarparse.TarError as exc:
        if not headers.started:
            raise LayerError(f"not a tar stream: {exc}") from None
        if isinstance(exc, tarparse.Truncated):
            raise _truncated("after", path) from None
        raise _corrupt(path, exc) from None


def walk(tar_stream: BinaryIO, record: LayerRecord) -> Iterator[FileEntry]:
    """Yield every regular file of an uncompressed layer tar, filling ``record``.

    The caller may read as much of each file's stream as it likes; the rest is read here
    so that the file's digest covers all of it. After the end of the tar the stream is read
    to its end (so that a digest of it covers every byte), allowing at most MAX_TRAILING
    bytes there. Raises :class:`LayerError` when the tar cannot be read to its end.
    """
    tape = _Tape(tar_stream)
    headers = tarparse.Headers(tape)
    path = ""  # the last entry met, to say where a problem is
    skip = 0  # what is left of it (data, padding) before the next header
    entries = record.entries
    while True:
        if skip and not tape.skip(skip):
            raise _truncated("in", path)
        header = _next_header(headers, path)
        if header is None:
            break
        kind, size, name, link = header
        path = _raw_path(name)
        skip = size + (-size % BLOCK)
        entry_kind = tarparse.entry_kind(kind, name)
        recorded = len(path) <= PATH_MAX
        if not recorded:
            record.too_long += 1
        else:
            head, _, base = path.rpartition("/")
            if base.startswith(WHITEOUT_PREFIX):
                _record_whiteout(record, head or "/", base)
                continue
            if entry_kind == "hardlink":
                # the target is earlier in this same layer; its bytes were scanned there
                target = entries.get(_raw_path(link))
                digest = target.digest if target is not None else None
                entries[path] = EntryRecord("hardlink", digest) if digest else _SHARED["hardlink"]
            elif entry_kind != "file":
                entries[path] = _SHARED[entry_kind]
        if entry_kind != "file":
            continue
        entry = FileEntry(path, size, tape)
        yield entry
        digest = entry.digest()
        skip = -size % BLOCK
        if recorded:
            entries[path] = EntryRecord("file", digest)

    if tape.rest(MAX_TRAILING) > MAX_TRAILING:
        raise LayerError(
            f"more than {MAX_TRAILING >> 20} MiB of data after the end of its tar; not read"
        )


def _record_whiteout(record: LayerRecord, parent: str, base: str) -> None:
    if base == OPAQUE_MARKER:
        record.opaques.add(parent)
    elif base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
        # other ".wh..wh." names are aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): no effect
        return
    elif base == WHITEOUT_PREFIX:
        record.odd_whiteouts.append(posixpath.join(parent, base))
    else:
        record.whiteouts.add(posixpath.join(parent, base[len(WHITEOUT_PREFIX) :]))
