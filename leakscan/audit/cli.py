"""What ``leakscan audit`` needs beside its flags: a progress bar, and the renderers."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from leakscan.audit.result import AuditCallback, AuditProgress, AuditReport

WIDTH = 30
# a terminal is redrawn at most this often
INTERVAL = 0.1


def render(report: AuditReport, fmt: str) -> str:
    """The report in ``fmt``: table, json or html."""
    if fmt == "json":
        from leakscan.audit.report import render_json

        return render_json(report)
    if fmt == "html":
        from leakscan.report.html import render_html

        return render_html(report)
    from leakscan.audit.report import render_table

    return render_table(report)


@contextmanager
def progress_bar(enabled: bool) -> Iterator[AuditCallback | None]:
    """A one-line progress bar on stderr while the audit runs (None when not ``enabled``)."""
    if not enabled:
        yield None
        return
    last = [0.0]

    def update(event: AuditProgress) -> None:
        now = time.monotonic()
        if now - last[0] < INTERVAL and event.done != event.total:
            return
        last[0] = now
        if event.total:
            filled = WIDTH * event.done // max(event.total, 1)
            bar = "#" * filled + "." * (WIDTH - filled)
            line = f"{event.phase:<6} [{bar}] {event.done}/{event.total}"
        else:
            line = f"{event.phase:<6} {event.done} images"
        sys.stderr.write("\r" + line[:79].ljust(79))
        sys.stderr.flush()

    try:
        yield update
    finally:
        sys.stderr.write("\r" + " " * 79 + "\r")
        sys.stderr.flush()
