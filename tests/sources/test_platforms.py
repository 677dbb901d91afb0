"""Multi-platform indexes: every platform is an image, attestations are not, --platform
restricts; nested indexes and Docker manifest lists too."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import file_findings, scan_ref, write
from imagebuilder import Image, Index, Layer, fake_token, write_docker_archive, write_oci_layout

from leakscan.detectors import Detectors


def _plat(arch: str, variant: str | None = None, token: str | None = None) -> Image:
    layer = Layer().file("etc/arch", arch)
    if token:
        layer.file("app/.env", f"GITHUB_TOKEN={token}\n")
    return Image(layers=[layer], architecture=arch, variant=variant)


@pytest.mark.parametrize("layout", ["oci-dir", "oci-archive", "plain-dir"])
def test_every_platform_scanned_attestations_skipped(
    layout: str, tmp_path: Path, detectors: Detectors
) -> None:
    token = fake_token("github")
    idx = Index([_plat("amd64"), _plat("arm64", "v8", token), _plat("s390x")], attestations=True)
    report = scan_ref(write(layout, idx, tmp_path), detectors)
    assert [i.platform for i in report.images] == ["linux/amd64", "linux/arm64/v8", "linux/s390x"]
    assert [len(file_findings(i)) for i in report.images] == [0, 1, 0]
    assert all(i.manifest_digest for i in report.images)
    assert report.complete


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        (("linux/arm64",), ["linux/arm64/v8"]),
        (("linux/arm64/v8",), ["linux/arm64/v8"]),
        (("linux/arm64/v7",), []),
        (("linux/amd64", "linux/s390x"), ["linux/amd64", "linux/s390x"]),
    ],
)
def test_platform_filter(
    wanted: tuple[str, ...], expected: list[str], tmp_path: Path, detectors: Detectors
) -> None:
    idx = Index([_plat("amd64"), _plat("arm64", "v8"), _plat("s390x")], attestations=True)
    report = scan_ref(write("oci-dir", idx, tmp_path), detectors, platforms=wanted)
    assert [i.platform for i in report.images] == expected
    # a filter that matches nothing is an incomplete scan, not a clean one
    assert report.complete == bool(expected)


def test_nested_index(tmp_path: Path, detectors: Detectors) -> None:
    token = fake_token("github")
    inner = Index([_plat("arm64", "v8", token), _plat("arm", "v7")], attestations=True)
    outer = Index([_plat("amd64"), inner])
    report = scan_ref(write("oci-dir", outer, tmp_path), detectors)
    assert [i.platform for i in report.images] == ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"]
    assert [len(file_findings(i)) for i in report.images] == [0, 1, 0]


def test_docker_manifest_list(tmp_path: Path, detectors: Detectors) -> None:
    token = fake_token("github")
    idx = Index([_plat("amd64", token=token), _plat("arm64", "v8")], docker_list=True)
    report = scan_ref(write("oci-dir", idx, tmp_path), detectors)
    assert [i.platform for i in report.images] == ["linux/amd64", "linux/arm64/v8"]
    assert len(file_findings(report.images[0])) == 1


def test_index_listed_inline_in_index_json(tmp_path: Path, detectors: Detectors) -> None:
    idx = Index([_plat("amd64"), _plat("arm64", "v8")], attestations=True)
    path = write_oci_layout(tmp_path / "l", idx, tag=None, inline_index=True)
    report = scan_ref(f"oci:{path}", detectors)
    assert [i.platform for i in report.images] == ["linux/amd64", "linux/arm64/v8"]


def test_oci_tags_select(tmp_path: Path, detectors: Detectors) -> None:
    path = write_oci_layout(tmp_path / "l", _plat("amd64"), tag="v1", extra_tags=["v2"])
    assert len(scan_ref(f"oci:{path}:v2", detectors).images) == 1
    # two tags of one manifest: scanned once
    assert len(scan_ref(f"oci:{path}", detectors).images) == 1
    report = scan_ref(f"oci:{path}:nope", detectors)
    assert not report.images and "no image tagged 'nope' (tags: v1, v2)" in report.errors[0].message


def test_docker_archive_with_several_images(tmp_path: Path, detectors: Detectors) -> None:
    token = fake_token("github")
    path = write_docker_archive(
        tmp_path / "two.tar",
        [(_plat("amd64"), ["example.internal/one:1"]), (_plat("amd64", token=token), ["two:2"])],
    )
    assert len(scan_ref(f"docker-archive:{path}", detectors).images) == 2
    two = scan_ref(f"docker-archive:{path}:two:2", detectors)
    assert len(two.images) == 1 and len(file_findings(two.images[0])) == 1
    one = scan_ref(f"docker-archive:{path}:example.internal/one:1", detectors)
    assert len(one.images) == 1 and not one.images[0].findings
    by_index = scan_ref(f"docker-archive:{path}:@1", detectors)
    assert len(file_findings(by_index.images[0])) == 1
    missing = scan_ref(f"docker-archive:{path}:three:3", detectors)
    assert "no image 'three:3'" in missing.errors[0].message
