"""A baseline made from a real image keeps holding when the image is rebuilt by dockerd with
instructions added before the leak (issue 12): history findings are keyed by instruction,
not by their index in the history, which the added instructions shift."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.real.conftest import RealImage

HERE = Path(__file__).resolve().parent
NPM_LEAK_CONTEXT = HERE / "dockerfiles" / "npm-leak"
TOOL_TIMEOUT = 300

pytestmark = pytest.mark.real

# the npm-leak Dockerfile with an ARG and two RUNs more before the leak (app:3 of the issue);
# VERSION is in scope of the leaking RUNs, so docker records it beside NPM_TOKEN there. (A RUN
# added after ARG NPM_TOKEN would be a new leak: docker records the token in it too.)
REBUILT = """\
FROM lsbase:1
ARG VERSION=3
RUN echo "$VERSION" > /BUILD
RUN mkdir -p /app && echo built > /app/BUILD
ARG NPM_TOKEN
RUN echo "//npm.example.internal/:_authToken=$NPM_TOKEN" > /root/.npmrc
RUN rm /root/.npmrc
COPY app.txt /app/app.txt
"""


def _leakscan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "leakscan", *args],
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT,
    )


def test_rebuild_with_instructions_before_the_leak_keeps_the_baseline(
    dockerd: str, docker_layouts: dict[str, RealImage], tmp_path: Path
) -> None:
    import docker

    first = docker_layouts["docker-save"]
    baseline = tmp_path / "baseline.json"
    made = _leakscan("baseline", first.transport, "-o", str(baseline))
    assert made.returncode == 0, made.stderr
    accepted = json.loads(baseline.read_text())["findings"]
    assert {e["location"]["kind"] for e in accepted} >= {"file", "history"}

    context = tmp_path / "context"
    shutil.copytree(NPM_LEAK_CONTEXT, context)
    (context / "Dockerfile").write_text(REBUILT)
    saved = tmp_path / "app3.tar"
    client = docker.DockerClient(base_url=dockerd, version="auto", timeout=TOOL_TIMEOUT)
    try:
        image, _ = client.images.build(
            path=str(context),
            tag="leaky/app:3",
            buildargs={"NPM_TOKEN": first.token},
            network_mode="none",
            pull=False,
            rm=True,
            forcerm=True,
        )
        with open(saved, "wb") as f:
            for chunk in image.save(named=True):
                f.write(chunk)
    finally:
        client.close()

    plain = _leakscan(f"docker-archive:{saved}", "-f", "json")
    assert plain.returncode == 1, plain.stderr
    (found,) = json.loads(plain.stdout)["images"]
    moved = {f["location"].get("history_index") for f in found["findings"]}
    before = {e["location"].get("history_index") for e in accepted}
    assert moved != before  # the history indexes did shift
    kept = _leakscan(f"docker-archive:{saved}", "--baseline", str(baseline), "-f", "json")
    assert kept.returncode == 0, kept.stdout[-2000:] + kept.stderr
    (image_report,) = json.loads(kept.stdout)["images"]
    assert image_report["findings"] == []
    assert image_report["suppressed"] == {"baseline": len(found["findings"])}
    assert first.token not in kept.stdout + kept.stderr
