"""Archives inside layer files, opened recursively and streamed, with budgets against bombs.

A layer file may be a zip (jar, war, ear, whl, egg, nupkg, ...), a tar, or a single-stream
gzip / bzip2 / xz / zstd file, and those may nest. :func:`expand` turns one layer file into
the leaf members to scan, named ``OUTER!/INNER`` (``/srv/b.tar.gz!/lib/x.jar!/creds``).

Everything is read once, front to back, from a stream that cannot seek (the file is itself
a member of a streaming layer tar): zip is walked through its local file headers, never its
central directory. Nothing is written to disk and no archive or member is held whole in
memory; every decoder is asked for a bounded amount of output at a time, so a decompression
bomb runs into a budget before it runs into the heap. Damage and limits never raise: they
become :class:`Skipped` items, and what was yielded before them stands.
"""

from __future__ import annotations

import bz2
import io
import lzma
import posixpath
import struct
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Literal, Protocol, cast

import zstandard

from leakscan.layers import inflate
from leakscan.layers.walker import normalize

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

ArchiveKind = Literal["zip", "tar", "gzip", "bzip2", "xz", "zstd"]

HEAD_SIZE = 512  # enough for every magic number, the tar one (offset 257) included
CHUNK = 64 << 10  # compressed input per read: small, so the ratio check sees input closely
STEP = 1 << 20  # most output one decoder call may produce
RATIO_FLOOR = 1 << 20  # small, well-compressed files (configs, logs) pass the ratio check
MAX_DEPTH = 32  # readers nest one Python call chain per level; keep far from the stack limit
TAR_META_MAX = 1 << 20  # pax / GNU long-name headers are read whole: names, not data

ZIP_LOCAL = b"PK\x03\x04"
ZIP_EMPTY = b"PK\x05\x06"
ZIP_DESCRIPTOR = b"PK\x07\x08"
# records that follow the last member: central directory, end records, signatures
ZIP_ENDS = (
    b"PK\x01\x02",
    b"PK\x05\x06",
    b"PK\x06\x06",
    b"PK\x06\x07",
    b"PK\x05\x05",
    b"PK\x06\x08",
)
ZIP64_TAG = 0x0001
U32 = 0xFFFFFFFF
GZIP_MAGIC = b"\x1f\x8b"
BZIP2_MAGIC = b"BZh"
BZIP2_BLOCK = (b"\x31\x41\x59\x26\x53\x59", b"\x17\x72\x45\x38\x50\x90")  # block, end
XZ_MAGIC = b"\xfd7zXZ\x00"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
TAR_BLOCK = 512
TAR_REGULAR = (b"0", b"\0", b"7", b"S")
TAR_NO_DATA = (b"1", b"2", b"3", b"4", b"5", b"6")  # links, devices, dirs, fifos
TAR_META = (b"x", b"X", b"g", b"L", b"K")

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
_ZIP_METHODS = {0: "stored", 8: "deflate", 12: "bzip2", 93: "zstd", 95: "xz"}


@dataclass(frozen=True)
class ArchiveLimits:
    """What opening the archives in one layer file may cost."""

    max_depth: int = 3  # archive levels opened below the layer file
    max_expanded_bytes: int = 2 << 30  # decompressed bytes from ONE layer file, all levels
    max_ratio: int = 200  # expanded / compressed per stream, judged past RATIO_FLOOR
    max_members: int = 100_000  # members of one archive
    max_member_size: int | None = None  # bigger members are skipped (None: no cap)
    max_decoder_memory: int = 16 << 20  # xz dictionary / zstd window one decoder may use

    def __post_init__(self) -> None:
        if not 0 <= self.max_depth <= MAX_DEPTH:
            raise ValueError(f"max_depth must be between 0 and {MAX_DEPTH}")
        if self.max_expanded_bytes < 0 or self.max_ratio < 1 or self.max_members < 0:
            raise ValueError("archive limits must not be negative (max_ratio at least 1)")
        if self.max_member_size is not None and self.max_member_size < 0:
            raise ValueError("max_member_size must not be negative")
        if self.max_decoder_memory < 1 << 20:
            raise ValueError("max_decoder_memory must be at least 1 MiB")


@dataclass(frozen=True)
class Member:
    """A leaf to scan; ``stream`` is valid until the next item is requested.

    Reads may return fewer bytes than asked (like a raw stream) and b"" only at the end.
    """

    path: str
    size: int | None
    stream: BinaryIO


@dataclass(frozen=True)
class Skipped:
    """A member or archive not (wholly) scanned, and why."""

    path: str
    reason: str


Item = Member | Skipped


def archive_kind(path: str, head: bytes) -> ArchiveKind | None:
    """Name the archive format whose magic bytes open ``head`` (at least the first 512
    bytes of the file, fewer if it is shorter), or None. Names only matter for old v7 tars,
    which have no magic and are recognised by their header checksum when named ``*.tar``."""
    if head.startswith((ZIP_LOCAL, ZIP_EMPTY)):
        return "zip"
    if head[257:262] == b"ustar":
        return "tar"
    if head.startswith(GZIP_MAGIC + b"\x08"):  # deflate is gzip's only method
        return "gzip"
    if head.startswith(BZIP2_MAGIC) and b"1" <= head[3:4] <= b"9" and head[4:10] in BZIP2_BLOCK:
        return "bzip2"  # level digit, then a block or end-of-stream magic
    if head.startswith(XZ_MAGIC):
        return "xz"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if path.lower().endswith(".tar") and len(head) >= TAR_BLOCK and _v7_header(head):
        return "tar"
    return None


def expand(
    path: str,
    stream: BinaryIO,
    limits: ArchiveLimits,
    depth: int = 0,
    *,
    size: int | None = None,
) -> Iterator[Member | Skipped]:
    """Yield the leaves of the file at ``path`` (its bytes in ``stream``, read once, front
    to back, never seeking), recursing into nested archives up to ``limits.max_depth``
    levels below it, and a :class:`Skipped` for whatever a limit or damage stops.

    A file that is not an archive is its own single leaf (``path`` unchanged, ``size``
    passed through), so every layer file can go through here. ``depth`` is the number of
    archive levels already opened above ``path``. Damaged or hostile input never raises;
    errors raised by ``stream.read`` itself (a truncated layer) do propagate.
    """
    budget = _Budget(limits)
    src = _Source(stream)
    head = src.read_exact(HEAD_SIZE)
    src.unread(head)
    kind = archive_kind(path, head)
    if kind is None:
        yield Member(path, size, _binary(_Limited(src, None)))
        return
    yield from _open(budget, path, kind, src, depth)


# --- byte plumbing ---------------------------------------------------------------------------


class _Readable(Protocol):
    def read(self, size: int, /) -> bytes | None: ...


class _Damage(Exception):
    """Bytes that cannot be what they claim to be; becomes a Skipped, never escapes."""


class _Budget:
    """What one top-level :func:`expand` call has spent; ``halted`` stops every level."""

    def __init__(self, limits: ArchiveLimits) -> None:
        self.limits = limits
        self.expanded = 0
        self.halted = False


class _Source:
    """A forward-only byte source with push-back (of bytes a decoder or a header parse
    read past the end of what it needed)."""

    def __init__(self, raw: _Readable, head: bytes = b"") -> None:
        self._raw = raw
        self._back = head
        self.pos = 0

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes (fewer is not the end); b"" at the end."""
        if self._back:
            data = self._back[:n]
            self._back = self._back[n:]
        else:
            data = self._raw.read(n) or b""
        self.pos += len(data)
        return data

    def read_exact(self, n: int) -> bytes:
        """``n`` bytes, or fewer only at the end."""
        data = self.read(n)
        if len(data) == n or not data:
            return data
        parts = [data]
        got = len(data)
        while got < n:
            more = self.read(n - got)
            if not more:
                break
            parts.append(more)
            got += len(more)
        return b"".join(parts)

    def skip(self, n: int) -> int:
        """Read past ``n`` bytes; returns how many there were."""
        left = n
        while left > 0:
            data = self.read(min(left, STEP))
            if not data:
                break
            left -= len(data)
        return n - left

    def unread(self, data: bytes) -> None:
        if data:
            self._back = data + self._back
            self.pos -= len(data)

    def cut(self) -> bool:
        """Whether the bytes under this source were stopped early by a limit or by damage
        (so an early end here is not this archive's fault)."""
        return isinstance(self._raw, _Reader) and self._raw.cut()


class _Reader(io.RawIOBase):
    """Base of the streams handed out: subclasses implement ``_read``."""

    problem: str | None = None  # why this stream stopped early, for its owner to report
    _under: _Source | _Reader | None = None

    def readable(self) -> bool:
        return True

    def _read(self, n: int) -> bytes:  # pragma: no cover - always overridden
        raise NotImplementedError

    def read(self, size: int | None = -1, /) -> bytes:
        if size is None or size < 0:
            return self.readall()
        return self._read(size) if size else b""

    def readall(self) -> bytes:
        parts = []
        while data := self._read(STEP):
            parts.append(data)
        return b"".join(parts)

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        view = memoryview(buffer).cast("B")
        data = self._read(len(view))
        view[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        """Read to the end, so whatever follows in the source comes next."""
        while self._read(STEP):
            pass

    def cut(self) -> bool:
        return self.problem is not None or (self._under is not None and self._under.cut())


def _binary(reader: _Reader) -> BinaryIO:
    # a RawIOBase is a binary stream in all but typeshed's nominal typing
    return cast(BinaryIO, reader)


class _Limited(_Reader):
    """The next ``size`` bytes of a source (all of it when ``size`` is None)."""

    def __init__(self, src: _Source, size: int | None) -> None:
        self._under = src
        self._src = src
        self.left = size
        self.short = False  # the source ended first

    def _read(self, n: int) -> bytes:
        if self.left is None:
            return self._src.read(min(n, STEP))
        if self.left <= 0:
            return b""
        data = self._src.read(min(n, self.left, STEP))
        if not data:
            self.short = True
        self.left -= len(data)
        return data

    def skip_rest(self) -> bool:
        """Step past the unread part without decoding it; False if the source ran out."""
        if self.left:
            self.left -= self._src.skip(self.left)
            self.short = self.short or self.left > 0
        return not self.short


class _Prefixed(_Reader):
    """Bytes already read (the head, for sniffing) put back in front of a reader."""

    def __init__(self, head: bytes, inner: _Reader) -> None:
        self._under = inner
        self._head = head
        self._inner = inner

    def _read(self, n: int) -> bytes:
        if self._head:
            data = self._head[:n]
            self._head = self._head[n:]
            return data
        return self._inner.read(n)


class _Capped(_Reader):
    """At most ``cap`` bytes of a member whose size was not known up front."""

    def __init__(self, inner: _Reader, cap: int) -> None:
        self._under = inner
        self._inner = inner
        self._cap = cap
        self._count = 0

    def _read(self, n: int) -> bytes:
        if self.problem:
            return b""
        room = self._cap - self._count
        if room <= 0:
            # one byte more tells a member of exactly ``cap`` bytes from a bigger one
            if self._inner.read(1):
                self.problem = f"larger than {_human(self._cap)}: only its start was scanned"
            return b""
        data = self._inner.read(min(n, room))
        self._count += len(data)
        return data


class _UntilDescriptor(_Reader):
    """A zip member's bytes up to its data descriptor.

    A member written with bit 3 and not self-terminating (stored, or encrypted) has no
    length anywhere before the central directory. Its end is the descriptor signature
    followed by the length of the data before it (and, for stored data, its CRC-32):
    a false match would need all of that to line up by chance.
    """

    LOOKAHEAD = 28  # signature, CRC-32, two 8-byte zip64 sizes, the next record's signature

    def __init__(self, src: _Source, plain: bool, zip64: bool) -> None:
        self._under = src
        self._src = src
        self._plain = plain  # the data is the member's content: its CRC can be checked
        self._zip64 = zip64
        self._buf = bytearray()
        self._eof = False
        self._crc = 0
        self.count = 0
        self.found = False
        self._done = False

    def _read(self, n: int) -> bytes:
        if self._done:
            return b""
        want = min(n, STEP)
        while len(self._buf) < want + self.LOOKAHEAD and not self._eof:
            more = self._src.read(CHUNK)
            if more:
                self._buf += more
            else:
                self._eof = True
        limit = min(want, len(self._buf))
        # CRC of the data before each candidate, extended candidate by candidate, so a
        # buffer stuffed with fake signatures costs one pass, not one pass per signature
        crc, crc_at = self._crc, 0
        start = 0
        while (p := self._buf.find(ZIP_DESCRIPTOR, start, limit + 4)) >= 0:
            if self._plain:
                crc = zlib.crc32(self._buf[crc_at:p], crc)
                crc_at = p
            end = self._descriptor_end(p, crc)
            if end:
                data = bytes(self._buf[:p])
                self._src.unread(bytes(self._buf[end:]))
                self._buf.clear()
                self._take(data)
                self.found = self._done = True
                return data
            start = p + 1
        if not self._buf:
            self._done = True  # the source ended without a descriptor; the owner says so
            return b""
        data = bytes(self._buf[:limit])
        del self._buf[:limit]
        self._take(data)
        return data

    def _descriptor_end(self, p: int, crc: int) -> int:
        size = self.count + p
        if p + 8 > len(self._buf):
            return 0  # the source ended inside what would be the descriptor
        (stored_crc,) = struct.unpack_from("<I", self._buf, p + 4)
        if self._plain and stored_crc != crc:
            return 0
        usize = size if self._plain else None
        return _descriptor_at(self._buf, p + 4, size, usize, self._zip64)

    def _take(self, data: bytes) -> None:
        if self._plain:
            self._crc = zlib.crc32(data, self._crc)
        self.count += len(data)


# --- decoders ---------------------------------------------------------------------------------


class _Codec(ABC):
    """An incremental decompressor pulling its input from a source."""

    name: str

    @property
    @abstractmethod
    def consumed(self) -> int:
        """Compressed bytes used so far (a slight over-estimate while input is buffered)."""

    @abstractmethod
    def step(self, max_out: int) -> bytes:
        """Up to ``max_out`` decompressed bytes; b"" at the clean end; _Damage otherwise."""


class _Zlib(_Codec):
    """Raw deflate (zip) or gzip (all members of a multi-member file).

    For raw deflate, input read past the end of the deflate stream is pushed back into the
    source: it is the zip's data descriptor or next header.
    """

    def __init__(self, src: _Source, gzip: bool) -> None:
        self.name = "gzip" if gzip else "deflate"
        self._src = src
        self._gzip = gzip
        self._dec = self._new()
        self._in = b""
        self._fed = 0
        self._ended = False

    def _new(self) -> inflate.Decompressor:
        return inflate.decompressobj(31 if self._gzip else -15)

    @property
    def consumed(self) -> int:
        return self._fed - len(self._in)

    def step(self, max_out: int) -> bytes:
        while not self._ended:
            if self._dec.eof:
                rest = self._dec.unused_data
                self._fed -= len(rest)
                if self._gzip:
                    following = self._next_member(rest)
                    if following is not None:
                        self._dec = self._new()
                        self._in = following
                        self._fed += len(following)
                        continue
                else:
                    self._src.unread(rest)
                self._ended = True
                break
            if not self._in:
                self._in = self._src.read(CHUNK)
                if not self._in:
                    raise _Damage("truncated")
                self._fed += len(self._in)
            try:
                out = self._dec.decompress(self._in, max_out)
            except inflate.ERRORS as exc:
                raise _Damage(f"corrupt ({exc})") from None
            # at the end of the stream CPython leaves the input past it in unused_data AND
            # in unconsumed_tail: only the former counts
            self._in = b"" if self._dec.eof else self._dec.unconsumed_tail
            if out:
                return out
        return b""

    def _next_member(self, rest: bytes) -> bytes | None:
        # gzip files may be concatenated and zero-padded (tape blocking); anything else
        # after a member is trailing garbage, ignored as gzip(1) does
        while True:
            rest = rest.lstrip(b"\0")
            if len(rest) >= 2:
                break
            more = self._src.read(CHUNK)
            if not more:
                break
            rest += more
        return rest if rest.startswith(GZIP_MAGIC) else None


class _Decompressor(Protocol):
    @property
    def eof(self) -> bool: ...
    @property
    def needs_input(self) -> bool: ...
    @property
    def unused_data(self) -> bytes: ...
    def decompress(self, data: bytes, max_length: int = -1) -> bytes: ...


class _Chunked(_Codec):
    """bzip2 or xz through the standard library's bounded-output decompressors,
    concatenated streams included."""

    def __init__(
        self,
        src: _Source,
        name: str,
        new: Callable[[], _Decompressor],
        magic: bytes,
        memlimit: int = 0,
    ) -> None:
        self.name = name
        self._memlimit = memlimit
        self._src = src
        self._newdec = new
        self._magic = magic
        self._dec = new()
        self._pending = b""
        self._fed = 0
        self._ended = False

    @property
    def consumed(self) -> int:
        return self._fed - len(self._pending)

    def step(self, max_out: int) -> bytes:
        idle = 0
        while not self._ended:
            if self._dec.eof:
                rest = self._dec.unused_data + self._pending
                self._pending = b""
                self._fed -= len(rest)
                following = self._next_stream(rest)
                if following is None:
                    self._ended = True
                    break
                self._dec = self._newdec()
                self._pending = following
                self._fed += len(following)
                continue
            if self._pending:
                data, self._pending = self._pending, b""
            elif self._dec.needs_input:
                data = self._src.read(CHUNK)
                if not data:
                    raise _Damage("truncated")
                self._fed += len(data)
            else:
                data = b""
            try:
                out = self._dec.decompress(data, max_out)
            except (OSError, EOFError, ValueError, lzma.LZMAError) as exc:
                if self._memlimit and "memory" in str(exc).lower():
                    limit = _human(self._memlimit)
                    raise _Damage(f"needs more than {limit} of memory to decode") from None
                raise _Damage(f"corrupt ({exc})") from None
            if out:
                return out
            idle = 0 if data else idle + 1
            if idle > 3:  # pragma: no cover - a decoder that neither eats nor emits
                raise _Damage("corrupt (the decoder is stuck)")
        return b""

    def _next_stream(self, rest: bytes) -> bytes | None:
        # xz streams may be followed by zero padding; bzip2 ones by nothing
        while True:
            if self._magic == XZ_MAGIC:
                rest = rest.lstrip(b"\0")
            if len(rest) >= len(self._magic):
                break
            more = self._src.read(CHUNK)
            if not more:
                break
            rest += more
        return rest if rest.startswith(self._magic) else None


class _Counting:
    """Counts what the zstd reader pulls from a source, for the ratio check."""

    def __init__(self, src: _Source) -> None:
        self._src = src
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._src.read(CHUNK if size < 0 else min(size, CHUNK))
        self.count += len(data)
        return data


class _Zstd(_Codec):
    """zstd, all frames; the window (hence the decoder's memory) is capped."""

    name = "zstd"

    def __init__(self, src: _Source, max_window: int) -> None:
        self._in = _Counting(src)
        dctx = zstandard.ZstdDecompressor(max_window_size=max_window)
        self._reader = dctx.stream_reader(
            cast(BinaryIO, self._in), read_size=CHUNK, read_across_frames=True, closefd=False
        )
        self._max_window = max_window

    @property
    def consumed(self) -> int:
        return self._in.count

    def step(self, max_out: int) -> bytes:
        try:
            data: bytes = self._reader.read(max_out)
        except zstandard.ZstdError as exc:
            if "memory" in str(exc).lower():
                limit = _human(self._max_window)
                raise _Damage(f"needs a window over {limit} to decode") from None
            raise _Damage(f"corrupt ({exc})") from None
        return data


def _codec(kind: str, src: _Source, limits: ArchiveLimits) -> _Codec:
    if kind in ("gzip", "deflate"):
        return _Zlib(src, gzip=kind == "gzip")
    if kind == "bzip2":
        return _Chunked(src, "bzip2", bz2.BZ2Decompressor, BZIP2_MAGIC)
    if kind == "xz":
        mem = limits.max_decoder_memory
        return _Chunked(
            src, "xz", lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=mem), XZ_MAGIC, mem
        )
    return _Zstd(src, limits.max_decoder_memory)


class _Decoded(_Reader):
    """A codec's output, charged to the budget and watched for its compression ratio.

    A limit or damage ends the stream early (never raises in the reader's hands) and
    leaves the reason in ``problem`` for the owner to report; a spent budget also halts
    every level of the expansion.
    """

    def __init__(self, budget: _Budget, codec: _Codec, src: _Source, label: str) -> None:
        self._under = src
        self._budget = budget
        self._codec = codec
        self._label = label
        self.produced = 0
        self._done = False

    @property
    def consumed(self) -> int:
        return self._codec.consumed

    def _stop(self, reason: str) -> None:
        self.problem = reason
        self._done = True

    def _read(self, n: int) -> bytes:
        if self._done:
            return b""
        budget = self._budget
        limits = budget.limits
        try:
            out = self._codec.step(min(n, STEP))
        except _Damage as exc:
            self._stop(f"unreadable {self._label}: {self._codec.name} data {exc}")
            return b""
        if not out:
            self._done = True
            return b""
        self.produced += len(out)
        room = limits.max_expanded_bytes - budget.expanded
        if len(out) > room:
            out = out[: max(room, 0)]
            budget.halted = True
            self._stop(f"expanded-bytes budget ({_human(limits.max_expanded_bytes)}) exhausted")
        elif self.produced > RATIO_FLOOR and self.produced > limits.max_ratio * max(
            self._codec.consumed, 1
        ):
            # this chunk is handed out (it is no bigger than STEP); the stream ends after it
            self._stop(f"compression ratio over {limits.max_ratio}:1 (a decompression bomb?)")
        budget.expanded += len(out)
        return out


# --- walking archives -------------------------------------------------------------------------

_Items = Generator[Member | Skipped, None, None]


def _open(budget: _Budget, path: str, kind: ArchiveKind, src: _Source, depth: int) -> _Items:
    """Open the archive at ``path``, ``depth`` levels below the layer file."""
    limit = budget.limits.max_depth
    if depth >= limit:
        yield Skipped(path, f"archive depth limit {limit} reached")
        return
    if kind == "zip":
        yield from _zip(budget, path, src, depth + 1)
    elif kind == "tar":
        yield from _tar(budget, path, src, depth + 1)
    else:
        yield from _single(budget, path, kind, src, depth + 1)


def _read_head(reader: _Reader) -> bytes:
    parts = []
    got = 0
    while got < HEAD_SIZE and (data := reader.read(HEAD_SIZE - got)):
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def _member(
    budget: _Budget,
    path: str,
    size: int | None,
    reader: _Reader,
    level: int,
    head: bytes | None = None,
) -> _Items:
    """One member's content: handed out as a leaf, or opened as the next archive level."""
    if head is None:
        head = _read_head(reader)
    if not head and reader.cut():
        return  # nothing to show; the owner of the stream reports why
    kind = archive_kind(path, head)
    if kind is not None:
        yield from _open(budget, path, kind, _Source(reader, head), level)
        return
    stream: _Reader = _Prefixed(head, reader)
    capped = None
    cap = budget.limits.max_member_size
    if cap is not None and size is None:
        stream = capped = _Capped(stream, cap)
    yield Member(path, size, _binary(stream))
    if capped is not None and capped.problem:
        yield Skipped(path, capped.problem)


def _join(outer: str, name: bytes) -> str:
    return outer + "!" + normalize(name.decode("utf-8", "surrogateescape"))


def _human(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} bytes"


# --- zip --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ZipHeader:
    flags: int
    method: int
    csize: int
    usize: int
    name: bytes
    zip64: bool


def _zip_header(src: _Source) -> _ZipHeader:
    """The local file header after its signature."""
    fixed = src.read_exact(26)
    if len(fixed) < 26:
        raise _Damage("truncated local file header")
    _, flags, method, _, _, _, csize, usize, name_len, extra_len = struct.unpack(
        "<HHHHHIIIHH", fixed
    )
    name = src.read_exact(name_len)
    extra = src.read_exact(extra_len)
    if len(name) < name_len or len(extra) < extra_len:
        raise _Damage("truncated local file header")
    zip64 = False
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4 : pos + 4 + length]
        pos += 4 + length
        if tag != ZIP64_TAG:
            continue
        zip64 = True
        # the zip64 field holds the sizes whose 32-bit fields are saturated, in this order
        at = 0
        if usize == U32 and len(body) >= at + 8:
            (usize,) = struct.unpack_from("<Q", body, at)
            at += 8
        if csize == U32 and len(body) >= at + 8:
            (csize,) = struct.unpack_from("<Q", body, at)
    return _ZipHeader(flags, method, csize, usize, name, zip64)


def _zip(budget: _Budget, path: str, src: _Source, level: int) -> _Items:
    """Walk a zip through its local file headers, front to back."""
    count = 0
    while not budget.halted:
        offset = src.pos
        sig = src.read_exact(4)
        if sig != ZIP_LOCAL:
            if sig in ZIP_ENDS or src.cut():
                return
            why = "truncated (no central directory)" if len(sig) < 4 else "no local file header"
            yield Skipped(path, f"unreadable zip: {why} at offset {offset}")
            return
        count += 1
        if count > budget.limits.max_members:
            yield Skipped(path, f"more than {budget.limits.max_members} members")
            return
        try:
            header = _zip_header(src)
        except _Damage as exc:
            if not src.cut():
                yield Skipped(path, f"unreadable zip: {exc} at offset {offset}")
            return
        if not (yield from _zip_entry(budget, path, src, header, level)):
            return


def _zip_entry(
    budget: _Budget, path: str, src: _Source, h: _ZipHeader, level: int
) -> Generator[Member | Skipped, None, bool]:
    """One zip member, from after its header to the next header; False stops the zip."""
    limits = budget.limits
    cap = limits.max_member_size
    member_path = _join(path, h.name)
    encrypted = bool(h.flags & 0x41) or h.method == 99  # traditional, strong, AES
    descriptor = bool(h.flags & 0x08)
    # where the data ends: the deflate stream ends itself; otherwise the header's size,
    # or (bit 3 and no size) the data descriptor found by its signature
    data: _Reader
    decoder: _Decoded | None = None
    if descriptor and h.method == 8 and not encrypted:
        ends = "deflate"
        data = decoder = _Decoded(budget, _Zlib(src, gzip=False), src, "zip")
    elif descriptor and h.csize in (0, U32):
        ends = "signature"
        data = _UntilDescriptor(src, plain=h.method == 0 and not encrypted, zip64=h.zip64)
    else:
        ends = "size"
        data = _Limited(src, h.csize)

    reason = None
    if h.name.endswith(b"/"):
        reason = ""  # a directory: not a member, nothing to say
    elif encrypted:
        reason = "encrypted zip member"
    elif h.method not in _ZIP_METHODS:
        reason = f"unsupported zip compression method {h.method}"
    elif cap is not None and not descriptor and h.usize > cap:
        reason = f"larger than {_human(cap)}"
    if reason is None:
        content = data
        if h.method != 0 and ends != "deflate":
            packed = _Source(data)
            codec = _codec(_ZIP_METHODS[h.method], packed, limits)
            content = decoder = _Decoded(budget, codec, packed, "zip")
        size = None if descriptor else h.usize
        yield from _member(budget, member_path, size, content, level)
    elif reason:
        yield Skipped(member_path, reason)

    if not budget.halted:
        # step past what the caller left: by length when there is one, so compressed
        # bytes nobody reads are not decompressed; else decoding to the end of the deflate
        # stream (charged to the budget) or scanning for the descriptor
        if isinstance(data, _Limited):
            data.skip_rest()
        else:
            data.drain()
    if decoder is not None and decoder.problem:
        yield Skipped(member_path, decoder.problem)
        if ends == "deflate":
            # only decoding finds the end of this member, so the next header is out of reach
            if not budget.halted and not decoder.problem.startswith("unreadable"):
                yield Skipped(path, f"rest of the zip not read: {member_path} was not decoded")
            return False
    if budget.halted:
        return False
    if isinstance(data, _Limited) and data.short:
        if not src.cut():
            yield Skipped(path, f"unreadable zip: truncated in {member_path}")
        return False
    if isinstance(data, _UntilDescriptor) and not data.found:
        if not src.cut():
            yield Skipped(path, f"unreadable zip: no data descriptor after {member_path}")
        return False
    if ends == "deflate":
        assert decoder is not None
        if not _skip_descriptor(src, decoder.consumed, decoder.produced, h.zip64, True):
            if not src.cut():
                yield Skipped(path, f"unreadable zip: bad data descriptor after {member_path}")
            return False
    elif ends == "size" and descriptor:
        # bit 3 with sizes in the header anyway: a descriptor may still follow the data
        _skip_descriptor(src, h.csize, h.usize, h.zip64, False)
    return True


def _descriptor_at(
    buf: bytes | bytearray, at: int, csize: int, usize: int | None, zip64: bool
) -> int:
    """Where a data descriptor's CRC-32 field starts at ``at`` and its sizes are ``csize``
    and ``usize`` (None: not known), return the offset after it, else 0.

    Sizes are 8 bytes in zip64 descriptors and 4 otherwise; the header's zip64 field says
    which to expect, but writers differ, so the other is tried too. Small values make the
    two ambiguous, so the next record must start with "PK" when it is in view.
    """
    for wide in (zip64, not zip64):
        end = at + (20 if wide else 12)
        if end > len(buf):
            continue
        got = struct.unpack_from("<QQ" if wide else "<II", buf, at + 4)
        mask = (1 << 64) - 1 if wide else U32
        if got[0] != csize & mask or (usize is not None and got[1] != usize & mask):
            continue
        if len(buf) >= end + 2 and buf[end : end + 2] != b"PK":
            continue
        return end
    return 0


def _skip_descriptor(src: _Source, csize: int, usize: int, zip64: bool, strict: bool) -> bool:
    """Step past a data descriptor recording ``csize`` / ``usize`` (its signature is
    optional); False, reading nothing, if there is none."""
    buf = src.read_exact(28)
    starts = (4, 0) if buf.startswith(ZIP_DESCRIPTOR) else (0,)
    for at in starts:
        if end := _descriptor_at(buf, at, csize, usize, zip64):
            src.unread(buf[end:])
            return True
    src.unread(buf)
    return not strict


# --- tar --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _TarHeader:
    name: bytes
    size: int
    type: bytes
    sparse_extended: bool


def _cstr(field: bytes) -> bytes:
    return field.split(b"\0", 1)[0]


def _tar_number(field: bytes) -> int:
    if field and field[0] & 0x80:  # GNU base-256, for sizes over 8 GiB
        if field[0] == 0xFF:
            raise _Damage("negative number in header")
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = _cstr(field).strip(b" ")
    if not text:
        return 0
    if text.strip(b"01234567"):
        raise _Damage("bad number in header")
    return int(text, 8)


def _tar_checksum_ok(block: bytes) -> bool:
    try:
        stored = _tar_number(block[148:156])
    except _Damage:
        return False
    rest = block[:148] + block[156:]
    if stored == sum(rest) + 256:  # the checksum field itself counts as spaces
        return True
    signed: tuple[int, ...] = struct.unpack(f"{len(rest)}b", rest)
    return stored == sum(signed) + 256  # old signed variant


def _v7_header(head: bytes) -> bool:
    block = head[:TAR_BLOCK]
    if block[0] == 0 or block[156:157] not in TAR_REGULAR + TAR_NO_DATA:
        return False
    try:
        _tar_number(block[124:136])
    except _Damage:
        return False
    return _tar_checksum_ok(block)


def _tar_header(block: bytes) -> _TarHeader:
    if not _tar_checksum_ok(block):
        raise _Damage("bad header checksum")
    name = _cstr(block[:100])
    if block[257:263] == b"ustar\0":  # POSIX: the name may be split; GNU uses that field else
        prefix = _cstr(block[345:500])
        if prefix:
            name = prefix + b"/" + name
    kind = block[156:157]
    return _TarHeader(name, _tar_number(block[124:136]), kind, kind == b"S" and block[482] != 0)


def _pax_records(data: bytes) -> dict[str, bytes]:
    """``LEN KEY=VALUE\\n`` records of a pax extended header."""
    out: dict[str, bytes] = {}
    pos = 0
    while pos < len(data) and data[pos] != 0:
        space = data.find(b" ", pos, pos + 21)
        digits = data[pos:space] if space > pos else b""
        if not digits.isdigit():
            raise _Damage("bad pax record")
        end = pos + int(digits)
        if end > len(data) or end <= space or data[end - 1] != 0x0A:
            raise _Damage("bad pax record")
        key, sep, value = data[space + 1 : end - 1].partition(b"=")
        if not sep:
            raise _Damage("bad pax record")
        out[key.decode("utf-8", "replace")] = value
        pos = end
    return out


def _padded(size: int) -> int:
    return -(-size // TAR_BLOCK) * TAR_BLOCK


def _tar(budget: _Budget, path: str, src: _Source, level: int) -> _Items:
    """Walk a tar, handing out its regular files. Links, directories and devices are not
    members, and links are never followed."""
    limits = budget.limits
    count = 0
    pax: dict[str, bytes] = {}
    long_name: bytes | None = None
    while not budget.halted:
        offset = src.pos
        block = src.read_exact(TAR_BLOCK)
        if len(block) < TAR_BLOCK:
            if block and not src.cut():
                yield Skipped(path, f"unreadable tar: truncated header at offset {offset}")
            return  # (no end-of-archive marker at all is accepted, as tar(1) does)
        if not block.strip(b"\0"):
            return  # end-of-archive marker
        try:
            head = _tar_header(block)
            size = head.size
            if head.type not in TAR_META and "size" in pax:
                if not pax["size"].isdigit():
                    raise _Damage("bad pax size")
                size = int(pax["size"])
        except _Damage as exc:
            yield Skipped(path, f"unreadable tar: {exc} at offset {offset}")
            return
        span = _padded(size)
        if head.type in TAR_META:
            if size > TAR_META_MAX:
                yield Skipped(path, f"unreadable tar: {size}-byte extended header")
                return
            data = src.read_exact(span)
            if len(data) < span:
                if not src.cut():
                    yield Skipped(path, "unreadable tar: truncated extended header")
                return
            data = data[:size]
            try:
                if head.type in (b"x", b"X"):
                    # replaced, not merged: a chain of headers with no entry stays bounded
                    pax = _pax_records(data)
            except _Damage as exc:
                yield Skipped(path, f"unreadable tar: {exc} at offset {offset}")
                return
            if head.type == b"L":
                long_name = _cstr(data)
            continue
        # a real entry: the extended headers before it were for it alone
        name = pax.get("GNU.sparse.name") or pax.get("path") or long_name or head.name
        pax, long_name = {}, None
        count += 1
        if count > limits.max_members:
            yield Skipped(path, f"more than {limits.max_members} members")
            return
        if head.sparse_extended:
            # old GNU sparse files list more data extents in extra header blocks
            while (ext := src.read_exact(TAR_BLOCK)) and len(ext) == TAR_BLOCK and ext[504]:
                pass
        if head.type in TAR_NO_DATA:
            continue  # like tar(1): these carry no data whatever their size field says
        member_path = _join(path, name)
        ok = True
        if head.type not in TAR_REGULAR or member_path.endswith("!/"):
            ok = src.skip(span) == span
        elif limits.max_member_size is not None and size > limits.max_member_size:
            yield Skipped(member_path, f"larger than {_human(limits.max_member_size)}")
            ok = src.skip(span) == span
        else:
            data_reader = _Limited(src, size)
            yield from _member(budget, member_path, size, data_reader, level)
            if budget.halted:
                return
            ok = data_reader.skip_rest() and src.skip(span - size) == span - size
        if not ok:
            if not src.cut():
                yield Skipped(path, f"unreadable tar: truncated in {member_path}")
            return


# --- single-stream files ----------------------------------------------------------------------


def _inner_name(path: str) -> str:
    """What a compressed file decompresses to: ``app.log.gz`` -> ``app.log``."""
    base = posixpath.basename(path)
    stem, ext = posixpath.splitext(base)
    replacement = _SUFFIXES.get(ext.lower())
    if replacement is None or not stem:
        return base
    return stem + replacement


def _single(budget: _Budget, path: str, kind: ArchiveKind, src: _Source, level: int) -> _Items:
    """A gzip / bzip2 / xz / zstd file: one leaf, or an archive one level down; a tar
    inside is the same level (``x.tar.gz!/member``, as tar.gz is one format to people)."""
    decoder = _Decoded(budget, _codec(kind, src, budget.limits), src, kind)
    name = _inner_name(path)
    head = _read_head(decoder)
    if head and archive_kind(name, head) == "tar":
        yield from _tar(budget, path, _Source(decoder, head), level)
    else:
        yield from _member(budget, f"{path}!/{name}", None, decoder, level, head)
    if decoder.problem:
        yield Skipped(path, decoder.problem)
