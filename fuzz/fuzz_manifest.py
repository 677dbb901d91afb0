"""Fuzz the manifest parsers: bytes -> index.json, an image manifest, a config and a docker
``manifest.json`` in one directory (an OCI layout and an unpacked docker save at once) ->
``OciLayoutSource.images`` and ``DockerArchiveSource.images`` (every image read, its history
and config strings listed), then a whole ``scan`` of the directory both ways.

The input is up to six parts separated by ``common.SEPARATOR`` (a line ``====``):

    index.json | manifest blob | config blob | docker manifest.json | layer blob | TAG

Digests are filled in by the harness, so that damage reaches the parsers behind the digest
checks: in every JSON part ``@L@`` becomes the layer blob's digest, ``@D@`` its diff_id,
``@C@`` the config's digest, ``@M@`` the manifest's, and ``@LP@`` / ``@CP@`` / ``@MP@`` their
``blobs/sha256/...`` paths. Each input is read once as it is, and once more naming TAG (the
OCI ref name and the docker-archive image) and platform linux/amd64.

A :class:`LeakscanError` is an expected error; any other exception is a crash.

    python fuzz/fuzz_manifest.py -timeout=10 -rss_limit_mb=512 -dict=fuzz/manifest.dict \\
        fuzz/work/manifest fuzz/corpus/manifest
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import zlib
from pathlib import Path
from typing import Any

from common import fuzz_imports, main, split_parts, work_dir

with fuzz_imports():
    from leakscan.detectors import DetectorConfig, build_detectors
    from leakscan.errors import LeakscanError
    from leakscan.metadata import config_texts, history_texts, map_history
    from leakscan.report.json import report_dict
    from leakscan.scan import ScanOptions, scan
    from leakscan.sources.archive import DockerArchiveSource
    from leakscan.sources.oci import OciLayoutSource

ENGINES = build_detectors(DetectorConfig(detect_secrets=False))
OPTIONS = ScanOptions(workers=1)
LAYOUT = work_dir("manifest") / "layout"


def _hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _diff_id(layer: bytes) -> str:
    if layer.startswith(b"\x1f\x8b"):
        try:
            return _hex(gzip.decompress(layer))
        except (OSError, EOFError, zlib.error):
            pass
    return _hex(layer)


def write_layout(parts: dict[str, bytes], root: Path) -> None:
    """The files of the input, digests filled in, under ``root`` (emptied first)."""
    shutil.rmtree(root, ignore_errors=True)
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    fills: dict[bytes, str] = {}
    layer = parts.get("layer")
    if layer is not None:
        fills[b"@L@"] = "sha256:" + _hex(layer)
        fills[b"@LP@"] = "blobs/sha256/" + _hex(layer)
        fills[b"@D@"] = "sha256:" + _diff_id(layer)
        (blobs / _hex(layer)).write_bytes(layer)

    def fill(data: bytes) -> bytes:
        for key in sorted(fills, key=len, reverse=True):  # @LP@ before @L@
            data = data.replace(key, fills[key].encode())
        return data

    for name, key in (("config", "C"), ("manifest", "M")):
        if name in parts:
            blob = fill(parts[name])
            fills[f"@{key}@".encode()] = "sha256:" + _hex(blob)
            fills[f"@{key}P@".encode()] = "blobs/sha256/" + _hex(blob)
            (blobs / _hex(blob)).write_bytes(blob)
    (root / "oci-layout").write_bytes(b'{"imageLayoutVersion":"1.0.0"}')
    if "index" in parts:
        (root / "index.json").write_bytes(fill(parts["index"]))
    if "docker" in parts:
        (root / "manifest.json").write_bytes(fill(parts["docker"]))


def _read(source: Any, platforms: tuple[str, ...]) -> None:
    """Every image of ``source``, with the history and config strings that would be scanned."""
    try:
        for image in source.images(platforms):
            history = map_history(image.config, len(image.layers))
            for text in history_texts(history, image.config.get("history")):
                text.text.encode("utf-8", "surrogatepass")
            for text in config_texts(image.config, image.annotations):
                text.text.encode("utf-8", "surrogatepass")
    except LeakscanError:
        pass  # expected: the layout is damaged
    finally:
        source.close()


def test_one_input(data: bytes) -> None:
    parts = split_parts(data)
    write_layout(parts, LAYOUT)
    tag = parts.get("tag", b"").decode("utf-8", "replace").strip() or None
    where = str(LAYOUT)
    for ref, platforms in ((None, ()), (tag, ("linux/amd64",))):
        _read(OciLayoutSource.from_dir(where, f"oci:{where}", ref), platforms)
        _read(DockerArchiveSource.from_path(where, f"docker-archive:{where}", ref, True), platforms)
    for image in (f"oci:{where}", f"docker-archive:{where}"):
        try:
            report = scan(image, OPTIONS, detectors=ENGINES)
        except LeakscanError:
            continue
        json.dumps(report_dict(report))


if __name__ == "__main__":
    main(test_one_input)
