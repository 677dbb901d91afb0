"""The store's backends, SQLite and a real Redis server: what they keep, how they fail."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from leakscan.store import CONTENT, LAYER, ResultStore, open_store, store_info
from leakscan.store.backends import (
    Backend,
    RedisBackend,
    SQLiteBackend,
    StoreError,
    open_backend,
)


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        b: Backend = SQLiteBackend(tmp_path / "cache" / "results.sqlite3")
    else:
        b = RedisBackend(request.getfixturevalue("redis_url"))
        b.clear()  # one server for the session: start each test empty
    yield b
    b.close()


def test_round_trip_and_partial_lookups(backend: Backend) -> None:
    backend.put_many(LAYER, [("a", b"\x00one"), ("b", b"two")])
    backend.put_many(CONTENT, [("a", b"other kind")])
    assert backend.get_many(LAYER, ["a", "b", "c"]) == {"a": b"\x00one", "b": b"two"}
    assert backend.get_many(CONTENT, ["a", "b"]) == {"a": b"other kind"}
    backend.put_many(LAYER, [("a", b"replaced")])
    assert backend.get_many(LAYER, ["a"]) == {"a": b"replaced"}
    info = backend.info()
    assert info.entries == {LAYER: 2, CONTENT: 1}
    assert info.size_bytes > 0


def test_counters_and_clear(backend: Backend) -> None:
    backend.count(LAYER, 3, 1)
    backend.count(LAYER, 1, 0)
    backend.put_many(LAYER, [("k", b"v")])
    info = backend.info()
    assert (info.hits[LAYER], info.misses[LAYER]) == (4, 1)
    assert backend.clear() == 1
    after = backend.info()
    assert after.entries.get(LAYER, 0) == 0 and not after.hits
    assert backend.get_many(LAYER, ["k"]) == {}


def _age(backend: Backend, kind: str, key: str, seconds: float) -> None:
    """Make an entry look unused for ``seconds``."""
    when = time.time() - seconds
    if isinstance(backend, SQLiteBackend):
        db = sqlite3.connect(backend.path)
        with db:
            db.execute("UPDATE entries SET used = ? WHERE kind = ? AND key = ?", (when, kind, key))
        db.close()
    else:
        assert isinstance(backend, RedisBackend)
        backend._redis.zadd(f"leakscan:v1:used:{kind}", {key: when})


def test_prune_removes_only_entries_unused_that_long(backend: Backend) -> None:
    backend.put_many(LAYER, [("old", b"1"), ("new", b"2")])
    backend.put_many(CONTENT, [("old", b"3")])
    _age(backend, LAYER, "old", 40 * 86400)
    _age(backend, CONTENT, "old", 40 * 86400)
    assert backend.prune(30 * 86400) == 2
    assert backend.get_many(LAYER, ["old", "new"]) == {"new": b"2"}
    assert backend.get_many(CONTENT, ["old"]) == {}


def test_a_lookup_renews_an_entry(backend: Backend) -> None:
    backend.put_many(LAYER, [("k", b"v")])
    _age(backend, LAYER, "k", 40 * 86400)
    assert backend.get_many(LAYER, ["k"]) == {"k": b"v"}  # used now
    assert backend.prune(30 * 86400) == 0


def test_a_lookup_renews_an_entry_seen_by_the_next_process(tmp_path: Path) -> None:
    # the marks are written later, many at once: still by the time the store is closed
    path = tmp_path / "results.sqlite3"
    first = SQLiteBackend(path)
    first.put_many(LAYER, [("k", b"v"), ("unused", b"w")])
    _age(first, LAYER, "k", 40 * 86400)
    _age(first, LAYER, "unused", 40 * 86400)
    assert first.get_many(LAYER, ["k"]) == {"k": b"v"}
    first.close()
    second = SQLiteBackend(path)
    try:
        assert second.prune(30 * 86400) == 1
        assert second.get_many(LAYER, ["k", "unused"]) == {"k": b"v"}
    finally:
        second.close()


def test_sqlite_folder_and_files_are_private(tmp_path: Path) -> None:
    folder = tmp_path / "shared-looking"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    b = SQLiteBackend(folder / "results.sqlite3")
    b.put_many(LAYER, [("k", b"v")])
    b.count(LAYER, 1, 0)  # the counts file too
    assert (folder / "results.sqlite3-counts").exists()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for p in folder.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    b.close()


def test_sqlite_refuses_another_programs_database(tmp_path: Path) -> None:
    path = tmp_path / "theirs.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE important (x)")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="not a leakscan result store"):
        SQLiteBackend(path)
    # and leaves it alone
    assert sqlite3.connect(path).execute("SELECT count(*) FROM important").fetchone() == (0,)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda p: p.write_bytes(os.urandom(8192)), id="random-bytes"),
        pytest.param(lambda p: p.write_bytes(p.read_bytes()[:1500]), id="truncated"),
        pytest.param(
            lambda p: p.write_bytes(b"SQLite format 3\0" + b"\xff" * 4000), id="bad-header"
        ),
    ],
)
def test_damaged_database_is_one_warning_and_no_store(tmp_path: Path, damage: object) -> None:
    path = tmp_path / "results.sqlite3"
    b = SQLiteBackend(path)
    b.put_many(LAYER, [(f"k{i}", os.urandom(200)) for i in range(50)])
    b.close()
    for side in ("-wal", "-shm"):
        path.with_name(path.name + side).unlink(missing_ok=True)
    damage(path)  # type: ignore[operator]
    warnings: list[str] = []
    store = open_store(str(path), warnings.append)
    # either refused when opened, or at the first use: one warning, no answers, no raise
    store.get_many(LAYER, ["k1"])
    store.put_many(LAYER, [("k2", b"x")])
    store.close()
    assert len(warnings) == 1 and "scanning without it" in warnings[0]
    assert not store.enabled


def test_locked_database_is_one_warning(tmp_path: Path) -> None:
    """Another process holds the write lock for longer than the store waits."""
    path = tmp_path / "results.sqlite3"
    SQLiteBackend(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        b = SQLiteBackend.__new__(SQLiteBackend)
        b.path = path
        b._db = sqlite3.connect(path, timeout=0.05, isolation_level=None)
        warnings: list[str] = []
        store = ResultStore(b, warnings.append)
        store.put_many(LAYER, [("k", b"v")])
        assert store.get_many(LAYER, ["k"]) == {}
        assert len(warnings) == 1 and "locked" in warnings[0]
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def _writer(path: str, start: int) -> None:
    b = SQLiteBackend(Path(path))
    for i in range(start, start + 200):
        b.put_many(CONTENT, [(f"k{i}", i.to_bytes(4, "big"))])
    b.close()


def test_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite3"
    SQLiteBackend(path).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), n * 200)) for n in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    b = SQLiteBackend(path)
    got = b.get_many(CONTENT, [f"k{i}" for i in range(600)])
    assert len(got) == 600 and got["k599"] == (599).to_bytes(4, "big")
    b.close()


def test_unreachable_redis_is_one_warning() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # nothing listens on the port once the socket is closed
    warnings: list[str] = []
    store = open_store(f"redis://:hunter2-not-a-secret@127.0.0.1:{port}/0", warnings.append)
    assert not store.enabled and len(warnings) == 1
    assert "hunter2" not in warnings[0]  # the URL's password never shows
    assert store.get(LAYER, "k") is None


def test_default_location_honours_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEAKSCAN_CACHE_DIR", str(tmp_path / "c"))
    store = open_store()
    store.put_many(LAYER, [("k", b"v")])
    store.close()
    assert (tmp_path / "c" / "results.sqlite3").is_file()
    assert store_info().entries == {LAYER: 1}


def test_open_backend_picks_by_spelling(tmp_path: Path, redis_url: str) -> None:
    assert isinstance(open_backend(str(tmp_path / "x.sqlite3")), SQLiteBackend)
    assert isinstance(open_backend(redis_url), RedisBackend)


def test_sqlite_counts_beside_the_database_fold_into_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counting appends to a file (no write transaction, no sync); the totals are the
    same once the file is folded into the counters table, and clear empties both."""
    from leakscan.store import backends

    path = tmp_path / "results.sqlite3"
    counts = tmp_path / "results.sqlite3-counts"
    b = SQLiteBackend(path)
    try:
        b.count(LAYER, 2, 1)
        b.count(CONTENT, 0, 3)
        with counts.open("a") as fh:
            fh.write("layer 1")  # a line cut short by a crash: left out
        b.count(LAYER, 1, 0)
        assert (b.info().hits, b.info().misses) == ({LAYER: 3, CONTENT: 0}, {LAYER: 1, CONTENT: 3})
        db = sqlite3.connect(path)
        assert list(db.execute("SELECT * FROM counters")) == []  # nothing written there yet
        monkeypatch.setattr(backends, "COUNTS_FOLD", 1)
        b.count(LAYER, 5, 0)  # past the size: folded
        assert not counts.exists()
        assert sorted(db.execute("SELECT * FROM counters")) == [(CONTENT, 0, 3), (LAYER, 8, 1)]
        b.count(LAYER, 1, 1)
        monkeypatch.setattr(backends, "COUNTS_FOLD", 64 << 10)
        b.count(LAYER, 0, 1)
        assert (b.info().hits[LAYER], b.info().misses[LAYER]) == (9, 3)
        db.close()
        b.clear()
        assert not counts.exists() and not b.info().hits
    finally:
        b.close()


def test_sqlite_entries_used_within_the_hour_are_not_marked_again(tmp_path: Path) -> None:
    """A re-scan of entries used recently writes nothing: their marks are fresh enough
    for prune (whose unit is hours and days)."""
    b = SQLiteBackend(tmp_path / "results.sqlite3")
    try:
        b.put_many(LAYER, [("fresh", b"1"), ("old", b"2")])
        _age(b, LAYER, "old", 2 * 3600)
        assert b.get_many(LAYER, ["fresh", "old"]) == {"fresh": b"1", "old": b"2"}
        assert list(b._used) == [(LAYER, "old")]
        b.close()
        db = sqlite3.connect(tmp_path / "results.sqlite3")
        ((used,),) = db.execute("SELECT used FROM entries WHERE key = 'old'")
        db.close()
        assert time.time() - used < 60
    finally:
        b.close()
