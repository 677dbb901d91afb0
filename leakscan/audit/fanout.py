"""Where an audit's layer scans run: in this process, in N local worker processes, or on a
Dask cluster. Each takes the layers still to scan (one blob per unique layer) and yields
results as they complete; the caller alone writes the database. Dask workers pull the
layers from the registry themselves: a :class:`LayerBlob` of a registry carries a picklable
opener with the client (and its credentials) in it."""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import sys
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from leakscan import model as m
from leakscan.detectors import (
    DetectorConfig,
    Detectors,
    Match,
    build_detectors,
    default_detectors,
)
from leakscan.layers.archives import ArchiveLimits
from leakscan.layerscan import LayerScan, scan_layer
from leakscan.recall import StoreMemo
from leakscan.sources.hosts import is_loopback
from leakscan.store import open_store
from leakscan.workers import LayerPool, MemoSpec


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


Results = Iterator[tuple[m.LayerBlob, LayerScan]]


class Fanout(Protocol):
    """Scans layers somewhere. Layers are handed in as the walk finds them (``submit``)
    and their results taken as they complete: those done by now (``ready``, which never
    waits), or all that are left (``drain``)."""

    def start(self) -> None:
        """Get ready before the caller starts threads of its own (workers are forked from
        a process of one thread only); nothing needs it."""
        ...

    def submit(self, blobs: Sequence[m.LayerBlob]) -> None:
        """Start scanning ``blobs``."""
        ...

    def ready(self) -> Results:
        """Results that are done (a fan-out of this process may scan here and now)."""
        ...

    def drain(self) -> Results:
        """Every result still to come, each as soon as it is done."""
        ...

    def scan_texts(self, texts: list[bytes]) -> list[list[Match]] | None:
        """The matches in each of ``texts`` (an image's strings), found where the layers
        are scanned; None: the caller scans them itself."""
        ...

    def close(self) -> None:
        """Stop whatever was started."""
        ...


def scan_all(fan: Fanout, blobs: Sequence[m.LayerBlob]) -> Results:
    """Scan every blob, yielding each result as soon as it is done."""
    fan.submit(blobs)
    yield from fan.drain()


class InProcess:
    """Layers scanned one after the other here (the engines built on first use), file
    contents looked up in ``memo`` (the result store)."""

    def __init__(self, settings: ScanSettings, memo: StoreMemo | None = None) -> None:
        self.settings = settings
        self.memo = memo
        self._engines: Detectors | None = None
        self._todo: list[m.LayerBlob] = []

    def start(self) -> None:
        return None

    def submit(self, blobs: Sequence[m.LayerBlob]) -> None:
        self._todo.extend(blobs)

    def ready(self) -> Results:
        # nothing scans in the background here: this is when the layers are scanned (the
        # walk's threads go on fetching meanwhile)
        return self.drain()

    def drain(self) -> Results:
        s = self.settings
        while self._todo:
            blob = self._todo.pop(0)
            if self._engines is None:
                self._engines = build_engines(s.detectors)
            # the only process scanning: a helper thread keeps a second core busy
            result = scan_layer(
                blob,
                self._engines,
                s.limits,
                max_file_size=s.max_file_size,
                helper_thread=True,
                memo=self.memo,
            )
            if self.memo is not None:
                self.memo.flush()
            yield blob, result

    def scan_texts(self, texts: list[bytes]) -> list[list[Match]] | None:
        return None

    def close(self) -> None:
        return None


class LocalPool:
    """Layers shared out over N worker processes (workers.LayerPool); this process only
    collects the results and writes them down. ``memo`` names the result store the
    workers look file contents up in."""

    def __init__(self, settings: ScanSettings, workers: int, memo: MemoSpec | None = None) -> None:
        self.settings = settings
        self.workers = workers
        self.memo = memo
        self._pool: LayerPool | None = None
        self._futures: dict[Future[LayerScan], m.LayerBlob] = {}
        # futures as they complete (appended by the executor's thread): ready() takes
        # them without looking at every future still out
        self._done: deque[Future[LayerScan]] = deque()
        self._held: list[m.LayerBlob] = []

    def start(self) -> None:
        if self._pool is None:
            s = self.settings
            # built here so that forked workers inherit them instead of loading their own
            self._pool = LayerPool(s.detectors, self.workers, build_engines(s.detectors))
            self._pool.start()

    def submit(self, blobs: Sequence[m.LayerBlob]) -> None:
        if not blobs:
            return
        if self._pool is None:
            # not started before the caller's threads: held until drain(), when they are
            # gone and the workers can be forked (spawned ones load leakscan for a second)
            self._held.extend(blobs)
            return
        self._hand_out(blobs)

    def _hand_out(self, blobs: Sequence[m.LayerBlob]) -> None:
        assert self._pool is not None
        s = self.settings
        futures = self._pool.submit(blobs, s.limits, s.max_file_size, self.memo)
        self._futures.update(futures)
        for future in futures:
            future.add_done_callback(self._done.append)

    def ready(self) -> Results:
        done = {}
        while self._done:
            future = self._done.popleft()
            if future in self._futures:
                done[future] = self._futures.pop(future)
        yield from LayerPool.collect(done)

    def drain(self) -> Results:
        if self._held:
            held, self._held = self._held, []
            self.start()
            self._hand_out(held)
        futures, self._futures = self._futures, {}
        self._done.clear()
        yield from LayerPool.collect(futures)

    def scan_texts(self, texts: list[bytes]) -> list[list[Match]] | None:
        # this process has the engines already (its workers were forked with them)
        return None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None


# --- Dask --------------------------------------------------------------------------------

# the engines of a Dask worker process, built once per detector configuration
_WORKER_ENGINES: dict[DetectorConfig, Detectors] = {}

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc's own defaults, and the largest mmap threshold it adjusts itself up to on 64 bits
_GLIBC_DEFAULT_THRESHOLD = 128 << 10
_ROOMY_MMAP = 32 << 20
_ROOMY_TRIM = 64 << 20


class RoomyMalloc:
    """glibc's allocator given room while layers are scanned, then put back as it was.

    A Dask nanny starts its workers with MALLOC_TRIM_THRESHOLD_=65536 (distributed's
    ``nanny.pre-spawn-environ``), so that freed memory goes back to the system. Any such
    variable also stops glibc from raising its mmap threshold as it does by itself: every
    buffer above 128 KiB (a 4 MiB file's bytes, a 1 MiB read) becomes an mmap of its own,
    page faults and a munmap. On bench/audit.py that was 2.4 s of system time in the two
    workers against 0.3 s without it, for 9 s of user time. While leakscan scans, the
    thresholds are those glibc reaches by itself; when the last scan of the process ends
    they are put back and what was freed is returned (``malloc_trim``), as the cluster's
    setting wants. Nothing is done when no such variable is set (glibc adapts by itself)
    or there is no glibc."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inside = 0
        self._libc: Any = None
        self._restore: tuple[int, int] | None = None
        trim = os.environ.get("MALLOC_TRIM_THRESHOLD_")
        mmap = os.environ.get("MALLOC_MMAP_THRESHOLD_")
        if sys.platform != "linux" or (trim is None and mmap is None):
            return
        try:
            libc = ctypes.CDLL(None)
            if not (hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim")):
                return
            restore = (
                int(trim) if trim is not None else _GLIBC_DEFAULT_THRESHOLD,
                int(mmap) if mmap is not None else _GLIBC_DEFAULT_THRESHOLD,
            )
        except (OSError, AttributeError, ValueError):  # not glibc, or a value glibc ignores
            return
        self._libc, self._restore = libc, restore

    @property
    def active(self) -> bool:
        """Whether the thresholds are changed during scans here."""
        return self._libc is not None

    def __enter__(self) -> None:
        if self._libc is None:
            return
        with self._lock:
            self._inside += 1
            if self._inside == 1:
                self._libc.mallopt(_M_MMAP_THRESHOLD, _ROOMY_MMAP)
                self._libc.mallopt(_M_TRIM_THRESHOLD, _ROOMY_TRIM)

    def __exit__(self, *exc: object) -> None:
        if self._libc is None or self._restore is None:
            return
        with self._lock:
            self._inside -= 1
            if self._inside == 0:
                trim, mmap = self._restore
                self._libc.mallopt(_M_MMAP_THRESHOLD, mmap)
                self._libc.mallopt(_M_TRIM_THRESHOLD, trim)
                self._libc.malloc_trim(0)


# one per process, made at import: the threads of a worker must share its count
_ROOMY = RoomyMalloc()


def _machine() -> str | None:
    """This boot of this machine and this process's network namespace (what ``localhost``
    means here), or None where that cannot be told."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            boot = fh.read().strip()
        return f"{boot} {os.readlink('/proc/self/ns/net')}"
    except OSError:
        return None


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


@dataclass(frozen=True)
class SharedStore:
    """The client's result store, described so that a Dask worker can tell whether it
    reaches the very same one (then it looks file contents up in it as a local worker
    process does) or not (then it scans without it).

    A redis store on another host is the same store from anywhere. A file store, a unix
    socket or a redis on ``localhost`` are the client's only on its machine: the worker
    must run on the same boot of the same kernel (and, for ``localhost``, in the same
    network namespace), and a path must be the same file (device and inode) as the
    client's. A remote worker where the path does not exist, or names another file, scans
    without a store; nothing is created there."""

    spec: str
    fingerprint: str
    machine: str | None
    file: tuple[int, int] | None

    @classmethod
    def of(cls, memo: MemoSpec) -> SharedStore:
        """The store ``memo`` names, as seen from here."""
        spec, fingerprint = memo
        path = _local_path(spec)
        if path is not None and not spec.startswith("unix://"):
            # the worker is told the path as the client resolved it (``~`` is the client's)
            path = spec = os.path.abspath(os.path.expanduser(spec))
        return cls(spec, fingerprint, _machine(), _identity(path) if path else None)

    def reachable(self) -> bool:
        """Whether this process reaches the client's store (see the class)."""
        path = _local_path(self.spec)
        if path is None:
            host = urlsplit(self.spec).hostname or "localhost"
            return not is_loopback(host) or (
                self.machine is not None and _machine() == self.machine
            )
        if self.file is None or self.machine is None or _machine() != self.machine:
            return False
        return _identity(path) == self.file


def _local_path(spec: str) -> str | None:
    """The file or socket a store spec names on its machine; None for a redis URL."""
    if spec.startswith(("redis://", "rediss://")):
        return None
    if spec.startswith("unix://"):
        return urlsplit(spec).path
    return spec


# per thread of a Dask worker (a StoreMemo is not shared between threads): the store it
# was told of, and its connection to it (None: not reachable from here)
_WORKER_STORE = threading.local()


def _worker_memo(store: SharedStore | None) -> StoreMemo | None:
    if store is None:
        return None
    held: tuple[SharedStore, StoreMemo | None] | None = getattr(_WORKER_STORE, "held", None)
    if held is None or held[0] != store:
        memo = None
        if store.reachable():
            # a store that fails answers nothing, silently: the client has said what is wrong
            memo = StoreMemo(open_store(store.spec), store.fingerprint)
        if held is not None and held[1] is not None:
            held[1].store.close()
        held = _WORKER_STORE.held = (store, memo)
    return held[1]


def _engines_here(config: DetectorConfig) -> Detectors:
    engines = _WORKER_ENGINES.get(config)
    if engines is None:
        engines = _WORKER_ENGINES[config] = build_engines(config)
    return engines


def scan_on_worker(
    blob: m.LayerBlob, settings: ScanSettings, store: SharedStore | None = None
) -> LayerScan:
    """One layer, on a Dask worker: it opens (pulls) the layer itself, and looks file
    contents up in the client's result store when it reaches it."""
    return scan_batch_on_worker((blob,), settings, store)[0]


def scan_batch_on_worker(
    blobs: Sequence[m.LayerBlob], settings: ScanSettings, store: SharedStore | None = None
) -> list[LayerScan]:
    """Layers one after the other, on a Dask worker (see :func:`scan_on_worker`): a
    layer that fails here is that layer's error, not its batch's."""
    engines = _engines_here(settings.detectors)
    memo = _worker_memo(store)
    results = []
    with _ROOMY:
        for blob in blobs:
            try:
                result = scan_layer(
                    blob, engines, settings.limits, max_file_size=settings.max_file_size, memo=memo
                )
            except Exception as exc:  # noqa: BLE001 - this layer's error, not the batch's
                # the type only: a message could quote image content
                result = _failed(blob, f"Dask worker failed ({type(exc).__name__})")
            results.append(result)
    if memo is not None:
        memo.flush()
        memo.store.flush_counts()
    return results


def scan_texts_on_worker(texts: list[bytes], config: DetectorConfig) -> list[list[Match]]:
    """The matches in each of ``texts``, on a Dask worker (whose engines are loaded)."""
    engines = _engines_here(config)
    return [engines.scan(text) for text in texts]


def warm_worker(settings: ScanSettings) -> None:
    """Load leakscan and the engines on a Dask worker before its first layer comes."""
    _engines_here(settings.detectors)


# Layers of fewer stored bytes than SMALL_LAYER go to the cluster in batches (up to
# BATCH_BYTES and BATCH_LAYERS each). A task is a round trip through the scheduler: on
# bench/audit.py's registry (2 cores, 100 app layers of a few KB) the worker waited 1.7 s in
# all between its 93 small tasks, for 0.95 s of scanning them.
SMALL_LAYER = 4 << 20
BATCH_BYTES = 16 << 20
BATCH_LAYERS = 64


class DaskFanout:
    """Layers sent to an existing Dask cluster (``distributed``), largest first, small ones
    in batches. ``memo`` names the result store: workers that reach it look file contents
    up in it.

    The client connects when made, before the caller walks the registry (importing
    ``distributed`` and meeting the scheduler take a quarter of a second). On a thread of
    its own beside the walk, as it did before, the two took the interpreter in turns and
    the first layers reached the cluster later: 0.93 s after the command started against
    0.59 s connected first (2 cores, bench/audit.py's registry). A cluster that cannot be
    reached is an OSError at the first call that needs it (at the latest ``drain``): the
    layers handed in wait here meanwhile.

    A batch of small layers is sent when it is full, when the cluster has a thread with
    nothing to do (fewer tasks out than threads), or at ``drain``."""

    def __init__(self, settings: ScanSettings, address: str, memo: MemoSpec | None = None) -> None:
        if importlib.util.find_spec("distributed") is None:
            from leakscan.errors import InputError

            raise InputError("--dask needs the distributed package: pip install 'leakscan[audit]'")
        self.settings = settings
        self.address = address
        self.store = SharedStore.of(memo) if memo is not None else None
        self.client: Any = None
        self._error: BaseException | None = None
        self._warm_sent = False
        self._queued: list[m.LayerBlob] = []
        # small layers waiting for a batch, and their stored bytes
        self._batch: list[m.LayerBlob] = []
        self._batch_bytes = 0
        self._futures: dict[Any, tuple[m.LayerBlob, ...]] = {}
        self._submitted = 0
        # tasks finished so far (counted by the client's event loop thread alone)
        self._finished = 0
        self._threads: int | None = None  # the cluster's worker threads, asked once
        self._texts_sent = 0
        self._warming: list[Any] = []
        self._done: deque[Any] = deque()  # futures as they complete (see LocalPool)
        self._connect()

    def _connect(self) -> None:
        try:
            from distributed import Client

            client: Any = Client(  # type: ignore[no-untyped-call]
                self.address, set_as_default=False, timeout="30s"
            )
        except Exception as exc:  # noqa: BLE001 - raised where the cluster is first needed
            self._error = exc
            return
        self.client = client

    def _connected(self) -> bool:
        """Whether the client is connected; the connection's error raised here."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return self.client is not None

    def start(self) -> None:
        """Have every worker load leakscan and its engines now, while the client walks
        the registry (a worker that starts on its first layer spends its first second
        importing)."""
        if self.client is None or self._warm_sent:
            return
        self._warm_sent = True
        # an optimisation only: a failure here is the layers' own to report
        with contextlib.suppress(Exception):
            self._warm()

    def _workers(self) -> dict[str, Any]:
        workers: dict[str, Any] = self.client.scheduler_info().get("workers", {})
        self._threads = max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))
        return workers

    def _warm(self) -> None:
        self._warming = [
            self.client.submit(
                warm_worker,
                self.settings,
                key=f"leakscan-warm-{n}",
                pure=False,
                workers=[address],
                allow_other_workers=False,
                priority=1,
            )
            for n, address in enumerate(self._workers())
        ]

    def submit(self, blobs: Sequence[m.LayerBlob]) -> None:
        self._queued.extend(blobs)
        if self._connected():
            self._send()

    def _idle_thread(self) -> bool:
        """Whether fewer tasks are out than the cluster has threads."""
        if self._threads is None:
            try:
                self._workers()
            except Exception:  # noqa: BLE001 - the tasks' own errors will say more
                self._threads = 1
        return self._submitted - self._finished < (self._threads or 1)

    def _send(self, everything: bool = False) -> None:
        blobs, self._queued = self._queued, []
        # largest first: the last layer to finish should be a small one
        for blob in sorted(blobs, key=lambda b: b.size or 0, reverse=True):
            if blob.size is None or blob.size >= SMALL_LAYER:
                self._task((blob,))
                continue
            self._batch.append(blob)
            self._batch_bytes += blob.size
            if len(self._batch) >= BATCH_LAYERS or self._batch_bytes >= BATCH_BYTES:
                self._send_batch()
        if self._batch and (everything or self._idle_thread()):
            self._send_batch()

    def _send_batch(self) -> None:
        batch, self._batch, self._batch_bytes = tuple(self._batch), [], 0
        self._task(batch)

    def _task(self, blobs: tuple[m.LayerBlob, ...]) -> None:
        n = self._submitted
        self._submitted += 1
        # a key of our own: Dask would otherwise hash the blobs (and their client) to name it
        first = blobs[0].diff_id or blobs[0].digest
        key = f"leakscan-layer-{n}-{first}" + (f"-and-{len(blobs) - 1}" if len(blobs) > 1 else "")
        future = self.client.submit(
            scan_batch_on_worker, blobs, self.settings, self.store, key=key, pure=False, priority=-n
        )
        self._futures[future] = blobs
        future.add_done_callback(self._completed)

    def _completed(self, future: Any) -> None:
        self._finished += 1
        self._done.append(future)

    def _results(self, future: Any) -> Results:
        blobs = self._futures.pop(future)
        try:
            results = future.result()
        except Exception as exc:  # noqa: BLE001 - a worker or the connection failed
            # the type only: a message could quote image content
            results = [_failed(b, f"Dask worker failed ({type(exc).__name__})") for b in blobs]
        finally:
            future.release()
        if not (isinstance(results, list) and len(results) == len(blobs)):
            # a worker of another leakscan, say: what it sent is not these layers' results
            why = "Dask worker answered with something else than the layers' results"
            results = [_failed(b, why) for b in blobs]
        yield from zip(blobs, results, strict=True)

    def ready(self) -> Results:
        if (self._queued or self._batch) and self._connected():
            self._send()
        while self._done:
            future = self._done.popleft()
            if future in self._futures:
                yield from self._results(future)

    def drain(self) -> Results:
        # waited for even with nothing to send: a cluster that cannot be reached is said
        self._connected()
        if self._queued or self._batch:
            self._send(everything=True)
        if not self._futures:
            return
        from distributed import as_completed

        # the loop named: as_completed would otherwise look for a default client
        done = as_completed(list(self._futures), loop=self.client.loop)  # type: ignore[no-untyped-call]
        for future in done:
            yield from self._results(future)

    def scan_texts(self, texts: list[bytes]) -> list[list[Match]] | None:
        """The strings scanned by a worker, ahead of every layer waiting (the client
        then never loads the rule catalog: 0.3 s of CPU taken from the workers on the
        same machine). None, for the caller to scan them, if the cluster fails to."""
        if self.client is None or self._error is not None:
            return None
        n = self._texts_sent
        self._texts_sent += 1
        try:
            future = self.client.submit(
                scan_texts_on_worker,
                texts,
                self.settings.detectors,
                key=f"leakscan-texts-{n}",
                pure=False,
                priority=2,
            )
        except Exception:  # noqa: BLE001 - the caller scans them itself
            return None
        try:
            found: list[list[Match]] = future.result()
        except Exception:  # noqa: BLE001 - the caller scans them itself
            return None
        finally:
            future.release()
        return found

    def close(self) -> None:
        client, self.client = self.client, None
        for future in self._warming:
            future.release()
        self._warming = []
        if client is not None:
            client.close()


def fanout(
    settings: ScanSettings,
    workers: int,
    dask: str | None,
    memo: MemoSpec | None = None,
    local_memo: StoreMemo | None = None,
) -> Fanout:
    """Where layers are scanned: Dask when an address is given, else ``workers`` local
    processes (1: this process alone). Local scans look file contents up in the result
    store: ``memo`` names it for worker processes (and Dask workers that reach it),
    ``local_memo`` is this process's."""
    if dask:
        return DaskFanout(settings, dask, memo)
    if workers > 1:
        return LocalPool(settings, workers, memo)
    return InProcess(settings, local_memo)
