"""Where the result store keeps its entries: a SQLite file (the default, one per user) or a
Redis server (shared between machines). Both hold opaque values under a kind and a key and
know nothing of what is in them; :mod:`leakscan.store` decides what is stored.

Entries carry the time they were last used, so that ``leakscan cache prune --older-than``
removes what no scan has needed for a while.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from leakscan.errors import LeakscanError

# written into the SQLite header: a database file that does not carry it is someone else's
APPLICATION_ID = 0x4C4B5343  # "LKSC"
SCHEMA_VERSION = 1
# how long a write waits for another process's transaction (two scans at once) before the
# store gives up for this scan
BUSY_TIMEOUT_MS = 10_000
REDIS_PREFIX = "leakscan:v1:"
# pages the write-ahead log may hold before a commit checkpoints it (32 MiB at 4 KiB pages)
WAL_PAGES = 8192
# entries marked used in one transaction, at the latest when the store is closed
USED_BATCH = 4096
# an entry marked used this recently is not marked again: a re-scan whose entries a scan
# used within the hour writes nothing (prune then errs by at most this, never keeping an
# entry that went unused for longer than asked plus this)
USED_REFRESH = 3600.0
# hit and miss counts are appended to this file beside the database, one line a scan and
# kind, and folded into the counters table once it is this large: counting in the database
# made every re-scan a write transaction, whose syncs (the write-ahead log's, then the
# checkpoint's when the last connection closes) cost a re-scan answered whole 15-25 ms of
# wall time on an ext4 disk, about a fifth of it
COUNTS_SUFFIX = "-counts"
COUNTS_FOLD = 64 << 10


class StoreError(LeakscanError):
    """The store cannot be used: a scan goes on without it (a cache command fails)."""


@dataclass(frozen=True)
class BackendInfo:
    """What a backend holds."""

    location: str
    size_bytes: int
    entries: dict[str, int]
    hits: dict[str, int]
    misses: dict[str, int]


class Backend(Protocol):
    """Opaque values under (kind, key); every method may raise :class:`StoreError`."""

    def get_many(self, kind: str, keys: Sequence[str]) -> dict[str, bytes]:
        """The values of those ``keys`` that are stored (and marks them used now)."""
        ...

    def put_many(self, kind: str, items: Iterable[tuple[str, bytes]]) -> None:
        """Store every (key, value), replacing what was there."""
        ...

    def count(self, kind: str, hits: int, misses: int) -> None:
        """Add to the hit and miss counters of ``kind``."""
        ...

    def info(self) -> BackendInfo:
        """Size, entries, counters."""
        ...

    def prune(self, older_than: float) -> int:
        """Remove entries not used for ``older_than`` seconds; how many went."""
        ...

    def clear(self) -> int:
        """Remove every entry; how many went."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


def _private_dir(path: Path) -> None:
    """Create ``path`` (and parents) readable by this user only; an existing folder that
    others can read is made private too, since entries name what images held."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)


class SQLiteBackend:
    """One SQLite file, in WAL mode so that scans running at once read while one writes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # entries looked up and not yet marked used: (kind, key) -> when
        self._used: dict[tuple[str, str], float] = {}
        try:
            _private_dir(path.parent)
            # create the file 0600 before SQLite opens it (SQLite would use the umask)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)
            self._db = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
            self._setup()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"result store {path}: {_why(exc)}") from None

    def _setup(self) -> None:
        db = self._db
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        if app_id != APPLICATION_ID and tables:
            raise StoreError("not a leakscan result store (another program's database)")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if app_id == APPLICATION_ID and version != SCHEMA_VERSION:
            raise StoreError(f"result store format {version}, this leakscan reads {SCHEMA_VERSION}")
        # the journal files must be private as well: they hold the same entries
        for suffix in ("-wal", "-shm", COUNTS_SUFFIX):
            side = self.path.with_name(self.path.name + suffix)
            if side.exists() and side.stat().st_mode & 0o077:
                side.chmod(0o600)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        # a checkpoint syncs the log and the database (two fdatasyncs, 5-30 ms each on an
        # ext4 disk): at SQLite's default of 1000 pages a cold scan of a 400 MiB image
        # checkpointed three times on top of the one when the last connection closes
        db.execute(f"PRAGMA wal_autocheckpoint={WAL_PAGES}")
        if not tables:
            with self._tx():
                db.execute(f"PRAGMA application_id={APPLICATION_ID}")
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                db.execute(
                    "CREATE TABLE IF NOT EXISTS entries (kind TEXT NOT NULL, key TEXT NOT NULL,"
                    " value BLOB NOT NULL, used REAL NOT NULL, PRIMARY KEY (kind, key))"
                    " WITHOUT ROWID"
                )
                db.execute(
                    "CREATE TABLE IF NOT EXISTS counters (kind TEXT PRIMARY KEY,"
                    " hits INTEGER NOT NULL, misses INTEGER NOT NULL)"
                )
        # a file that is not a database fails here; deeper damage at the first lookup (one
        # warning then, as here). Not count(*): that reads every page, 4-6 ms of a re-scan
        # the store answers whole on a store of 18,000 entries
        db.execute("SELECT 1 FROM entries LIMIT 1").fetchone()

    @contextlib.contextmanager
    def _tx(self) -> Any:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _run(self, fn: Any) -> Any:
        try:
            return fn()
        except sqlite3.Error as exc:
            raise StoreError(f"result store {self.path}: {_why(exc)}") from None

    def get_many(self, kind: str, keys: Sequence[str]) -> dict[str, bytes]:
        """See :class:`Backend`."""

        def go() -> dict[str, bytes]:
            found: dict[str, bytes] = {}
            for start in range(0, len(keys), 500):  # SQLite's bound on host parameters
                part = keys[start : start + 500]
                marks = ",".join("?" * len(part))
                rows = self._db.execute(
                    f"SELECT key, value, used FROM entries WHERE kind = ? AND key IN ({marks})",
                    (kind, *part),
                )
                for key, value, used in rows:
                    found[key] = bytes(value)
                    if used < stale:
                        # marked used later, many at once: a write transaction per lookup
                        # cost a re-scan more than the lookups themselves
                        self._used[(kind, key)] = now
            if len(self._used) >= USED_BATCH:
                self._write_used()
            return found

        now = time.time()
        stale = now - USED_REFRESH

        result: dict[str, bytes] = self._run(go)
        return result

    def _write_used(self) -> None:
        """Mark the entries looked up since the last write as used (a transaction of its
        own unless called inside one)."""
        used, self._used = getattr(self, "_used", None), {}
        if not used:
            return
        rows = [(when, kind, key) for (kind, key), when in used.items()]

        def go() -> None:
            sql = "UPDATE entries SET used = ? WHERE kind = ? AND key = ?"
            if self._db.in_transaction:
                self._db.executemany(sql, rows)
                return
            with self._tx():
                self._db.executemany(sql, rows)

        self._run(go)

    def put_many(self, kind: str, items: Iterable[tuple[str, bytes]]) -> None:
        """See :class:`Backend`."""
        now = time.time()
        rows = [(kind, key, value, now) for key, value in items]

        def go() -> None:
            with self._tx():
                self._db.executemany(
                    "INSERT OR REPLACE INTO entries (kind, key, value, used) VALUES (?, ?, ?, ?)",
                    rows,
                )
                self._write_used()

        if rows:
            self._run(go)

    @property
    def _counts_path(self) -> Path:
        return self.path.with_name(self.path.name + COUNTS_SUFFIX)

    def count(self, kind: str, hits: int, misses: int) -> None:
        """See :class:`Backend`. Appended to the counts file (see COUNTS_SUFFIX), which
        is folded into the database once it grows."""
        self._write_used()
        if not hits and not misses:
            return
        try:
            fd = os.open(self._counts_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                # a line of its own even after a write a crash cut short
                os.write(fd, f"\n{kind} {int(hits)} {int(misses)}\n".encode())
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
        except OSError as exc:
            raise StoreError(f"result store {self._counts_path}: {_why(exc)}") from None
        if size >= COUNTS_FOLD:
            self._fold_counts()

    def _fold_counts(self) -> None:
        """Move the counts file's totals into the counters table. The file is renamed
        first, so that a scan counting meanwhile starts a new one; a count appended to the
        old one between the rename and the read may be lost (counts are statistics)."""
        taken = self._counts_path.with_name(f"{self._counts_path.name}.{os.getpid()}.fold")
        try:
            os.rename(self._counts_path, taken)
        except FileNotFoundError:
            return  # another scan folded it
        except OSError as exc:
            raise StoreError(f"result store {self._counts_path}: {_why(exc)}") from None
        totals = _read_counts(taken)
        with contextlib.suppress(OSError):
            taken.unlink()

        def go() -> None:
            with self._tx():
                self._db.executemany(
                    "INSERT INTO counters (kind, hits, misses) VALUES (?, ?, ?) ON CONFLICT(kind)"
                    " DO UPDATE SET hits = hits + excluded.hits, misses = misses + excluded.misses",
                    [(kind, h, m) for kind, (h, m) in sorted(totals.items())],
                )

        if totals:
            self._run(go)

    def info(self) -> BackendInfo:
        """See :class:`Backend`."""
        self._write_used()

        def go() -> BackendInfo:
            entries = dict(self._db.execute("SELECT kind, count(*) FROM entries GROUP BY kind"))
            counted = _read_counts(self._counts_path)
            for kind, h, m in self._db.execute("SELECT kind, hits, misses FROM counters"):
                extra = counted.setdefault(kind, [0, 0])
                extra[0] += h
                extra[1] += m
            counters = [(kind, h, m) for kind, (h, m) in counted.items()]
            size = sum(
                p.stat().st_size
                for p in (
                    self.path,
                    *(self.path.with_name(self.path.name + s) for s in ("-wal", COUNTS_SUFFIX)),
                )
                if p.exists()
            )
            return BackendInfo(
                str(self.path),
                size,
                entries,
                {k: h for k, h, _ in counters},
                {k: m for k, _, m in counters},
            )

        info: BackendInfo = self._run(go)
        return info

    def prune(self, older_than: float) -> int:
        """See :class:`Backend`."""
        self._write_used()

        def go() -> int:
            with self._tx():
                cur = self._db.execute(
                    "DELETE FROM entries WHERE used < ?", (time.time() - older_than,)
                )
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return cur.rowcount

        removed: int = self._run(go)
        return removed

    def clear(self) -> int:
        """See :class:`Backend`."""
        self._write_used()

        def go() -> int:
            with self._tx():
                cur = self._db.execute("DELETE FROM entries")
                self._db.execute("DELETE FROM counters")
                with contextlib.suppress(FileNotFoundError):
                    self._counts_path.unlink()
            self._db.execute("VACUUM")
            return cur.rowcount

        removed: int = self._run(go)
        return removed

    def close(self) -> None:
        """See :class:`Backend`."""
        with contextlib.suppress(StoreError):
            self._write_used()
        with contextlib.suppress(sqlite3.Error):
            self._db.close()


def _read_counts(path: Path) -> dict[str, list[int]]:
    """The totals of a counts file by kind ({} when there is none); a line that is not
    ``KIND HITS MISSES`` (one cut short by a crash) is left out."""
    totals: dict[str, list[int]] = {}
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return totals
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            one = totals.setdefault(parts[0], [0, 0])
            one[0] += int(parts[1])
            one[1] += int(parts[2])
    return totals


class RedisBackend:
    """Entries in a Redis server, shared by every machine that points at it. Values live
    under ``leakscan:v1:KIND:KEY``; a sorted set per kind records when each was last used."""

    def __init__(self, url: str) -> None:
        try:
            import redis  # imported here: only a shared store needs the client
        except ImportError:
            raise StoreError("--cache redis://... needs the redis package") from None
        self.url = url
        parts = urlsplit(url)
        # the location shown to users never carries the password of the URL
        host = parts.hostname or "localhost"
        self.location = f"redis://{host}:{parts.port or 6379}{parts.path or '/0'}"
        try:
            # typed as Any: redis-py's own hints widen every reply to bytes | str | list...
            self._redis: Any = redis.Redis.from_url(
                url, socket_timeout=5, socket_connect_timeout=5, password=_password(url)
            )
            self._redis.ping()
        except redis.RedisError as exc:
            raise StoreError(f"result store {self.location}: {type(exc).__name__}") from None
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)

    def _run(self, fn: Any) -> Any:
        try:
            return fn()
        except self._errors as exc:
            raise StoreError(f"result store {self.location}: {type(exc).__name__}") from None

    def get_many(self, kind: str, keys: Sequence[str]) -> dict[str, bytes]:
        """See :class:`Backend`."""
        if not keys:
            return {}

        def go() -> dict[str, bytes]:
            values = self._redis.mget([f"{REDIS_PREFIX}{kind}:{k}" for k in keys])
            found = {k: bytes(v) for k, v in zip(keys, values, strict=True) if v is not None}
            if found:
                now = time.time()
                self._redis.zadd(f"{REDIS_PREFIX}used:{kind}", {k: now for k in found})
            return found

        result: dict[str, bytes] = self._run(go)
        return result

    def put_many(self, kind: str, items: Iterable[tuple[str, bytes]]) -> None:
        """See :class:`Backend`."""
        pairs = list(items)
        if not pairs:
            return

        def go() -> None:
            now = time.time()
            pipe = self._redis.pipeline()
            pipe.mset({f"{REDIS_PREFIX}{kind}:{k}": v for k, v in pairs})
            pipe.zadd(f"{REDIS_PREFIX}used:{kind}", {k: now for k, _ in pairs})
            pipe.sadd(f"{REDIS_PREFIX}kinds", kind)
            pipe.execute()

        self._run(go)

    def count(self, kind: str, hits: int, misses: int) -> None:
        """See :class:`Backend`."""

        def go() -> None:
            pipe = self._redis.pipeline()
            pipe.hincrby(f"{REDIS_PREFIX}hits", kind, hits)
            pipe.hincrby(f"{REDIS_PREFIX}misses", kind, misses)
            pipe.execute()

        if hits or misses:
            self._run(go)

    def _kinds(self) -> list[str]:
        return sorted(k.decode() for k in self._redis.smembers(f"{REDIS_PREFIX}kinds"))

    def info(self) -> BackendInfo:
        """See :class:`Backend`."""

        def go() -> BackendInfo:
            entries = {k: int(self._redis.zcard(f"{REDIS_PREFIX}used:{k}")) for k in self._kinds()}
            size = 0
            for kind in entries:
                for key in self._redis.zrange(f"{REDIS_PREFIX}used:{kind}", 0, -1):
                    size += int(self._redis.strlen(f"{REDIS_PREFIX}{kind}:{key.decode()}"))
            hits = {
                k.decode(): int(v) for k, v in self._redis.hgetall(f"{REDIS_PREFIX}hits").items()
            }
            misses = {
                k.decode(): int(v) for k, v in self._redis.hgetall(f"{REDIS_PREFIX}misses").items()
            }
            return BackendInfo(self.location, size, entries, hits, misses)

        info: BackendInfo = self._run(go)
        return info

    def _remove(self, kind: str, keys: list[bytes]) -> int:
        if keys:
            pipe = self._redis.pipeline()
            pipe.delete(*(f"{REDIS_PREFIX}{kind}:{k.decode()}" for k in keys))
            pipe.zrem(f"{REDIS_PREFIX}used:{kind}", *keys)
            pipe.execute()
        return len(keys)

    def prune(self, older_than: float) -> int:
        """See :class:`Backend`."""

        def go() -> int:
            cutoff = time.time() - older_than
            return sum(
                self._remove(
                    kind, self._redis.zrangebyscore(f"{REDIS_PREFIX}used:{kind}", 0, cutoff)
                )
                for kind in self._kinds()
            )

        removed: int = self._run(go)
        return removed

    def clear(self) -> int:
        """See :class:`Backend`."""

        def go() -> int:
            removed = sum(
                self._remove(kind, self._redis.zrange(f"{REDIS_PREFIX}used:{kind}", 0, -1))
                for kind in self._kinds()
            )
            self._redis.delete(
                f"{REDIS_PREFIX}kinds", f"{REDIS_PREFIX}hits", f"{REDIS_PREFIX}misses"
            )
            return removed

        removed: int = self._run(go)
        return removed

    def close(self) -> None:
        """See :class:`Backend`."""
        with contextlib.suppress(*self._errors):
            self._redis.close()


def _password(url: str) -> str | None:
    parts = urlsplit(url)
    return unquote(parts.password) if parts.password else None


def _why(exc: BaseException) -> str:
    """A reason in one line that quotes nothing but the error's own words."""
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def open_backend(spec: str) -> Backend:
    """The backend ``spec`` names: ``redis://HOST:PORT/DB`` or a SQLite file path."""
    if spec.startswith(("redis://", "rediss://", "unix://")):
        return RedisBackend(spec)
    return SQLiteBackend(Path(spec).expanduser())
