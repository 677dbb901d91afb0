"""Worker processes that scan layers side by side, so that a scan uses every core.

Each worker builds its own engines from a DetectorConfig (engines hold native state that
does not cross processes) and reads its layer itself: only the layer's description and
its results travel. Workers are started from a fresh interpreter (forkserver), never
forked from a process whose engines already run threads of their own.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed

from leakscan import model as m
from leakscan.detectors import DetectorConfig, Detectors, build_detectors
from leakscan.layers.archives import ArchiveLimits
from leakscan.layerscan import LayerScan, scan_layer

# below this many stored bytes, starting workers (each loads the rules) costs more than it
# saves: such images are scanned in the calling process
MIN_PARALLEL_BYTES = 96 << 20

_ENGINES: Detectors | None = None


def _start(config: DetectorConfig) -> None:
    global _ENGINES
    _ENGINES = build_detectors(config)


def _work(blob: m.LayerBlob, limits: ArchiveLimits, max_file_size: int | None) -> LayerScan:
    assert _ENGINES is not None, "worker started without engines"
    return scan_layer(blob, _ENGINES, limits, max_file_size=max_file_size)


class LayerPool:
    """A pool of layer-scanning processes, started on first use."""

    def __init__(self, config: DetectorConfig, workers: int) -> None:
        self.config = config
        self.workers = max(1, workers)
        self._pool: ProcessPoolExecutor | None = None

    def worth_it(self, blobs: Sequence[m.LayerBlob]) -> bool:
        """Whether ``blobs`` are many and large enough to share out."""
        readable = [b for b in blobs if not b.unavailable]
        total = sum(b.size or 0 for b in readable)
        return self.workers > 1 and len(readable) > 1 and total >= MIN_PARALLEL_BYTES

    def scan(
        self,
        blobs: Sequence[m.LayerBlob],
        limits: ArchiveLimits,
        max_file_size: int | None = None,
    ) -> Iterator[tuple[m.LayerBlob, LayerScan]]:
        """Scan every blob, yielding results as they complete."""
        if self._pool is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["leakscan.layerscan", "leakscan.detectors.kingfisher"])
            self._pool = ProcessPoolExecutor(
                max_workers=min(self.workers, len(blobs)),
                mp_context=context,
                initializer=_start,
                initargs=(self.config,),
            )
        # largest first, so that no worker is left with a big layer at the end
        ordered = sorted(blobs, key=lambda b: b.size or 0, reverse=True)
        futures: dict[Future[LayerScan], m.LayerBlob] = {
            self._pool.submit(_work, blob, limits, max_file_size): blob for blob in ordered
        }
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

    def close(self) -> None:
        """Stop the workers."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
