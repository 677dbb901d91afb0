"""Compression is recognised from the bytes; damage is an error, not a short read."""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import pytest
import zstandard
from helpers import write
from imagebuilder import Image, Layer, fake_token

from leakscan.errors import LayerError
from leakscan.layers.compression import ExpansionGuard, HashingReader, decompressed, sniff
from leakscan.scan import scan

# every test runs with each deflate engine (tests/layers/conftest.py)
pytestmark = pytest.mark.usefixtures("deflate_engine")

DATA = os.urandom(300_000) + b"text " * 400_000


def _read(blob: bytes) -> tuple[str, bytes]:
    kind, stream = decompressed(io.BytesIO(blob))
    return kind, stream.read()


@pytest.mark.parametrize(
    ("blob", "kind"),
    [
        (DATA, "none"),
        (gzip.compress(DATA), "gzip"),
        (zstandard.ZstdCompressor().compress(DATA), "zstd"),
        (gzip.compress(DATA[:1000]) + gzip.compress(DATA[1000:]), "gzip"),
        (gzip.compress(DATA) + b"\x00" * 4096, "gzip"),
        (
            zstandard.ZstdCompressor().compress(DATA[:7])
            + zstandard.ZstdCompressor().compress(DATA[7:]),
            "zstd",
        ),
    ],
)
def test_round_trip(blob: bytes, kind: str) -> None:
    assert _read(blob) == (kind, DATA)


@pytest.mark.parametrize(
    "blob",
    [
        gzip.compress(DATA),
        gzip.compress(DATA[:1000]) + gzip.compress(DATA[1000:]),
        zstandard.ZstdCompressor().compress(DATA),
    ],
)
@pytest.mark.parametrize("how", ["read", "readinto"])
def test_decoded_bytes_are_the_same_in_reads_of_any_size(blob: bytes, how: str) -> None:
    """Small reads (cut from a piece decoded ahead), large ones (decoded for themselves)
    and reads into a buffer, mixed, give the stream's bytes in order."""
    _, stream = decompressed(io.BytesIO(blob))
    sizes = [1, 3, 200_000, 70_000, 65_535, 1 << 20, 5, 256 << 10]
    got = bytearray()
    for n in range(10_000):
        size = sizes[n % len(sizes)]
        if how == "read":
            piece = stream.read(size)
            assert len(piece) <= size
        else:
            buf = bytearray(size)
            piece = buf[: stream.readinto(buf)]
        if not piece:
            break
        got += piece
    assert bytes(got) == DATA
    assert stream.read(10) == b""


def test_sniff_short_inputs() -> None:
    assert sniff(b"") == "none" and sniff(b"\x1f") == "none" and sniff(b"\x1f\x8b") == "gzip"
    assert _read(b"") == ("none", b"")


@pytest.mark.parametrize(
    "blob",
    [
        gzip.compress(DATA)[:-50],
        gzip.compress(DATA)[:200],
        gzip.compress(DATA) + b"trailing garbage",
        gzip.compress(DATA)[:100] + b"\xff" * 1000,
    ],
)
def test_damaged_gzip_is_an_error(blob: bytes) -> None:
    with pytest.raises(LayerError):
        _read(blob)


def test_damaged_zstd_is_an_error() -> None:
    # without a frame checksum, damage inside a block can decode to other bytes: the layer's
    # diff_id check catches that (tests/test_scan.py); with one, the decoder does
    blob = bytearray(zstandard.ZstdCompressor(write_checksum=True).compress(DATA))
    blob[-100:-90] = b"\xff" * 10
    with pytest.raises(LayerError):
        _read(bytes(blob))


def test_hashing_reader_counts_and_hashes() -> None:
    reader = HashingReader(io.BytesIO(b"abc" * 1000))
    assert reader.read(10) == b"abcabcabca"
    reader.drain()
    assert reader.count == 3000
    import hashlib

    assert reader.digest() == "sha256:" + hashlib.sha256(b"abc" * 1000).hexdigest()


def test_truncated_gzip_hands_out_what_it_decoded_before_the_error() -> None:
    # the walker reads large pieces: bytes decoded before the damage must reach it (the
    # files they hold are scanned) and the error must come after them, not instead
    data = os.urandom(2 << 20)
    blob = gzip.compress(data)[:-5000]
    _, stream = decompressed(io.BytesIO(blob))
    got = bytearray()
    with pytest.raises(LayerError, match="truncated"):
        while piece := stream.read(256 << 10):
            got += piece
    assert len(got) > len(data) - (64 << 10)
    assert bytes(got) == data[: len(got)]


def test_truncated_gzip_layer_still_reports_the_files_before_the_damage(tmp_path: Path) -> None:
    token = fake_token("github")
    filler = os.urandom(3 << 20)  # a few MiB that gzip cannot shrink, after the secret
    layer = Layer().file("app/.env", f"GITHUB_TOKEN={token}\n").file("app/blob.bin", filler)
    ref = write("oci-dir", Image(layers=[layer], compression="gzip"), tmp_path)
    blobs = sorted((tmp_path / "layout").rglob("sha256/*"), key=lambda p: p.stat().st_size)
    data = blobs[-1].read_bytes()
    assert data[:2] == b"\x1f\x8b"
    blobs[-1].write_bytes(data[: len(data) - 100_000])
    report = scan(ref)
    (image,) = report.images
    assert any("truncated" in e.message for e in image.errors)
    assert [f.location.path for f in image.findings] == ["/app/.env"]


@pytest.mark.parametrize("how", ["read", "read_all", "readinto"])
def test_expansion_guard_passes_bytes_and_stops_a_bomb_however_read(how: str) -> None:
    """The guard hands on the inner stream's bytes unchanged, and stops a stream that
    expands past its ratio whichever way it is read (read(n) no longer goes through
    readinto, and read() of everything must not read the bomb whole first)."""

    def through(blob: bytes, ratio: int, floor: int) -> bytes:
        raw = HashingReader(io.BytesIO(blob))
        _, stream = decompressed(raw)  # type: ignore[arg-type]
        guard = ExpansionGuard(stream, raw, ratio, floor)
        if how == "read_all":
            return guard.read()
        out = bytearray()
        while True:
            if how == "read":
                piece = guard.read(1 << 16)
            else:
                buf = bytearray(1 << 16)
                piece = bytes(buf[: guard.readinto(buf)])
            if not piece:
                return bytes(out)
            out += piece

    packed = zstandard.ZstdCompressor().compress(DATA)
    assert through(packed, 1000, 1 << 20) == DATA
    bomb = zstandard.ZstdCompressor(level=3).compress(bytes(64 << 20))
    with pytest.raises(LayerError, match="decompression bomb"):
        through(bomb, 1000, 1 << 20)
