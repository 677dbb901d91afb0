"""The git the bench scripts run to make their repositories: one fixed identity and no
system or user configuration, so that a generated repository is the same on every machine
(and a cached one stays valid)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.internal",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.internal",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


def git_env(when: int | None = None) -> dict[str, str]:
    """The environment git runs in; with ``when`` (Unix seconds) the commit dates too."""
    env = {**os.environ, **GIT_ENV}
    if when is not None:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = f"{when} +0000"
    return env


def git(repo: Path, *args: str, when: int | None = None, stdin: bytes | None = None) -> bytes:
    """Run git in ``repo`` and return its output (bytes: ``cat-file --batch`` is binary);
    a failure raises."""
    return subprocess.run(
        ["git", *args], cwd=repo, input=stdin, env=git_env(when), check=True, capture_output=True
    ).stdout
