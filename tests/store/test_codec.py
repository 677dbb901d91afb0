"""Stored layer and file results: what goes in comes back, without a secret, and a damaged
value is an error, never a wrong result."""

from __future__ import annotations

import os
import zlib

import pytest
from imagebuilder import fake_token

from leakscan import model as m
from leakscan.detectors import Match
from leakscan.layers.walker import EntryRecord, LayerRecord
from leakscan.layerscan import FileHit, FileResult, LayerScan
from leakscan.sightings import Seen, seen
from leakscan.store.codec import (
    CodecError,
    decode_file,
    decode_layer,
    decode_record,
    encode_file,
    encode_layer,
)


def _fresh(secret: str) -> Seen:
    return seen(Match("r.id", "desc", secret, 3, 3 + len(secret), 2, "high", "kingfisher"))


def _layer(secret: str, named: str = "plain") -> LayerScan:
    """A layer whose finding is ``secret``, with a skipped file named after ``named``."""
    record = LayerRecord(
        entries={
            "/etc": EntryRecord("dir"),
            "/etc/app.env": EntryRecord("file", os.urandom(32)),
            "/bin/sh": EntryRecord("symlink"),
            "/bin/ln": EntryRecord("hardlink", os.urandom(32)),
            f"/named/{named}.txt": EntryRecord("file", os.urandom(32)),
            "/dev/null": EntryRecord("other"),
        },
        whiteouts={"/old"},
        opaques={"/var/cache"},
        odd_whiteouts=["/x/.wh."],
        too_long=2,
    )
    hit = FileHit(4, "/etc/app.env", "/etc/app.env", os.urandom(32), (_fresh(secret),))
    skipped = [m.Problem("larger than --max-file-size", 4, f"/named/{named}.txt")]
    return LayerScan(record=record, hits=[hit], skipped=skipped, diff_id="sha256:" + "a" * 64)


def test_layer_round_trip_without_the_secret() -> None:
    # a skipped file named after a secret the engines found in its name: stored masked
    secret, other = fake_token("github"), fake_token("github")
    scan = _layer(secret, other)
    value = encode_layer(scan, also=[other])
    assert value is not None
    assert secret.encode() not in value and other.encode() not in value
    back, packed = decode_layer(value, 7)
    (hit,) = back.hits
    assert hit.layer_index == 7 and hit.path == "/etc/app.env" and hit.digest == scan.hits[0].digest
    assert hit.seen[0].secret is None
    assert hit.seen[0].secret_sha256 == scan.hits[0].seen[0].secret_sha256
    assert back.skipped[0].layer_index == 7 and other not in (back.skipped[0].path or "")
    record = decode_record(packed)
    assert record.whiteouts == {"/old"} and record.opaques == {"/var/cache"}
    assert record.odd_whiteouts == ["/x/.wh."] and record.too_long == 2
    kept = {p: e for p, e in scan.record.entries.items() if other not in p}
    assert {p: e for p, e in record.entries.items() if p in kept} == kept
    assert len(record.entries) == len(scan.record.entries)  # the masked path is there, masked


def test_a_layer_without_findings_masks_what_the_engines_found_in_its_paths() -> None:
    # no secret of its own nor of its image: the record's paths are masked for ``also``
    # alone, and left as they are when it names nothing in them
    other = fake_token("github")
    scan = _layer(fake_token("github"), other)
    scan.hits.clear()
    value = encode_layer(scan, also=[other])
    assert value is not None and other.encode() not in value
    entries = decode_record(decode_layer(value, 0)[1]).entries
    assert len(entries) == len(scan.record.entries) and not any(other in p for p in entries)
    plain = encode_layer(scan, also=[fake_token("github")])
    assert plain is not None
    assert decode_record(decode_layer(plain, 0)[1]).entries == scan.record.entries


def test_a_secret_in_a_path_is_not_stored() -> None:
    """Masked, such a path is no longer the one a cold scan judges; in clear, the store
    would hold the secret: such a result is not stored (and is scanned again)."""
    secret = fake_token("github")
    assert encode_layer(_layer(secret, named=secret)) is None  # a file named after its secret
    # a whiteout named after a secret another layer of the image holds
    other = fake_token("github")
    scan = _layer(secret)
    scan.record.whiteouts.add(f"/srv/{other}/app.env")
    assert encode_layer(scan) is not None and encode_layer(scan, image=[other]) is None
    # a finding at a path that holds it
    hit = FileHit(1, f"/srv/{secret}.env", f"/srv/{secret}.env", os.urandom(32), (_fresh(secret),))
    assert encode_layer(LayerScan(hits=[hit], diff_id="sha256:" + "b" * 64)) is None
    # an archive member named after its secret
    member = FileResult(((f"!/conf/{secret}", (_fresh(secret),)),), ())
    assert encode_file(member) is None


def test_file_round_trip() -> None:
    secret = fake_token("npm")
    result = FileResult((("!/conf/npmrc", (_fresh(secret),)),), (("!/big", "too big"),))
    value = encode_file(result)
    assert value is not None
    back = decode_file(value)
    assert secret not in repr(back) and back.skipped == (("!/big", "too big"),)
    assert back.groups[0][1][0].secret_sha256 == result.groups[0][1][0].secret_sha256


@pytest.mark.parametrize("cut", [0, 3, 7, 20, -10])
def test_damaged_values_are_errors(cut: int) -> None:
    value = encode_layer(_layer(fake_token("github")))
    assert value is not None
    damaged = value[:cut]
    with pytest.raises(CodecError):
        _, packed = decode_layer(damaged, 0)
        decode_record(packed)
    with pytest.raises(CodecError):
        decode_file(damaged)


def test_random_bytes_are_errors() -> None:
    for _ in range(50):
        junk = os.urandom(64)
        with pytest.raises(CodecError):
            decode_layer(junk, 0)
        with pytest.raises(CodecError):
            decode_record(zlib.compress(junk))


def test_file_results_small_and_large_round_trip() -> None:
    # empty and small results are kept as plain JSON, large ones compressed: both read back
    assert decode_file(encode_file(FileResult((), ()))) == FileResult((), ())
    reasons = tuple((f"!/member{n}", "too deep " * 20) for n in range(40))
    large = FileResult((), reasons)
    small = FileResult((), reasons[:1])
    assert len(encode_file(large)) < len(repr(reasons))  # compressed
    assert decode_file(encode_file(large)) == large
    assert decode_file(encode_file(small)) == small
    for value in (encode_file(small), encode_file(FileResult((), ()))):
        for cut in (5, 6, len(value) - 1):
            with pytest.raises(CodecError):
                decode_file(value[:cut])


def test_a_record_read_back_answers_lookups_as_the_dict_it_was() -> None:
    entries = {
        f"/d{n}/f{m}": EntryRecord("file", os.urandom(32)) if m % 3 else EntryRecord("dir")
        for n in range(20)
        for m in range(30)
    }
    entries["/dup"] = EntryRecord("file", os.urandom(32))
    entries["/é/ünï"] = EntryRecord("hardlink", os.urandom(32))
    entries["/d1/f1/x"] = EntryRecord("symlink")
    scan = LayerScan(record=LayerRecord(entries=dict(entries)), diff_id="sha256:" + "b" * 64)
    _, packed = decode_layer(encode_layer(scan), 0)
    record = decode_record(packed)
    for path, want in entries.items():  # looked up without unpacking
        assert record.entries.get(path) == want and path in record.entries
        assert record.entries[path] == want
    for missing in ("/d1", "/d1/f", "d1/f1", "/d1/f1/", "/nothing", "", "/d1/f1\0/d1/f2"):
        assert record.entries.get(missing) is None and missing not in record.entries
    assert dict(record.entries.items()) == entries and len(record.entries) == len(entries)
    assert list(record.entries) == list(entries)


def test_a_git_hit_comes_back_with_its_whole_place() -> None:
    """A secret in a git directory's history keeps every field of its place, the blob's
    digests included (``blob_digest`` tells whether the working tree holds the same bytes:
    a place without it would report the blob beside the working-tree file)."""
    secret = fake_token("github")
    place = m.GitPlace(
        git_dir="/app/.git",
        object_id="ab" * 20,
        part="blob",
        blob_sha256="cd" * 32,
        commit="ef" * 20,
        author_date="2026-01-02T03:04:05+01:00",
        subject="add the config",
        repo_path="config/.env",
        blob_digest="12" * 32,
    )
    holder = "/app/.git/objects/pack/pack-1.pack"
    hit = FileHit(
        2, holder, "/app/.git!efefefe:config/.env", os.urandom(32), (_fresh(secret),), place
    )
    scan = LayerScan(
        record=LayerRecord(entries={holder: EntryRecord("file", hit.digest)}), hits=[hit]
    )
    value = encode_layer(scan)
    assert value is not None and secret.encode() not in value
    back, _ = decode_layer(value, 2)
    assert back.hits[0].git == place
