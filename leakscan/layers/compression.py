"""Open a layer blob as an uncompressed tar stream, recognising the compression from the
bytes themselves: media types lie (and docker-save tars carry none)."""

from __future__ import annotations

import hashlib
import io
from typing import BinaryIO, Literal, Protocol

import zstandard

from leakscan.errors import LayerError
from leakscan.layers import inflate
from leakscan.layers.inflate import GZIP_MAGIC, INPUT_SIZE
from leakscan.streams import PieceStream

Compression = Literal["none", "gzip", "zstd"]

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
READ_SIZE = 1 << 20
# a gzip read this large is decoded for itself and handed out whole; a smaller one is cut
# from a READ_SIZE piece decoded ahead
DIRECT_READ = 64 << 10


def sniff(head: bytes) -> Compression:
    """Name the compression whose magic bytes open ``head``."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "none"


class HashingReader(io.RawIOBase):
    """Passes bytes through while hashing them and counting them."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.hasher = hashlib.sha256()
        self.count = 0
        # hashing costs ~0.5 s a GB: a reader whose digest nobody will check can skip it
        self.hashing = True

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._raw.read(len(b))
        n = len(data)
        b[:n] = data
        if self.hashing:
            self.hasher.update(data)
        self.count += n
        return n

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read() if size is None or size < 0 else self._raw.read(size)
        if self.hashing:
            self.hasher.update(data)
        self.count += len(data)
        return data

    def drain(self) -> None:
        """Read to the end so the hash covers every byte."""
        while self.read(READ_SIZE):
            pass

    def digest(self) -> str:
        return "sha256:" + self.hasher.hexdigest()


class _GzipStream(PieceStream):
    """Streaming gzip decoder over a non-seekable stream, multi-member aware, on the
    package's one :class:`~leakscan.layers.inflate.Inflater` rather than gzip.GzipFile, so
    that a truncated stream is an error we name, and zero padding after the last member is
    tolerated (anything else there is an error: a layer is the tar and nothing more)."""

    def __init__(self, raw: BinaryIO) -> None:
        self._inflater = inflate.Inflater(raw.read, gzip=True)
        self._buf = b""
        self._off = 0  # how much of _buf has been handed out

    def read(self, size: int | None = -1, /) -> bytes:
        """The next decoded bytes: a large read gets the piece decoded for it as it is, a
        small one a cut of a piece decoded ahead. A short read rather than a wait for
        more: what was decoded before a damaged part of the stream is handed out before
        the error is raised, by the next call."""
        if size is None or size < 0:
            return self.readall()
        if self._off >= len(self._buf) and size >= DIRECT_READ:
            return self._step(size)
        if self._off >= len(self._buf):
            self._buf = self._step(max(size, READ_SIZE))
            self._off = 0
        data = self._buf[self._off : self._off + size]
        self._off += len(data)
        return data

    def _step(self, want: int) -> bytes:
        try:
            out = self._inflater.step(want)
        except inflate.Truncated:
            raise LayerError("gzip stream is truncated") from None
        except inflate.Corrupt as exc:
            raise LayerError(f"gzip stream is corrupt: {exc}") from None
        if not out and self._inflater.garbage:
            raise LayerError("gzip stream has trailing garbage")
        return out


class _ZstdStream(PieceStream):
    """Streaming zstd decoder that turns library errors into a named LayerError.

    The library reports a stream cut short as a clean end; that is caught one level up,
    by the tar reader (unexpected end of data) and by the diff_id / blob digest checks.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            raw, read_size=INPUT_SIZE, read_across_frames=True
        )

    def read(self, size: int | None = -1, /) -> bytes:
        """The decoder's bytes as it returns them."""
        if size is None or size < 0:
            return self.readall()
        try:
            return self._reader.read(size)
        except zstandard.ZstdError as exc:
            raise LayerError(f"zstd stream is corrupt: {exc}") from None


class _Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


class Prefixed(PieceStream):
    """A stream with some already-read bytes (read to sniff a format) put back in front of
    it. Reads return what the stream returns, short reads included."""

    def __init__(self, head: bytes, raw: _Readable) -> None:
        self._head = head
        self._raw = raw

    def read(self, size: int | None = -1, /) -> bytes:
        head = self._head
        if not head:
            return self._raw.read(-1 if size is None else size)
        if size is None or size < 0:
            self._head = b""
            return head + self._raw.read(-1)
        self._head = head[size:]
        return head[:size]


def decompressed(raw: BinaryIO) -> tuple[Compression, BinaryIO]:
    """Return the compression found and a stream of the uncompressed bytes.

    The stream is not buffered: its reads may return fewer bytes than asked for (the tar
    walker reads in large pieces and takes what comes), and a read never holds back bytes
    it decoded because a later part of the stream is damaged.
    """
    head = b""
    while len(head) < 4:
        more = raw.read(4 - len(head))
        if not more:
            break
        head += more
    kind = sniff(head)
    prefixed = Prefixed(head, raw)
    inner: io.RawIOBase
    if kind == "gzip":
        inner = _GzipStream(prefixed)  # type: ignore[arg-type]
    elif kind == "zstd":
        inner = _ZstdStream(prefixed)  # type: ignore[arg-type]
    else:
        inner = prefixed
    return kind, inner  # type: ignore[return-value]


class ExpansionGuard(PieceStream):
    """Stops a layer that decompresses far beyond any real one (a decompression bomb).

    A gzip stream can expand about 1000:1 and zstd far more: a few MB of layer would
    otherwise keep the scan decoding for hours. Past ``floor`` bytes of output, more than
    ``ratio`` output bytes per compressed byte is an error.
    """

    def __init__(self, inner: BinaryIO, compressed: HashingReader, ratio: int, floor: int) -> None:
        self._inner = inner
        self._compressed = compressed
        self._ratio = ratio
        self._floor = floor
        self.count = 0

    def read(self, size: int | None = -1, /) -> bytes:
        """The inner stream's next bytes as it returns them (every byte of a layer passes
        here: io.RawIOBase's read cost 0.1 s of CPU on a 214 MiB layer)."""
        if size is None or size < 0:
            return self.readall()  # piece by piece, each one checked
        data = self._inner.read(size)
        self.count += len(data)
        if self.count > self._floor and self.count > self._ratio * max(self._compressed.count, 1):
            raise LayerError(
                f"decompresses more than {self._ratio}:1 (a decompression bomb?); "
                f"stopped after {self.count >> 20} MiB"
            )
        return data
