"""Byte plumbing of the archive reader: a forward-only source with push-back, and the
readers handed out over it, each able to say whether what is under it was cut short."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, BinaryIO, Protocol, cast

from leakscan.layers.archives.limits import STEP, human

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer


class Readable(Protocol):
    """What a source reads from: any stream."""

    def read(self, size: int, /) -> bytes | None: ...


class Damage(Exception):
    """Bytes that cannot be what they claim to be; becomes a Skipped, never escapes."""


class Source:
    """A forward-only byte source with push-back (of bytes a decoder or a header parse
    read past the end of what it needed)."""

    def __init__(self, raw: Readable, head: bytes = b"") -> None:
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
        return isinstance(self._raw, Reader) and self._raw.cut()


class Reader(io.RawIOBase):
    """Base of the streams handed out: subclasses implement ``_read``."""

    problem: str | None = None  # why this stream stopped early, for its owner to report
    _under: Source | Reader | None = None

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


def binary(reader: io.RawIOBase) -> BinaryIO:
    """``reader`` as the binary stream it is (in all but typeshed's nominal typing)."""
    return cast(BinaryIO, reader)


class Limited(Reader):
    """The next ``size`` bytes of a source (all of it when ``size`` is None)."""

    def __init__(self, src: Source, size: int | None) -> None:
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


class Capped(Reader):
    """At most ``cap`` bytes of a member whose size was not known up front."""

    def __init__(self, inner: Readable, cap: int) -> None:
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
                self.problem = f"larger than {human(self._cap)}: only its start was scanned"
            return b""
        data = self._inner.read(min(n, room)) or b""
        self._count += len(data)
        return data
