"""Scan a stream of any length in bounded memory: fixed-size chunks that overlap, so a
secret that straddles a chunk boundary is still seen whole in one chunk. Engines that must
see a file whole get it whole, up to their own limit, once it has been read.

Chunks can be scanned on a helper thread while the caller reads on (:class:`ScanRunner`):
the engines spend most of their time in native code that releases the GIL, so reading,
decompressing and walking the next files overlaps the scan of the last ones.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import BinaryIO

from leakscan.detectors import FileScanner, Match, Scan

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


def _done(value: list[Match]) -> Future[list[Match]]:
    future: Future[list[Match]] = Future()
    future.set_result(value)
    return future


class ScanRunner:
    """Runs chunk scans on ``threads`` helper threads, at most ``depth`` chunks at a time.

    A chunk that finds every slot taken is scanned by the caller at once: the caller then
    works instead of waiting, and no more than ``depth`` chunks are ever held for later.
    With ``threads=0`` every scan runs in the caller. Close the runner to stop its threads
    (a process that forks workers must have no other thread running).
    """

    def __init__(self, threads: int = 1, depth: int = 4) -> None:
        self._pool = ThreadPoolExecutor(threads, "leakscan-scan") if threads > 0 else None
        self._slots = threading.BoundedSemaphore(max(1, depth))

    def submit(self, scan: Scan, data: bytes) -> Future[list[Match]]:
        """Scan ``data`` now or on a helper thread."""
        if self._pool is None or not self._slots.acquire(blocking=False):
            return _done(scan(data))
        future = self._pool.submit(scan, data)
        future.add_done_callback(lambda _: self._slots.release())
        return future

    def close(self) -> None:
        """Wait for the scans in flight and stop the threads."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __enter__(self) -> ScanRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_INLINE = ScanRunner(threads=0)


@dataclass
class PendingScan:
    """A stream's chunk scans, possibly still running; :meth:`result` waits for them."""

    # (future, offset of the chunk, newlines before it, matches kept below this offset)
    chunks: list[tuple[Future[list[Match]], int, int, int]] = field(default_factory=list)

    def done(self) -> bool:
        """Whether every chunk scan has finished."""
        return all(chunk[0].done() for chunk in self.chunks)

    def result(self) -> list[Match]:
        """Every match, offsets and lines absolute; raises what a scan raised."""
        found: list[Match] = []
        for future, base, lines_before, keep_below in self.chunks:
            for m in future.result():
                if m.start < keep_below:
                    found.append(
                        replace(
                            m, start=m.start + base, end=m.end + base, line=m.line + lines_before
                        )
                    )
        return found


def start_scan(
    scan: Scan | FileScanner,
    stream: BinaryIO,
    runner: ScanRunner = _INLINE,
    chunk_size: int = CHUNK_SIZE,
    overlap: int = OVERLAP,
) -> PendingScan:
    """Read ``stream`` to its end, handing its chunks to ``runner`` (a plain ``scan``
    takes chunks; a :class:`FileScanner` says which engines take the file whole).

    A chunk that is not the last leaves matches that start in its final ``overlap`` bytes
    to the next chunk, which begins there: each match is reported once, from the chunk
    that holds it whole. The bytes read are also kept while they are within the
    whole-file limit, and handed to the whole-file engines at the end: memory stays
    bounded by that limit, and a longer file is not given to them at all.
    """
    if overlap >= chunk_size:
        raise ValueError("overlap must be smaller than the chunk size")
    plan = scan if isinstance(scan, FileScanner) else FileScanner(scan)
    pending = PendingScan()
    # what was read so far, for the whole-file engines; None once past their limit
    held: list[bytes] | None = [] if plan.whole is not None else None
    total = 0
    base = 0  # absolute offset of data[0]
    lines_before = 0  # newlines before data[0]
    data = _fill(stream, chunk_size)
    read = data
    while True:
        total += len(read)
        if held is not None:
            if total > plan.whole_limit:
                held = None
            elif read:
                held.append(read)
        read = more = _fill(stream, chunk_size - overlap) if len(data) == chunk_size else b""
        last = not more
        keep_below = len(data) if last else len(data) - overlap
        if plan.pieces is not None:
            pending.chunks.append(
                (runner.submit(plan.pieces, data), base, lines_before, keep_below)
            )
        if last:
            break
        lines_before += data.count(b"\n", 0, keep_below)
        base += keep_below
        data = data[keep_below:] + more
    if plan.whole is not None and held is not None:
        whole = b"".join(held)
        pending.chunks.append((runner.submit(plan.whole, whole), 0, 0, len(whole)))
    return pending


def scan_stream(
    scan: Scan,
    stream: BinaryIO,
    chunk_size: int = CHUNK_SIZE,
    overlap: int = OVERLAP,
) -> list[Match]:
    """Scan ``stream`` to its end in the caller; offsets and lines in the result are
    absolute."""
    return start_scan(scan, stream, _INLINE, chunk_size, overlap).result()
