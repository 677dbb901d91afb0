"""The adapter's scans: a bounded queue, a fixed number of scan processes, one scan per
image however many requests ask for it at once, results kept for a while.

Requests for the same registry, repository and digest with the same credentials share one
scan while it is queued or running, and for ``reuse_for`` seconds after it succeeded. Every
request still gets an id of its own, so none is lost or answered twice. Scan ids and
reports are forgotten ``result_ttl`` seconds after their scan ended.
"""

from __future__ import annotations

import enum
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from leakscan import model as m
from leakscan.harbor.api import ScanRequest
from leakscan.harbor.worker import Outcome, ScanProcess
from leakscan.scan import ScanOptions

Log = Callable[..., None]


class State(enum.StrEnum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"


@dataclass
class Job:
    """One scan of one image (shared by every request for it). Changed under the
    scheduler's lock only."""

    request: ScanRequest
    created: float
    state: State = State.queued
    finished: float | None = None
    finished_at: str = ""
    report: m.ScanReport | None = None
    error: str | None = None
    number: int = 0


@dataclass(frozen=True)
class Settings:
    """How the scheduler runs scans."""

    workers: int = 2
    queue_size: int = 100
    timeout: float = 600.0
    result_ttl: float = 3600.0
    reuse_for: float = 300.0
    # a scan process is replaced after this many scans
    max_scans: int = 50


class QueueFull(Exception):
    """No room for another scan (HTTP 429)."""


class ShuttingDown(Exception):
    """The adapter stopped taking scans (HTTP 503)."""


@dataclass
class Counters:
    """What the scheduler did since it started (``/metrics``)."""

    requests: int = 0
    deduplicated: int = 0
    rejected_full: int = 0
    scans_started: int = 0
    scans_succeeded: int = 0
    scans_failed: int = 0
    expired: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Scheduler:
    """Scan requests in, reports out; :meth:`start` before use, :meth:`shutdown` after."""

    def __init__(
        self,
        settings: Settings,
        options: Callable[[ScanRequest], ScanOptions],
        log: Log,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._options = options
        self._log = log
        self._clock = clock
        self._lock = threading.Lock()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._queued = 0
        self._ids: dict[str, Job] = {}
        self._by_key: dict[tuple[str, str, str, str], Job] = {}
        self._processes = [ScanProcess(settings.max_scans) for _ in range(settings.workers)]
        self._threads: list[threading.Thread] = []
        self._started = 0
        self._closing = False
        self._numbers = 0
        self.counters = Counters()

    # -- life

    def start(self) -> None:
        """Start one thread per scan process; each starts its process at once."""
        for n, proc in enumerate(self._processes):
            thread = threading.Thread(target=self._loop, args=(proc,), name=f"scan-{n}")
            thread.start()
            self._threads.append(thread)

    @property
    def ready(self) -> bool:
        """Every scan process has loaded its rules and the scheduler takes scans."""
        with self._lock:
            return self._started >= len(self._processes) and not self._closing

    @property
    def rules(self) -> str:
        """The rule catalog the scan processes loaded (empty before one has)."""
        return next((p.rules for p in self._processes if p.rules), "")

    def shutdown(self, grace: float) -> None:
        """Take no more scans; fail the queued ones; give running ones ``grace`` seconds to
        end, then stop them (they fail)."""
        with self._lock:
            self._closing = True
            while True:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is not None and job.state is State.queued:
                    self._finish(job, Outcome(None, "the adapter was shut down before the scan"))
            self._queued = 0
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + grace
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self._threads):
            for proc in self._processes:
                proc.kill()
            for thread in self._threads:
                thread.join(30)

    # -- requests

    def submit(self, request: ScanRequest) -> str:
        """A new scan id for ``request``: a new scan, or the one running or recently done
        for the same image. Raises QueueFull or ShuttingDown."""
        scan_id = str(uuid.uuid4())
        with self._lock:
            if self._closing:
                raise ShuttingDown("the adapter is shutting down")
            now = self._clock()
            self._expire(now)
            self.counters.requests += 1
            job = self._by_key.get(request.key)
            if job is not None and self._shareable(job, now):
                self._ids[scan_id] = job
                self.counters.deduplicated += 1
                self._log("scan request joined", id=scan_id, scan=job.number, **_what(request))
                return scan_id
            if self._queued >= self.settings.queue_size:
                self.counters.rejected_full += 1
                raise QueueFull(f"{self._queued} scans are waiting; try again later")
            self._numbers += 1
            job = Job(request, now, number=self._numbers)
            self._ids[scan_id] = job
            self._by_key[request.key] = job
            self._queued += 1
            self._queue.put(job)
        self._log("scan request queued", id=scan_id, scan=job.number, **_what(request))
        return scan_id

    def _shareable(self, job: Job, now: float) -> bool:
        if job.state in (State.queued, State.running):
            return True
        return (
            job.state is State.done
            and job.finished is not None
            and now - job.finished <= self.settings.reuse_for
        )

    def get(self, scan_id: str) -> Job | None:
        """A copy of the scan behind ``scan_id`` as it is now, taken under the lock (None:
        unknown or forgotten)."""
        with self._lock:
            self._expire(self._clock())
            job = self._ids.get(scan_id)
            return replace(job) if job is not None else None

    def snapshot(self) -> dict[str, Any]:
        """Counters and sizes, for ``/metrics`` and logs."""
        with self._lock:
            c = self.counters
            running = sum(1 for j in self._by_key.values() if j.state is State.running)
            return {
                "requests": c.requests,
                "deduplicated": c.deduplicated,
                "rejected_full": c.rejected_full,
                "scans_started": c.scans_started,
                "scans_succeeded": c.scans_succeeded,
                "scans_failed": c.scans_failed,
                "expired_ids": c.expired,
                "queued": self._queued,
                "running": running,
                "ids_kept": len(self._ids),
                "workers": len(self._processes),
                "queue_size": self.settings.queue_size,
            }

    def _expire(self, now: float) -> None:
        ttl = self.settings.result_ttl
        old = [
            i
            for i, job in self._ids.items()
            if job.finished is not None and now - job.finished > ttl
        ]
        for i in old:
            del self._ids[i]
        self.counters.expired += len(old)
        for key in [k for k, j in self._by_key.items() if j.finished is not None]:
            job = self._by_key[key]
            if job.finished is not None and now - job.finished > ttl:
                del self._by_key[key]

    # -- the scan threads

    def _loop(self, proc: ScanProcess) -> None:
        try:
            proc.start()
        except RuntimeError as exc:
            self._log("scan process did not start", level="error", reason=str(exc))
        else:
            with self._lock:
                self._started += 1
            self._log("scan process ready", pid=proc.pid, rules=proc.rules)
        try:
            while True:
                job = self._queue.get()
                if job is None:
                    break
                with self._lock:
                    if job.state is not State.queued:
                        continue
                    self._queued -= 1
                    job.state = State.running
                    self.counters.scans_started += 1
                self._log("scan started", scan=job.number, pid=proc.pid, **_what(job.request))
                began = time.monotonic()
                try:
                    outcome = proc.run(
                        job.request.reference, self._options(job.request), self.settings.timeout
                    )
                except Exception as exc:  # a bug here must not leave the job running
                    outcome = Outcome(None, f"internal error ({type(exc).__name__})")
                with self._lock:
                    self._finish(job, outcome)
                fields: dict[str, Any] = {"scan": job.number, "state": str(job.state)}
                fields["seconds"] = round(time.monotonic() - began, 3)
                if job.report is not None:
                    fields["findings"] = len(job.report.findings)
                    if job.report.cache is not None:
                        fields["layers_from_store"] = job.report.cache.layers_cached
                        fields["layers_scanned"] = job.report.cache.layers_scanned
                if job.error:
                    fields["error"] = job.error
                self._log(
                    "scan finished",
                    level="info" if job.error is None else "warning",
                    **fields,
                    **_what(job.request),
                )
        finally:
            proc.retire()

    def _finish(self, job: Job, outcome: Outcome) -> None:
        """Record how ``job`` ended (under the lock)."""
        job.finished = self._clock()
        # the registry credentials are not kept past their scan (the key holds their hash)
        job.request = replace(job.request, authorization=None)
        job.finished_at = (
            datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        )
        job.report = outcome.report
        error = outcome.error
        if error is None and outcome.report is not None and not outcome.report.complete:
            report = outcome.report
            problems = [*report.errors, *(p for i in report.images for p in i.errors)]
            what = "failed" if not report.images else "is incomplete"
            error = f"the scan {what}: " + "; ".join(p.message for p in problems[:5])
        if error is None and outcome.report is None:
            error = "the scan gave no report"
        job.error = error
        job.state = State.failed if error else State.done
        if error:
            self.counters.scans_failed += 1
        else:
            self.counters.scans_succeeded += 1


def _what(request: ScanRequest) -> dict[str, str]:
    """A request's fields for a log line: never its authorization."""
    return {"registry": request.host, "repository": request.repository, "digest": request.digest}
