"""Scan processes of the adapter: each one loads the rule catalog once, then scans the
images the adapter sends it over a pipe, one at a time. A scan that runs over its time is
ended by killing its process (a thread cannot be stopped), and a process is replaced after a
number of scans so that what a long life accumulates stays bounded."""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import signal
import threading
from dataclasses import dataclass
from typing import Any

from leakscan import model as m
from leakscan.scan import ScanOptions

# how long a new process may take to load (or, the first time, compile) the rule catalog
START_TIMEOUT = 300.0


@dataclass(frozen=True)
class Outcome:
    """What one scan gave: a report, or why there is none (secret-free)."""

    report: m.ScanReport | None
    error: str | None = None


def _main(conn: multiprocessing.connection.Connection) -> None:
    """The scan process: ``(reference, options)`` in, :class:`Outcome` out, until the pipe
    closes (the adapter stopped or died) or None arrives."""
    # Ctrl-C in a terminal reaches the whole process group: the adapter decides
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from leakscan.detectors.kingfisher import catalog, catalog_info
    from leakscan.scan import scan

    catalog()
    info = catalog_info()
    conn.send(("ready", str(info) if info else ""))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        reference, options = message
        try:
            outcome = Outcome(scan(reference, options))
        except Exception as exc:  # a bug: its type only, the message may quote anything
            outcome = Outcome(None, f"internal error in the scan ({type(exc).__name__})")
        try:
            conn.send(outcome)
        except (OSError, ValueError):
            return


class ScanProcess:
    """One scan process, started on first use and again after it is killed or retired."""

    def __init__(self, max_scans: int) -> None:
        self.max_scans = max_scans
        self._proc: Any = None
        self._conn: multiprocessing.connection.Connection | None = None
        self._scans = 0
        self.rules = ""
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start the process and wait until its catalog is loaded. Raises RuntimeError."""
        if self._proc is not None and self._proc.is_alive():
            return
        # spawn: the adapter is threaded, and forking a threaded process can inherit a lock
        # held by another thread
        ctx = multiprocessing.get_context("spawn")
        ours, theirs = ctx.Pipe()
        proc = ctx.Process(target=_main, args=(theirs,), daemon=True, name="leakscan-scan")
        proc.start()
        theirs.close()
        with self._lock:
            self._proc, self._conn, self._scans = proc, ours, 0
        if not ours.poll(START_TIMEOUT):
            self.kill()
            raise RuntimeError("a scan process did not start in time")
        try:
            tag, rules = ours.recv()
        except (EOFError, OSError):
            self.kill()
            raise RuntimeError("a scan process ended while starting") from None
        self.rules = rules if tag == "ready" else ""

    def run(self, reference: str, options: ScanOptions, timeout: float) -> Outcome:
        """Scan ``reference``; the process is killed when it takes longer than ``timeout``."""
        try:
            self.start()
        except RuntimeError as exc:
            return Outcome(None, str(exc))
        conn = self._conn
        assert conn is not None
        try:
            conn.send((reference, options))
            if not conn.poll(timeout):
                self.kill()
                return Outcome(None, f"the scan took longer than {timeout:g} s and was stopped")
            outcome: Outcome = conn.recv()
        except (EOFError, OSError, ValueError):
            self.kill()
            return Outcome(None, "the scan process ended unexpectedly")
        self._scans += 1
        if self._scans >= self.max_scans:
            self.retire()
        return outcome

    def retire(self) -> None:
        """Ask the process to end after its scan; a new one starts on next use."""
        with self._lock:
            proc, conn = self._proc, self._conn
            self._proc = self._conn = None
        if conn is not None:
            with contextlib.suppress(OSError, ValueError):
                conn.send(None)
            conn.close()
        if proc is not None:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(10)

    def kill(self) -> None:
        """End the process at once (its scan, if any, is lost)."""
        with self._lock:
            proc, conn = self._proc, self._conn
            self._proc = self._conn = None
        if proc is not None and proc.is_alive():
            proc.kill()
        if proc is not None:
            proc.join(10)
        if conn is not None:
            conn.close()
