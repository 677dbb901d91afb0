"""``leakscan audit docker-daemon:`` on a private dockerd after a multi-stage build: the
builder stage, which never reaches the final image, stays in the engine as untagged
intermediate images, and its build-argument token is found there."""

from __future__ import annotations

import secrets
import string
import sys
from pathlib import Path
from typing import Any

import pytest

from leakscan.audit import AuditOptions, audit
from leakscan.scan import ScanOptions
from leakscan.sightings import secret_sha256

# tests/audit/conftest.py loaded tests/real/conftest.py under this name
real = sys.modules["leakscan_tests_real_conftest"]
BASE_REPO, BASE_TAG = real.BASE_REPO, real.BASE_TAG

DOCKERFILE = f"""\
FROM {BASE_REPO}:{BASE_TAG} AS builder
ARG GITHUB_TOKEN
RUN echo "machine github.example.internal password $GITHUB_TOKEN" > /root/.netrc \\
 && echo built > /tmp/artifact
FROM {BASE_REPO}:{BASE_TAG}
COPY --from=builder /tmp/artifact /app/artifact
"""


@pytest.fixture(scope="module")
def built(
    dockerd: str, busybox_rootfs: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    import docker

    token = "ghp_" + "".join(
        secrets.choice(string.ascii_letters + string.digits) for _ in range(36)
    )
    context = tmp_path_factory.mktemp("multistage")
    (context / "Dockerfile").write_text(DOCKERFILE)
    client = docker.DockerClient(base_url=dockerd, version="auto", timeout=300)
    try:
        client.api.import_image_from_data(
            real._rootfs_tar(busybox_rootfs), repository=BASE_REPO, tag=BASE_TAG,
            changes=['CMD ["/bin/sh"]'],
        )  # fmt: skip
        image, _ = client.images.build(
            path=str(context), tag="multi/app:1", buildargs={"GITHUB_TOKEN": token},
            network_mode="none", pull=False, rm=True,
        )  # fmt: skip
        untagged = [i.id for i in client.images.list(all=True) if not i.tags]
    finally:
        client.close()
    return {"token": token, "final": image.id, "untagged": untagged}


def test_builder_stage_token_found_in_untagged_images(
    dockerd: str, built: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", dockerd)
    assert built["untagged"], "the legacy builder kept no intermediate image"
    report = audit(
        "docker-daemon:", AuditOptions(scan=ScanOptions(cache=None), db=str(tmp_path / "a.db"))
    )
    assert report.complete, report.errors
    sha = secret_sha256(built["token"])
    holding = {
        (i.repository, i.tag)
        for i in report.images
        for f in i.report.findings
        if f.secret_sha256 == sha
    }
    # only builder-stage images hold it: untagged, never the final image
    assert holding and all(tag is None for _, tag in holding), holding
    final = [i for i in report.images if (i.repository, i.tag) == ("multi/app", "1")]
    assert final and not final[0].report.findings
    kinds = {
        f.location.kind for i in report.images for f in i.report.findings if f.secret_sha256 == sha
    }
    assert {"file", "history"} <= kinds  # the .netrc file and the build argument
    assert report.stats.layers_unique < report.stats.layers_total  # stages share layers
    again = audit(
        "docker-daemon:", AuditOptions(scan=ScanOptions(cache=None), db=str(tmp_path / "a.db"))
    )
    assert again.stats.layers_scanned == 0
