"""What a test needs from the machine (a tool, a fixture, root): skip without it on a
developer's machine, fail under ``CI=true``, where .ci/setup installs everything and a skip
would hide a test that never ran. Every test folder uses this one helper."""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

# where Debian keeps dockerd, docker-registry...: not on every user's PATH
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def in_ci() -> bool:
    """``CI=true`` (any case), as .ci/run sets it."""
    return os.environ.get("CI", "").lower() == "true"


def missing(reason: str) -> NoReturn:
    """Skip the test for ``reason``, or fail it when ``CI=true``."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: this test must run here; see .ci/setup)", pytrace=False)
    pytest.skip(reason)


def tool_path() -> str:
    """``PATH`` with the sbin folders added: where a root shell would find the tools."""
    parts = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join([p for p in parts if p] + [s for s in SBIN if s not in parts])


def tool(name: str) -> str:
    """The path of the program ``name``; skip (or fail under CI) when it is not installed."""
    found = shutil.which(name, path=tool_path())
    if found is None:
        missing(f"{name} is not installed")
    return found
