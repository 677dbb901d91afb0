"""Installed distributions' versions, without importing importlib.metadata: that import
(it loads the email package) and its lookup cost a re-scan the result store answers about
20 ms, a tenth of it. The version is read from the ``.dist-info`` folder that
importlib.metadata would find; anything less plain is left to importlib.metadata."""

from __future__ import annotations

import os
import re
import sys
from functools import cache


def _normal(name: str) -> str:
    """A distribution's name as importlib.metadata compares them."""
    return re.sub(r"[-_.]+", "_", name).lower()


@cache
def _entries(folder: str) -> dict[str, list[tuple[str, str]]] | None:
    """The metadata entries of one ``sys.path`` folder by normalized name; None when it
    is something importlib.metadata reads otherwise (a zip file). Read once a process:
    the versions asked for are those of the engines this process has loaded."""
    try:
        names = os.listdir(folder)
    except OSError:
        return None if os.path.exists(folder) else {}
    found: dict[str, list[tuple[str, str]]] = {}
    for name in names:
        low = name.lower()
        if not low.endswith(("-info", ".egg")):
            continue
        base, ext = os.path.splitext(low)
        if ext in (".dist-info", ".egg-info", ".egg"):
            found.setdefault(_normal(base.partition("-")[0]), []).append((name, ext))
    return found


def dist_info_version(package: str) -> str | None:
    """``package``'s version read from its ``.dist-info`` folder, found as
    importlib.metadata finds it: in the first ``sys.path`` entry that holds one. None when
    that is not plain (an egg, a zip, two entries for the name, no Version header): then
    importlib.metadata answers."""
    want = _normal(package)
    for entry in sys.path:
        folder = entry or "."
        entries = _entries(folder)
        if entries is None:
            return None  # a zip file, or a folder we may not list: importlib's call
        found = entries.get(want)
        if not found:
            continue
        if len(found) > 1 or found[0][1] != ".dist-info":
            return None
        try:
            with open(os.path.join(folder, found[0][0], "METADATA"), encoding="utf-8") as fh:
                for line in fh:
                    if not line.strip():
                        break  # the end of the headers
                    key, colon, value = line.partition(":")
                    if colon and key.strip().lower() == "version":
                        return value.strip() or None
        except (OSError, UnicodeDecodeError):
            return None
        return None
    return None


def installed_version(package: str) -> str | None:
    """The installed version of the distribution ``package``; None when it is not installed."""
    fast = dist_info_version(package)
    if fast is not None:
        return fast
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
