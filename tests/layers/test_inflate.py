"""The deflate engines, zlib-ng and the standard zlib (kept selectable so that the readers
are held to what both do alike), and the one gzip / raw deflate reader on them."""

from __future__ import annotations

import gzip
import io
import os
import zlib

import pytest

from leakscan.layers import inflate


def test_zlib_ng_is_used_by_default() -> None:
    assert inflate.engine() == "zlib-ng"


def test_unknown_engine_refused() -> None:
    with pytest.raises(ValueError, match="no such deflate engine"):
        inflate.use("brotli")


@pytest.mark.usefixtures("deflate_engine")
def test_the_streaming_interface_the_readers_rely_on() -> None:
    data = os.urandom(50_000) + b"x" * 500_000
    blob = gzip.compress(data)
    dec = inflate.decompressobj(31)
    # max_length stops the output and keeps the rest of the input in unconsumed_tail
    out = dec.decompress(blob, 4096)
    assert len(out) == 4096 and dec.unconsumed_tail and not dec.eof
    while dec.unconsumed_tail:
        out += dec.decompress(dec.unconsumed_tail, 1 << 16)
    assert out == data and dec.eof
    # what follows a member is left in unused_data
    dec = inflate.decompressobj(31)
    assert dec.decompress(blob + b"next") == data and dec.unused_data == b"next"
    # raw deflate, as in zip members
    packer = zlib.compressobj(6, zlib.DEFLATED, -15)
    raw = packer.compress(data) + packer.flush()
    assert inflate.decompressobj(-15).decompress(raw) == data
    with pytest.raises(inflate.ERRORS):
        inflate.decompressobj(31).decompress(b"\x1f\x8b\x08\x00" + b"\xff" * 64)


def _drain(inflater: inflate.Inflater, most: int = 4096) -> bytes:
    out = []
    while chunk := inflater.step(most):
        assert len(chunk) <= most
        out.append(chunk)
    return b"".join(out)


@pytest.mark.usefixtures("deflate_engine")
@pytest.mark.parametrize(("tail", "garbage"), [(b"", False), (bytes(700), False), (b"junk", True)])
def test_inflater_reads_every_gzip_member_then_stops(tail: bytes, garbage: bool) -> None:
    first, second = os.urandom(3000), b"y" * 200_000
    blob = gzip.compress(first) + bytes(600) + gzip.compress(second)  # tape padding between
    inflater = inflate.Inflater(io.BytesIO(blob + tail).read, gzip=True)
    assert _drain(inflater) == first + second
    assert inflater.garbage is garbage and inflater.step(4096) == b""


@pytest.mark.usefixtures("deflate_engine")
def test_inflater_leaves_what_follows_a_raw_deflate_stream() -> None:
    data = os.urandom(5000) + b"z" * 100_000
    packer = zlib.compressobj(6, zlib.DEFLATED, -15)
    raw = packer.compress(data) + packer.flush()
    inflater = inflate.Inflater(io.BytesIO(raw + b"PK\x07\x08 next record").read, gzip=False)
    assert _drain(inflater) == data
    # a zip reader checks its data descriptor against this count, and reads on from ``rest``
    assert inflater.consumed == len(raw) and inflater.rest == b"PK\x07\x08 next record"


@pytest.mark.usefixtures("deflate_engine")
def test_inflater_damage() -> None:
    blob = gzip.compress(b"a" * 1000) + gzip.compress(os.urandom(1000))
    with pytest.raises(inflate.Truncated):
        _drain(inflate.Inflater(io.BytesIO(blob[:-10]).read, gzip=True))
    with pytest.raises(inflate.Corrupt):
        _drain(inflate.Inflater(io.BytesIO(b"\x1f\x8b\x08\x00" + b"\xff" * 64).read, gzip=True))
