"""The audit database (SQLite): what every audit of a target saw, and the layer results it
needs to go on after being stopped.

* ``images``: per repository, tag and platform, the digests last seen and when the image
  was first and last seen.
* ``findings``: per repository and finding fingerprint, when it was first and last seen;
  a tag pushed with a known leak does not make it new, the same secret in another
  repository does.
* ``tags`` and ``reports``: the digest each tag named at the last audit, and the image
  reports (as shown: redacted) of each digest, so that a tag that names the same digest
  next time is reported without reading its configs (``reports`` is keyed by the settings
  they were made with, see ``core._settings_key``, and carries when an audit last used
  it). A report no tag names any more is dropped at the end of each full audit; those
  kept under settings no audit uses any more (another leakscan, other options) go with
  ``leakscan cache prune``, as the result store's entries do.
* ``layers``: each layer's result (as the result store encodes it: no secret in clear),
  committed the moment it is done, so that an audit killed midway and started again scans
  only what is left.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

FILE_NAME = "audit.sqlite3"
# SQLite's application_id: refuse another program's database rather than write into it
APPLICATION_ID = 0x4C4B4144  # "LKAD"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS audits (
  id INTEGER PRIMARY KEY, target TEXT NOT NULL, started REAL NOT NULL, finished REAL
);
CREATE TABLE IF NOT EXISTS images (
  target TEXT NOT NULL, repository TEXT NOT NULL, tag TEXT NOT NULL, platform TEXT NOT NULL,
  manifest_digest TEXT, config_digest TEXT NOT NULL,
  first_seen REAL NOT NULL, last_seen REAL NOT NULL,
  PRIMARY KEY (target, repository, tag, platform)
);
CREATE TABLE IF NOT EXISTS findings (
  target TEXT NOT NULL, repository TEXT NOT NULL, fingerprint TEXT NOT NULL,
  first_seen REAL NOT NULL, last_seen REAL NOT NULL, first_audit INTEGER NOT NULL,
  PRIMARY KEY (target, repository, fingerprint)
);
CREATE TABLE IF NOT EXISTS tags (
  target TEXT NOT NULL, repository TEXT NOT NULL, tag TEXT NOT NULL, digest TEXT NOT NULL,
  PRIMARY KEY (target, repository, tag)
);
CREATE TABLE IF NOT EXISTS reports (
  settings TEXT NOT NULL, digest TEXT NOT NULL, value BLOB NOT NULL, used REAL,
  PRIMARY KEY (settings, digest)
);
CREATE TABLE IF NOT EXISTS layers (
  fingerprint TEXT NOT NULL, layer_id TEXT NOT NULL, value BLOB NOT NULL, scanned REAL NOT NULL,
  PRIMARY KEY (fingerprint, layer_id)
);
"""


# a kept report used this recently is not marked used again (a nightly audit marks each
# once; pruning errs by at most this, never dropping a report used more recently than asked)
USED_REFRESH = 86400.0


class AuditDbError(Exception):
    """The audit database cannot be opened or written."""


def audit_db_path(db: str | None, cache_dir: Path | None, store_spec: str | None) -> str:
    """Where an audit's database is: ``--db``, else in ``--cache-dir``, else beside the
    result store (every command that opens it resolves it so)."""
    if db:
        return db
    if cache_dir is not None:
        return str(cache_dir / FILE_NAME)
    return str(default_path(store_spec))


def default_path(store_spec: str | None) -> Path:
    """Beside the result store's file (or in the default cache folder with a Redis one)."""
    if store_spec and not store_spec.startswith("redis://"):
        return Path(store_spec).parent / FILE_NAME
    from leakscan.store import default_location

    return default_location().parent / FILE_NAME


@dataclass(frozen=True)
class Seen:
    """When a finding was first seen, and in which audit."""

    first_seen: float
    first_audit: int


class AuditDb:
    """One connection to the audit database, used by the audit's process alone."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fresh = not self.path.exists()
            if fresh:
                # created private: findings name where secrets are
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            self.conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            app = self.conn.execute("PRAGMA application_id").fetchone()[0]
            tables = self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if app != APPLICATION_ID and (app != 0 or tables):
                self.conn.close()
                raise AuditDbError(f"{self.path} is not a leakscan audit database")
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            self.conn.executescript(_SCHEMA)
            columns = {row[1] for row in self.conn.execute("PRAGMA table_info(reports)")}
            if "used" not in columns:
                # a database of an earlier leakscan: its reports count as used now
                self.conn.execute("ALTER TABLE reports ADD COLUMN used REAL")
                self.conn.execute("UPDATE reports SET used = ?", (time.time(),))
        except sqlite3.Error as exc:
            raise AuditDbError(f"{self.path}: {exc}") from None
        except OSError as exc:
            raise AuditDbError(f"{self.path}: {exc.strerror}") from None

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction, taken at once (no other writer between its reads and
        its writes), rolled back on any error."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise

    def start(self, target: str, now: float | None = None) -> int:
        """Record an audit's start; its id."""
        cur = self.conn.execute(
            "INSERT INTO audits (target, started) VALUES (?, ?)", (target, now or time.time())
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def finish(self, audit: int, now: float | None = None) -> None:
        """Record an audit's end."""
        self.conn.execute(
            "UPDATE audits SET finished = ? WHERE id = ?", (now or time.time(), audit)
        )

    # -- layers

    def layers(self, fingerprint: str, layer_ids: Sequence[str]) -> dict[str, bytes]:
        """The stored results of those layers this database holds."""
        out: dict[str, bytes] = {}
        for i in range(0, len(layer_ids), 500):
            chunk = list(layer_ids[i : i + 500])
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(
                "SELECT layer_id, value FROM layers "
                f"WHERE fingerprint = ? AND layer_id IN ({marks})",
                [fingerprint, *chunk],
            )
            out.update((lid, bytes(value)) for lid, value in rows)
        return out

    def keep_layer(self, fingerprint: str, layer_id: str, value: bytes) -> None:
        """Commit one layer's result now (autocommit: it survives a kill a moment later)."""
        self.conn.execute(
            "INSERT OR REPLACE INTO layers VALUES (?, ?, ?, ?)",
            (fingerprint, layer_id, value, time.time()),
        )

    def forget_layer(self, fingerprint: str, layer_id: str) -> None:
        """Drop a stored result that turned out damaged."""
        self.conn.execute(
            "DELETE FROM layers WHERE fingerprint = ? AND layer_id = ?", (fingerprint, layer_id)
        )

    # -- images and findings, written once per audit in one transaction

    def record(
        self,
        target: str,
        audit: int,
        images: Iterable[tuple[str, str, str, str | None, str]],
        findings: Iterable[tuple[str, str]],
        now: float,
    ) -> dict[tuple[str, str], Seen]:
        """Note the images (repository, tag, platform, manifest digest, config digest) and
        findings (repository, fingerprint) seen now; returns every finding's first sighting."""
        wanted = sorted(set(findings))
        with self._transaction():
            self.conn.executemany(
                "INSERT INTO images VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (target, repository, tag, platform) DO UPDATE SET "
                "manifest_digest = excluded.manifest_digest, "
                "config_digest = excluded.config_digest, last_seen = excluded.last_seen",
                [(target, r, t, p, md, cd, now, now) for r, t, p, md, cd in images],
            )
            self.conn.executemany(
                "INSERT INTO findings VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (target, repository, fingerprint) DO UPDATE SET "
                "last_seen = excluded.last_seen",
                [(target, r, f, now, now, audit) for r, f in wanted],
            )
            out: dict[tuple[str, str], Seen] = {}
            for repository, fp in wanted:
                row = self.conn.execute(
                    "SELECT first_seen, first_audit FROM findings "
                    "WHERE target = ? AND repository = ? AND fingerprint = ?",
                    (target, repository, fp),
                ).fetchone()
                out[(repository, fp)] = Seen(row[0], row[1])
        return out

    def sightings(self, target: str) -> dict[tuple[str, str], Seen]:
        """Every finding's first sighting in ``target``, by (repository, fingerprint), as
        :meth:`record` returns them for findings seen before (read only)."""
        rows = self.conn.execute(
            "SELECT repository, fingerprint, first_seen, first_audit FROM findings "
            "WHERE target = ?",
            (target,),
        )
        return {(r, fp): Seen(first, audit) for r, fp, first, audit in rows}

    # -- tags unchanged since the last audit

    def remembered(self, target: str, settings: str) -> dict[tuple[str, str], str]:
        """(repository, tag) to the digest it named, for the tags of ``target`` whose
        reports under ``settings`` are kept."""
        rows = self.conn.execute(
            "SELECT t.repository, t.tag, t.digest FROM tags t JOIN reports r "
            "ON r.digest = t.digest AND r.settings = ? WHERE t.target = ?",
            (settings, target),
        )
        return {(r, t): d for r, t, d in rows}

    def reports(self, settings: str, digests: Sequence[str]) -> dict[str, bytes]:
        """The kept reports of those ``digests`` the database holds."""
        out: dict[str, bytes] = {}
        for i in range(0, len(digests), 500):
            chunk = list(digests[i : i + 500])
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(
                f"SELECT digest, value FROM reports WHERE settings = ? AND digest IN ({marks})",
                [settings, *chunk],
            )
            out.update((d, bytes(v)) for d, v in rows)
        return out

    def remember(
        self,
        target: str,
        settings: str,
        tags: Iterable[tuple[str, str, str]],
        reports: Mapping[str, bytes],
    ) -> None:
        """Note the digest each tag (repository, tag, digest) named and the reports of
        those digests, in one transaction."""
        with self._transaction():
            now = time.time()
            self.conn.executemany(
                "INSERT OR REPLACE INTO reports VALUES (?, ?, ?, ?)",
                [(settings, d, v, now) for d, v in reports.items()],
            )
            self.conn.executemany(
                "INSERT OR REPLACE INTO tags VALUES (?, ?, ?, ?)",
                [(target, r, t, d) for r, t, d in tags],
            )

    def used_reports(self, settings: str, digests: Iterable[str], now: float) -> None:
        """Mark the kept reports of ``digests`` used by an audit at ``now`` (those marked
        within :data:`USED_REFRESH` are left as they are: nothing is written for them)."""
        wanted = sorted(set(digests))
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            marks = ",".join("?" * len(chunk))
            self.conn.execute(
                f"UPDATE reports SET used = ? WHERE settings = ? AND digest IN ({marks}) "
                "AND (used IS NULL OR used < ?)",
                [now, settings, *chunk, now - USED_REFRESH],
            )

    def counts(self) -> dict[str, int]:
        """How many audits, images, findings, kept reports and layer results it holds."""
        out = {}
        for what, table in (
            ("audits", "audits"),
            ("images", "images"),
            ("findings", "findings"),
            ("kept reports", "reports"),
            ("layer results", "layers"),
        ):
            out[what] = int(self.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        return out

    def drop_unnamed_reports(self) -> int:
        """Drop the kept reports of digests no tag names any more (a tag names one digest
        at a time: the reports of the digest it named before are never read again)."""
        cur = self.conn.execute("DELETE FROM reports WHERE digest NOT IN (SELECT digest FROM tags)")
        return max(cur.rowcount, 0)

    def prune(self, older_than: float, now: float | None = None) -> int:
        """Drop what no audit used within ``older_than`` seconds: kept reports (of other
        settings, or of tags no longer audited), the layer results kept for resuming an
        audit, and the tags whose reports are gone. The history (audits, images, findings
        and their first and last sightings) stays. Returns how many rows went."""
        cutoff = (now if now is not None else time.time()) - older_than
        removed = 0
        with self._transaction():
            for sql, args in (
                ("DELETE FROM reports WHERE used IS NULL OR used < ?", (cutoff,)),
                ("DELETE FROM layers WHERE scanned < ?", (cutoff,)),
                ("DELETE FROM tags WHERE digest NOT IN (SELECT digest FROM reports)", ()),
            ):
                removed += max(self.conn.execute(sql, args).rowcount, 0)
        return removed

    def image_first_seen(self, target: str) -> dict[tuple[str, str, str], float]:
        """When each (repository, tag, platform) of ``target`` was first seen."""
        rows = self.conn.execute(
            "SELECT repository, tag, platform, first_seen FROM images WHERE target = ?", (target,)
        )
        return {(r, t, p): first for r, t, p, first in rows}
