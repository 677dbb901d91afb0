"""Scan a stream of any length in bounded memory: fixed-size chunks that overlap, so a
secret that straddles a chunk boundary is still seen whole in one chunk."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import BinaryIO

from leakscan.detectors import Match

# the engines are fastest on inputs of a few hundred KB (kingfisher: ~250 MB/s on 256 KiB
# pieces of source text, ~130 MB/s on 8 MiB ones)
CHUNK_SIZE = 512 << 10
# longer than any secret we expect to match whole (a PEM RSA-16384 key is about 12.5 KB)
OVERLAP = 16 << 10


def _fill(stream: BinaryIO, want: int) -> bytes:
    parts = []
    while want > 0:
        data = stream.read(want)
        if not data:
            break
        parts.append(data)
        want -= len(data)
    return b"".join(parts)


def scan_stream(
    scan: Callable[[bytes], list[Match]],
    stream: BinaryIO,
    chunk_size: int = CHUNK_SIZE,
    overlap: int = OVERLAP,
) -> list[Match]:
    """Scan ``stream`` to its end; offsets and lines in the result are absolute.

    A chunk that is not the last leaves matches that start in its final ``overlap`` bytes
    to the next chunk, which begins there: each match is reported once, from the chunk
    that holds it whole.
    """
    if overlap >= chunk_size:
        raise ValueError("overlap must be smaller than the chunk size")
    found: list[Match] = []
    base = 0  # absolute offset of data[0]
    lines_before = 0  # newlines before data[0]
    data = _fill(stream, chunk_size)
    while True:
        more = _fill(stream, chunk_size - overlap) if len(data) == chunk_size else b""
        last = not more
        keep_below = len(data) if last else len(data) - overlap
        for m in scan(data):
            if m.start < keep_below:
                found.append(
                    replace(m, start=m.start + base, end=m.end + base, line=m.line + lines_before)
                )
        if last:
            return found
        lines_before += data.count(b"\n", 0, keep_below)
        base += keep_below
        data = data[keep_below:] + more
