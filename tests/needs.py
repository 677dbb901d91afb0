"""What a test needs from the machine (a tool, a fixture, root): skip without it on a
developer's machine, fail under ``CI=true``, where .ci/setup installs everything and a skip
would hide a test that never ran. Every test folder uses this one helper."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
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


def podman_private(folder: Path) -> dict[str, str]:
    """Environment for a podman of its own under ``folder``: a ``containers.conf`` with file
    locks, temporary folder and event log inside it.

    Without it every podman on the machine shares ``/dev/shm/libpod_lock`` (a lock held by a
    killed podman stays held: the next container given that lock hangs for good) and
    ``/run/libpod`` (exit files, event log), whatever ``--root`` it is given: a test's
    ``podman run`` hung that way after another run had been killed. File locks are
    released when their holder dies."""
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder / "containers.conf"
    conf.write_text(
        "[engine]\n"
        'lock_type = "file"\n'
        f'tmp_dir = "{folder / "tmp"}"\n'
        'events_logger = "file"\n'
        f'events_logfile_path = "{folder / "events.log"}"\n'
    )
    return {"CONTAINERS_CONF": str(conf)}
