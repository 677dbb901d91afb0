"""Fuzz one layer blob: bytes -> decompression -> the streaming tar walk -> archives inside
files -> whiteout interpretation, then the same bytes through ``scan_layer`` with the real
engines (kingfisher and the credential-file readers, whose parsers read file content too).

A damaged layer is a :class:`LayerError` from the pieces and an error or a skip in
``scan_layer``'s result; any other exception is a crash.

    python fuzz/fuzz_layer.py -timeout=10 -rss_limit_mb=512 -max_len=65536 \\
        -dict=fuzz/layer.dict fuzz/work/layer fuzz/corpus/layer
"""

from __future__ import annotations

import io
from typing import BinaryIO

from common import fuzz_imports, main

with fuzz_imports():
    from leakscan.detectors import DetectorConfig, build_detectors
    from leakscan.errors import LayerError
    from leakscan.layers.archives import ArchiveLimits, Member, expand
    from leakscan.layers.compression import ExpansionGuard, HashingReader, decompressed
    from leakscan.layers.status import fate
    from leakscan.layers.walker import LayerRecord, walk
    from leakscan.layerscan import MAX_LAYER_RATIO, RATIO_FLOOR, scan_layer
    from leakscan.model import LayerBlob

ENGINES = build_detectors(DetectorConfig(detect_secrets=False))
LIMITS = ArchiveLimits()


def _drain(stream: BinaryIO) -> None:
    while stream.read(1 << 16):
        pass


def pieces(data: bytes) -> LayerRecord:
    """decompressed + walk + expand, every member read to its end, as scan_layer drives
    them (with its expansion guard)."""
    record = LayerRecord()
    raw = HashingReader(io.BytesIO(data))
    try:
        _, stream = decompressed(raw)  # type: ignore[arg-type]
        guarded = ExpansionGuard(stream, raw, MAX_LAYER_RATIO, RATIO_FLOOR)
        tar = HashingReader(guarded)  # type: ignore[arg-type]
        for entry in walk(tar, record):  # type: ignore[arg-type]
            for item in expand(entry.path, entry.stream, LIMITS, size=entry.size):
                if isinstance(item, Member):
                    _drain(item.stream)
            entry.digest()
        tar.drain()
    except LayerError:
        pass  # expected: the layer is damaged
    return record


def test_one_input(data: bytes) -> None:
    record = pieces(data)
    # the same layer twice in one image: every recorded path's fate, whiteouts included
    records = [record, record]
    for path, entry in list(record.entries.items())[:2000]:
        fate(records, 0, path, entry.digest or b"")
    blob = LayerBlob(0, None, None, None, len(data), lambda: io.BytesIO(data))
    result = scan_layer(blob, ENGINES, LIMITS)
    for problem in (*result.errors, *result.skipped):
        assert isinstance(problem.message, str)


if __name__ == "__main__":
    main(test_one_input)
