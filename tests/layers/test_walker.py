"""The streaming tar walk: what it records, what it hands to the detectors."""

from __future__ import annotations

import io
import os
import tarfile

import blake3
import pytest
from imagebuilder import Layer, fake_token

from leakscan import model as m
from leakscan.detectors import Detectors
from leakscan.errors import LayerError
from leakscan.layers.archives import ArchiveLimits
from leakscan.layers.walker import (
    PATH_MAX,
    READ_SIZE,
    EntryRecord,
    LayerRecord,
    normalize,
    walk,
)
from leakscan.layerscan import LayerScan, scan_layer


def _walk(data: bytes, read: bool = True) -> tuple[LayerRecord, dict[str, bytes]]:
    record = LayerRecord()
    seen: dict[str, bytes] = {}
    for entry in walk(io.BytesIO(data), record):
        seen[entry.path] = entry.stream.read() if read else b""
    return record, seen


def test_files_dirs_links_and_whiteouts() -> None:
    layer = (
        Layer()
        .file("etc/app.conf", "a=1\n")
        .symlink("etc/link", "/etc/app.conf")
        .hardlink("etc/hard", "etc/app.conf")
        .fifo("run/fifo")
        .whiteout("etc/old.conf")
        .opaque("var/cache")
    )
    record, seen = _walk(layer.tar_bytes())
    assert seen == {"/etc/app.conf": b"a=1\n"}
    digest = record.entries["/etc/app.conf"].digest
    assert digest is not None and len(digest) == 32
    assert record.entries["/etc/hard"] == EntryRecord("hardlink", digest)
    assert record.entries["/etc/link"] == EntryRecord("symlink")
    assert record.entries["/run/fifo"] == EntryRecord("other")
    assert record.entries["/etc"] == EntryRecord("dir")
    assert record.whiteouts == {"/etc/old.conf"}
    assert record.opaques == {"/var/cache"}
    # whiteout markers are not entries
    assert not any(".wh." in p for p in record.entries)


def test_digest_covers_unread_bytes() -> None:
    layer = Layer().file("big", b"x" * 100_000)
    read_all, _ = _walk(layer.tar_bytes(), read=True)
    read_none, _ = _walk(layer.tar_bytes(), read=False)
    assert read_all.entries["/big"].digest == read_none.entries["/big"].digest


def test_same_path_twice_last_wins() -> None:
    layer = Layer().file("a", "first").file("a", "second")
    record = LayerRecord()
    seen = [(e.path, e.stream.read()) for e in walk(io.BytesIO(layer.tar_bytes()), record)]
    assert seen == [("/a", b"first"), ("/a", b"second")]  # both are scanned
    assert (
        record.entries["/a"].digest
        == _walk(Layer().file("a", "second").tar_bytes())[0].entries["/a"].digest
    )


def test_aufs_markers_and_bare_whiteout() -> None:
    layer = Layer(auto_dirs=False)
    for name in (".wh..wh.plnk/1.2", ".wh..wh.aufs", "dir/.wh."):
        info = tarfile.TarInfo(name)
        layer.raw(info, b"")
    record, _ = _walk(layer.tar_bytes())
    assert record.whiteouts == set() and record.opaques == set()
    assert record.odd_whiteouts == ["/dir/.wh."]


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("./etc/passwd", "/etc/passwd"),
        ("etc/passwd", "/etc/passwd"),
        ("/etc/passwd", "/etc/passwd"),
        ("etc/", "/etc"),
        ("./", "/"),
        ("a/../../../../etc/shadow", "/etc/shadow"),
        ("//x//y", "/x/y"),
    ],
)
def test_normalize(name: str, path: str) -> None:
    assert normalize(name) == path


def test_non_utf8_names_are_printable() -> None:
    layer = Layer(auto_dirs=False)
    info = tarfile.TarInfo("caf\udce9.env")  # the byte 0xe9 alone, as tarfile decodes it
    layer.raw(info, b"x")
    data = io.BytesIO()
    with tarfile.open(
        fileobj=data,
        mode="w",
        format=tarfile.GNU_FORMAT,
        encoding="utf-8",
        errors="surrogateescape",
    ) as tar:
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    _, seen = _walk(data.getvalue())
    assert list(seen) == ["/caf\\xe9.env"]


def test_long_pax_names() -> None:
    name = "d/" + "n" * 5000 + ".env"
    _, seen = _walk(Layer().file(name, "v").tar_bytes())
    assert list(seen) == ["/" + name]


def _random_files(sizes: list[int]) -> bytes:
    """A layer of random files ``f0``, ``f1``... of those sizes."""
    layer = Layer()
    for n, size in enumerate(sizes):
        layer.file(f"f{n}", os.urandom(size))
    return layer.tar_bytes()


def test_whole_file_reads_and_digests_as_its_stream_does() -> None:
    """A file read whole (its parts) gives the bytes and the digest its stream gives,
    across the walk's pieces too; read whole or streamed, the walk records the same digest;
    a file read whole, or streamed in part, cannot be read whole again. The parts are not
    copies, and stay valid once the walk has moved on (every file's joined after it)."""
    sizes = [0, 1, 511, 512, READ_SIZE - 700, READ_SIZE + 3, 3 * READ_SIZE + 5]
    data = _random_files(sizes)
    streamed, seen = _walk(data)
    record = LayerRecord()
    kept = {}
    for n, entry in enumerate(walk(io.BytesIO(data), record)):
        parts = entry.parts()
        kept[entry.path] = parts
        whole = b"".join(parts)
        assert whole == seen[entry.path] and len(whole) == sizes[n]
        assert entry.digest() == blake3.blake3(whole).digest()
        assert entry.stream.read() == b""  # read already
        with pytest.raises(ValueError):
            entry.parts()
    assert record.entries == streamed.entries
    assert {path: b"".join(parts) for path, parts in kept.items()} == seen
    assert all(isinstance(part, memoryview) for part in kept["/f6"])
    assert len(kept["/f6"]) >= 3  # 3 pieces and more: views of each, not one copy
    for entry in walk(io.BytesIO(data), LayerRecord()):
        if entry.size:
            entry.stream.read(1)
            with pytest.raises(ValueError):
                entry.parts()


@pytest.mark.parametrize("then", ["stream", "stream in parts", "whole", "digest"])
def test_a_file_after_its_head_reads_from_its_first_byte(then: str) -> None:
    """After head(n), the stream, parts() and digest() still cover the file from its first
    byte, across the walk's pieces too, and the walk records the digest it would have."""
    sizes = [0, 1, 100, 4096, READ_SIZE - 700, READ_SIZE + 3, 3 * READ_SIZE + 5]
    data = _random_files(sizes)
    streamed, seen = _walk(data)
    record = LayerRecord()
    for entry in walk(io.BytesIO(data), record):
        full = seen[entry.path]
        assert entry.head(4096) == full[:4096]
        with pytest.raises(ValueError):
            entry.head(10)
        if then == "stream":
            assert entry.stream.read() == full
        elif then == "stream in parts":
            parts = [entry.stream.read(1000)]
            while part := entry.stream.read(READ_SIZE // 3):
                parts.append(part)
            assert b"".join(parts) == full
        elif then == "whole":
            assert b"".join(entry.parts()) == full
        assert entry.digest() == blake3.blake3(full).digest()
    assert record.entries == streamed.entries


def test_a_head_is_taken_before_anything_else_reads_the_file() -> None:
    data = Layer().file("a", os.urandom(5000)).file("b", os.urandom(5000)).tar_bytes()
    for n, entry in enumerate(walk(io.BytesIO(data), LayerRecord())):
        if n == 0:
            entry.stream.read(1)
        else:
            entry.parts()
        with pytest.raises(ValueError):
            entry.head(100)


def test_a_head_from_a_truncated_tar_is_an_error() -> None:
    data = Layer().file("a", os.urandom(2 * READ_SIZE)).tar_bytes()[: READ_SIZE // 2]
    entry = next(walk(io.BytesIO(data), LayerRecord()))
    with pytest.raises(LayerError, match="truncated in /a"):
        entry.head(READ_SIZE)


@pytest.mark.parametrize("cut", [1500, 3000, READ_SIZE + 900])
def test_a_file_read_whole_from_a_truncated_tar_is_an_error(cut: int) -> None:
    data = Layer().file("a", os.urandom(2 * READ_SIZE)).tar_bytes()[:cut]
    entry = next(walk(io.BytesIO(data), LayerRecord()))
    with pytest.raises(LayerError, match="truncated in /a"):
        entry.parts()


@pytest.mark.parametrize("cut", [100, 600, 1500])
def test_truncated_tar_is_an_error(cut: int) -> None:
    data = Layer().file("a", b"y" * 5000).file("b", "z").tar_bytes()[:cut]
    with pytest.raises(LayerError):
        _walk(data)


def test_not_a_tar_is_an_error() -> None:
    with pytest.raises(LayerError):
        _walk(b"\x01" * 2048)


# --- what the record tells the report, through scan_layer -------------------------------------


def _scan_layer(layer: Layer, detectors: Detectors) -> LayerScan:
    data = layer.tar_bytes()
    blob = m.LayerBlob(3, layer.diff_id(), None, None, len(data), lambda: io.BytesIO(data))
    out = scan_layer(blob, detectors, ArchiveLimits())
    assert not out.errors
    return out


def test_overlong_paths_are_scanned_and_said_in_skipped(detectors: Detectors) -> None:
    deep = "d/" + "n" * PATH_MAX
    token = fake_token("github")
    layer = Layer(auto_dirs=False).file(f"{deep}/a.env", f"GITHUB_TOKEN={token}\n")
    layer.file(f"{deep}/b.env", "b").file("etc/ok.conf", "ok")
    out = _scan_layer(layer, detectors)
    assert any(x.secret == token for hit in out.hits for x in hit.seen)  # scanned all the same
    assert out.skipped == [
        m.Problem(
            f"2 paths longer than {PATH_MAX} bytes: scanned, status taken as present", 3, None
        )
    ]


def test_bare_whiteouts_are_said_in_skipped(detectors: Detectors) -> None:
    layer = Layer(auto_dirs=False)
    for name in ("a/.wh.", "b/.wh.", "c/.wh.gone"):
        layer.raw(tarfile.TarInfo(name), b"")
    out = _scan_layer(layer, detectors)
    assert out.record.whiteouts == {"/c/gone"}
    assert out.skipped == [
        m.Problem(
            "2 bare whiteouts naming no file: ignored, nothing beside them taken as removed",
            3,
            "/a/.wh.",
        )
    ]


def test_an_ordinary_layer_says_nothing_of_the_kind(detectors: Detectors) -> None:
    layer = Layer().file("a", "1").file("a", "2").whiteout("b").opaque("c")
    layer.raw(tarfile.TarInfo(".wh..wh.aufs"), b"")
    assert _scan_layer(layer, detectors).skipped == []
