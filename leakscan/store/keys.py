"""What a stored result is keyed by: the bytes it came from, and everything that changes
what scanning those bytes yields (the detection fingerprint). A new leakscan, a new engine
release, another plugin file or other limits never reuse a stale result."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import leakscan
from leakscan.detectors import DetectorConfig
from leakscan.layers.archives import ArchiveLimits

# bump when what the store keeps changes shape
STORE_FORMAT = 1
_ENGINES = ("kingfisher-secret-scanner", "detect-secrets")


@cache
def _code_digest() -> str:
    """A digest of leakscan's own code: during development the version string stays put
    while rules and readers change, and a stale result must not outlive them."""
    root = Path(leakscan.__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "missing"


def _file_digest(path: str) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as exc:  # the scan reports it; here it only must not match a good file
        return f"unreadable:{exc.errno}"


def detection_fingerprint(
    detectors: DetectorConfig, limits: ArchiveLimits, max_file_size: int | None
) -> str:
    """Everything that changes what a layer scan yields, as one digest."""
    parts: dict[str, Any] = {
        "format": STORE_FORMAT,
        "leakscan": [leakscan.__version__, _code_digest()],
        "engines": {name: _version(name) for name in _ENGINES},
        "detectors": dataclasses.asdict(detectors),
        # plugin files by content: the same path may hold another plugin tomorrow
        "plugins": [_file_digest(p) for p in detectors.detect_secrets_plugins],
        "limits": dataclasses.asdict(limits),
        "max_file_size": max_file_size,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def layer_key(fingerprint: str, digest: str) -> str:
    """Where the result of a layer (named by its diff_id or its blob digest) is kept."""
    return f"{fingerprint[:32]}:{digest}"


def content_key(fingerprint: str, sha256_hex: str) -> str:
    """Where the matches of a file's content (by its sha256) are kept."""
    return f"{fingerprint[:32]}:{sha256_hex}"
