"""What travels with an image: BuildKit attestation manifests (SLSA v0.2 and v1 provenance,
mode=max with the Dockerfile embedded) and OCI referrers, read in every local layout that
carries them, attributed to the image they describe, never images of their own; hostile
statements are a skip or an error, never a crash."""

from __future__ import annotations

import base64
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from helpers import only_image, scan_ref
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from imagebuilder import (
    MT,
    BlobStore,
    Image,
    Index,
    Layer,
    fake_token,
    write_oci_archive,
    write_oci_layout,
)
from provenancekit import ARGS_PATH, DOCKERFILE_PATH, V02, V1, predicate

from leakscan import model as m
from leakscan.detectors import Detectors
from leakscan.findings import fingerprint, place
from leakscan.model import SourceImage
from leakscan.provenance import attestation_texts
from leakscan.sources.attestations import (
    DSSE,
    IN_TOTO,
    MAX_ATTESTATIONS,
    MAX_STATEMENT_BYTES,
    read_attestations,
)

LAYOUTS = ("oci-dir", "oci-archive", "docker25")


def _image(pred: dict[str, Any] | None = None, ptype: str = V02, arch: str = "amd64") -> Image:
    # the image itself is clean: its history never saw the argument's value
    layer = Layer(created_by="RUN /bin/sh -c npm ci").file("app/package.json", "{}\n")
    return Image(layers=[layer], architecture=arch, provenance=pred, provenance_type=ptype)


def _docker25(path: Path, root: Index) -> Path:
    """A Docker 25+ save of a single-platform image built with attestations: an OCI layout
    whose index.json names the image index (the image and its attestation manifest), and
    manifest.json naming the image's config and layers, as docker load reads it."""
    store = BlobStore()
    top = store.put_index(root)
    index = json.loads(store.blobs[top["digest"]])
    image_desc = index["manifests"][0]
    manifest = json.loads(store.blobs[image_desc["digest"]])
    blob = "blobs/sha256/{}".format
    entry = {
        "Config": blob(manifest["config"]["digest"].split(":", 1)[1]),
        "RepoTags": ["app:latest"],
        "Layers": [blob(layer["digest"].split(":", 1)[1]) for layer in manifest["layers"]],
    }
    files = {blob(d.split(":", 1)[1]): data for d, data in store.blobs.items()}
    files["oci-layout"] = b'{"imageLayoutVersion": "1.0.0"}'
    files["index.json"] = json.dumps(
        {"schemaVersion": 2, "mediaType": MT.OCI_INDEX, "manifests": [top]}
    ).encode()
    files["manifest.json"] = json.dumps([entry]).encode()
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _write(layout: str, root: Index, tmp: Path) -> str:
    if layout == "oci-dir":
        return f"oci:{write_oci_layout(tmp / 'layout', root, tag='latest')}:latest"
    if layout == "oci-archive":
        return f"oci-archive:{write_oci_archive(tmp / 'oci.tar', root, tag='latest')}"
    return f"docker-archive:{_docker25(tmp / 'save.tar', root)}"


def _attested(image: m.ImageReport) -> list[m.Finding]:
    return [f for f in image.findings if isinstance(f.location, m.AttestationLocation)]


@pytest.mark.parametrize("version", ["v0.2", "v1"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_build_argument_in_provenance(
    layout: str, version: str, tmp_path: Path, detectors: Detectors
) -> None:
    token = fake_token("npm")
    ptype, pred = predicate(version, args={"NPM_TOKEN": token, "NODE_ENV": "production"})
    report = scan_ref(
        _write(layout, Index([_image(pred, ptype)], attestations=True), tmp_path), detectors
    )
    assert report.complete, report.errors
    image = only_image(report)
    found = _attested(image)
    assert len(found) == 1 and found == list(image.findings), image.findings
    loc = found[0].location
    assert isinstance(loc, m.AttestationLocation)
    assert loc.path == ARGS_PATH[ptype].format("NPM_TOKEN")
    assert loc.predicate_type == ptype
    # attributed to the image it describes, by the attestation's own digest
    if layout != "docker25":
        assert loc.subject == image.manifest_digest
    assert loc.attestation_digest in {a.digest for a in image.attestations}
    assert found[0].redacted != token and token not in repr(report)
    fix = found[0].remediation
    assert "Build argument NPM_TOKEN" in fix and "--secret id=NPM_TOKEN" in fix
    assert "re-push" in fix or "push again" in fix
    assert [(a.predicate_type, a.via, a.problem) for a in image.attestations] == [
        (ptype, "index", None)
    ]


@pytest.mark.parametrize("version", ["v0.2", "v1"])
def test_mode_max_dockerfile_and_build_steps(
    version: str, tmp_path: Path, detectors: Detectors
) -> None:
    github, npm = fake_token("github"), fake_token("npm")
    dockerfile = f"FROM alpine:3.19\nWORKDIR /app\nENV GITHUB_TOKEN={github}\nRUN true\n"
    ptype, pred = predicate(version, env=[f"NPM_TOKEN={npm}"], dockerfile=dockerfile)
    report = scan_ref(
        _write("oci-dir", Index([_image(pred, ptype)], attestations=True), tmp_path), detectors
    )
    found = {f.secret_sha256: f.location for f in _attested(only_image(report))}
    assert len(found) == 2, found
    by_path = {loc.path: loc for loc in found.values() if isinstance(loc, m.AttestationLocation)}
    embedded = by_path[DOCKERFILE_PATH[ptype]]
    # the decoded Dockerfile's line, not the base64 string's
    assert embedded.line == 3
    assert any(p.endswith("exec.meta.env[1]") for p in by_path), by_path


@pytest.mark.parametrize("version", ["v0.2", "v1"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_clean_image_with_clean_attestation(
    layout: str, version: str, tmp_path: Path, detectors: Detectors
) -> None:
    ptype, pred = predicate(version, args={"NODE_ENV": "production", "VERSION": "1.4.2"})
    idx = Index([_image(pred, ptype), _image(pred, ptype, arch="arm64")], attestations=True)
    if layout == "docker25":
        idx = Index([_image(pred, ptype)], attestations=True)
    report = scan_ref(_write(layout, idx, tmp_path), detectors)
    assert report.complete and not report.findings, report.findings
    # read, and not as images: one image per platform, each with its own attestation
    assert all(i.platform and "unknown" not in i.platform for i in report.images)
    for image in report.images:
        assert [a.problem for a in image.attestations] == [None]
        assert not image.skipped and not image.below_threshold


def test_each_platform_gets_its_own_attestation(tmp_path: Path, detectors: Detectors) -> None:
    token = fake_token("npm")
    _, leaky = predicate("v0.2", args={"NPM_TOKEN": token})
    _, clean = predicate("v0.2", args={"NODE_ENV": "production"})
    idx = Index([_image(clean), _image(leaky, arch="arm64")], attestations=True)
    report = scan_ref(_write("oci-dir", idx, tmp_path), detectors)
    assert [(i.platform, len(_attested(i))) for i in report.images] == [
        ("linux/amd64", 0),
        ("linux/arm64", 1),
    ]
    only = scan_ref(_write("oci-dir", idx, tmp_path / "b"), detectors, platforms=("linux/amd64",))
    assert not only.findings


def test_fingerprint_stable_across_rebuilds(tmp_path: Path, detectors: Detectors) -> None:
    token = fake_token("npm")
    prints = []
    digests = []
    for n, started in enumerate(("2026-12-04T10:00:00Z", "2026-12-05T11:00:00Z")):
        _, pred = predicate("v0.2", args={"NPM_TOKEN": token}, started=started)
        report = scan_ref(
            _write("oci-dir", Index([_image(pred)], attestations=True), tmp_path / str(n)),
            detectors,
        )
        (finding,) = report.findings
        assert isinstance(finding.location, m.AttestationLocation)
        prints.append(finding.fingerprint)
        digests.append(finding.location.attestation_digest)
    # every build writes a new attestation; the finding is the same one
    assert digests[0] != digests[1] and prints[0] == prints[1]
    loc = m.AttestationLocation("sha256:" + "0" * 64, V02, "predicate.x", None)
    other = m.AttestationLocation("sha256:" + "1" * 64, V02, "predicate.x", None, line=4)
    assert fingerprint("r", "s", place(loc)) == fingerprint("r", "s", place(other))


# --- OCI referrers in a layout -------------------------------------------------------------


def _referrer_layout(tmp: Path, payload: bytes, media: str, annotations: dict[str, str]) -> str:
    """An OCI layout with a clean image and, listed beside it in index.json as oras writes
    it, an artifact manifest whose subject is the image."""
    store = BlobStore()
    image = store.put_image(_image())
    layer = store.add(payload)
    empty = store.add(b"{}")
    artifact = {
        "schemaVersion": 2,
        "mediaType": MT.OCI_MANIFEST,
        "artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": media, "digest": layer, "size": len(payload)}],
        "subject": {
            "mediaType": image["mediaType"],
            "digest": image["digest"],
            "size": image["size"],
        },
        "annotations": annotations,
    }
    digest, size = store.add_json(artifact)
    listed = [
        {**image, "annotations": {"org.opencontainers.image.ref.name": "latest"}},
        {
            "mediaType": MT.OCI_MANIFEST,
            "digest": digest,
            "size": size,
            "artifactType": artifact["artifactType"],
        },
    ]
    out = tmp / "layout"
    for name, data in {
        **{f"blobs/sha256/{d.split(':', 1)[1]}": b for d, b in store.blobs.items()},
        "oci-layout": b'{"imageLayoutVersion": "1.0.0"}',
        "index.json": json.dumps({"schemaVersion": 2, "manifests": listed}).encode(),
    }.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    return f"oci:{out}:latest"


def test_referrer_dsse_statement(tmp_path: Path, detectors: Detectors) -> None:
    token = fake_token("github")
    _, pred = predicate("v1", args={"GH_TOKEN": token})
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": pred,
    }
    envelope = {
        "payloadType": "application/vnd.in-toto+json",
        "payload": base64.b64encode(json.dumps(statement).encode()).decode(),
        "signatures": [{"keyid": "", "sig": base64.b64encode(b"not a real signature").decode()}],
    }
    ref = _referrer_layout(
        tmp_path, json.dumps(envelope).encode(), "application/vnd.dsse.envelope.v1+json", {}
    )
    report = scan_ref(ref, detectors)
    assert report.complete, report.errors
    image = only_image(report)
    (finding,) = image.findings
    loc = finding.location
    assert isinstance(loc, m.AttestationLocation)
    assert loc.path == "payload." + ARGS_PATH[V1].format("GH_TOKEN")
    assert loc.subject == image.manifest_digest and loc.predicate_type == V1
    assert [a.via for a in image.attestations] == ["referrer"]


def test_referrer_signature_payload_and_annotations(tmp_path: Path, detectors: Detectors) -> None:
    token = fake_token("npm")
    payload = {
        "critical": {
            "identity": {"docker-reference": "app"},
            "type": "cosign container image signature",
        },
        "optional": {"note": f"NPM_TOKEN={token}"},
    }
    ref = _referrer_layout(
        tmp_path,
        json.dumps(payload).encode(),
        "application/vnd.dev.cosign.simplesigning.v1+json",
        {"org.example.build-token": fake_token("github")},
    )
    report = scan_ref(ref, detectors)
    paths = sorted(
        f.location.path for f in report.findings if isinstance(f.location, m.AttestationLocation)
    )
    assert paths == ["annotations.org.example.build-token", "optional.note"]


# --- hostile statements ----------------------------------------------------------------------


def _hostile(
    detectors: Detectors,
    tmp: Path,
    layer: bytes,
    media: str | None = "application/vnd.in-toto+json",
    size: int | None = None,
    count: int = 1,
    manifest: Any = None,
) -> m.ImageReport:
    """A leaky image (a token in a file) whose index has ``count`` attestation manifests
    holding ``layer``: whatever the statement, the image is still scanned."""
    store = BlobStore()
    img = Image(layers=[Layer().file("app/.env", f"GITHUB_TOKEN={fake_token('github')}\n")])
    desc = store.put_image(img)
    entries = [desc]
    for n in range(count):
        digest = store.add(layer)
        layer_desc: dict[str, Any] = {
            "digest": digest,
            "size": size if size is not None else len(layer),
        }
        if media is not None:
            layer_desc["mediaType"] = media
        doc = (
            manifest
            if manifest is not None
            else {
                "schemaVersion": 2,
                "mediaType": MT.OCI_MANIFEST,
                "config": {
                    "mediaType": MT.OCI_CONFIG,
                    "digest": store.add_json({"n": n})[0],
                    "size": 8,
                },
                "layers": [layer_desc],
            }
        )
        att, att_size = store.add_json(doc)
        entries.append(
            {
                "mediaType": MT.OCI_MANIFEST,
                "digest": att,
                "size": att_size,
                "annotations": {
                    "vnd.docker.reference.type": "attestation-manifest",
                    "vnd.docker.reference.digest": desc["digest"],
                },
                "platform": {"os": "unknown", "architecture": "unknown"},
            }
        )
    index = {"schemaVersion": 2, "mediaType": MT.OCI_INDEX, "manifests": entries}
    top, top_size = store.add_json(index)
    out = tmp / "layout"
    files = {f"blobs/sha256/{d.split(':', 1)[1]}": b for d, b in store.blobs.items()}
    files["oci-layout"] = b'{"imageLayoutVersion": "1.0.0"}'
    files["index.json"] = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": MT.OCI_INDEX,
                    "digest": top,
                    "size": top_size,
                    "annotations": {"org.opencontainers.image.ref.name": "latest"},
                }
            ],
        }
    ).encode()
    for name, data in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    report = scan_ref(f"oci:{out}:latest", detectors)
    image = only_image(report)
    # the image's own secret is found whatever its attestations hold
    assert any(isinstance(f.location, m.FileLocation) for f in image.findings)
    return image


def _messages(problems: tuple[m.Problem, ...]) -> str:
    return " | ".join(p.message for p in problems)


def test_statement_not_json_is_an_error(tmp_path: Path, detectors: Detectors) -> None:
    image = _hostile(detectors, tmp_path, b"\x00\x01 not json \xff")
    assert "not valid JSON" in _messages(image.errors)


def test_statement_nested_beyond_the_parser_is_an_error(
    tmp_path: Path, detectors: Detectors
) -> None:
    image = _hostile(detectors, tmp_path, b"[" * 200_000 + b"]" * 200_000)
    assert "nested too deeply" in _messages(image.errors) or "not valid JSON" in _messages(
        image.errors
    )


def test_statement_nested_deep_is_read_to_the_bound(tmp_path: Path, detectors: Detectors) -> None:
    token = fake_token("npm")
    deep: Any = {"NPM_TOKEN": fake_token("npm")}
    for _ in range(100):
        deep = {"d": deep}
    image = _hostile(
        detectors,
        tmp_path,
        json.dumps({"predicate": {"args": {"build-arg:T": token}, "deep": deep}}).encode(),
    )
    assert "nested deeper than 64" in _messages(image.skipped)
    assert any(
        isinstance(f.location, m.AttestationLocation)
        and f.location.path == "predicate.args.build-arg:T"
        for f in image.findings
    )


def test_statement_too_big_is_skipped(tmp_path: Path, detectors: Detectors) -> None:
    image = _hostile(detectors, tmp_path, b"{}", size=MAX_STATEMENT_BYTES + 1)
    assert "larger than" in _messages(image.skipped) and not image.errors


def test_wrong_media_type_is_skipped(tmp_path: Path, detectors: Detectors) -> None:
    image = _hostile(detectors, tmp_path, b"\x89PNG....", media="application/octet-stream")
    assert "is not a statement" in _messages(image.skipped) and not image.errors


def test_unlabelled_layer_that_is_no_json_is_skipped(tmp_path: Path, detectors: Detectors) -> None:
    image = _hostile(detectors, tmp_path, b"\x89PNG....", media=None)
    assert "not valid JSON" in _messages(image.skipped) and not image.errors


@pytest.mark.parametrize(
    "manifest",
    [
        [1, 2],
        "text",
        {"layers": [3, None]},
        {"manifests": []},
        # a digest that is no digest must never become a blob path or a URL
        {"layers": [{"mediaType": "application/vnd.in-toto+json", "digest": "../../etc/passwd"}]},
        {"layers": [{"mediaType": "application/vnd.in-toto+json", "digest": "sha256:../x"}]},
    ],
)
def test_attestation_manifest_of_the_wrong_shape(
    tmp_path: Path, manifest: Any, detectors: Detectors
) -> None:
    image = _hostile(detectors, tmp_path, b"{}", manifest=manifest)
    assert image.errors or image.skipped
    if "digest" in json.dumps(manifest):
        assert "invalid digest" in _messages(image.errors)


def test_attestations_bounded_in_count(tmp_path: Path, detectors: Detectors) -> None:
    image = _hostile(detectors, tmp_path, b'{"predicate": {}}', count=MAX_ATTESTATIONS + 3)
    assert len(image.attestations) == MAX_ATTESTATIONS + 1
    assert "3 more attestations" in _messages(image.skipped)


def test_missing_attestation_blob_is_skipped(tmp_path: Path, detectors: Detectors) -> None:
    token = fake_token("npm")
    _, pred = predicate("v0.2", args={"NPM_TOKEN": token})
    layout = write_oci_layout(
        tmp_path / "l", Index([_image(pred)], attestations=True), tag="latest"
    )
    blobs = layout / "blobs" / "sha256"
    manifests = [b for b in blobs.iterdir() if b'"in-toto.io/predicate-type"' in b.read_bytes()]
    assert len(manifests) == 1
    statement = json.loads(manifests[0].read_bytes())["layers"][0]["digest"]
    (blobs / statement.split(":")[1]).unlink()
    report = scan_ref(f"oci:{layout}:latest", detectors)
    assert report.complete and not report.findings
    assert "is not in the image" in _messages(only_image(report).skipped)


# --- SBOMs and any predicate ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("ptype", "predicate_doc", "path"),
    [
        (
            "https://spdx.dev/Document",
            {
                "spdxVersion": "SPDX-2.3",
                "name": "sbom",
                "packages": [
                    {"name": "app", "versionInfo": "1.0", "comment": "TOKEN"},
                    {"name": "left-pad", "versionInfo": "1.3.0"},
                ],
            },
            "predicate.packages[0].comment",
        ),
        (
            "https://cyclonedx.org/bom",
            {
                "bomFormat": "CycloneDX",
                "specVersion": "1.5",
                "components": [
                    {"name": "app", "properties": [{"name": "build.token", "value": "TOKEN"}]}
                ],
            },
            "predicate.components[0].properties[0].value",
        ),
    ],
)
def test_sbom_statements(
    ptype: str, predicate_doc: dict[str, Any], path: str, tmp_path: Path, detectors: Detectors
) -> None:
    token = fake_token("github")
    filled = json.loads(json.dumps(predicate_doc).replace("TOKEN", token))
    image = Image(layers=[Layer().file("etc/x", "x\n")], provenance=filled, provenance_type=ptype)
    report = scan_ref(_write("oci-dir", Index([image], attestations=True), tmp_path), detectors)
    (finding,) = report.findings
    loc = finding.location
    assert isinstance(loc, m.AttestationLocation)
    assert (loc.predicate_type, loc.path) == (ptype, path)
    assert "attestation" in finding.remediation and "Rotate" in finding.remediation


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    manifest=_JSON,
    statement=st.one_of(_JSON.map(lambda v: json.dumps(v).encode()), st.binary(max_size=64)),
    media=st.sampled_from([None, IN_TOTO, DSSE, "application/json", "text/plain"]),
)
def test_any_manifest_and_statement_never_raise(
    manifest: Any, statement: bytes, media: str | None
) -> None:
    """Whatever an attestation manifest and its statement hold, reading them gives
    attestations (read, or with a problem) and their strings, and raises nothing."""
    layer = {"digest": "sha256:" + "a" * 64, "size": len(statement)}
    if media is not None:
        layer["mediaType"] = media
    docs = [manifest, {"layers": [layer, manifest]}, {"layers": [layer], "annotations": manifest}]
    for doc in docs:
        found = read_attestations(doc, "sha256:" + "b" * 64, None, "index", lambda _: statement)
        image = SourceImage(
            "r", "oci", None, None, "sha256:" + "c" * 64, {}, (), attestations=tuple(found)
        )
        out = attestation_texts(image)
        assert all(isinstance(t.text, str) and t.text for t in out.texts)
        assert len(out.errors) + len(out.skipped) >= sum(1 for a in found if a.problem)
