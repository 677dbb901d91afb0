"""Audits of a real docker-registry: every leak in every tag that carries it, with the status
it has in that image; each layer scanned once; a second audit scans nothing; a new tag costs
only its new layers; pagination; token auth with the catalog hidden; a broken tag listed."""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import regkit
from auditkit import Fill, Filled, push_all
from imagebuilder import Image, Layer, fake_token, write_oci_layout
from referrerkit import ReferrersApi, signed
from schema import validate_report

from leakscan import model as m
from leakscan.audit import AuditOptions, AuditReport, audit
from leakscan.audit.report import audit_dict
from leakscan.errors import LeakscanError
from leakscan.scan import ScanOptions
from leakscan.sightings import secret_sha256
from leakscan.sources.auth import Credentials, RegistryOptions
from leakscan.store.codec import decode_layer, decode_record
from leakscan.suppress import Suppressions


def run(host: str, db: Path, **kw: Any) -> AuditReport:
    scan = kw.pop("scan", ScanOptions(cache=None))
    return audit(host, AuditOptions(scan=scan, db=str(db), **kw))


def by_image(report: AuditReport) -> dict[tuple[str, str | None, str | None], Any]:
    return {(i.repository, i.tag, i.report.platform): i.report for i in report.images}


def findings_view(report: AuditReport) -> list[tuple[Any, ...]]:
    """What an audit found, without times: to compare two audits."""
    out = []
    for i in report.images:
        for f in i.report.findings:
            status = getattr(f.location, "status", f.location.kind)
            out.append((i.repository, i.tag, i.report.platform, f.fingerprint, status))
    return sorted(out)


def check_leaks(report: AuditReport, fill: Fill) -> None:
    """Every leak in every image that carries it, with its status there, and nowhere else."""
    images = by_image(report)
    for leak in fill.leaks:
        sha = secret_sha256(leak.secret)
        found = {}
        for key, image in images.items():
            for f in image.findings:
                if f.secret_sha256 == sha:
                    status = getattr(f.location, "status", f.location.kind)
                    found[key] = status
        assert found == leak.where, (leak.where, found)


def test_every_leak_in_every_tag(filled: Filled, tmp_path: Path) -> None:
    report = run(filled.registry.host, tmp_path / "a.db")
    fill = filled.fill
    tags = {(i.repository, i.tag) for i in report.images}
    assert tags == {tuple(name.split(":")) for name in fill.tags}
    assert report.complete, report.errors
    check_leaks(report, fill)
    s = report.stats
    assert (s.repositories, s.images) == (5, 21)
    # the bases are shared: far fewer unique layers than layers, each scanned once
    assert s.layers_unique < s.layers_total / 1.5
    assert s.layers_scanned == s.layers_unique and s.layers_cached == 0
    data = audit_dict(report)
    validate_report(data)
    text = json.dumps(data)
    for leak in fill.leaks:
        assert leak.secret not in text
    assert all(image["repository"] and image["tag"] for image in data["images"])


def test_second_audit_scans_no_layer(filled: Filled, tmp_path: Path) -> None:
    first = run(filled.registry.host, tmp_path / "a.db")
    second = run(filled.registry.host, tmp_path / "a.db")
    assert second.stats.layers_scanned == 0
    assert second.stats.layers_cached == first.stats.layers_unique
    assert findings_view(second) == findings_view(first)
    # first seen stays the first audit's
    assert [i.first_seen for i in second.images] == [i.first_seen for i in first.images]


def test_result_store_answers_another_database(filled: Filled, tmp_path: Path) -> None:
    """The result store is shared with scans and other audits: a new audit database does
    not mean scanning again."""
    scan = ScanOptions(cache=str(tmp_path / "store" / "results.sqlite3"))
    first = run(filled.registry.host, tmp_path / "a.db", scan=scan)
    other = run(filled.registry.host, tmp_path / "b.db", scan=scan)
    assert first.stats.layers_scanned == first.stats.layers_unique
    assert other.stats.layers_scanned == 0
    assert findings_view(other) == findings_view(first)


def test_new_tag_scans_only_its_new_layers(fresh: Filled, tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    first = run(fresh.registry.host, db)
    cut = time.time()
    token = fake_token("github")
    fill = fresh.fill
    app = Layer(created_by="COPY web-7 /srv").file("srv/.env", f"GITHUB_TOKEN={token}\n")
    image = Image(layers=[fill.bases["a0"], fill.bases["a1"], app])
    path = write_oci_layout(tmp_path / "web7", image, tag="t")
    fresh.registry.push(f"oci:{path}:t", "web:7")
    third = run(fresh.registry.host, db)
    assert third.stats.layers_scanned == 1
    assert third.stats.images == first.stats.images + 1
    # everything found before is still reported; the new tag's leak with it
    assert set(findings_view(first)) < set(findings_view(third))
    # --new-only and --since: the new leak alone (and the audit fails on it alone)
    for kw in ({"new_only": True}, {"since": cut}):
        # a further audit: nothing is new in it, unless --since reaches back
        again = run(fresh.registry.host, db, **kw)
        assert again.stats.layers_scanned == 0
        shown = [
            (i.repository, i.tag, f.secret_sha256) for i in again.images for f in i.report.findings
        ]
        if kw.get("new_only"):
            assert shown == []
        else:
            assert shown == [("web", "7", secret_sha256(token))]


def test_new_only_reports_what_this_audit_saw_first(fresh: Filled, tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    first = run(fresh.registry.host, db, new_only=True)
    assert len(first.findings) == 5  # all new in the first audit
    token = fake_token("npm")
    layer = Layer(created_by="COPY x /").file(
        "root/.npmrc", f"//r.example.internal/:_authToken={token}\n"
    )
    path = write_oci_layout(tmp_path / "t9", Image(layers=[fresh.fill.bases["b0"], layer]), tag="t")
    fresh.registry.push(f"oci:{path}:t", "tools:9")
    second = run(fresh.registry.host, db, new_only=True)
    assert [(i.repository, i.tag) for i in second.images if i.report.findings] == [("tools", "9")]
    assert [f.secret_sha256 for f in second.findings] == [secret_sha256(token)]


def test_catalog_and_tags_paginated_by_two(filled: Filled, tmp_path: Path) -> None:
    status, headers, _ = filled.registry.raw_request("GET", "/v2/_catalog?n=2")
    assert status == 200 and 'rel="next"' in headers.get("Link", "")  # it really pages
    paged = run(filled.registry.host, tmp_path / "a.db", page_size=2)
    whole = run(filled.registry.host, tmp_path / "b.db")
    assert by_image(paged).keys() == by_image(whole).keys()
    assert findings_view(paged) == findings_view(whole)


def test_repo_globs_and_tag_regex(filled: Filled, tmp_path: Path) -> None:
    report = run(filled.registry.host, tmp_path / "a.db", repos=("w*",), tag_pattern="^[34]$")
    assert sorted((i.repository, i.tag) for i in report.images) == [
        ("web", "3"), ("web", "4"), ("worker", "3"), ("worker", "4"),
    ]  # fmt: skip
    listed = tmp_path / "repos.txt"
    listed.write_text("# hidden catalog\napi\nmulti  # two platforms\n")
    named = run(filled.registry.host, tmp_path / "b.db", repos_from=str(listed))
    assert {i.repository for i in named.images} == {"api", "multi"}
    assert len([i for i in named.images if i.repository == "multi"]) == 2


def test_token_auth_registry_with_hidden_catalog(fill: Fill, tmp_path: Path) -> None:
    """Token auth (the registry checks our token server's JWTs): the catalog is refused (no
    catalog scope is granted), the named repositories are audited with the credentials."""
    server = regkit.TokenServer(tmp_path, {"auditor": "tk-" + secrets.token_hex(12)})
    registry = regkit.start_registry(tmp_path / "token", "token", token=server)
    try:
        push_all(registry, fill, ["api:2", "api:3", "web:3", "web:1"])
        creds = Credentials(registry.user or "", registry.password or "")
        scan = ScanOptions(cache=None, registry=RegistryOptions(creds=creds))
        with pytest.raises(LeakscanError, match="--repo"):
            run(registry.host, tmp_path / "a.db", scan=scan)
        report = run(registry.host, tmp_path / "a.db", scan=scan, repos=("api", "web"))
        assert report.complete, report.errors
        assert sorted((i.repository, i.tag) for i in report.images) == [
            ("api", "2"), ("api", "3"), ("web", "1"), ("web", "3"),
        ]  # fmt: skip
        statuses = {
            (i.tag, getattr(f.location, "status", ""))
            for i in report.images
            for f in i.report.findings
        }
        assert statuses == {("2", "deleted"), ("3", "present")}
        # without credentials: each repository is listed as not audited, the audit goes on
        bare = run(registry.host, tmp_path / "b.db", repos=("api", "web"))
        assert not bare.complete and len(bare.errors) == 2 and not bare.images
    finally:
        registry.stop()
        server.close()


def test_a_broken_tag_is_listed_and_the_audit_goes_on(fresh: Filled, tmp_path: Path) -> None:
    registry = fresh.registry
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    status, body = registry.raw_get("/v2/web/manifests/3", accept)
    assert status == 200
    app_layer = json.loads(body)["layers"][-1]["digest"]  # web:3's own layer
    status, _, _ = registry.raw_request("DELETE", f"/v2/web/blobs/{app_layer}")
    assert status == 202
    report = run(registry.host, tmp_path / "a.db")
    images = by_image(report)
    broken = images[("web", "3", "linux/amd64")]
    assert any("not found" in p.message for p in broken.errors)
    assert not report.complete
    # every other image is audited in full, with its findings
    others = [r for k, r in images.items() if k[:2] != ("web", "3")]
    assert all(not r.errors for r in others) and len(others) == 20
    assert sum(len(r.findings) for r in others) == 4


def test_workers_give_the_same_report(filled: Filled, tmp_path: Path) -> None:
    one = run(filled.registry.host, tmp_path / "a.db")
    two = run(filled.registry.host, tmp_path / "b.db", workers=2)
    assert two.stats.layers_scanned == one.stats.layers_scanned
    assert findings_view(two) == findings_view(one)


def test_no_secret_in_clear_in_the_database_or_the_report(fill: Fill, tmp_path: Path) -> None:
    """A token in a file's content and one in the name of a skipped file (larger than
    --max-file-size): the audit database and the report hold them masked only."""
    token, named = fake_token("github"), fake_token("github")
    layer = Layer(created_by="COPY . /app").file("app/.env", f"GITHUB_TOKEN={token}\n")
    layer.file(f"app/cache-{named}.bin", b"x" * 4096)
    path = write_oci_layout(tmp_path / "img", Image(layers=[fill.bases["b0"], layer]), tag="t")
    registry = regkit.start_registry(tmp_path / "registry", "secrets")
    try:
        registry.push(f"oci:{path}:t", "app:1")
        store = tmp_path / "store" / "results.sqlite3"
        scan = ScanOptions(cache=str(store), max_file_size=1024)
        report = run(registry.host, tmp_path / "a.db", scan=scan)
        assert [f.secret_sha256 for f in report.findings] == [secret_sha256(token)]
        skipped = [p for i in report.images for p in i.report.skipped]
        assert any(p.path and p.path.startswith("/app/cache-") for p in skipped)
        again = run(registry.host, tmp_path / "a.db", scan=scan)  # from the database
        for one in (report, again):
            text = json.dumps(audit_dict(one))
            assert token not in text and named not in text
        # the stored values are compressed: read them back as leakscan does
        with sqlite3.connect(tmp_path / "a.db") as conn:
            values = [bytes(v) for (v,) in conn.execute("SELECT value FROM layers")]
        assert values
        for value in values:
            scan, record = decode_layer(value, 0)
            strings = [p.path or "" for p in scan.skipped] + [p.message for p in scan.skipped]
            strings += [h.path for h in scan.hits] + list(decode_record(record).entries)
            assert not [x for x in strings if token in x or named in x]
    finally:
        registry.stop()


def report_view(report: AuditReport) -> dict[str, Any]:
    """The JSON report without what differs from one audit to the next (times, stats)."""
    data = audit_dict(report)
    validate_report(data)
    data.pop("stats")
    data.pop("audit")
    return data


def test_unchanged_tags_cost_one_head_each(fresh: Filled, tmp_path: Path) -> None:
    """A second audit of an unchanged registry asks each tag for its digest alone (HEAD),
    fetches no config and no layer, and reports exactly what the first did; a tag moved to
    another image is read in full, its new layer scanned."""
    proxy = regkit.FaultProxy(fresh.registry)
    try:
        db = tmp_path / "a.db"
        first = run(proxy.host, db)
        assert any(m == "GET" and "/blobs/" in p for m, p, _, _ in proxy.log)
        proxy.reset(regkit.Faults())
        second = run(proxy.host, db)
        assert report_view(second) == report_view(first)
        assert second.stats.layers_scanned == 0
        assert second.stats.layers_cached == first.stats.layers_unique
        assert second.stats.layers_total == first.stats.layers_total
        manifests = [(m, p) for m, p, _, _ in proxy.log if "/manifests/" in p]
        assert sorted(manifests) == sorted(
            ("HEAD", f"/v2/{name.split(':')[0]}/manifests/{name.split(':')[1]}")
            for name in fresh.fill.tags
        )
        assert not [p for _, p, _, _ in proxy.log if "/blobs/" in p]
        # one probe of the registry, not one per repository
        assert [p for _, p, _, _ in proxy.log].count("/v2/") <= 1

        token = fake_token("github")
        layer = Layer(created_by="COPY moved /srv").file("srv/.env", f"GITHUB_TOKEN={token}\n")
        image = Image(layers=[fresh.fill.bases["b0"], layer])
        path = write_oci_layout(tmp_path / "moved", image, tag="t")
        fresh.registry.push(f"oci:{path}:t", "tools:2")
        proxy.reset(regkit.Faults())
        third = run(proxy.host, db)
        assert third.stats.layers_scanned == 1
        moved = by_image(third)[("tools", "2", "linux/amd64")]
        assert [f.secret_sha256 for f in moved.findings] == [secret_sha256(token)]
        gets = {p for m, p, _, _ in proxy.log if m == "GET" and "/manifests/" in p}
        # the moved tag, and where the tag schema would keep referrers of its manifest
        assert "/v2/tools/manifests/2" in gets
        assert all(p.startswith("/v2/tools/manifests/") for p in gets)
        # every other tag as before
        before = {k: v for k, v in by_image(first).items() if k[:2] != ("tools", "2")}
        after = {k: v for k, v in by_image(third).items() if k[:2] != ("tools", "2")}
        assert after == before
        proxy.reset(regkit.Faults())
        fourth = run(proxy.host, db)
        assert report_view(fourth) == report_view(third)
        assert not [p for _, p, _, _ in proxy.log if "/blobs/" in p]
    finally:
        proxy.close()


def test_a_kept_report_is_read_only_under_the_same_settings(fresh: Filled, tmp_path: Path) -> None:
    """Reports kept under one set of suppressions are not another's: that audit reads
    every tag in full and reports what it would with a fresh database."""
    db = tmp_path / "a.db"
    first = run(fresh.registry.host, db)
    other = ScanOptions(cache=None, suppressions=Suppressions(paths=("/srv/*",)))
    again = run(fresh.registry.host, db, scan=other)
    alone = run(fresh.registry.host, tmp_path / "b.db", scan=other)

    def view(report: AuditReport) -> dict[str, Any]:
        data = report_view(report)
        for image in data["images"]:
            for finding in image["findings"]:
                finding.pop("first_seen", None)  # the two databases saw them at other times
        return data

    assert view(again) == view(alone) != view(first)
    assert len(again.findings) == len(first.findings) - 1


def test_a_referrers_tag_makes_its_subject_read_again(fresh: Filled, tmp_path: Path) -> None:
    """Where the OCI tag schema keeps the referrers of a digest (tag ``sha256-HEX``), a new
    one means what the last audit kept for that digest is out of date: its tag is read in
    full, and the audit after that is HEAD-only again."""
    proxy = regkit.FaultProxy(fresh.registry)
    try:
        db = tmp_path / "a.db"
        first = run(proxy.host, db)
        subject = by_image(first)[("tools", "1", "linux/amd64")].manifest_digest
        assert subject is not None
        path, _ = fresh.fill.layouts["tools:3"]
        fresh.registry.push(f"oci:{path}:t", f"tools:sha256-{subject.split(':', 1)[1]}")
        proxy.reset(regkit.Faults())
        run(proxy.host, db)
        gets = {p for m, p, _, _ in proxy.log if m == "GET" and "/manifests/" in p}
        assert "/v2/tools/manifests/1" in gets
        assert "/v2/tools/manifests/2" not in gets  # an unchanged tag of the same repository
        proxy.reset(regkit.Faults())
        run(proxy.host, db)
        assert not [p for m, p, _, _ in proxy.log if m == "GET" and p == "/v2/tools/manifests/1"]
    finally:
        proxy.close()


def _manifest_gets(proxy: regkit.FaultProxy, repository: str) -> list[str]:
    return [
        p for m, p, _, _ in proxy.log if m == "GET" and p.startswith(f"/v2/{repository}/manifests/")
    ]


def _attested(report: AuditReport) -> list[tuple[str, str]]:
    """(tag, referrer digest) of each finding in an attestation."""
    return sorted(
        (i.tag or "", f.location.attestation_digest)
        for i in report.images
        for f in i.report.findings
        if isinstance(f.location, m.AttestationLocation)
    )


def test_referrers_listed_by_the_api_are_held_against_the_kept_reports(
    fill: Fill, tmp_path: Path
) -> None:
    """On a registry with the referrers API, a referrer attached to (or taken from) an
    image leaves its digest as it was: the audit asks the API of every unchanged tag's
    manifests, reads in full those whose listing is not what their kept reports read,
    and reports what a fresh audit reports; a listing unchanged reads nothing again."""
    # (``fill``: the session's skopeo policy, which push needs)
    registry = regkit.start_registry(tmp_path / "registry", "refapi")
    proxy = None
    try:
        subject, referrer, index = signed(registry, tmp_path, tag=False)
        proxy = ReferrersApi(registry, {})  # the API lists nothing yet
        db = tmp_path / "a.db"
        assert _attested(run(proxy.host, db)) == []
        proxy.answers[subject["digest"]] = index
        proxy.reset(regkit.Faults())
        second = run(proxy.host, db)
        assert _attested(second) == [("1", referrer)]
        assert "/v2/signed/app/manifests/1" in _manifest_gets(proxy, "signed/app")
        assert findings_view(second) == findings_view(run(proxy.host, tmp_path / "fresh.db"))
        # listed as the kept reports read it: the tag is not read again
        proxy.reset(regkit.Faults())
        third = run(proxy.host, db)
        assert findings_view(third) == findings_view(second)
        assert _manifest_gets(proxy, "signed/app") == []
        asked = [p for _, p, _, _ in proxy.log]
        assert f"/v2/signed/app/referrers/{subject['digest']}" in asked
        # the referrer is gone from the listing: so is its finding
        proxy.answers.clear()
        proxy.reset(regkit.Faults())
        assert _attested(run(proxy.host, db)) == []
        assert "/v2/signed/app/manifests/1" in _manifest_gets(proxy, "signed/app")
    finally:
        if proxy is not None:
            proxy.close()
        registry.stop()


def test_a_referrers_listing_that_failed_is_tried_again_once_it_answers(
    fill: Fill,
    tmp_path: Path,
) -> None:
    """A registry that refused to list referrers (a 500 each time): the kept report says
    they were not listed; while it still refuses, the tag is not read again; once it
    answers as a registry without the API does (404), the tag is read again and the
    report no longer says so."""
    # (``fill``: the session's skopeo policy, which push needs)
    registry = regkit.start_registry(tmp_path / "registry", "refail")
    proxy = regkit.FaultProxy(registry)
    try:
        signed(registry, tmp_path, tag=False)
        refusing = regkit.Faults(fail={"/referrers/": 1000})
        scan = ScanOptions(cache=None, registry=RegistryOptions(retries=0))
        db = tmp_path / "a.db"

        def unlisted(report: AuditReport) -> bool:
            return any("not listed" in p.message for i in report.images for p in i.report.skipped)

        proxy.reset(refusing)
        assert unlisted(run(proxy.host, db, scan=scan))
        proxy.reset(refusing)
        assert unlisted(run(proxy.host, db, scan=scan))
        assert _manifest_gets(proxy, "signed/app") == []
        proxy.reset(regkit.Faults())
        assert not unlisted(run(proxy.host, db, scan=scan))
        assert "/v2/signed/app/manifests/1" in _manifest_gets(proxy, "signed/app")
        proxy.reset(regkit.Faults())
        run(proxy.host, db, scan=scan)
        assert _manifest_gets(proxy, "signed/app") == []
    finally:
        proxy.close()
        registry.stop()
