"""Worker processes that scan layers side by side, so that a scan uses every core.

The calling process scans a share of the layers itself and workers the rest, so N cores
take N-1 workers. Each worker builds its own engines from a DetectorConfig (engines hold
native state that does not cross processes) and reads its layers itself: only a layer's
description and its results travel. Workers start from a fresh interpreter (spawn), never
forked from a process whose engines already run threads of their own, and die with the
process that started them.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import signal
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed

from leakscan import model as m
from leakscan.detectors import DetectorConfig, Detectors, build_detectors
from leakscan.layers.archives import ArchiveLimits
from leakscan.layerscan import LayerScan, scan_layer

# below this many stored bytes, starting workers (each loads the rules) costs more than it
# saves: such images are scanned in the calling process
MIN_PARALLEL_BYTES = 96 << 20
_PR_SET_PDEATHSIG = 1

_ENGINES: Detectors | None = None


def _start(config: DetectorConfig) -> None:
    global _ENGINES
    if sys.platform == "linux":
        # a scan killed outright (SIGTERM, SIGKILL) must not leave its workers behind
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    _ENGINES = build_detectors(config)


def _work(blob: m.LayerBlob, limits: ArchiveLimits, max_file_size: int | None) -> LayerScan:
    assert _ENGINES is not None, "worker started without engines"
    return scan_layer(blob, _ENGINES, limits, max_file_size=max_file_size)


class LayerPool:
    """Worker processes, started on first use, that share layers with the calling process."""

    def __init__(self, config: DetectorConfig, workers: int) -> None:
        self.config = config
        # processes besides the calling one
        self.workers = max(0, workers)
        self._pool: ProcessPoolExecutor | None = None

    def worth_it(self, blobs: Sequence[m.LayerBlob]) -> bool:
        """Whether ``blobs`` are many and large enough to share out."""
        readable = [b for b in blobs if not b.unavailable]
        total = sum(b.size or 0 for b in readable)
        return self.workers > 0 and len(readable) > 1 and total >= MIN_PARALLEL_BYTES

    def share(self, blobs: Sequence[m.LayerBlob]) -> tuple[list[m.LayerBlob], list[m.LayerBlob]]:
        """Split ``blobs`` into the calling process's share and the workers': largest first,
        each to whoever has the least so far."""
        bins: list[list[m.LayerBlob]] = [[] for _ in range(self.workers + 1)]
        loads = [0] * len(bins)
        for blob in sorted(blobs, key=lambda b: b.size or 0, reverse=True):
            least = loads.index(min(loads))
            bins[least].append(blob)
            loads[least] += blob.size or 0
        return bins[0], [blob for share in bins[1:] for blob in share]

    def submit(
        self,
        blobs: Sequence[m.LayerBlob],
        limits: ArchiveLimits,
        max_file_size: int | None = None,
    ) -> dict[Future[LayerScan], m.LayerBlob]:
        """Start scanning ``blobs`` in the workers."""
        if not blobs:
            return {}
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=max(1, min(self.workers, len(blobs))),
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start,
                initargs=(self.config,),
            )
        ordered = sorted(blobs, key=lambda b: b.size or 0, reverse=True)
        return {self._pool.submit(_work, blob, limits, max_file_size): blob for blob in ordered}

    @staticmethod
    def collect(
        futures: dict[Future[LayerScan], m.LayerBlob],
    ) -> Iterator[tuple[m.LayerBlob, LayerScan]]:
        """Results as they complete; a worker that died leaves its layer unread, an error."""
        for future in as_completed(futures):
            blob = futures[future]
            try:
                yield blob, future.result()
            except Exception as exc:  # noqa: BLE001 - a worker that died: the layer is unread
                # the type only: an exception's message could quote image content
                problem = m.Problem(
                    f"layer {blob.index}: worker process failed ({type(exc).__name__})",
                    layer_index=blob.index,
                )
                yield blob, LayerScan(diff_id=blob.diff_id, errors=[problem])

    def scan(
        self,
        blobs: Sequence[m.LayerBlob],
        limits: ArchiveLimits,
        max_file_size: int | None = None,
    ) -> Iterator[tuple[m.LayerBlob, LayerScan]]:
        """Scan every blob in the workers, yielding results as they complete."""
        yield from self.collect(self.submit(blobs, limits, max_file_size))

    def close(self) -> None:
        """Stop the workers."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
