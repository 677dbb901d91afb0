"""What an audit is pointed at (a registry host, or the docker engine), which of its
repositories it covers and since when findings are reported: light (no registry client, no
command-line framework), for the full audit and for the quick re-audit of an unchanged
registry alike."""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
import time
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
_AGE = re.compile(r"(\d+)\s*([smhdw])", re.IGNORECASE)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


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


def since_time(text: str, now: float | None = None) -> float:
    """``--since``: a date (2026-01-31), a UTC time (2026-01-31T12:00) or an age (7d, as
    ``leakscan cache prune`` reads one), as seconds since the epoch."""
    age = _AGE.fullmatch(text.strip())
    if age:
        seconds = int(age.group(1)) * _SECONDS[age.group(2).lower()]
        return (time.time() if now is None else now) - seconds
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"--since {text!r}: not a date (2026-01-31) nor an age (7d)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()
