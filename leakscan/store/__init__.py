"""The result store: what scanning a layer, or a file's content, yielded, kept so that the
same bytes are never scanned twice. It never fetches and never scans; the scan asks it
first and tells it what it found.

A store that cannot be used (a corrupt, locked, read-only or foreign database, an
unreachable Redis) is one warning, and the scan runs without it: a store can make a scan
faster, never wrong and never failed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from leakscan.store.backends import Backend, BackendInfo, StoreError, open_backend

# what the store keeps, one namespace each
LAYER = "layer"
CONTENT = "content"
# that a file of some size and first bytes was kept under CONTENT: a hint, never a result
HEAD = "head"
ENV_DIR = "LEAKSCAN_CACHE_DIR"
FILE_NAME = "results.sqlite3"

Warn = Callable[[str], None]
T = TypeVar("T")


def default_location() -> Path:
    """Where the store lives unless told: ``$LEAKSCAN_CACHE_DIR``, else the user's cache
    folder (``~/.cache/leakscan`` on Linux)."""
    folder = os.environ.get(ENV_DIR)
    if not folder:
        import platformdirs  # only when the default is needed

        folder = platformdirs.user_cache_dir("leakscan", appauthor=False)
    return Path(folder) / FILE_NAME


@dataclass
class Counts:
    """Hits and misses of one scan, by kind."""

    hits: dict[str, int] = field(default_factory=dict)
    misses: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, hits: int, misses: int) -> None:
        """Count a lookup's outcome."""
        self.hits[kind] = self.hits.get(kind, 0) + hits
        self.misses[kind] = self.misses.get(kind, 0) + misses


class ResultStore:
    """Entries under (kind, key); every call is safe: after the first failure the store
    warns once and answers nothing for the rest of the process."""

    def __init__(self, backend: Backend | None, warn: Warn | None = None) -> None:
        self._backend = backend
        self._warn = warn
        self.counts = Counts()
        # a failure made it answer nothing (closing it does not)
        self.failed = False

    @property
    def enabled(self) -> bool:
        """Whether lookups can answer at all."""
        return self._backend is not None

    def _failed(self, exc: StoreError) -> None:
        self.failed = True
        backend, self._backend = self._backend, None
        if backend is not None:
            backend.close()
        if self._warn is not None:
            self._warn(f"{exc}; scanning without it")

    def get_many(self, kind: str, keys: Sequence[str]) -> dict[str, bytes]:
        """The stored values of ``keys`` (the missing ones absent)."""
        if self._backend is None or not keys:
            return {}
        try:
            found = self._backend.get_many(kind, keys)
        except StoreError as exc:
            self._failed(exc)
            return {}
        self.counts.add(kind, len(found), len(keys) - len(found))
        return found

    def get(self, kind: str, key: str) -> bytes | None:
        """One stored value."""
        return self.get_many(kind, [key]).get(key)

    def put_many(self, kind: str, items: Iterable[tuple[str, bytes]]) -> None:
        """Store values (replacing what was there)."""
        if self._backend is None:
            return
        try:
            self._backend.put_many(kind, items)
        except StoreError as exc:
            self._failed(exc)

    def forget_counts(self) -> None:
        """Drop this process's hit counts since the last flush (lookups of a scan given
        up, which is made again)."""
        self.counts = Counts()

    def flush_counts(self) -> None:
        """Add this process's hit counts so far to the store's."""
        counts, self.counts = self.counts, Counts()
        if self._backend is None:
            return
        try:
            for kind in sorted(set(counts.hits) | set(counts.misses)):
                self._backend.count(kind, counts.hits.get(kind, 0), counts.misses.get(kind, 0))
        except StoreError as exc:
            self._failed(exc)

    def close(self) -> None:
        """Record this process's hit counts and release the backend."""
        self.flush_counts()
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_store(spec: str | None = None, warn: Warn | None = None) -> ResultStore:
    """The store ``spec`` names (``redis://HOST:PORT/DB``, a file, or None for the default
    file); on failure a store that answers nothing, after one warning."""
    try:
        backend = _backend(spec)
    except StoreError as exc:
        if warn is not None:
            warn(f"{exc}; scanning without it")
        return ResultStore(None)
    return ResultStore(backend, warn)


def no_store() -> ResultStore:
    """A store that answers nothing (``--no-cache``)."""
    return ResultStore(None)


def _backend(spec: str | None) -> Backend:
    return open_backend(spec) if spec else open_backend(str(default_location()))


def _using(spec: str | None, fn: Callable[[Backend], T]) -> T:
    backend = _backend(spec)
    try:
        return fn(backend)
    finally:
        backend.close()


def store_info(spec: str | None = None) -> BackendInfo:
    """What the store holds; raises :class:`StoreError` when it cannot be read."""
    return _using(spec, lambda b: b.info())


def prune_store(older_than: float, spec: str | None = None) -> int:
    """Remove entries no scan has used for ``older_than`` seconds; how many went."""
    return _using(spec, lambda b: b.prune(older_than))


def clear_store(spec: str | None = None) -> int:
    """Remove every entry; how many went."""
    return _using(spec, lambda b: b.clear())


__all__ = [
    "CONTENT",
    "HEAD",
    "LAYER",
    "BackendInfo",
    "ResultStore",
    "StoreError",
    "clear_store",
    "default_location",
    "no_store",
    "open_store",
    "prune_store",
    "store_info",
]
