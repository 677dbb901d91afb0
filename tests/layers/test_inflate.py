"""The deflate engine: zlib-ng when installed (it is a dependency), the standard zlib as
the fallback; both behave alike where the readers depend on it."""

from __future__ import annotations

import gzip
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
