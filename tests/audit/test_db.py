"""The audit database: private, refuses another program's file, keeps first sightings,
commits each layer at once."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from leakscan.audit.db import AuditDb, AuditDbError, default_path


def test_layers_are_committed_at_once(tmp_path: Path) -> None:
    db = AuditDb(tmp_path / "a.db")
    db.keep_layer("fp", "sha256:aa", b"value")
    # another connection sees it before this one closes: a kill now loses nothing
    with sqlite3.connect(tmp_path / "a.db") as other:
        assert other.execute("SELECT value FROM layers").fetchall() == [(b"value",)]
    assert db.layers("fp", ["sha256:aa", "sha256:bb"]) == {"sha256:aa": b"value"}
    assert db.layers("other-fingerprint", ["sha256:aa"]) == {}
    db.forget_layer("fp", "sha256:aa")
    assert db.layers("fp", ["sha256:aa"]) == {}
    db.close()


def test_first_seen_is_kept(tmp_path: Path) -> None:
    db = AuditDb(tmp_path / "a.db")
    one = db.start("reg", 100.0)
    seen = db.record(
        "reg", one, [("web", "1", "linux/amd64", None, "sha256:c")], [("web", "f1")], 100.0
    )
    assert seen[("web", "f1")].first_seen == 100.0 and seen[("web", "f1")].first_audit == one
    two = db.start("reg", 200.0)
    seen = db.record(
        "reg",
        two,
        [("web", "2", "linux/amd64", None, "sha256:d")],
        [("web", "f1"), ("api", "f1")],
        200.0,
    )
    assert seen[("web", "f1")].first_audit == one  # a new tag does not make it new
    assert seen[("api", "f1")].first_audit == two  # another repository does
    assert db.image_first_seen("reg") == {
        ("web", "1", "linux/amd64"): 100.0,
        ("web", "2", "linux/amd64"): 200.0,
    }
    db.close()


def test_private_file_and_foreign_database_refused(tmp_path: Path) -> None:
    AuditDb(tmp_path / "dir" / "a.db").close()
    assert stat.S_IMODE((tmp_path / "dir" / "a.db").stat().st_mode) == 0o600
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE notes (x)")
    with pytest.raises(AuditDbError, match="not a leakscan audit database"):
        AuditDb(foreign)


def test_default_path_beside_the_store(tmp_path: Path) -> None:
    assert default_path(str(tmp_path / "results.sqlite3")) == tmp_path / "audit.sqlite3"
    assert default_path("redis://127.0.0.1:6379/0").name == "audit.sqlite3"


def _used(path: Path) -> dict[str, float | None]:
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT digest, used FROM reports").fetchall())


def test_a_report_no_tag_names_is_dropped(tmp_path: Path) -> None:
    db = AuditDb(tmp_path / "a.db")
    db.remember("reg", "s", [("web", "1", "sha256:old")], {"sha256:old": b"r1"})
    db.remember("reg", "s", [("api", "1", "sha256:old")], {})
    # web:1 moves; api:1 still names the old digest: kept
    db.remember("reg", "s", [("web", "1", "sha256:new")], {"sha256:new": b"r2"})
    assert db.drop_unnamed_reports() == 0
    assert set(_used(tmp_path / "a.db")) == {"sha256:old", "sha256:new"}
    # api:1 moves too: nothing names the old digest, whatever the target or settings
    db.remember("reg", "s", [("api", "1", "sha256:new")], {})
    assert db.drop_unnamed_reports() == 1
    assert set(_used(tmp_path / "a.db")) == {"sha256:new"}
    assert db.remembered("reg", "s") == {("web", "1"): "sha256:new", ("api", "1"): "sha256:new"}
    db.close()


def test_reports_are_marked_used_at_most_once_a_day(tmp_path: Path) -> None:
    db = AuditDb(tmp_path / "a.db")
    db.remember("reg", "s", [("web", "1", "sha256:a")], {"sha256:a": b"r"})
    made = _used(tmp_path / "a.db")["sha256:a"]
    assert made is not None
    db.used_reports("s", ["sha256:a"], made + 3600)
    assert _used(tmp_path / "a.db")["sha256:a"] == made  # marked within the day: left
    db.used_reports("other-settings", ["sha256:a"], made + 2 * 86400)
    assert _used(tmp_path / "a.db")["sha256:a"] == made
    db.used_reports("s", ["sha256:a", "sha256:unknown"], made + 2 * 86400)
    assert _used(tmp_path / "a.db")["sha256:a"] == made + 2 * 86400
    db.close()


def test_prune_drops_what_went_unused_and_keeps_the_history(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    db = AuditDb(path)
    audit = db.start("reg", 100.0)
    db.record("reg", audit, [("web", "1", "linux/amd64", None, "sha256:c")], [("web", "f")], 100.0)
    db.finish(audit, 100.0)
    db.remember("reg", "old", [("web", "1", "sha256:a")], {"sha256:a": b"r"})
    db.remember("reg", "new", [("api", "1", "sha256:b")], {"sha256:b": b"r"})
    db.keep_layer("fp", "sha256:l1", b"v")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE reports SET used = 1000 WHERE settings = 'old'")
        conn.execute("UPDATE layers SET scanned = 1000")
    now = _used(path)["sha256:b"]
    assert now is not None
    # the report under "old" settings, the layer result, and the tag naming only that report
    assert db.prune(30 * 86400, now) == 3
    assert set(_used(path)) == {"sha256:b"}
    assert db.layers("fp", ["sha256:l1"]) == {}
    assert db.remembered("reg", "new") == {("api", "1"): "sha256:b"}
    assert db.prune(30 * 86400, now) == 0
    # the history stays
    assert db.sightings("reg")[("web", "f")].first_seen == 100.0
    assert db.image_first_seen("reg") == {("web", "1", "linux/amd64"): 100.0}
    db.close()


def test_a_database_of_an_earlier_leakscan_gains_the_used_column(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    AuditDb(path).close()
    with sqlite3.connect(path) as conn:  # the reports table as it was made before
        conn.execute("DROP TABLE reports")
        conn.execute(
            "CREATE TABLE reports (settings TEXT NOT NULL, digest TEXT NOT NULL, "
            "value BLOB NOT NULL, PRIMARY KEY (settings, digest))"
        )
        conn.execute("INSERT INTO reports VALUES ('s', 'sha256:a', x'00')")
    db = AuditDb(path)
    used = _used(path)["sha256:a"]
    assert used is not None and used > 1e9  # counted as used now: pruned only later
    assert db.prune(30 * 86400) == 0
    db.close()
