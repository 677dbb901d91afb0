"""Image sources: one module per way to get an image, all producing
:class:`leakscan.model.SourceImage`. :func:`open_source` turns what the user typed into a
source, in skopeo's transport spelling or as a plain path."""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from leakscan.errors import InputError

# the registry's settings: no file or archive source needs them imported; nor the model (the
# quick re-audit imports leakscan.sources.auth, and so this package, before it needs one)
if TYPE_CHECKING:
    from leakscan.sources.auth import RegistryOptions
    from leakscan.sources.base import Source

Transport = Literal["docker-archive", "oci", "oci-archive", "docker", "docker-daemon", "name"]

_PATH_TRANSPORTS: tuple[Transport, ...] = ("docker-archive", "oci-archive", "oci")


@dataclass(frozen=True)
class Target:
    """A parsed image reference: the transport, the path or name, and a tag or ref within."""

    transport: Transport
    location: str
    ref: str | None = None


def _split_path_ref(rest: str) -> tuple[str, str | None]:
    """``PATH[:REF]`` where PATH may itself hold colons: the longest existing prefix wins."""
    if os.path.exists(rest):
        return rest, None
    cut = len(rest)
    while True:
        cut = rest.rfind(":", 0, cut)
        if cut <= 0:
            return rest, None
        if os.path.exists(rest[:cut]):
            return rest[:cut], rest[cut + 1 :] or None


def parse_target(image: str) -> Target:
    """Parse ``IMAGE`` as the CLI takes it."""
    if not image:
        raise InputError("no image given")
    for transport in _PATH_TRANSPORTS:
        prefix = transport + ":"
        if image.startswith(prefix):
            path, ref = _split_path_ref(image[len(prefix) :])
            if not path:
                raise InputError(f"{image}: no path after {prefix}")
            return Target(transport, path, ref)
    if image.startswith("docker://"):
        return Target("docker", image[len("docker://") :])
    if image.startswith("docker-daemon:"):
        return Target("docker-daemon", image[len("docker-daemon:") :])
    if os.path.exists(image):
        return Target(_sniff_path(image), image)
    return Target("name", image)


def _sniff_path(path: str) -> Transport:
    """Tell a plain path's layout from its contents."""
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "manifest.json")):
            return "docker-archive"
        if os.path.isfile(os.path.join(path, "index.json")):
            return "oci"
        raise InputError(f"{path}: directory has neither index.json nor manifest.json")
    import tarfile

    try:
        with tarfile.open(path, mode="r:*") as tar:
            names = set()
            for info in tar:
                names.add(posixpath.normpath(info.name.lstrip("/")))
                if "manifest.json" in names:
                    return "docker-archive"
    except (tarfile.TarError, EOFError, OSError, ValueError):
        # tarfile's message lists its internals (methods, ReadError reprs): ours names it
        raise InputError(f"{path}: not an image: not a tar archive or image directory") from None
    if "index.json" in names:
        return "oci-archive"
    raise InputError(f"{path}: tar has neither manifest.json nor index.json")


def open_source(image: str, registry: RegistryOptions | None = None) -> Source:
    """The source for ``image``: a path in skopeo's transport spelling or plain, the docker
    daemon (``docker-daemon:REF``), a registry (``docker://REF``), or a plain name, which
    goes to the daemon first and then to the registry. ``registry`` says how to reach
    registries (credentials, TLS). Raises InputError when ``image`` names nothing."""
    from leakscan.sources.archive import DockerArchiveSource
    from leakscan.sources.oci import OciLayoutSource

    target = parse_target(image)
    path = target.location
    if target.transport in _PATH_TRANSPORTS and not os.path.exists(path):
        raise InputError(f"{image}: no such file or directory: {path}")
    if target.transport == "docker-archive":
        return DockerArchiveSource.from_path(path, image, target.ref, os.path.isdir(path))
    if target.transport == "oci":
        if not os.path.isdir(path):
            raise InputError(f"{image}: {path} is not a directory (for a tar use oci-archive:)")
        return OciLayoutSource.from_dir(path, image, target.ref)
    if target.transport == "oci-archive":
        if os.path.isdir(path):
            raise InputError(f"{image}: {path} is a directory (use oci:{path})")
        return OciLayoutSource.from_archive(path, image, target.ref)
    if target.transport == "docker-daemon":
        from leakscan.sources.daemon import open_daemon

        return open_daemon(image)
    if target.transport == "name" and _looks_like_path(image):
        raise InputError(f"{image}: no such file or directory")
    from leakscan.sources.registry import RegistrySource

    if target.transport == "docker":
        return RegistrySource.open(image, path, registry)
    # a plain name: the docker daemon first (when one answers and has it), then the registry
    from leakscan.sources.daemon import try_daemon

    answered: list[bool] = []
    local = try_daemon(image, answered)
    if local is not None:
        return local
    return RegistrySource.open(image, path, registry, after_daemon=bool(answered))


def _looks_like_path(name: str) -> bool:
    """A missing file, not an image name: a name never starts with / . ~ or ends in .tar."""
    return name.startswith(("/", ".", "~")) or name.endswith((".tar", ".tgz", ".tar.gz"))
