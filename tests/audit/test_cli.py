"""``leakscan audit`` as a user runs it: the JSON report (validated against the packaged
schema), the table, the exit status; an audit killed (SIGKILL) midway and started again
ends with the same report, scanning only what the killed one had not finished."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from auditkit import Filled, GateProxy
from clirun import Run
from regkit import REPO

# held back at most this long (a safety net, not a timing assumption: the test sets the gate)
WAIT = 120


def cli(args: list[str], home: Path, timeout: float = 300) -> Run:
    env = dict(os.environ, HOME=str(home), DOCKER_HOST="unix:///nonexistent/leakscan.sock")
    env["LEAKSCAN_CACHE_DIR"] = str(home / "cache")
    proc = subprocess.run(
        [sys.executable, "-m", "leakscan", "audit", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=env,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def view(report: dict[str, Any]) -> list[tuple[Any, ...]]:
    out = []
    for image in report["images"]:
        for f in image["findings"]:
            out.append(
                (image["repository"], image["tag"], image["platform"], f["fingerprint"],
                 f["location"].get("status"), f["redacted"], f["confidence"])
            )  # fmt: skip
    return sorted(out)


def test_json_table_and_exit_status(filled: Filled, tmp_path: Path) -> None:
    host = filled.registry.host
    first = cli([host, "--format", "json", "--db", str(tmp_path / "a.db")], tmp_path)
    assert first.code == 1, first.err
    data = first.report  # validated against the packaged schema
    assert data["registry"] == host
    assert data["stats"]["images"] == 21 and data["stats"]["layers_scanned"] > 0
    assert len(view(data)) == 5
    table = cli([host, "--db", str(tmp_path / "a.db")], tmp_path)
    assert table.code == 1
    assert "5 repositories, 21 images" in table.out
    assert "0 scanned" in table.out  # the second audit read no layer
    assert "api:2 (linux/amd64)" in table.out and "[deleted]" in table.out
    clean = cli(
        [host, "--repo", "tools", "--format", "json", "--db", str(tmp_path / "a.db")], tmp_path
    )
    assert clean.code == 0 and clean.report["images"]
    new = cli([host, "--new-only", "--format", "json", "--db", str(tmp_path / "a.db")], tmp_path)
    assert new.code == 0 and view(new.report) == []  # nothing is new any more
    bad = cli([host, "--tag", "(", "--db", str(tmp_path / "a.db")], tmp_path)
    assert bad.code == 2 and "--tag" in bad.err


def test_html_output_file(filled: Filled, tmp_path: Path) -> None:
    out = tmp_path / "audit.html"
    run = cli(
        [filled.registry.host, "--format", "html", "-o", str(out), "--db", str(tmp_path / "a.db")],
        tmp_path,
    )
    assert run.code == 1, run.err
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and 'id="count-findings" data-count="5"' in page
    # self-contained: nothing to fetch
    assert "http://" not in page.replace(filled.registry.host, "") and "https://" not in page


def _layer_rows(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        try:
            return int(conn.execute("SELECT count(*) FROM layers").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def test_killed_audit_restarted_ends_with_the_same_report(fresh: Filled, tmp_path: Path) -> None:
    allowed = 5
    # statements of attestations are read with the manifests: no layer download either
    unlayered = fresh.fill.config_digests() | fresh.fill.statement_digests()
    proxy = GateProxy(fresh.registry, unlayered, allowed)
    try:
        db = tmp_path / "killed.db"
        args = [proxy.host, "--format", "json", "--db", str(db), "--no-cache"]
        env = dict(os.environ, HOME=str(tmp_path), DOCKER_HOST="unix:///nonexistent/x.sock")
        proc = subprocess.Popen(
            [sys.executable, "-m", "leakscan", "audit", *args],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            # one layer at a time: when the sixth download is held, five results are in
            assert proxy.blocked.wait(WAIT), "the audit never reached its sixth layer"
            assert _layer_rows(db) == allowed
            proc.send_signal(signal.SIGKILL)
            proc.wait(WAIT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL
        proxy.gate.set()
        restarted = cli(args, tmp_path)
        assert restarted.code == 1, restarted.err
        again = restarted.report
        assert again["stats"]["layers_cached"] == allowed
        assert again["stats"]["layers_scanned"] == again["stats"]["layers_unique"] - allowed
        whole = cli(
            [proxy.host, "--format", "json", "--db", str(tmp_path / "whole.db"), "--no-cache"],
            tmp_path,
        )
        assert view(again) == view(whole.report)
        assert [i["findings"] and json.dumps(i["layers"]) for i in again["images"]] == [
            i["findings"] and json.dumps(i["layers"]) for i in whole.report["images"]
        ]
    finally:
        proxy.gate.set()
        proxy.close()


def test_cronjob_manifest_runs_a_valid_audit(tmp_path: Path) -> None:
    """docs/audit-cronjob.yaml: a CronJob whose arguments `leakscan audit` accepts."""
    import yaml

    job = yaml.safe_load((REPO / "docs" / "audit-cronjob.yaml").read_text())
    assert job["kind"] == "CronJob" and len(job["spec"]["schedule"].split()) == 5
    container = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[0] == "audit"
    # every flag it gives is one the command takes (its --help names each)
    helptext = cli(["--help"], tmp_path).out
    for arg in args[2:]:
        assert arg.split("=", 1)[0] in helptext, arg


def _kept(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {d for (d,) in conn.execute("SELECT digest FROM reports")}


def test_kept_reports_of_moved_tags_are_dropped_and_old_ones_pruned(
    fresh: Filled, tmp_path: Path
) -> None:
    """A tag pushed anew leaves the report of the digest it named: the full audit drops
    it. Reports no audit used for a while go with ``leakscan cache prune``; the audits'
    history stays, and the next audit reads those tags in full and reports the same."""
    registry, fill = fresh.registry, fresh.fill
    db = tmp_path / "cache" / "audit.sqlite3"
    args = [registry.host, "--format", "json"]
    first = cli(args, tmp_path)
    assert first.code == 1 and db.exists(), first.err
    with sqlite3.connect(db) as conn:
        named = dict(conn.execute("SELECT repository || ':' || tag, digest FROM tags"))
    # a tag whose digest no other tag names, moved onto another image
    counts: dict[str, int] = {}
    for digest in named.values():
        counts[digest] = counts.get(digest, 0) + 1
    moved = next(t for t in sorted(named) if counts[named[t]] == 1 and t in fill.layouts)
    other = next(t for t in sorted(fill.layouts) if named.get(t) != named[moved])
    path, _ = fill.layouts[other]
    registry.push(f"oci:{path}:t", moved)
    assert named[moved] in _kept(db)
    second = cli(args, tmp_path)
    assert second.code == 1, second.err
    assert named[moved] not in _kept(db)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE reports SET used = 1000")
        audits = conn.execute("SELECT count(*) FROM audits").fetchone()[0]
    env = dict(os.environ, HOME=str(tmp_path))

    def cache(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "leakscan", "cache", *args],
            capture_output=True, text=True, timeout=120, cwd=REPO, env=env,
        )  # fmt: skip

    prune = cache("prune", "--cache-dir", str(db.parent))
    assert prune.returncode == 0, prune.stderr
    assert f"kept reports, layer results and tags of {db}" in prune.stdout
    assert _kept(db) == set()
    info = cache("info", "--cache-dir", str(db.parent))
    assert info.returncode == 0, info.stderr
    assert f"audit db  {db}, " in info.stdout
    assert f"{audits} audits" in info.stdout and ", 0 kept reports, " in info.stdout
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM audits").fetchone()[0] == audits
        assert conn.execute("SELECT count(*) FROM findings").fetchone()[0] > 0
    third = cli(args, tmp_path)
    assert third.code == 1, third.err
    assert view(third.report) == view(second.report)  # both validated against the schema
    assert _kept(db)  # kept again for the next one
    missing = cache("prune", "--db", str(tmp_path / "no.db"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "no such audit database" in missing.stderr
