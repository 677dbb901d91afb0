"""The quick re-audit of an unchanged registry (leakscan.audit.quick): the report it writes
is the full audit's, byte for byte bar the audit's start and duration; it loads no CLI
framework, no registry client, no scanner; anything it does not handle (a moved or new tag,
an option it does not know, an authenticating registry) leaves the full audit to run, with
nothing written to the audit database."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import sys
import threading
from base64 import b64encode
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import regkit
from auditkit import Fill, Filled, push_all
from clirun import Run
from referrerkit import ReferrersApi, signed
from regkit import FaultProxy
from schema import validate_report

from leakscan.audit import quick
from leakscan.audit.catalog import repositories
from leakscan.audit.target import parse_target
from leakscan.sources.auth import RegistryOptions

HEAVY = ("typer", "click", "pydantic", "requests", "urllib3", "kingfisher_sdk", "distributed")


def environment(home: Path) -> dict[str, str]:
    """This machine's environment with ``home`` for the user's files: the credentials a
    test means (its docker config, or none), nobody else's."""
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_CONFIG", "REGISTRY_AUTH_FILE")}
    env.update(HOME=str(home), XDG_RUNTIME_DIR=str(home), LEAKSCAN_CACHE_DIR=str(home / "cache"))
    return env


def cli(args: list[str], home: Path) -> Run:
    """``leakscan audit`` as a user runs it (the quick path first, when it can)."""
    proc = subprocess.run(
        [sys.executable, "-m", "leakscan", "audit", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=regkit.REPO,
        env=environment(home),
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def lean(args: list[str], home: Path) -> tuple[int | None, str]:
    """The quick path alone, in a fresh interpreter (as the command runs it, and with the
    detection fingerprint of the code as it is now): its status (None: it did not answer)
    and what it wrote."""
    code = (
        "import sys; from leakscan.audit.quick import answer; "
        "status = answer(sys.argv[1:]); sys.exit(99 if status is None else status)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=regkit.REPO,
        env=environment(home),
    )
    assert proc.returncode == 99 or not proc.stderr, proc.stderr
    return (None if proc.returncode == 99 else proc.returncode), proc.stdout


def full(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    """The full audit command, never the quick path (the CLI called past __main__)."""
    code = "import sys; from leakscan.cli import main; sys.argv[0] = 'leakscan'; main()"
    return subprocess.run(
        [sys.executable, "-c", code, "audit", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=regkit.REPO,
        env=environment(home),
    )


def timeless(text: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(text)
    validate_report(data)
    data["audit"].pop("started")
    data["stats"].pop("seconds")
    return data


def audits(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM audits").fetchone()[0])


@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["--repo", "w*", "--tag", "^[34]$", "--min-confidence", "low"],
        ["--new-only"],
        ["--since", "2020-01-31T12:00"],
        ["--since=2099-01-31"],
    ],
    ids=["all", "filtered", "new-only", "since-then", "since-later"],
)
def test_same_report_as_the_full_second_audit(
    filled: Filled, tmp_path: Path, extra: list[str]
) -> None:
    host = filled.registry.host
    args = [host, "--format", "json", "--cache-dir", str(tmp_path / "cache"), *extra]
    first = cli([*args, "--db", str(tmp_path / "a.db")], tmp_path)
    assert first.code in (0, 1) and (tmp_path / "a.db").exists(), first.err
    shutil.copy(tmp_path / "a.db", tmp_path / "b.db")
    status, out = lean([*args, "--db", str(tmp_path / "a.db")], tmp_path)
    whole = full([*args, "--db", str(tmp_path / "b.db")], tmp_path)
    assert status is not None, "the quick path did not answer"
    assert (status, timeless(out)) == (whole.returncode, timeless(whole.stdout)), whole.stderr
    # json.dumps(indent=2)'s text, to the byte, from either path
    for text in (out, whole.stdout):
        assert text == json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n"
    assert audits(tmp_path / "a.db") == audits(tmp_path / "b.db") == 2
    # and the audit after it, on what each wrote: the databases hold the same sightings
    again = full([*args, "--db", str(tmp_path / "a.db")], tmp_path)
    assert timeless(again.stdout)["images"] == timeless(whole.stdout)["images"]


def test_table_and_html_as_the_full_path(filled: Filled, tmp_path: Path) -> None:
    host = filled.registry.host
    base = [host, "--no-cache", "--db"]
    assert cli([*base, str(tmp_path / "a.db")], tmp_path).code == 1
    shutil.copy(tmp_path / "a.db", tmp_path / "b.db")
    status, out = lean([*base, str(tmp_path / "a.db")], tmp_path)
    assert status == 1
    whole = full([*base, str(tmp_path / "b.db")], tmp_path)
    # the first line says how long the audit took
    assert out.splitlines()[1:] == whole.stdout.splitlines()[1:] and len(out.splitlines()) > 5
    page = tmp_path / "a.html"
    assert lean([*base, str(tmp_path / "a.db"), "-f", "html", "-o", str(page)], tmp_path)[0] == 1
    other = tmp_path / "b.html"
    assert (
        full([*base, str(tmp_path / "b.db"), "-f", "html", "-o", str(other)], tmp_path).returncode
        == 1
    )
    assert _no_times(page.read_text()) == _no_times(other.read_text())
    # an output it cannot write: the full command's line and status
    nowhere = ["-o", str(tmp_path / "missing" / "audit.json")]
    said = cli([*base, str(tmp_path / "a.db"), *nowhere], tmp_path)
    assert audits(tmp_path / "a.db") == 4  # the quick path answered (and recorded) it
    whole = full([*base, str(tmp_path / "b.db"), *nowhere], tmp_path)
    assert (said.code, said.err) == (whole.returncode, whole.stderr) == (2, said.err)
    assert said.err.startswith("leakscan: error: cannot write ") and said.err.count("\n") == 1


def _no_times(page: str) -> str:
    """The page without the audit's start time and duration (the only parts that differ)."""
    return re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ|\d+\.\d+ s\b", "T", page)


def test_the_command_answers_without_the_heavy_imports(filled: Filled, tmp_path: Path) -> None:
    host = filled.registry.host
    args = [host, "--format", "json", "--no-cache", "--db", str(tmp_path / "a.db")]
    assert cli(args, tmp_path).code == 1
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "leakscan", "audit", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=regkit.REPO,
        env=environment(tmp_path),
    )
    assert proc.returncode == 1
    assert timeless(proc.stdout)["stats"]["layers_scanned"] == 0  # validated
    imported = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert "leakscan.audit.quick" in imported
    scanners = ("leakscan.audit.core", "leakscan.detectors", "leakscan.layers", "leakscan.scan")
    heavy = sorted(m for m in imported if m.split(".")[0] in HEAVY or m.startswith(scanners))
    assert heavy == []
    # nor the CLI, the full walk and its registry client, the worker processes
    full_path = {
        "leakscan.cli",
        "leakscan.command",
        "leakscan.audit.catalog",
        "leakscan.audit.fanout",
        "leakscan.sources.registry",
        "multiprocessing",
    }
    assert sorted(full_path & imported) == []
    # nor, for a plain-HTTP registry, http.client and its email parser, TLS, or a thread
    # pool that brings logging: the walk of the registry starts before they would load
    assert sorted({"http.client", "email.parser", "ssl", "concurrent.futures"} & imported) == []
    # a first audit goes the full way (and so the check above can tell the two apart)
    proc = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "leakscan",
            "audit",
            *args[:-1],
            str(tmp_path / "b.db"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=regkit.REPO,
        env=environment(tmp_path),
    )
    imported = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert proc.returncode == 1 and {"requests", "typer", "leakscan.audit.core"} <= imported
    assert full_path <= imported


def test_a_moved_or_unknown_tag_leaves_it_to_the_full_audit(fresh: Filled, tmp_path: Path) -> None:
    host = fresh.registry.host
    db = tmp_path / "a.db"
    args = [host, "--format", "json", "--no-cache", "--db", str(db)]
    assert cli(args, tmp_path).code == 1
    with sqlite3.connect(db) as conn:
        moved = conn.execute("SELECT repository, tag FROM tags ORDER BY 1, 2").fetchone()
        conn.execute(
            "UPDATE tags SET digest = ? WHERE repository = ? AND tag = ?",
            ("sha256:" + "0" * 64, *moved),
        )
    assert lean(args, tmp_path) == (None, "") and audits(db) == 1
    # the full audit reads that tag again and keeps its digest: the next one is quick again
    assert cli(args, tmp_path).code == 1 and audits(db) == 2
    assert lean(args, tmp_path)[0] == 1 and audits(db) == 3
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM tags WHERE repository = ? AND tag = ?", moved)
    assert lean(args, tmp_path) == (None, "") and audits(db) == 3
    # options it does not handle
    for more in (["--creds", "a:b"], ["--no-tls-verify"], ["x:1"], ["--dask", "a cluster"]):
        assert lean([*args, *more], tmp_path) == (None, "")
    assert quick.parse([*args, "--workers", "0"]) is None
    assert quick.parse([*args, "--format", "sarif"]) is None
    assert audits(db) == 3


def test_dask_is_not_needed_when_nothing_changed(filled: Filled, tmp_path: Path) -> None:
    """An unchanged registry has nothing to scan: with --dask this path answers as
    without it, and never contacts the cluster (nothing listens at that address); once a
    tag moves, the full audit runs on the cluster."""
    db = tmp_path / "a.db"
    args = [filled.registry.host, "--format", "json", "--no-cache", "--db", str(db)]
    assert cli(args, tmp_path).code == 1
    status, plain = lean(args, tmp_path)
    for dask in (["--dask", "tcp://127.0.0.1:1"], ["--dask=127.0.0.1:1"]):
        assert quick.parse([*args, *dask]) is not None
        again, out = lean([*args, *dask], tmp_path)
        assert (again, timeless(out)["images"]) == (status, timeless(plain)["images"])
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE tags SET digest = ? WHERE rowid = 1", ("sha256:" + "0" * 64,))
    assert lean([*args, "--dask", "tcp://127.0.0.1:1"], tmp_path) == (None, "")


def test_token_auth_with_the_docker_config_credentials(fill: Fill, tmp_path: Path) -> None:
    """A registry behind token auth, the credentials in the docker config: the quick path
    gets a token per repository as the registry client does and answers as the full audit;
    without credentials it leaves the audit to the full path."""
    server = regkit.TokenServer(tmp_path, {"auditor": "tk-" + secrets.token_hex(12)})
    registry = regkit.start_registry(tmp_path / "token", "token", token=server)
    try:
        push_all(registry, fill, ["api:2", "api:3", "web:3", "web:1"])
        home = tmp_path / "home"
        config = home / ".docker" / "config.json"
        config.parent.mkdir(parents=True)
        pair = f"{registry.user}:{registry.password}".encode()
        config.write_text(
            json.dumps({"auths": {registry.host: {"auth": b64encode(pair).decode()}}})
        )
        db = tmp_path / "a.db"
        args = [registry.host, "--repo", "api", "--repo", "web", "-f", "json", "--no-cache"]
        first = cli([*args, "--db", str(db)], home)
        assert first.code == 1 and first.report["stats"]["images"] == 4, first.err
        shutil.copy(db, tmp_path / "b.db")
        status, out = lean([*args, "--db", str(db)], home)
        whole = full([*args, "--db", str(tmp_path / "b.db")], home)
        assert status is not None, "the quick path did not answer"
        assert (status, timeless(out)) == (whole.returncode, timeless(whole.stdout))
        tried = [r for r in server.requests if r["user"] == "auditor"]
        assert tried and not [r for r in server.requests if r["tried"] and r["user"] is None]
        # nobody's credentials: not answered here, nothing recorded
        assert lean([*args, "--db", str(db)], tmp_path) == (None, "") and audits(db) == 2
    finally:
        registry.stop()
        server.close()


def test_listings_paged_as_the_full_walk_pages_them(filled: Filled) -> None:
    status, headers, _ = filled.registry.raw_request("GET", "/v2/_catalog?n=2")
    assert status == 200 and 'rel="next"' in headers.get("Link", "")  # it really pages
    target = parse_target(filled.registry.host, RegistryOptions())
    wire = quick.connect(target)
    try:
        paged = quick.paged(wire, "/v2/_catalog?n=2", "repositories")
    finally:
        wire.close()
    assert paged == list(repositories(target, page=2)) and len(paged) == 5


def test_what_it_shares_with_the_registry_client() -> None:
    from leakscan.sources.registry import ACCEPT, NO_REFERRERS_API, OCI_INDEX
    from leakscan.sources.registry_client import USER_AGENT

    assert quick.ACCEPT == ACCEPT and quick.USER_AGENT == USER_AGENT
    assert quick.NO_REFERRERS_API == NO_REFERRERS_API and quick.OCI_INDEX == OCI_INDEX


def test_referrers_api_listings_held_against_the_kept_reports(fill: Fill, tmp_path: Path) -> None:
    """Referrers attached through the API leave every digest as it was: on a registry
    with the API this path asks it for each manifest the kept reports read, answers while
    the listings are what they read, and leaves a listing that changed to the full audit,
    which reads the referrer (Debian's registry has no API: the other tests here are
    answered without it)."""
    # (``fill``: the session's skopeo policy, which push needs)
    registry = regkit.start_registry(tmp_path / "registry", "quick-refapi")
    proxy = None
    try:
        subject, referrer, index = signed(registry, tmp_path, tag=False)
        proxy = ReferrersApi(registry, {})
        args = [proxy.host, "--format", "json", "--no-cache", "--db", str(tmp_path / "a.db")]
        assert cli(args, tmp_path).code == 0
        listing = f"/v2/signed/app/referrers/{subject['digest']}"
        proxy.reset(regkit.Faults())
        assert lean(args, tmp_path)[0] == 0
        assert [p for _, p, _, _ in proxy.log if "/referrers/" in p] == [
            listing
        ]  # the probe's answer is the listing
        proxy.answers[subject["digest"]] = index
        assert lean(args, tmp_path) == (None, "")
        again = cli(args, tmp_path)
        assert again.code == 1, again.err
        (image,) = json.loads(again.out)["images"]
        assert [f["location"]["attestation_digest"] for f in image["findings"]] == [referrer]
        status, out = lean(args, tmp_path)
        assert status == 1 and timeless(out)["images"] == timeless(again.out)["images"]
    finally:
        if proxy is not None:
            proxy.close()
        registry.stop()


class HeadGate(FaultProxy):
    """Holds every HEAD until ``decoded`` is set (at most 30 s, then answers 503); notes
    the first HEAD it is asked."""

    def __init__(self, upstream: regkit.Registry) -> None:
        super().__init__(upstream)
        self.asked = threading.Event()
        self.decoded = threading.Event()

    def handle(self, h: Any, method: str) -> None:
        if method == "HEAD":
            self.asked.set()
            if not self.decoded.wait(30):
                h.send_response(503)
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
        super().handle(h, method)


def test_the_registry_is_walked_while_the_kept_reports_are_decoded(
    filled: Filled,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The tags' HEADs are on the wire while the kept reports are decoded: here the
    decoding waits for the first HEAD to reach the registry, and the registry answers no
    HEAD before the decoding is done. A re-audit that walks the registry first and decodes
    after (or the other way round) answers nothing here (a HEAD is refused after 30 s)."""
    proxy = HeadGate(filled.registry)
    try:
        args = [proxy.host, "--format", "json", "--no-cache", "--db", str(tmp_path / "a.db")]
        monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
        proxy.decoded.set()  # the first audit: nothing held
        assert cli(args, tmp_path).code == 1
        proxy.decoded.clear()
        real = quick._prefetched
        waited: list[bool] = []

        def prefetched(*a: Any) -> Any:
            waited.append(proxy.asked.wait(30))
            try:
                return real(*a)
            finally:
                proxy.decoded.set()

        monkeypatch.setattr(quick, "_prefetched", prefetched)
        monkeypatch.setenv("HOME", str(tmp_path))
        capsys.readouterr()
        interval = sys.getswitchinterval()
        assert quick.answer(args) == 1
        assert sys.getswitchinterval() == interval  # lowered only while the walk ran
        assert waited == [True]
        assert timeless(capsys.readouterr().out)["stats"]["layers_scanned"] == 0
        assert not [t for t in threading.enumerate() if t.name.startswith("leakscan-reaudit")]
    finally:
        proxy.close()


def test_a_fallback_stops_the_walk(filled: Filled, tmp_path: Path) -> None:
    """Whatever makes the quick path give up, its walk of the registry has ended when it
    returns: the full audit that follows is alone on the wire."""
    host = filled.registry.host
    args = [host, "--format", "json", "--no-cache", "--db", str(tmp_path / "a.db")]
    assert cli(args, tmp_path).code == 1
    stopped = threading.Event()
    real = quick.Walk.stop

    def stop(self: quick.Walk) -> None:
        real(self)
        stopped.set()

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys.stderr, "isatty", lambda: False)
        mp.setattr(quick.Walk, "stop", stop)
        mp.setenv("HOME", str(tmp_path))
        # no report kept under these settings: given up before the walk is in
        interval = sys.getswitchinterval()
        assert quick.answer([*args, "--min-confidence", "low"]) is None
        assert sys.getswitchinterval() == interval
    assert stopped.is_set()
    assert not [t for t in threading.enumerate() if t.name.startswith("leakscan-reaudit")]


def newless(text: str) -> dict[str, Any]:
    """:func:`timeless`, and a first sighting in this audit said so, not when."""
    data = json.loads(text)
    for image in data["images"]:
        for finding in image["findings"]:
            if finding["first_seen"] >= data["audit"]["started"]:
                finding["first_seen"] = "this audit"
    return timeless(json.dumps(data))


def test_images_written_ahead_are_used_only_when_they_are_the_report(
    fresh: Filled,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The quick path writes its images' JSON while the registry answers, for the images
    it expects. Used when nothing changed; when the audit turns out otherwise (a tag
    deleted since the last audit, a finding whose first sighting is not in the database)
    the report is written afresh, and is still the full audit's."""
    host = fresh.registry.host
    db = tmp_path / "a.db"
    args = [host, "--format", "json", "--no-cache", "--new-only", "--db", str(db)]
    assert cli(args, tmp_path).code in (0, 1)
    used: list[bool] = []
    real = quick._reaudit

    def spy(*a: Any) -> Any:
        report, texts = real(*a)
        used.append(texts is not None)
        return report, texts

    monkeypatch.setattr(quick, "_reaudit", spy)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    monkeypatch.setenv("HOME", str(tmp_path))

    def both() -> dict[str, Any]:
        shutil.copy(db, tmp_path / "b.db")
        capsys.readouterr()
        status = quick.answer(args)
        out = capsys.readouterr().out
        whole = full([*args[:-1], str(tmp_path / "b.db")], tmp_path)
        assert status is not None, "the quick path did not answer"
        assert (status, newless(out)) == (whole.returncode, newless(whole.stdout))
        assert out == json.dumps(json.loads(out), indent=2, ensure_ascii=False) + "\n"
        return newless(out)

    both()
    assert used == [True]
    with closing(sqlite3.connect(db)) as conn, conn:
        repository, tag, digest = conn.execute(
            "SELECT repository, tag, digest FROM tags t WHERE (SELECT count(*) FROM tags u "
            "WHERE u.digest = t.digest) = 1 ORDER BY 1, 2"
        ).fetchone()
    status, _, _ = fresh.registry.raw_request("DELETE", f"/v2/{repository}/manifests/{digest}")
    assert status == 202
    shown = both()
    assert used == [True, False]
    assert (repository, tag) not in {(i["repository"], i["tag"]) for i in shown["images"]}
    with closing(sqlite3.connect(db)) as conn, conn:
        # a finding as if never seen: --new-only shows it again, in both paths
        conn.execute(
            "DELETE FROM findings WHERE rowid = (SELECT min(rowid) FROM findings f "
            "WHERE f.repository != ?)",
            (repository,),
        )
    shown = both()
    assert used == [True, False, False]
    assert [f for i in shown["images"] for f in i["findings"]], "the forgotten finding is new"


class HangUp(FaultProxy):
    """Hangs up after each answer to a HEAD (without saying so in the answer): a
    registry, or something in front of one, that takes no pipelined requests."""

    def handle(self, h: Any, method: str) -> None:
        super().handle(h, method)
        if method == "HEAD":
            h.close_connection = True


def test_heads_asked_again_when_the_registry_hangs_up(filled: Filled, tmp_path: Path) -> None:
    """A repository's HEADs go out together on one connection; a registry that answers one
    and closes the connection gets the others asked one by one, and the quick path's
    report is still the full audit's."""
    proxy = HangUp(filled.registry)
    try:
        args = [proxy.host, "--format", "json", "--no-cache"]
        assert cli([*args, "--db", str(tmp_path / "a.db")], tmp_path).code == 1
        shutil.copy(tmp_path / "a.db", tmp_path / "b.db")
        proxy.reset(regkit.Faults())
        status, out = lean([*args, "--db", str(tmp_path / "a.db")], tmp_path)
        assert status is not None, "the quick path did not answer"
        heads = [entry for entry in proxy.log if entry[0] == "HEAD"]
        whole = full([*args, "--db", str(tmp_path / "b.db")], tmp_path)
        assert (status, timeless(out)) == (whole.returncode, timeless(whole.stdout))
        tags = {(i["repository"], i["tag"]) for i in timeless(out)["images"]}
        # each tag answered once (what was sent after a hang-up never reached it)
        assert len([h for h in heads if h[3] == 200]) == len(tags) > 1
    finally:
        proxy.close()


def test_a_tls_registry_on_loopback_is_answered_over_verified_tls(
    fill: Fill, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loopback registry is asked in plain HTTP first; one that speaks TLS answers that
    with a 400, and the re-audit goes on over TLS, verified against the CAs the registry
    client trusts (certs.d), or leaves the audit to the full path when it cannot verify."""
    tls = regkit.make_tls(tmp_path / "tls")
    registry = regkit.start_registry(tmp_path / "registry", "tls", tls=tls)
    try:
        push_all(registry, fill, only=sorted(fill.tags)[:3])
        roots = tmp_path / "certs"
        (roots / registry.host).mkdir(parents=True)
        shutil.copy(tls.ca, roots / registry.host / "ca.crt")
        monkeypatch.setenv("LEAKSCAN_CERTS_DIRS", str(roots))
        args = [registry.host, "--format", "json", "--no-cache"]
        first = cli([*args, "--db", str(tmp_path / "a.db")], tmp_path)
        assert first.code == 1, first.err
        shutil.copy(tmp_path / "a.db", tmp_path / "b.db")
        shutil.copy(tmp_path / "a.db", tmp_path / "c.db")
        status, out = lean([*args, "--db", str(tmp_path / "a.db")], tmp_path)
        assert status is not None, "the quick path did not answer"
        whole = full([*args, "--db", str(tmp_path / "b.db")], tmp_path)
        assert (status, timeless(out)) == (whole.returncode, timeless(whole.stdout))
        # the registry's certificate not trusted: never answered in plain HTTP, nor unverified
        monkeypatch.setenv("LEAKSCAN_CERTS_DIRS", str(tmp_path / "none"))
        assert lean([*args, "--db", str(tmp_path / "c.db")], tmp_path) == (None, "")
    finally:
        registry.stop()
