"""Attestations in a real registry: an image index with BuildKit attestation manifests
pushed with ``skopeo copy --all`` (which keeps them), and an OCI 1.1 referrer whose subject
is the image, found through the referrers API or, where the registry has none (the
distribution registry 2.8 answers 404), through the tag schema's ``sha256-<hex>`` index."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import scan_ref
from imagebuilder import Image, Index, Layer, fake_token, write_oci_layout
from provenancekit import ARGS_PATH, V02, V1, predicate
from referrerkit import ReferrersApi, signed
from regkit import CliRun, FaultProxy, Faults, Registry, World

from leakscan import model as m
from leakscan.detectors import Detectors
from leakscan.sources.auth import RegistryOptions

pytestmark = pytest.mark.real


def _image(pred: dict[str, Any], ptype: str, arch: str = "amd64") -> Image:
    layer = Layer(created_by="RUN /bin/sh -c npm ci").file("app/package.json", "{}\n")
    return Image(layers=[layer], architecture=arch, provenance=pred, provenance_type=ptype)


def _push(world: World, registry: Registry, name: str, root: Index) -> str:
    layout = write_oci_layout(world.tmp / name.replace("/", "_").replace(":", "_"), root, tag="1")
    registry.push(f"oci:{layout}:1", name, "--all")
    return f"docker://{registry.host}/{name}"


@pytest.mark.parametrize("version", ["v0.2", "v1"])
def test_pushed_index_with_provenance(
    world: World, detectors: Detectors, version: str, cli: Callable[..., CliRun]
) -> None:
    token = fake_token("npm")
    ptype, leaky = predicate(version, args={"NPM_TOKEN": token})
    _, clean = predicate(version, args={"NODE_ENV": "production"})
    idx = Index([_image(clean, ptype), _image(leaky, ptype, "arm64")], attestations=True)
    ref = _push(world, world.plain, f"attested/{version}:1", idx)
    report = scan_ref(ref, detectors)
    assert report.complete, report.errors
    # attestations are no platforms of their own
    assert [i.platform for i in report.images] == ["linux/amd64", "linux/arm64"]
    assert [len(i.findings) for i in report.images] == [0, 1]
    arm = report.images[1]
    loc = arm.findings[0].location
    assert isinstance(loc, m.AttestationLocation)
    assert loc.path == ARGS_PATH[ptype].format("NPM_TOKEN") and loc.predicate_type == ptype
    assert loc.subject == arm.manifest_digest
    # the registry gives what the layout gives
    local = scan_ref(f"oci:{world.tmp / f'attested_{version}_1'}:1", detectors)
    assert [f.fingerprint for f in local.findings] == [f.fingerprint for f in report.findings]
    run = cli([ref, "--format", "json"])
    assert run.code == 1, run.err
    assert token not in run.out + run.err
    kinds = [f["location"]["kind"] for i in run.report["images"] for f in i["findings"]]
    assert kinds == ["attestation"]


def test_clean_pushed_index_with_clean_attestation(
    world: World, cli: Callable[..., CliRun]
) -> None:
    ptype, clean = predicate("v1", args={"NODE_ENV": "production"})
    ref = _push(
        world, world.plain, "attested/clean:1", Index([_image(clean, ptype)], attestations=True)
    )
    run = cli([ref, "--format", "json"])
    assert run.code == 0, run.err
    (image,) = run.report["images"]
    assert image["findings"] == [] and image["errors"] == []
    assert [(a["predicate_type"], a["via"], a["read"]) for a in image["attestations"]] == [
        (V1, "index", True)
    ]


def _check_referrer(report: m.ScanReport, subject: dict[str, Any], referrer: str) -> None:
    assert report.complete, report.errors
    (image,) = report.images
    (finding,) = image.findings
    loc = finding.location
    assert isinstance(loc, m.AttestationLocation)
    assert loc.attestation_digest == referrer and loc.subject == subject["digest"]
    assert loc.path == ARGS_PATH[V02].format("GH_TOKEN")
    assert [a.via for a in image.attestations] == ["referrer"]


def test_referrer_through_the_tag_schema(
    world: World, detectors: Detectors, tmp_path: Path
) -> None:
    registry = world.fresh_registry("referrers")
    subject, referrer, _ = signed(registry, tmp_path, tag=True)
    # the distribution registry 2.8 of the test machines has no referrers API (404): the tag
    # schema's index is what finds it (a registry that has one answers the same)
    api, _ = registry.raw_get(f"/v2/signed/app/referrers/{subject['digest']}")
    assert api in (200, 404)
    report = scan_ref(f"docker://{registry.host}/signed/app:1", detectors)
    _check_referrer(report, subject, referrer)


def test_referrer_through_the_api(world: World, detectors: Detectors, tmp_path: Path) -> None:
    registry = world.fresh_registry("referrers-api")
    # no sha256-<hex> tag: only the API lists the referrer
    subject, referrer, index = signed(registry, tmp_path, tag=False)
    proxy = ReferrersApi(registry, {subject["digest"]: index})
    try:
        report = scan_ref(f"docker://{proxy.host}/signed/app:1", detectors)
        asked = [path for _, path, _, _ in proxy.log]
    finally:
        proxy.close()
    _check_referrer(report, subject, referrer)
    assert f"/v2/signed/app/referrers/{subject['digest']}" in asked
    assert not any("/manifests/sha256-" in path for path in asked)


def test_referrers_listing_refused_is_a_skip(world: World, detectors: Detectors) -> None:
    proxy = FaultProxy(world.plain)
    try:
        proxy.reset(Faults(fail={"/referrers/": 1000}))
        report = scan_ref(
            f"docker://{proxy.host}/multi/app:1",
            detectors,
            registry=RegistryOptions(retries=0),
        )
    finally:
        proxy.close()
    # the images and their attestation manifests are read; only the listing is missing
    assert report.complete, report.errors
    assert [len(i.findings) for i in report.images] == [0, 1]
    for image in report.images:
        assert [a.via for a in image.attestations if a.problem is None] == ["index"]
        assert "not listed, not scanned" in " ".join(p.message for p in image.skipped)
