"""A raw stream that hands out pieces as they come, for the readers every layer byte passes
through."""

from __future__ import annotations

import io


class PieceStream(io.RawIOBase):
    """A readable raw stream whose ``read(n)`` returns a piece as it has it (subclasses
    define it): io.RawIOBase's own read would copy every piece twice more, into a buffer
    and out of it. ``readinto`` copies one piece in."""

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(b))
        n = len(data)
        b[:n] = data
        return n
