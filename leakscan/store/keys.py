"""What a stored result is keyed by: the bytes it came from, and everything that changes
what scanning those bytes yields (the detection fingerprint). A new leakscan, a new engine
release, another plugin file or other limits never reuse a stale result."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

import leakscan
from leakscan.distinfo import installed_version

if TYPE_CHECKING:  # a re-scan the store answers whole imports neither (see fingerprint_of)
    from leakscan.detectors import DetectorConfig
    from leakscan.layers.archives import ArchiveLimits

# bump when what the store keeps changes shape
# 2: files are digested with BLAKE3 (records, content keys), git places carry blob_digest
STORE_FORMAT = 2
_ENGINES = ("kingfisher-secret-scanner", "detect-secrets")


@cache
def _code_digest() -> str:
    """A digest of leakscan's own code: during development the version string stays put
    while rules and readers change, and a stale result must not outlive them."""
    # os.walk rather than Path.rglob: a re-scan answered from the store pays for this walk
    root = os.path.dirname(os.path.abspath(leakscan.__file__))
    names: list[str] = []
    for folder, _dirs, files in os.walk(root):
        # the folder below the root, by slicing (os.path.relpath is ~0.1 ms a call)
        below = folder[len(root) + 1 :].replace(os.sep, "/")
        names.extend(f"{below}/{name}" if below else name for name in files if name.endswith(".py"))
    h = hashlib.sha256()
    for name in sorted(names):
        h.update(name.encode() + b"\0")
        with open(os.path.join(root, name), "rb") as fh:
            h.update(fh.read())
    return h.hexdigest()


def _version(package: str) -> str:
    return installed_version(package) or "missing"


def _file_digest(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()
    except OSError as exc:  # the scan reports it; here it only must not match a good file
        return f"unreadable:{exc.errno}"


def detection_fingerprint(
    detectors: DetectorConfig, limits: ArchiveLimits, max_file_size: int | None
) -> str:
    """Everything that changes what a layer scan yields, as one digest."""
    return fingerprint_of(dataclasses.asdict(detectors), dataclasses.asdict(limits), max_file_size)


# dataclasses.asdict of DetectorConfig() and ArchiveLimits(): the settings of every re-scan
# leakscan.quick answers, which imports neither class (the archive readers behind
# ArchiveLimits cost that path more than the lookup). tests/store/test_keys.py checks that
# they equal the classes' defaults; should they drift, such a re-scan finds nothing stored
# under them and is answered the long way, never wrongly
DEFAULT_DETECTORS: Mapping[str, Any] = {
    "detect_secrets": True,
    "detect_secrets_plugins": (),
    "detect_secrets_max_file_size": 1 << 20,
}
DEFAULT_LIMITS: Mapping[str, Any] = {
    "max_depth": 3,
    "max_expanded_bytes": 2 << 30,
    "max_ratio": 200,
    "max_members": 100_000,
    "max_member_size": None,
    "max_decoder_memory": 16 << 20,
}


def fingerprint_of(
    detectors: Mapping[str, Any], limits: Mapping[str, Any], max_file_size: int | None
) -> str:
    """:func:`detection_fingerprint` of the settings as plain data (``asdict`` of both)."""
    parts: dict[str, Any] = {
        "format": STORE_FORMAT,
        "leakscan": [leakscan.__version__, _code_digest()],
        "engines": {name: _version(name) for name in _ENGINES},
        "detectors": dict(detectors),
        # plugin files by content: the same path may hold another plugin tomorrow
        "plugins": [_file_digest(p) for p in detectors["detect_secrets_plugins"]],
        "limits": dict(limits),
        "max_file_size": max_file_size,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def layer_key(fingerprint: str, digest: str) -> str:
    """Where the result of a layer (named by its diff_id or its blob digest) is kept."""
    return f"{fingerprint[:32]}:{digest}"


def content_key(fingerprint: str, sha256_hex: str) -> str:
    """Where the matches of a file's content (by its sha256) are kept."""
    return f"{fingerprint[:32]}:{sha256_hex}"
