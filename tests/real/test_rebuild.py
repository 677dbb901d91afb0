"""A baseline made from a real image keeps holding when the image is rebuilt, by dockerd or
by buildah, with instructions added before the leak or on a new base (issue 12): history
findings are keyed by instruction, not by their index in the history, which the added
instructions shift, and file findings by path, not by the layer digest a new base renews."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.real.conftest import RealImage, _Buildah

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


# a second base: the busybox root with one file more, so every layer digest above it is new
NEW_BASE = """\
FROM lsbase:1
RUN echo 1.37 > /etc/base-release
"""


def _buildah_build(buildah: _Buildah, dockerfile: str, context: Path, tag: str, token: str) -> None:
    (context / "Dockerfile").write_text(dockerfile)
    buildah(
        "bud",
        f"--signature-policy={buildah.policy}",
        "--isolation",
        "chroot",
        "--layers",
        "--pull=never",
        "-q",
        "--build-arg",
        f"NPM_TOKEN={token}",
        "-t",
        tag,
        "-f",
        str(context / "Dockerfile"),
        str(context),
        secret=token,
    )


def _buildah_push(buildah: _Buildah, tag: str, out: Path) -> str:
    buildah("push", f"--signature-policy={buildah.policy}", "-q", tag, f"oci-archive:{out}:latest")
    return f"oci-archive:{out}:latest"


def test_buildah_rebuilds_keep_the_baseline(
    private_buildah: _Buildah, real_token: str, tmp_path: Path
) -> None:
    buildah = private_buildah
    context = tmp_path / "context"
    shutil.copytree(NPM_LEAK_CONTEXT, context)
    original = (NPM_LEAK_CONTEXT / "Dockerfile").read_text()
    _buildah_build(buildah, original, context, "localhost/leaky/app:1", real_token)
    first = _buildah_push(buildah, "localhost/leaky/app:1", tmp_path / "app1.tar")

    baseline = tmp_path / "baseline.json"
    made = _leakscan("baseline", first, "-o", str(baseline))
    assert made.returncode == 0, made.stderr
    accepted = json.loads(baseline.read_text())["findings"]
    assert {e["location"]["kind"] for e in accepted} >= {"file", "history"}
    before = _leakscan(first, "-f", "json")
    assert before.returncode == 1, before.stderr
    (one,) = json.loads(before.stdout)["images"]

    _buildah_build(buildah, NEW_BASE, context, "localhost/lsbase:2", real_token)
    rebuilds = {
        # app:3 of the issue: an ARG and two RUNs more before the leak
        "instructions-before": REBUILT,
        # the same on the new base: every layer digest and history index moves
        "new-base": REBUILT.replace("FROM lsbase:1", "FROM lsbase:2"),
    }
    for name, dockerfile in rebuilds.items():
        tag = f"localhost/leaky/app:{name}"
        _buildah_build(buildah, dockerfile, context, tag, real_token)
        ref = _buildah_push(buildah, tag, tmp_path / f"{name}.tar")

        plain = _leakscan(ref, "-f", "json")
        assert plain.returncode == 1, plain.stderr
        (found,) = json.loads(plain.stdout)["images"]
        # the same secret at the same places, but the indexes and layer digests moved
        assert {f["secret_sha256"] for f in found["findings"]} == {
            f["secret_sha256"] for f in one["findings"]
        }
        moved = {f["location"].get("history_index") for f in found["findings"]}
        assert moved != {f["location"].get("history_index") for f in one["findings"]}, name
        diff_ids = {f["location"].get("diff_id") for f in found["findings"]} - {None}
        was = {f["location"].get("diff_id") for f in one["findings"]} - {None}
        if name == "new-base":
            assert diff_ids.isdisjoint(was), name

        kept = _leakscan(ref, "--baseline", str(baseline), "-f", "json")
        assert kept.returncode == 0, name + kept.stdout[-2000:] + kept.stderr
        (image_report,) = json.loads(kept.stdout)["images"]
        assert image_report["findings"] == [], name
        assert image_report["suppressed"] == {"baseline": len(found["findings"])}, name
        assert real_token not in kept.stdout + kept.stderr
