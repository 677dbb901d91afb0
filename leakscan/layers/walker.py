"""The streaming tar walk of one layer.

The walker reads a layer once, front to back, never seeking and never extracting. It hands
each regular file to the caller as a stream and writes down what the layer does to the
filesystem (a :class:`LayerRecord`): the entries it adds and the whiteouts and opaque
markers it carries. It records whiteouts but does not interpret them; that happens in
exactly one place, :mod:`leakscan.layers.status`.

The tar headers are parsed here rather than by :mod:`tarfile`, whose stream mode costs
several times more per entry, on what is the hot path of every scan. The layer is read in
large pieces; headers and member data are slices of the current piece.
"""

from __future__ import annotations

import posixpath
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Literal, cast

from leakscan.errors import LayerError
from leakscan.layers.compression import HashingReader

EntryKind = Literal["file", "dir", "symlink", "hardlink", "other"]

# the layer is read in pieces of this size: large enough that the Python work per read is
# noise, small enough that a piece stays in the CPU cache through the copies and hashing the
# decompression chain does on it (1 MiB pieces made a walk through it 60% slower). A
# multiple of the tar block, so that headers, which are block-aligned, straddle two pieces
# only when the stream returns short reads. (A stream that fails inside a read, such as a
# truncated gzip, takes with it what that read had gathered: the files in up to one piece
# before the damage go unscanned; the layer is an error either way.)
READ_SIZE = 256 << 10
BLOCK = 512

# no container filesystem holds a longer path (Linux PATH_MAX): such entries are still
# scanned, but not recorded for status (a hostile layer of 64 KiB names would otherwise
# hold gigabytes of them)
PATH_MAX = 4096

# pax and GNU long-name headers are read whole: they hold names, not data, and a hostile
# one may declare gigabytes
META_MAX = 1 << 20

# what may follow a tar's end-of-archive marker (tar writers pad to a 10 KiB record); a
# decompression bomb hides its zeros there, so no more is read
MAX_TRAILING = 1 << 20

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"

_ZERO_BLOCK = bytes(BLOCK)
_HIGH_BYTES = bytes(range(0x80, 0x100))
_USTAR_MAGIC = b"ustar\x00"  # POSIX; GNU tar writes "ustar  \0" and has no prefix field
# regular files: '0', the old NUL, contiguous '7' and old GNU sparse 'S'
_KINDS: dict[bytes, EntryKind] = {
    b"0": "file",
    b"\x00": "file",
    b"7": "file",
    b"S": "file",
    b"1": "hardlink",
    b"2": "symlink",
    b"5": "dir",
}
# links, devices, directories, FIFOs: their size field says nothing about data (none follows)
_NO_DATA = frozenset((b"1", b"2", b"3", b"4", b"5", b"6"))
_GNU_META = frozenset((b"L", b"K"))
_PAX_META = frozenset((b"x", b"X", b"g"))  # 'X' is Solaris' name for 'x'
_META = _GNU_META | _PAX_META
_PAX_KEYS = frozenset((b"path", b"linkpath", b"size", b"GNU.sparse.name"))
_GLOBAL_KEYS = frozenset((b"path", b"linkpath", b"size"))


@dataclass(frozen=True, slots=True)
class EntryRecord:
    """One path a layer adds, with the raw sha256 of its bytes for files and hard links.

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
    # paths that appear more than once in this layer: the last one wins on extraction
    repeated: set[str] = field(default_factory=set)
    # whiteout names that name nothing (a bare ".wh."), kept for the report
    odd_whiteouts: list[str] = field(default_factory=list)
    # entries whose path is longer than PATH_MAX: scanned, not recorded
    too_long: int = 0


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
        """Like :meth:`take`, without copying (for bytes only hashed, never kept)."""
        if self.pos >= len(self.buf) and not self._next_piece():
            return memoryview(b"")
        pos = self.pos
        end = min(pos + n, len(self.buf))
        self.pos = end
        return memoryview(self.buf)[pos:end]

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

    def __init__(self, tape: _Tape, size: int, path: str) -> None:
        # HashingReader's own reading (through ``_raw``) is overridden whole
        super().__init__(cast(BinaryIO, None))
        self._tape = tape
        self._path = path
        self.left = size

    def _truncated(self) -> LayerError:
        # ``left`` stays: every later read, and the walk itself, fail the same way
        return LayerError(f"tar stream is truncated in {self._path}")

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (all that is left when negative); fewer only at the end."""
        left = self.left
        want = left if size is None or size < 0 else min(size, left)
        if want <= 0:
            return b""
        data = self._tape.take(want)
        if len(data) < want:
            # only where the read crosses from one piece of the layer to the next
            parts = [data]
            have = len(data)
            while have < want:
                more = self._tape.take(want - have)
                if not more:
                    raise self._truncated()
                parts.append(more)
                have += len(more)
            data = b"".join(parts)
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


@dataclass(frozen=True)
class FileEntry:
    """A regular file met in the walk; ``stream`` is valid until the next entry."""

    path: str
    size: int
    reader: HashingReader

    @property
    def stream(self) -> BinaryIO:
        """The file's bytes."""
        return self.reader  # type: ignore[return-value]

    def digest(self) -> bytes:
        """Raw sha256 of the whole file (reads whatever the caller left unread)."""
        self.reader.drain()
        return self.reader.hasher.digest()


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


# --- header fields ---------------------------------------------------------------------------


def _number(field: bytes) -> int:
    """A numeric header field: octal digits ended or padded by NULs and spaces, or GNU
    base-256 (a first byte of 0x80, or 0xff for a negative number)."""
    lead = field[0]
    if lead == 0x80:
        return int.from_bytes(field[1:], "big")
    if lead == 0xFF:
        return int.from_bytes(field, "big", signed=True)
    try:
        # int() would also take a sign or underscores: harmless (a negative size is refused)
        return int(field.partition(b"\x00")[0].strip() or b"0", 8)
    except ValueError:
        raise ValueError(f"bad number field {field!r}") from None


def _check_sum(block: bytes) -> None:
    """Raise ValueError unless the header's checksum field matches its bytes, summed as
    unsigned or as signed bytes (tar writers have done both), the field counting as spaces."""
    cut = block[148:156]
    stored = _number(cut)
    # the low half of an Adler-32 is 1 + the byte sum modulo 65521: exact for 256 bytes
    # (at most 65280), and far faster than sum() over the block
    total = (zlib.adler32(block[:256]) & 0xFFFF) + (zlib.adler32(block[256:]) & 0xFFFF) - 2
    unsigned = total - sum(cut) + 8 * 0x20
    if stored == unsigned:
        return
    high = len(block) - len(block.translate(None, _HIGH_BYTES))
    high -= len(cut) - len(cut.translate(None, _HIGH_BYTES))
    if stored != unsigned - 256 * high:
        raise ValueError("bad header checksum")


def _header(block: bytes) -> tuple[bytes, int, bytes, bytes]:
    """Typeflag, size, name and link name of a (non-zero) header block; ValueError if it
    is not one."""
    _check_sum(block)
    kind = block[156:157]
    size = _number(block[124:136])
    if size < 0:
        raise ValueError(f"negative size {size}")
    name = block[:100].partition(b"\x00")[0]
    link = block[157:257].partition(b"\x00")[0]
    if block[257:263] == _USTAR_MAGIC and kind not in _GNU_META and kind != b"S":
        prefix = block[345:500].partition(b"\x00")[0]
        if prefix:
            name = prefix + b"/" + name
    return kind, size, name, link


def _pax_records(payload: bytes) -> dict[bytes, bytes]:
    """The keys we use from a pax header's ``"%d key=value\\n"`` records; ValueError when a
    record is malformed."""
    found: dict[bytes, bytes] = {}
    size = len(payload.rstrip(b"\x00"))  # records end in "\n": NULs after them are padding
    pos = 0
    while pos < size:
        space = payload.find(b" ", pos, pos + 24)
        length = payload[pos:space]
        if space < 0 or not length.isdigit():
            raise ValueError("bad pax record length")
        end = pos + int(length)
        if end > size or end < space + 3 or payload[end - 1] != 0x0A:
            raise ValueError("bad pax record length")
        eq = payload.find(b"=", space + 1, end - 1)
        if eq <= space + 1:
            raise ValueError("pax record without key=value")
        key = payload[space + 1 : eq]
        if key in _PAX_KEYS:
            found[key] = payload[eq + 1 : end - 1]
        pos = end
    return found


# --- the walk --------------------------------------------------------------------------------


def _truncated(prep: str, path: str) -> LayerError:
    return LayerError(
        f"tar stream is truncated {prep} {path}" if path else "tar stream is truncated"
    )


def _corrupt(path: str, why: object) -> LayerError:
    return LayerError(
        f"tar stream is corrupt after {path}: {why}" if path else f"tar stream is corrupt: {why}"
    )


class _Headers:
    """The entries of a tar, header by header: pax and GNU long-name headers are applied to
    the entry they describe, so that only real entries come out."""

    def __init__(self, tape: _Tape) -> None:
        self._tape = tape
        self._first = True
        self._ext: dict[bytes, bytes] = {}  # pax and GNU long-name values for the next entry
        self._glob: dict[bytes, bytes] = {}  # pax global values for all later entries

    def next(self, skip: int, path: str) -> tuple[bytes, int, bytes, bytes] | None:
        """Pass ``skip`` bytes (what is left of the last entry, ``path``), then return the
        next entry's typeflag, length of stored data, name and link name; None at the end of
        the archive."""
        tape = self._tape
        if skip and not tape.skip(skip):
            raise _truncated("in", path)
        while True:
            block = tape.exact(BLOCK)
            if len(block) < BLOCK:
                if self._first:
                    raise LayerError(
                        f"not a tar stream: {'truncated header' if block else 'empty file'}"
                    )
                if block or self._ext:
                    raise _truncated("after", path)
                # no end-of-archive marker, but the stream ends between entries: tarfile
                # took that for the end, and so do we
                return None
            if block == _ZERO_BLOCK:
                if self._ext:
                    raise _corrupt(path, "an extended header is followed by the end of the archive")
                return None
            try:
                kind, size, name, link = _header(block)
            except ValueError as exc:
                if self._first:
                    raise LayerError(f"not a tar stream: {exc}") from None
                raise _corrupt(path, exc) from None
            self._first = False
            if kind in _META:
                self._meta(kind, size, path)
                continue
            if self._ext or self._glob:
                name, size, link = self._apply(name, size, link, path)
            if kind == b"S" and block[482]:
                # old GNU sparse: map blocks follow the header while the last one flags more
                # (at 482 in the header, 504 in map blocks). The data stored after them is
                # the file's non-hole parts in order; those bytes are what is scanned (holes
                # are zeros, nothing to find there), so the map itself is not needed
                while True:
                    more = tape.exact(BLOCK)
                    if len(more) < BLOCK:
                        raise _truncated("after", path)
                    if not more[504]:
                        break
            return kind, 0 if kind in _NO_DATA else size, name, link

    def _meta(self, kind: bytes, size: int, path: str) -> None:
        if size > META_MAX:
            raise _corrupt(
                path, f"an extended header of {size} bytes (more than {META_MAX >> 20} MiB)"
            )
        payload = self._tape.exact(size)
        if len(payload) < size or not self._tape.skip(-size % BLOCK):
            raise _truncated("after", path)
        if kind == b"L":
            self._ext[b"path"] = payload.partition(b"\x00")[0]
            return
        if kind == b"K":
            self._ext[b"linkpath"] = payload.partition(b"\x00")[0]
            return
        try:
            found = _pax_records(payload)
        except ValueError as exc:
            raise _corrupt(path, exc) from None
        if kind != b"g":
            self._ext.update(found)
            return
        for key, value in found.items():
            if key not in _GLOBAL_KEYS:
                continue
            # an empty value undoes an earlier global one
            if value:
                self._glob[key] = value
            else:
                self._glob.pop(key, None)

    def _apply(self, name: bytes, size: int, link: bytes, path: str) -> tuple[bytes, int, bytes]:
        over = {**self._glob, **self._ext} if self._glob else self._ext
        self._ext = {}
        # empty values stand for the header's own field
        name = over.get(b"GNU.sparse.name") or over.get(b"path") or name
        link = over.get(b"linkpath") or link
        declared = over.get(b"size")
        if declared:
            # a pax size is decimal; int() also refuses more than 4300 digits
            try:
                if not declared.isdigit():
                    raise ValueError
                size = int(declared)
            except ValueError:
                raise _corrupt(path, f"bad pax size {declared[:40]!r}") from None
        return name, size, link


def walk(tar_stream: BinaryIO, record: LayerRecord) -> Iterator[FileEntry]:
    """Yield every regular file of an uncompressed layer tar, filling ``record``.

    The caller may read as much of each file's stream as it likes; the rest is read here
    so that the file's digest covers all of it. After the end of the tar the stream is read
    to its end (so that a digest of it covers every byte), allowing at most MAX_TRAILING
    bytes there. Raises :class:`LayerError` when the tar cannot be read to its end.
    """
    tape = _Tape(tar_stream)
    headers = _Headers(tape)
    path = ""  # the last entry met, to say where a problem is
    skip = 0  # what is left of it (data, padding) before the next header
    entries = record.entries
    while (header := headers.next(skip, path)) is not None:
        kind, size, name, link = header
        path = _raw_path(name)
        skip = size + (-size % BLOCK)
        entry_kind = _KINDS.get(kind, "other")
        if kind == b"\x00" and name.endswith(b"/"):
            entry_kind = "dir"  # old v7 tars mark a directory by its trailing slash only
        recorded = len(path) <= PATH_MAX
        if not recorded:
            record.too_long += 1
        else:
            head, _, base = path.rpartition("/")
            if base.startswith(WHITEOUT_PREFIX):
                _record_whiteout(record, head or "/", base)
                continue
            if path in entries:
                record.repeated.add(path)
            if entry_kind == "hardlink":
                # the target is earlier in this same layer; its bytes were scanned there
                target = entries.get(_raw_path(link))
                digest = target.digest if target is not None else None
                entries[path] = EntryRecord("hardlink", digest) if digest else _SHARED["hardlink"]
            elif entry_kind != "file":
                entries[path] = _SHARED[entry_kind]
        if entry_kind != "file":
            continue
        entry = FileEntry(path, size, _MemberReader(tape, size, path))
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
