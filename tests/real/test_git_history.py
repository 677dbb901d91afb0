"""Git history in real images (issue 14): a repository whose token was committed and then
``git rm``-ed, copied whole by ``COPY . /app`` in images dockerd and buildah build, is found
in the layer's ``.git`` with the commit that added it; the fix the report gives
(``.dockerignore`` the ``.git`` directory) leaves nothing to find."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from gitrepos import git, leaky_repo
from imagebuilder import fake_token
from schema import validate_report

if TYPE_CHECKING:
    from tests.real.conftest import RealImage, _Buildah

pytestmark = pytest.mark.real
TOOL_TIMEOUT = 300
DOCKERFILE = "FROM lsbase:1\nCOPY . /app\n"


def _scan(ref: str) -> tuple[int, dict, str]:  # type: ignore[type-arg]
    done = subprocess.run(
        [sys.executable, "-m", "leakscan", ref, "--no-cache", "-f", "json"],
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT,
    )
    report = json.loads(done.stdout)
    validate_report(report)
    return done.returncode, report, done.stderr


def _context(tmp: Path, token: str, how: str) -> tuple[Path, str]:
    repo = leaky_repo(tmp, token, extra_commits=3)
    if how == "gc":
        git(repo, "gc", "-q")
    elif how == "repack":
        git(repo, "repack", "-adf", "-q", "--depth=50")
    (repo / "Dockerfile").write_text(DOCKERFILE)
    return repo, git(repo, "rev-parse", "HEAD~4")


def _check(report: dict, token: str, first: str, stderr: str) -> None:  # type: ignore[type-arg]
    (image,) = report["images"]
    found = [f for f in image["findings"] if "git" in f["location"]]
    (finding,) = [f for f in found if f["location"]["git"]["part"] == "blob"]
    loc = finding["location"]
    assert loc["path"] == f"/app/.git!{first[:7]}:config/.env"
    assert loc["status"] == "present"
    assert loc["layer_index"] == len(image["layers"]) - 1  # the COPY's layer
    assert loc["git"]["commit"] == first and loc["git"]["subject"] == "Add service config"
    assert ".dockerignore" in finding["remediation"]
    assert image["errors"] == []
    assert token not in json.dumps(report) + stderr


def test_dockerd_copy_of_a_repository(
    dockerd: str, docker_layouts: dict[str, RealImage], tmp_path: Path
) -> None:
    import docker

    token = fake_token("github")
    context, first = _context(tmp_path, token, "loose")
    client = docker.DockerClient(base_url=dockerd, version="auto", timeout=TOOL_TIMEOUT)
    saved = tmp_path / "app.tar"
    fixed = tmp_path / "fixed.tar"
    try:
        image, _ = client.images.build(
            path=str(context), tag="leaky/git:1", network_mode="none", pull=False, rm=True
        )
        with open(saved, "wb") as f:
            for chunk in image.save(named=True):
                f.write(chunk)
        # the fix the report gives: the .git directory left out of the build context
        (context / ".dockerignore").write_text(".git\n")
        image, _ = client.images.build(
            path=str(context), tag="leaky/git:2", network_mode="none", pull=False, rm=True
        )
        with open(fixed, "wb") as f:
            for chunk in image.save(named=True):
                f.write(chunk)
    finally:
        client.close()
    code, report, err = _scan(f"docker-archive:{saved}")
    assert code == 1, err
    _check(report, token, first, err)
    code, report, err = _scan(f"docker-archive:{fixed}")
    assert code == 0, err
    assert report["images"][0]["findings"] == []


@pytest.mark.parametrize("how", ["gc", "repack"])
def test_buildah_copy_of_a_packed_repository(
    private_buildah: _Buildah, tmp_path: Path, how: str
) -> None:
    buildah = private_buildah
    token = fake_token("github")
    context, first = _context(tmp_path, token, how)
    buildah(
        "bud",
        f"--signature-policy={buildah.policy}",
        "--isolation",
        "chroot",
        "--pull=never",
        "-q",
        "-t",
        "localhost/leaky/git:1",
        "-f",
        str(context / "Dockerfile"),
        str(context),
    )
    out = tmp_path / "app.tar"
    buildah(
        "push",
        f"--signature-policy={buildah.policy}",
        "-q",
        "localhost/leaky/git:1",
        f"oci-archive:{out}:latest",
    )
    code, report, err = _scan(f"oci-archive:{out}:latest")
    assert code == 1, err
    _check(report, token, first, err)
