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
