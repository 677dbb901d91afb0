"""A piece stream's read hands pieces out as they come; readinto copies one in."""

from __future__ import annotations

import io

from leakscan.streams import PieceStream


class _Pieces(PieceStream):
    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces
        self.given: list[bytes] = []

    def read(self, size: int | None = -1, /) -> bytes:
        if not self.pieces:
            return b""
        piece = self.pieces.pop(0)
        self.given.append(piece)
        return piece


def test_read_is_the_piece_itself_and_readinto_copies_one_piece() -> None:
    first, second = b"a" * 1000, b"b" * 10
    stream = _Pieces([first, second, b"c" * 5])
    assert stream.readable()
    assert stream.read(4096) is first  # no copy on the way
    buf = bytearray(64)
    assert stream.readinto(buf) == 10 and bytes(buf[:10]) == second
    # a buffered reader over it sees every byte, in order
    assert io.BufferedReader(_Pieces([first, second])).read() == first + second
