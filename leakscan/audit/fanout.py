"""Where an audit's layer scans run: in this process, in N local worker processes, or on a
Dask cluster. Each takes the layers still to scan (one blob per unique layer) and yields
results as they complete; the caller alone writes the database. Dask workers pull the
layers from the registry themselves: a :class:`LayerBlob` of a registry carries a picklable
opener with the client (and its credentials) in it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from leakscan import model as m
from leakscan.detectors import DetectorConfig, Detectors, build_detectors, default_detectors
from leakscan.layers.archives import ArchiveLimits
from leakscan.layerscan import LayerScan, scan_layer
from leakscan.workers import LayerPool


@dataclass(frozen=True)
class ScanSettings:
    """What a layer scan needs besides the layer: travels to every worker."""

    detectors: DetectorConfig
    limits: ArchiveLimits
    max_file_size: int | None


def build_engines(config: DetectorConfig) -> Detectors:
    """The engines of ``config`` (the shared default set when nothing is configured)."""
    return default_detectors() if config == DetectorConfig() else build_detectors(config)


def _failed(blob: m.LayerBlob, why: str) -> LayerScan:
    problem = m.Problem(f"layer {blob.index}: {why}", layer_index=blob.index)
    return LayerScan(diff_id=blob.diff_id, errors=[problem])


class Fanout(Protocol):
    """Scans layers somewhere; results as they complete."""

    def scan(self, blobs: Sequence[m.LayerBlob]) -> Iterator[tuple[m.LayerBlob, LayerScan]]:
        """Scan every blob, yielding each result as soon as it is done."""
        ...

    def close(self) -> None:
        """Stop whatever was started."""
        ...


class InProcess:
    """Layers scanned one after the other here (the engines built on first use)."""

    def __init__(self, settings: ScanSettings) -> None:
        self.settings = settings
        self._engines: Detectors | None = None

    def scan(self, blobs: Sequence[m.LayerBlob]) -> Iterator[tuple[m.LayerBlob, LayerScan]]:
        s = self.settings
        for blob in blobs:
            if self._engines is None:
                self._engines = build_engines(s.detectors)
            # the only process scanning: a helper thread keeps a second core busy
            yield (
                blob,
                scan_layer(
                    blob, self._engines, s.limits, max_file_size=s.max_file_size, helper_thread=True
                ),
            )

    def close(self) -> None:
        return None


class LocalPool:
    """Layers shared out over N worker processes (workers.LayerPool); this process only
    collects the results and writes them down."""

    def __init__(self, settings: ScanSettings, workers: int) -> None:
        self.settings = settings
        self.workers = workers
        self._pool: LayerPool | None = None

    def scan(self, blobs: Sequence[m.LayerBlob]) -> Iterator[tuple[m.LayerBlob, LayerScan]]:
        if not blobs:
            return
        if self._pool is None:
            s = self.settings
            # built here so that forked workers inherit them instead of loading their own
            self._pool = LayerPool(s.detectors, self.workers, build_engines(s.detectors))
        yield from self._pool.scan(blobs, self.settings.limits, self.settings.max_file_size)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None


# --- Dask --------------------------------------------------------------------------------

# the engines of a Dask worker process, built once per detector configuration
_WORKER_ENGINES: dict[DetectorConfig, Detectors] = {}


def scan_on_worker(blob: m.LayerBlob, settings: ScanSettings) -> LayerScan:
    """One layer, on a Dask worker: it opens (pulls) the layer itself."""
    engines = _WORKER_ENGINES.get(settings.detectors)
    if engines is None:
        engines = _WORKER_ENGINES[settings.detectors] = build_engines(settings.detectors)
    return scan_layer(blob, engines, settings.limits, max_file_size=settings.max_file_size)


class DaskFanout:
    """Layers sent to an existing Dask cluster (``distributed``), largest first."""

    def __init__(self, settings: ScanSettings, address: str) -> None:
        try:
            from distributed import Client
        except ImportError:
            from leakscan.errors import InputError

            raise InputError(
                "--dask needs the distributed package: pip install 'leakscan[audit]'"
            ) from None
        self.settings = settings
        self.client: Any = Client(  # type: ignore[no-untyped-call]
            address, set_as_default=False, timeout="30s"
        )

    def scan(self, blobs: Sequence[m.LayerBlob]) -> Iterator[tuple[m.LayerBlob, LayerScan]]:
        if not blobs:
            return
        from distributed import as_completed

        ordered = sorted(blobs, key=lambda b: b.size or 0, reverse=True)
        futures = {}
        for n, blob in enumerate(ordered):
            # a key of our own: Dask would otherwise hash the blob (and its client) to name it
            key = f"leakscan-layer-{n}-{blob.diff_id or blob.digest}"
            future = self.client.submit(
                scan_on_worker, blob, self.settings, key=key, pure=False, priority=-n
            )
            futures[future] = blob
        # the loop named: as_completed would otherwise look for a default client
        done = as_completed(list(futures), loop=self.client.loop)  # type: ignore[no-untyped-call]
        for future in done:
            blob = futures[future]
            try:
                yield blob, future.result()
            except Exception as exc:  # noqa: BLE001 - a worker or the connection failed
                # the type only: a message could quote image content
                yield blob, _failed(blob, f"Dask worker failed ({type(exc).__name__})")
            finally:
                future.release()

    def close(self) -> None:
        self.client.close()


def fanout(settings: ScanSettings, workers: int, dask: str | None) -> Fanout:
    """Where layers are scanned: Dask when an address is given, else ``workers`` local
    processes (1: this process alone)."""
    if dask:
        return DaskFanout(settings, dask)
    if workers > 1:
        return LocalPool(settings, workers)
    return InProcess(settings)
