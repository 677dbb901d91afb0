"""Deflate decoding (gzip layers, .gz files, zip members) for the whole package.

zlib-ng's Python binding decodes about twice as fast as the standard library's zlib here
(546 against 290 MiB/s on a layer of real files), and most layers come gzip-compressed: it
is used when installed. It is a drop-in copy of the standard module's interface, down to
what the bomb-safe readers rely on (``max_length``, ``unconsumed_tail``, ``unused_data``,
``eof``). Without it, the standard zlib does the same work, slower.
"""

from __future__ import annotations

import zlib
from types import ModuleType
from typing import Protocol

_FAST: ModuleType | None
try:
    from zlib_ng import zlib_ng as _FAST
except ImportError:  # pragma: no cover - zlib-ng is a declared dependency
    _FAST = None


class Decompressor(Protocol):
    """What the readers use of a zlib decompression object."""

    @property
    def eof(self) -> bool: ...

    @property
    def unconsumed_tail(self) -> bytes: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes, max_length: int = 0, /) -> bytes: ...


_ENGINE: ModuleType = _FAST if _FAST is not None else zlib
# what a damaged stream raises, whichever engine decodes it
ERRORS: tuple[type[Exception], ...] = (zlib.error,) + ((_FAST.error,) if _FAST else ())


def engine() -> str:
    """The name of the module in use."""
    return "zlib-ng" if _ENGINE is _FAST else "zlib"


def use(name: str) -> None:
    """Decode with ``name`` ("zlib-ng" or "zlib") from now on; for tests and benchmarks."""
    global _ENGINE
    if name == "zlib":
        _ENGINE = zlib
    elif name == "zlib-ng" and _FAST is not None:
        _ENGINE = _FAST
    else:
        raise ValueError(f"no such deflate engine here: {name}")


def decompressobj(wbits: int) -> Decompressor:
    """A streaming decoder: ``wbits`` 31 for gzip (members one at a time), -15 for raw
    deflate (zip members)."""
    dec: Decompressor = _ENGINE.decompressobj(wbits)
    return dec
