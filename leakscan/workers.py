"""Worker processes that scan layers side by side, so that a scan uses every core.

The calling process scans a share of the layers itself and workers the rest, so N cores
take N-1 workers. Each worker reads its layers itself: only a layer's description and its
results travel. Where it is safe, workers are forked from the calling process once its
engines are built, and start at once with them (a fresh interpreter takes ~0.8 s to import
leakscan and load the rules: longer than a whole scan of a small image). Forking is safe
only while the process runs a single thread (a lock held by another thread at the fork
stays held for ever in the child); otherwise, and where there is no fork, workers start
from a fresh interpreter (spawn) and build their own engines from the DetectorConfig.
Either way they die with the process that started them.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, as_completed, wait

from leakscan import model as m
from leakscan.detectors import DetectorConfig, Detectors, build_detectors
from leakscan.layers.archives import ArchiveLimits
from leakscan.layerscan import LayerScan, scan_layer
from leakscan.recall import StoreMemo
from leakscan.store import open_store

# below this many stored bytes, starting workers costs more than it saves, and the image is
# scanned in the calling process: a forked worker starts at once (a 48 MB image of five
# layers scans ~7% faster with one), a spawned one first loads leakscan and the rules (~0.8 s)
MIN_FORKED_BYTES = 32 << 20
MIN_SPAWNED_BYTES = 96 << 20
_PR_SET_PDEATHSIG = 1

_ENGINES: Detectors | None = None


def _start(config: DetectorConfig | None) -> None:
    global _ENGINES
    if sys.platform == "linux":
        # a scan killed outright (SIGTERM, SIGKILL) must not leave its workers behind
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    # Ctrl-C reaches the whole process group: the calling process stops the scan and ends its
    # workers (LayerPool.close), so a worker ignores it rather than print a traceback of its
    # own KeyboardInterrupt
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if config is not None:  # spawned: a fresh interpreter builds its own
        _ENGINES = build_detectors(config)
        return
    # forked: the handlers of the calling process came along (the daemon source's, which
    # remove its spool directory); a worker must die of a signal as a fresh one would
    for name in ("SIGTERM", "SIGHUP"):
        if (signum := getattr(signal, name, None)) is not None:
            signal.signal(signum, signal.SIG_DFL)


def _single_threaded() -> bool:
    """Whether this process runs one thread only, native threads included."""
    if threading.active_count() != 1:
        return False
    # a thread just joined may still be a task for a moment (join returns once the thread
    # has signalled its end, before the kernel has reaped it): give it up to 50 ms
    for _ in range(50):
        try:
            if len(os.listdir("/proc/self/task")) == 1:
                return True
        except OSError:  # no /proc: Python's own count is all there is to go on
            return sys.platform != "darwin"
        time.sleep(0.001)
    return False


def can_fork() -> bool:
    """Whether workers can be forked from this process now."""
    return "fork" in multiprocessing.get_all_start_methods() and _single_threaded()


# (store spec, detection fingerprint): the result store a worker looks file contents up in
MemoSpec = tuple[str, str]
_MEMO: tuple[MemoSpec, StoreMemo] | None = None


def _memo(spec: MemoSpec | None) -> StoreMemo | None:
    """This worker's own connection to the store (a forked one must not share the
    caller's), opened on first use; one that fails answers nothing, silently: the calling
    process has said what is wrong with the store."""
    global _MEMO
    if spec is None:
        return None
    if _MEMO is None or _MEMO[0] != spec:
        _MEMO = (spec, StoreMemo(open_store(spec[0]), spec[1]))
    return _MEMO[1]


def _work(
    blob: m.LayerBlob, limits: ArchiveLimits, max_file_size: int | None, memo: MemoSpec | None
) -> LayerScan:
    assert _ENGINES is not None, "worker started without engines"
    store = _memo(memo)
    result = scan_layer(blob, _ENGINES, limits, max_file_size=max_file_size, memo=store)
    if store is not None:
        store.flush()
        store.store.flush_counts()
    return result


class LayerPool:
    """Worker processes, started on first use, that share layers with the calling process."""

    def __init__(
        self, config: DetectorConfig, workers: int, engines: Detectors | None = None
    ) -> None:
        self.config = config
        # processes besides the calling one
        self.workers = max(0, workers)
        # this process's engines, built from ``config``: forked workers inherit them
        self.engines = engines
        self._pool: ProcessPoolExecutor | None = None
        self.forked = False

    def worth_it(self, blobs: Sequence[m.LayerBlob], later: bool = False) -> bool:
        """Whether ``blobs`` are many and large enough to share out (``later``: the caller
        gives the engines once they are built, and the workers are forked then)."""
        readable = [b for b in blobs if not b.unavailable]
        total = sum(b.size or 0 for b in readable)
        if self.workers <= 0 or len(readable) <= 1:
            return False
        if later:
            forks = "fork" in multiprocessing.get_all_start_methods()
        else:
            forks = self.engines is not None and can_fork()
        return total >= (MIN_FORKED_BYTES if forks else MIN_SPAWNED_BYTES)

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
        memo: MemoSpec | None = None,
    ) -> dict[Future[LayerScan], m.LayerBlob]:
        """Start scanning ``blobs`` in the workers (looking file contents up in the result
        store ``memo`` names)."""
        if not blobs:
            return {}
        if self._pool is None:
            self._open(len(blobs))
        assert self._pool is not None
        ordered = sorted(blobs, key=lambda b: b.size or 0, reverse=True)
        return {
            self._pool.submit(_work, blob, limits, max_file_size, memo): blob for blob in ordered
        }

    def _open(self, tasks: int) -> None:
        global _ENGINES
        self.forked = self.engines is not None and can_fork()
        if self.forked:
            _ENGINES = self.engines
        self._pool = ProcessPoolExecutor(
            max_workers=max(1, min(self.workers, tasks)),
            mp_context=multiprocessing.get_context("fork" if self.forked else "spawn"),
            initializer=_start,
            initargs=(None if self.forked else self.config,),
        )

    def start(self) -> None:
        """Start every worker now, while this process may still fork them (one thread):
        for a caller that hands layers in as it finds them, from threads of its own."""
        if self._pool is None:
            self._open(self.workers)
            assert self._pool is not None
            # the executor starts its processes with its first task
            self._pool.submit(os.getpid).result()

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

    def close(self, abort: bool = False) -> None:
        """Stop the workers: once their layers are done, or with ``abort`` at once."""
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        if abort:
            # the executor has no way to stop a task that is running: end the processes
            # (its private table of them is the only handle on them it gives)
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)


class Handout:
    """The workers' share of layers, handed to them as they free up, the largest left
    first, by a thread of the calling process; the caller takes back the smallest ones not
    handed out yet once its own share is scanned.

    Each worker also has one layer waiting behind the one it scans, as long as the layers
    left after it hold at least as much again: handed only when a worker has nothing left,
    a worker waited ~16 ms for each next layer (the thread that hands it out shares the
    GIL with this process's scan; an image of 40 layers of 5 MB scanned 3% slower), and
    handed all at once (or one ahead to the last), the layers at the end waited in a
    worker's queue while this process, done with its share, sat idle (a re-layered image
    re-scanned from the store: 7% slower).
    """

    def __init__(
        self,
        pool: LayerPool,
        blobs: Sequence[m.LayerBlob],
        limits: ArchiveLimits,
        max_file_size: int | None = None,
        memo: MemoSpec | None = None,
    ) -> None:
        self._pool = pool
        self._how = (limits, max_file_size, memo)
        self._lock = threading.Lock()
        self._left = deque(sorted(blobs, key=lambda b: b.size or 0, reverse=True))
        # every layer handed out, with its result to come
        self.futures: dict[Future[LayerScan], m.LayerBlob] = {}
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Hand each worker its first layer (starting the workers: call it while this
        process may still fork them), and the rest as they free up."""
        first = [blob for _ in range(self._pool.workers) if (blob := self._next()) is not None]
        self.futures.update(self._pool.submit(first, *self._how))
        if self._left:
            self._thread = threading.Thread(target=self._feed, name="leakscan-handout", daemon=True)
            self._thread.start()

    def _next(self, ahead: bool = False) -> m.LayerBlob | None:
        """The largest layer left (None: none left; with ``ahead``, also when the layers
        after it hold less than it does)."""
        with self._lock:
            if not self._left:
                return None
            if ahead and sum(b.size or 0 for b in self._left) < 2 * (self._left[0].size or 0):
                return None
            return self._left.popleft()

    def take_back(self) -> m.LayerBlob | None:
        """The smallest layer not handed to a worker yet, for the caller to scan itself."""
        with self._lock:
            return self._left.pop() if self._left else None

    def _feed(self) -> None:
        workers = self._pool.workers
        while True:
            with self._lock:
                running = [f for f in self.futures if not f.done()]
                left = bool(self._left)
            if not left:
                return
            blob = None
            if len(running) < 2 * workers:
                blob = self._next(ahead=len(running) >= workers)
            if blob is None:
                if not running:  # the caller took the last ones back meanwhile
                    return
                wait(running, return_when=FIRST_COMPLETED)
                continue
            try:
                handed = self._pool.submit([blob], *self._how)
            except Exception:  # noqa: BLE001 - a pool that broke or was shut: the caller scans it
                with self._lock:
                    self._left.appendleft(blob)
                return
            with self._lock:
                self.futures.update(handed)

    def settled(self) -> bool:
        """Once :meth:`take_back` has none left: wait for the hand-out to end, and say
        whether every layer was handed out or taken back. False when a pool that broke put
        back a layer it could not hand out: the caller takes it back too."""
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            return not self._left

    def results(self) -> Iterator[tuple[m.LayerBlob, LayerScan]]:
        """Every layer handed out, as it completes (once :meth:`settled`)."""
        yield from LayerPool.collect(self.futures)
