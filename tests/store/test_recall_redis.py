"""A scan through a result store kept in a real Redis server: shared, same answers."""

from __future__ import annotations

from pathlib import Path

from helpers import write
from test_recall import leaky_image, plain

from leakscan.scan import ScanOptions, scan


def test_redis_store_is_shared(tmp_path: Path, redis_url: str) -> None:
    ref = write("oci-dir", leaky_image(), tmp_path)
    opts = ScanOptions(cache=redis_url, min_confidence="low")
    cold = plain(scan(ref, ScanOptions(min_confidence="low")))
    scan(ref, opts)
    warm = scan(ref, opts)
    assert plain(warm) == cold
    assert warm.cache is not None and warm.cache.layers_scanned == 0
