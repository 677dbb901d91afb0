"""Image references as docker reads them: ``[DOMAIN/]PATH[:TAG][@DIGEST]``.

Docker Hub rules apply when no domain is given: ``myapp`` is ``docker.io/library/myapp:latest``
and ``user/app`` is ``docker.io/user/app:latest``. A first component is a domain when it holds
a ``.`` or a ``:``, is ``localhost``, or has upper-case letters (a path never has).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from leakscan.errors import InputError

DOCKER_HUB = "docker.io"
# the Hub's name in references is not the host that serves its API
DOCKER_HUB_API = "registry-1.docker.io"
DEFAULT_TAG = "latest"
MAX_NAME_LENGTH = 255

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
)
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGESTS = {"sha256": 64, "sha512": 128}


@dataclass(frozen=True)
class ImageReference:
    """A parsed reference. ``tag`` is kept for display when a digest pins the image."""

    domain: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def api_host(self) -> str:
        """``host[:port]`` that serves the Registry API for this domain."""
        return DOCKER_HUB_API if self.domain == DOCKER_HUB else self.domain

    @property
    def ref(self) -> str:
        """What to ask the registry for: the digest wins over the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def where(self) -> str:
        """``domain/repository``, for messages."""
        return f"{self.domain}/{self.repository}"

    def __str__(self) -> str:
        text = self.where
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def _bad(text: str, why: str) -> InputError:
    return InputError(f"invalid image reference {text!r}: {why}")


def parse_reference(text: str) -> ImageReference:
    """Parse ``text``; InputError naming the problem when it is not a valid reference."""
    if not text:
        raise InputError("empty image reference")
    if "://" in text:
        raise _bad(text, "a reference has no scheme (use docker://NAME for a registry)")
    name, at, digest = text.partition("@")
    if at:
        algo, sep, hexpart = digest.partition(":")
        if not sep or algo not in _DIGESTS:
            # not quoted: "user:password@host/repo" is a mistake people make
            raise InputError(
                "invalid image reference: what follows @ must be a digest, sha256:<64 hex> or "
                "sha512:<128 hex> (credentials go in --creds)"
            )
        if len(hexpart) != _DIGESTS[algo] or not re.fullmatch(r"[0-9a-f]+", hexpart):
            raise _bad(text, f"the digest must be {algo}:<{_DIGESTS[algo]} lower-case hex>")
    tag: str | None = None
    last_slash = name.rfind("/")
    last_colon = name.rfind(":")
    if last_colon > last_slash:
        name, tag = name[:last_colon], name[last_colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise _bad(text, f"invalid tag {tag!r}")
    if not name:
        raise _bad(text, "no repository name")
    first, slash, rest = name.partition("/")
    is_domain = slash and (
        any(c in first for c in ".:") or first == "localhost" or first.lower() != first
    )
    if is_domain:
        domain, path = first, rest
        if not _DOMAIN.fullmatch(domain):
            raise _bad(text, f"invalid registry host {domain!r}")
    else:
        domain, path = DOCKER_HUB, name
    if domain == "index.docker.io":
        domain = DOCKER_HUB
    if domain == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    for component in path.split("/"):
        if not _COMPONENT.fullmatch(component):
            if component.lower() != component:
                raise _bad(text, "repository names must be lower-case")
            raise _bad(text, f"invalid repository name component {component!r}")
    if len(f"{domain}/{path}") > MAX_NAME_LENGTH:
        raise _bad(text, f"name longer than {MAX_NAME_LENGTH} characters")
    if tag is None and not at:
        tag = DEFAULT_TAG
    return ImageReference(domain, path, tag, digest if at else None)
