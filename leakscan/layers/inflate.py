"""Deflate decoding (gzip layers, .gz files, zip members) for the whole package: the engine,
and :class:`Inflater`, the one reader of gzip members and raw deflate streams.

zlib-ng's Python binding decodes about twice as fast as the standard library's zlib here
(546 against 290 MiB/s on a layer of real files), and most layers come gzip-compressed: it
is the engine. The standard zlib stays selectable (:func:`use`) on purpose: the layer tests
run every reader on both, so that leakscan relies only on what the two share
(``max_length``, ``unconsumed_tail``, ``unused_data``, ``eof``), and benchmarks compare them.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from types import ModuleType
from typing import Protocol, cast

from zlib_ng import zlib_ng

GZIP_MAGIC = b"\x1f\x8b"
# compressed input is read in small pieces: zlib copies the unconsumed input on every call
# that stops at max_length, and a 1 MiB piece of a highly compressed stream was copied
# hundreds of times (5 s for a GiB of zeros; 64 KiB pieces make it ~1 s)
INPUT_SIZE = 64 << 10


class Decompressor(Protocol):
    """What the readers use of a zlib decompression object."""

    @property
    def eof(self) -> bool: ...

    @property
    def unconsumed_tail(self) -> bytes: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes, max_length: int = 0, /) -> bytes: ...


_ENGINES: dict[str, ModuleType] = {"zlib-ng": zlib_ng, "zlib": zlib}
_ENGINE: ModuleType = zlib_ng
# what a damaged stream raises, whichever engine decodes it (zlib-ng's stub types its error
# class as an instance)
ERRORS: tuple[type[Exception], ...] = (zlib.error, cast("type[Exception]", zlib_ng.error))


def engine() -> str:
    """The name of the module in use."""
    return "zlib-ng" if _ENGINE is zlib_ng else "zlib"


def use(name: str) -> None:
    """Decode with ``name`` ("zlib-ng" or "zlib") from now on; for tests and benchmarks."""
    global _ENGINE
    if name not in _ENGINES:
        raise ValueError(f"no such deflate engine here: {name}")
    _ENGINE = _ENGINES[name]


def decompressobj(wbits: int) -> Decompressor:
    """A streaming decoder: ``wbits`` 31 for gzip (members one at a time), -15 for raw
    deflate (zip members)."""
    dec: Decompressor = _ENGINE.decompressobj(wbits)
    return dec


class Truncated(Exception):
    """The input ended inside a gzip member or a deflate stream."""


class Corrupt(Exception):
    """The input is not valid deflate data; the message is the engine's."""


class Inflater:
    """Decoded output of input pulled through ``read``, a bounded piece at a time: gzip
    members one after another (``gzip``), or one raw deflate stream.

    gzip members may be concatenated and zero-padded (tape blocking). Bytes after a member
    that start no other end the output and set ``garbage``: what that means is the
    caller's call. Input read past the end is left in ``rest`` (a zip's next record).
    """

    def __init__(self, read: Callable[[int], bytes], gzip: bool, head: bytes = b"") -> None:
        self._read = read
        self._wbits = 31 if gzip else -15
        self._dec = decompressobj(self._wbits)
        self._in = head
        self._fed = len(head)
        self.ended = False
        self.garbage = False
        self.rest = b""

    @property
    def consumed(self) -> int:
        """Compressed bytes used so far (a slight over-estimate while input is buffered)."""
        return self._fed - len(self._in) - len(self.rest)

    def step(self, max_out: int) -> bytes:
        """Up to ``max_out`` decoded bytes; b"" at the end; Truncated or Corrupt otherwise."""
        while not self.ended:
            dec = self._dec
            if dec.eof:
                self._after(dec.unused_data)
                continue
            if not self._in:
                self._in = self._read(INPUT_SIZE)
                if not self._in:
                    raise Truncated("truncated")
                self._fed += len(self._in)
            try:
                out = dec.decompress(self._in, max_out)
            except ERRORS as exc:
                raise Corrupt(str(exc)) from None
            # at the end of the stream CPython leaves the input past it in unused_data AND
            # in unconsumed_tail: only the former counts
            self._in = b"" if dec.eof else dec.unconsumed_tail
            if out:
                return out
        return b""

    def _after(self, rest: bytes) -> None:
        """A member or stream just ended, ``rest`` read past it: start the next or end."""
        if self._wbits == 31:
            while True:
                rest = rest.lstrip(b"\x00")
                if len(rest) >= len(GZIP_MAGIC):
                    break
                more = self._read(INPUT_SIZE)
                if not more:
                    break
                self._fed += len(more)
                rest += more
            if rest.startswith(GZIP_MAGIC):
                self._dec = decompressobj(self._wbits)
                self._in = rest
                return
            self.garbage = bool(rest)
        self.rest = rest
        self.ended = True
