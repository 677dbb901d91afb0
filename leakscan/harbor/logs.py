"""The adapter's log: one JSON object a line on stderr (time, level, message, fields). The
callers never hand it a credential; the Authorization headers are not logged at all."""

from __future__ import annotations

import json
import sys
import threading
from datetime import UTC, datetime
from typing import Any, TextIO


class JsonLog:
    """Writes ``{"time", "level", "msg", ...fields}`` lines; safe from any thread."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def __call__(self, msg: str, level: str = "info", **fields: Any) -> None:
        line = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": level,
            "msg": msg,
            **fields,
        }
        text = json.dumps(line, default=str)
        stream = self._stream or sys.stderr
        with self._lock:
            try:
                stream.write(text + "\n")
                stream.flush()
            except (OSError, ValueError):
                pass  # a closed stderr must not stop the adapter
