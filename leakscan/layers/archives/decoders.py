"""Decoders of the archive reader: deflate and gzip (through the package's one
:class:`~leakscan.layers.inflate.Inflater`), bzip2, xz and zstd, each asked for a bounded
amount of output at a time, and :class:`Decoded`, which charges that output to the budget
and watches the compression ratio."""

from __future__ import annotations

import bz2
import lzma
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import BinaryIO, Protocol, cast

import zstandard

from leakscan.layers import inflate
from leakscan.layers.archives.limits import (
    BZIP2_MAGIC,
    CHUNK,
    RATIO_FLOOR,
    STEP,
    XZ_MAGIC,
    ArchiveLimits,
    Budget,
    human,
)
from leakscan.layers.archives.sources import Damage, Reader, Source


class Codec(ABC):
    """An incremental decompressor pulling its input from a source."""

    name: str

    @property
    @abstractmethod
    def consumed(self) -> int:
        """Compressed bytes used so far (a slight over-estimate while input is buffered)."""

    @abstractmethod
    def step(self, max_out: int) -> bytes:
        """Up to ``max_out`` decompressed bytes; b"" at the clean end; Damage otherwise."""


class _Zlib(Codec):
    """Raw deflate (zip) or gzip (all members of a multi-member file; anything after the
    last member is ignored, as gzip(1) does).

    For raw deflate, input read past the end of the deflate stream is pushed back into the
    source: it is the zip's data descriptor or next header.
    """

    def __init__(self, src: Source, gzip: bool) -> None:
        self.name = "gzip" if gzip else "deflate"
        self._src = src
        self._inflater = inflate.Inflater(src.read, gzip)
        self._given_back = gzip  # what follows a gzip file is not read

    @property
    def consumed(self) -> int:
        return self._inflater.consumed

    def step(self, max_out: int) -> bytes:
        inflater = self._inflater
        try:
            out = inflater.step(max_out)
        except inflate.Truncated:
            raise Damage("truncated") from None
        except inflate.Corrupt as exc:
            raise Damage(f"corrupt ({exc})") from None
        if not out and not self._given_back:
            self._given_back = True
            self._src.unread(inflater.rest)
        return out


class _Decompressor(Protocol):
    @property
    def eof(self) -> bool: ...
    @property
    def needs_input(self) -> bool: ...
    @property
    def unused_data(self) -> bytes: ...
    def decompress(self, data: bytes, max_length: int = -1) -> bytes: ...


class _Chunked(Codec):
    """bzip2 or xz through the standard library's bounded-output decompressors,
    concatenated streams included."""

    def __init__(
        self,
        src: Source,
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
                    raise Damage("truncated")
                self._fed += len(data)
            else:
                data = b""
            try:
                out = self._dec.decompress(data, max_out)
            except (OSError, EOFError, ValueError, lzma.LZMAError) as exc:
                if self._memlimit and "memory" in str(exc).lower():
                    limit = human(self._memlimit)
                    raise Damage(f"needs more than {limit} of memory to decode") from None
                raise Damage(f"corrupt ({exc})") from None
            if out:
                return out
            idle = 0 if data else idle + 1
            if idle > 3:  # pragma: no cover - a decoder that neither eats nor emits
                raise Damage("corrupt (the decoder is stuck)")
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

    def __init__(self, src: Source) -> None:
        self._src = src
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._src.read(CHUNK if size < 0 else min(size, CHUNK))
        self.count += len(data)
        return data


class _Zstd(Codec):
    """zstd, all frames; the window (hence the decoder's memory) is capped."""

    name = "zstd"

    def __init__(self, src: Source, max_window: int) -> None:
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
                limit = human(self._max_window)
                raise Damage(f"needs a window over {limit} to decode") from None
            raise Damage(f"corrupt ({exc})") from None
        return data


def codec(kind: str, src: Source, limits: ArchiveLimits) -> Codec:
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


class Decoded(Reader):
    """A codec's output, charged to the budget and watched for its compression ratio.

    A limit or damage ends the stream early (never raises in the reader's hands) and
    leaves the reason in ``problem`` for the owner to report; a spent budget also halts
    every level of the expansion.
    """

    def __init__(self, budget: Budget, codec: Codec, src: Source, label: str) -> None:
        self._under = src
        self._budget = budget
        self.codec = codec
        self._label = label
        self.produced = 0
        self._done = False

    @property
    def consumed(self) -> int:
        return self.codec.consumed

    def _stop(self, reason: str) -> None:
        self.problem = reason
        self._done = True

    def _read(self, n: int) -> bytes:
        if self._done:
            return b""
        budget = self._budget
        limits = budget.limits
        try:
            out = self.codec.step(min(n, STEP))
        except Damage as exc:
            self._stop(f"unreadable {self._label}: {self.codec.name} data {exc}")
            return b""
        if not out:
            self._done = True
            return b""
        self.produced += len(out)
        room = limits.max_expanded_bytes - budget.expanded
        if len(out) > room:
            out = out[: max(room, 0)]
            budget.halted = True
            self._stop(f"expanded-bytes budget ({human(limits.max_expanded_bytes)}) exhausted")
        elif self.produced > RATIO_FLOOR and self.produced > limits.max_ratio * max(
            self.codec.consumed, 1
        ):
            # this chunk is handed out (it is no bigger than STEP); the stream ends after it
            self._stop(f"compression ratio over {limits.max_ratio}:1 (a decompression bomb?)")
        budget.expanded += len(out)
        return out
