"""``leakscan push IMAGE``: scan the image the local docker daemon holds, and push it to its
registry only when the gate passes.

What is scanned is what would be pushed: the daemon's image (``docker-daemon:IMAGE``), never
the registry's copy of the name. The push goes through the daemon's own API (the docker
SDK's ``images.push``), so it uses the daemon's registry settings and the docker config's
credentials, as ``docker push`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from leakscan.errors import InputError, SourceError


@dataclass(frozen=True)
class Pushed:
    """What was pushed: the reference, and the manifest digest the registry acknowledged."""

    reference: str
    digest: str | None


def daemon_name(image: str) -> str:
    """The daemon's name for ``image``: ``docker-daemon:`` taken off; other transports
    refused (only a daemon's image can be pushed from here)."""
    name = image.removeprefix("docker-daemon:")
    if name.startswith(("docker://", "oci:", "oci-archive:", "docker-archive:")) or not name:
        raise InputError(
            f"{image}: leakscan push takes the name of an image in the local docker daemon"
        )
    return name


def split_tag(name: str) -> tuple[str, str]:
    """``host:5000/team/app:1`` -> (``host:5000/team/app``, ``1``); no tag -> ``latest``.
    A digest cannot be pushed to: it names content, not a place."""
    if "@" in name:
        raise InputError(f"{name}: push a tag, not a digest")
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :]
    return name, "latest"


def push_image(name: str, client: Any | None = None) -> Pushed:
    """Push ``name`` from the daemon (``DOCKER_HOST`` or the default socket)."""
    import docker

    repository, tag = split_tag(name)
    own = client is None
    if client is None:
        try:
            client = docker.from_env()
        except docker.errors.DockerException:
            raise SourceError("no docker daemon answers: nothing to push from") from None
    digest = None
    try:
        for line in client.images.push(repository, tag=tag, stream=True, decode=True):
            if not isinstance(line, dict):
                continue
            if line.get("error"):
                # the daemon's message: registry and HTTP status, no credentials
                raise SourceError(f"push of {repository}:{tag} failed: {line['error']}")
            aux = line.get("aux")
            if isinstance(aux, dict) and isinstance(aux.get("Digest"), str):
                digest = aux["Digest"]
    except docker.errors.APIError as exc:
        raise SourceError(f"push of {repository}:{tag} failed: {exc.explanation}") from None
    finally:
        if own:
            client.close()
    return Pushed(f"{repository}:{tag}", digest)
