"""What every image source provides, and the small rules they share."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from leakscan.errors import SourceError
from leakscan.model import Problem, SourceImage
from leakscan.sources.store import MAX_JSON_BYTES, BlobStore, parse_json

_DIGEST = re.compile(r"^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")


class Source(Protocol):
    """A way to get images: an archive, a layout directory, a registry, a daemon."""

    def images(self, platforms: Sequence[str]) -> Iterator[SourceImage]:
        """Every image the reference names, one per platform, filtered by ``platforms``."""
        ...

    def close(self) -> None:
        """Release files and connections."""
        ...


def count_mismatch(listed_in: str, layers: int, diff_ids: int) -> Problem | None:
    """The problem, if any, of a manifest and its config disagreeing on the layer count."""
    if layers == diff_ids:
        return None
    return Problem(f"{listed_in} lists {layers} layers but the config has {diff_ids} diff_ids")


def check_digest(digest: Any, where: str) -> str:
    """A digest string in ``algorithm:hex`` form, sha256 or sha512."""
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise SourceError(f"{where}: invalid digest {digest!r}")
    algo, hexpart = digest.split(":", 1)
    if algo not in ("sha256", "sha512") or not re.fullmatch(r"[0-9a-f]+", hexpart):
        raise SourceError(f"{where}: unsupported digest {digest!r}")
    return digest


def blob_path(digest: str) -> str:
    """Where an OCI layout keeps the blob with ``digest``."""
    algo, hexpart = digest.split(":", 1)
    return f"blobs/{algo}/{hexpart}"


def digest_of(data: bytes, algo: str = "sha256") -> str:
    """The digest of ``data``."""
    return f"{algo}:" + hashlib.new(algo, data).hexdigest()


def read_blob_json(store: BlobStore, name: str, what: str, expected: str | None) -> tuple[Any, str]:
    """Read a JSON blob, verify its digest when one is expected, return (json, digest)."""
    with store.open(name) as fh:
        data = fh.read(MAX_JSON_BYTES + 1)
    if len(data) > MAX_JSON_BYTES:
        raise SourceError(f"{store.location}: {what} {name} is larger than 32 MiB")
    algo = expected.split(":", 1)[0] if expected else "sha256"
    actual = digest_of(data, algo)
    if expected is not None and actual != expected:
        raise SourceError(f"{store.location}: {what} {name} does not match its digest {expected}")
    return parse_json(data, f"{store.location}: {what} {name}"), actual


def platform_string(os_: Any, arch: Any, variant: Any = None) -> str | None:
    """``os/arch[/variant]`` or None when os or architecture is missing."""
    if not isinstance(os_, str) or not isinstance(arch, str) or not os_ or not arch:
        return None
    if isinstance(variant, str) and variant:
        return f"{os_}/{arch}/{variant}"
    return f"{os_}/{arch}"


def config_platform(config: Any) -> str | None:
    """The platform an image config declares."""
    if not isinstance(config, dict):
        return None
    return platform_string(config.get("os"), config.get("architecture"), config.get("variant"))


def platform_wanted(platform: str | None, wanted: Sequence[str]) -> bool:
    """Does ``platform`` match one of ``wanted``? ``linux/arm64`` matches any variant."""
    if not wanted:
        return True
    if platform is None:
        return False
    have = platform.split("/")
    for want in wanted:
        parts = want.split("/")
        if have[: len(parts)] == parts:
            return True
    return False
