"""What an audit is pointed at (a registry host, or the docker engine) and which of its
repositories it covers: light (no registry client), for the full audit and for the quick
re-audit of an unchanged registry alike."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from leakscan.errors import InputError
from leakscan.sources.auth import RegistryOptions

DAEMON = "docker-daemon:"
# entries asked for per page of _catalog and tags/list (the registry may answer fewer)
PAGE = 1000
# pages followed at most: a registry whose Link loops must not keep an audit going for ever
MAX_PAGES = 100_000
_HOST = re.compile(r"[A-Za-z0-9.-]+(?::[0-9]+)?|\[[0-9A-Fa-f:.]+\](?::[0-9]+)?")
_GLOB = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class Target:
    """What to audit: a registry host (and how to reach it), or the docker engine."""

    host: str | None  # None: the docker engine
    options: RegistryOptions

    @property
    def daemon(self) -> bool:
        """Whether the target is the local docker engine."""
        return self.host is None

    @property
    def name(self) -> str:
        """The target as reports name it."""
        return self.host or DAEMON


def parse_target(text: str, options: RegistryOptions) -> Target:
    """``host[:port]``, ``https://host[:port]``, ``http://host[:port]`` or ``docker-daemon:``."""
    if text in (DAEMON, "docker-daemon"):
        return Target(None, options)
    host = text
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or parts.path.strip("/") or parts.query:
            raise InputError(f"{text}: a registry is host[:port], https://HOST or http://HOST")
        host = parts.netloc
        if parts.scheme == "http":
            options = replace(options, plain_http=True)
    host = host.rstrip("/")
    if not host or not _HOST.fullmatch(host):
        raise InputError(f"{text}: not a registry host (host[:port]) nor docker-daemon:")
    return Target(host, options)


def select_repositories(listed: Sequence[str], globs: Sequence[str]) -> list[str]:
    """The repositories ``globs`` select (all without globs)."""
    if not globs:
        return sorted(listed)
    return sorted(r for r in listed if any(fnmatch.fnmatchcase(r, g) for g in globs))


def read_repos_file(path: str) -> list[str]:
    """Repository names, one a line; ``#`` starts a comment."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise InputError(f"--repos-from {path}: {exc.strerror}") from None
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


def repository_names(
    repos: Sequence[str], repos_from: str | None, catalog: Callable[[], Iterable[str]]
) -> list[str]:
    """The repositories to audit: named ones as they are, globs against the ``catalog``
    (read only when a glob, or no name at all, asks for it)."""
    named = list(read_repos_file(repos_from)) if repos_from else []
    globs = [r for r in repos if _GLOB.search(r)]
    named += [r for r in repos if not _GLOB.search(r)]
    if named and not globs:
        return sorted(set(named))
    listed = list(catalog())
    chosen = select_repositories(listed, globs) if (globs or named) else sorted(listed)
    if named and globs:
        chosen = sorted(set(chosen) | set(named))
    return chosen
