"""leakscan push against the session's REAL dockerd and a real registry: a leaky image is
not pushed (the registry has no such tag after), a clean one is, with the digest the daemon
reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clirun import REPO
from needs import tool

sys.path.append(str(REPO / "tests" / "registry"))
from regkit import Registry, start_registry  # noqa: E402

IMAGE_TAG = "leaky/app:latest"  # built by conftest.py's docker_layouts
BASE = "lsbase:1"  # conftest.py's busybox import: nothing secret in it


@pytest.fixture()
def registry(tmp_path: Path) -> Iterator[Registry]:
    tool("docker-registry")
    started = start_registry(tmp_path / "registry", "push")
    try:
        yield started
    finally:
        started.stop()


def _push(dockerd: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DOCKER_HOST=dockerd, DOCKER_CONFIG=str(tmp_path / "docker-config"))
    return subprocess.run(
        [sys.executable, "-m", "leakscan", "push", *args, "--cache-dir", str(tmp_path / "c")],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
    )  # fmt: skip


def _tags(registry: Registry, repo: str) -> list[str]:
    status, body = registry.raw_get(f"/v2/{repo}/tags/list")
    if status == 404:
        return []
    assert status == 200, body
    tags: list[str] = json.loads(body).get("tags") or []
    return tags


def test_leaky_image_is_not_pushed(
    dockerd: str, docker_layouts: dict[str, Any], registry: Registry, tmp_path: Path
) -> None:
    import docker

    client = docker.DockerClient(base_url=dockerd, version="auto")
    try:
        target = f"{registry.host}/team/leaky"
        client.images.get(IMAGE_TAG).tag(target, "1")
        run = _push(dockerd, tmp_path, f"{target}:1", "--format", "json")
        assert run.returncode == 1, run.stderr
        assert f"not pushed: {target}:1 (the gate failed)" in run.stderr
        assert json.loads(run.stdout)["images"][0]["findings"]
        assert _tags(registry, "team/leaky") == []
        # --fail-on none: the findings are reported, the gate passes, the image is pushed
        run = _push(dockerd, tmp_path, f"{target}:1", "--fail-on", "none")
        assert run.returncode == 0, run.stderr
        assert _tags(registry, "team/leaky") == ["1"]
    finally:
        client.close()


def test_clean_image_is_pushed(
    dockerd: str, docker_layouts: dict[str, Any], registry: Registry, tmp_path: Path
) -> None:
    import docker

    client = docker.DockerClient(base_url=dockerd, version="auto")
    try:
        target = f"{registry.host}/team/clean"
        client.images.get(BASE).tag(target, "2")
        run = _push(dockerd, tmp_path, f"docker-daemon:{target}:2")
        assert run.returncode == 0, run.stderr
        assert _tags(registry, "team/clean") == ["2"]
        digests = client.images.get(f"{target}:2").attrs["RepoDigests"]
        assert f"pushed {target}:2 ({digests[0].split('@')[1]})" in run.stderr
    finally:
        client.close()


def test_refusals(dockerd: str, tmp_path: Path) -> None:
    run = _push(dockerd, tmp_path, "oci:/somewhere")
    assert run.returncode == 2
    assert "takes the name of an image in the local docker daemon" in run.stderr
    run = _push(dockerd, tmp_path, "registry.example.internal/app@sha256:" + "a" * 64)
    assert run.returncode == 2 and "push a tag, not a digest" in run.stderr
