"""The manifest walk shared by OCI layouts and registries, over documents held in memory:
how a document's kind is told, which entries are fetched, and the images built."""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any, BinaryIO

import pytest

from leakscan.errors import SourceError
from leakscan.model import SourceImage
from leakscan.sources.manifests import (
    INDEX_TYPES,
    MAX_INDEX_DEPTH,
    LayerDescriptor,
    ManifestWalk,
    Opener,
    kind_of,
)

OCI_INDEX, DOCKER_LIST = sorted(INDEX_TYPES)[1], sorted(INDEX_TYPES)[0]
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ATTESTATION = "attestation-manifest"
FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"


def _digest(doc: Any) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


class Memory:
    """Documents by digest, served with a media type or none; records every fetch."""

    def __init__(self) -> None:
        self.docs: dict[str, tuple[Any, str | None]] = {}
        self.fetched: list[str] = []
        # what the walk read as attestations (never as images), statements, referrers
        self.read: list[str] = []
        self.blobs: dict[str, bytes] = {}
        self.referring: dict[str, list[dict[str, Any]]] = {}

    def put(self, doc: Any, served_as: str | None = None) -> str:
        digest = _digest(doc)
        self.docs[digest] = (doc, served_as)
        return digest

    def manifest(self, digest: str) -> tuple[Any, str | None]:
        self.fetched.append(digest)
        return self.docs[digest]

    def config(self, digest: str) -> Any:
        self.fetched.append(digest)
        return self.docs[digest][0]

    def layer(self, entry: LayerDescriptor) -> tuple[Opener, str | None]:
        def opener() -> BinaryIO:
            return io.BytesIO(entry.digest.encode())

        return opener, "foreign" if entry.media_type == FOREIGN else None

    def attached(self, digest: str) -> tuple[Any, str | None] | None:
        self.read.append(digest)
        return self.docs.get(digest)

    def blob(self, digest: str) -> bytes | None:
        self.read.append(digest)
        return self.blobs.get(digest)

    def referrers(self, digest: str) -> list[dict[str, Any]]:
        return self.referring.get(digest, [])

    def image(self, arch: str, layers: int = 1, **extra: Any) -> str:
        """An image manifest for ``linux/arch`` with ``layers`` layers; its digest."""
        ids = [_digest(f"{arch}-{i}") for i in range(layers)]
        config = self.put({"os": "linux", "architecture": arch, "rootfs": {"diff_ids": ids}})
        manifest = {
            "config": {"digest": config},
            "layers": [{"digest": d, "size": 10 + i} for i, d in enumerate(ids)],
            **extra,
        }
        return self.put(manifest)


def _entry(digest: str, arch: str | None = None, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"digest": digest, **extra}
    if arch:
        entry["platform"] = {"os": "linux", "architecture": arch}
    return entry


def _walk(memory: Memory, platforms: tuple[str, ...] = ()) -> ManifestWalk:
    return ManifestWalk(
        memory, where="mem", reference="ref", source="registry", platforms=platforms
    )


def _platforms(images: list[SourceImage]) -> list[str | None]:
    return [image.platform for image in images]


@pytest.mark.parametrize(
    ("doc", "media", "kind"),
    [
        ({"manifests": []}, (), "index"),
        ({"config": {}, "layers": []}, (), "manifest"),
        ({}, (), "unknown"),
        # what a document was served as wins over its shape and its own mediaType
        ({"config": {}, "layers": []}, (OCI_INDEX,), "index"),
        ({"mediaType": OCI_INDEX}, (OCI_MANIFEST, None), "manifest"),
        # an unknown or malformed type says nothing: the next one, then the shape, decides
        ({"manifests": []}, ("application/json", OCI_MANIFEST), "manifest"),
        ({"manifests": []}, ("application/json", ["x"]), "index"),
        ({"mediaType": ["x"], "config": {}, "layers": []}, (None,), "manifest"),
        ({"mediaType": DOCKER_LIST}, ("application/json",), "index"),
    ],
)
def test_kind_of(doc: dict[str, Any], media: tuple[Any, ...], kind: str) -> None:
    assert kind_of(doc, *media) == kind


def test_nested_indexes_lists_attestations_and_annotations() -> None:
    memory = Memory()
    amd64 = memory.image("amd64", annotations={"m": "1"})
    arm64 = memory.image("arm64")
    attestation = memory.image("unknown")
    docker_list = memory.put(
        {"mediaType": DOCKER_LIST, "manifests": [_entry(arm64, "arm64")]}, DOCKER_LIST
    )
    inner = memory.put(
        {
            "manifests": [
                _entry(amd64, "amd64"),
                _entry(
                    attestation, annotations={"vnd.docker.reference.type": "attestation-manifest"}
                ),
                _entry(docker_list),
            ],
            "annotations": {"i": "2"},
        }
    )
    images = list(_walk(memory).entries([_entry(inner), "not a descriptor"], "index.json"))
    assert _platforms(images) == ["linux/amd64", "linux/arm64"]
    # read as an attestation (naming no image: of every image under its index, nested ones
    # too), once, and never as an image
    assert attestation not in memory.fetched and memory.read.count(attestation) == 1
    assert [[a.digest for a in i.attestations] for i in images] == [[attestation]] * 2
    first = images[0]
    assert first.manifest_digest == amd64 and first.source == "registry"
    assert [(a.where, a.key) for a in first.annotations] == [
        (f"index {inner}", "i"),
        ("manifest", "m"),
    ]


def test_platform_filter_fetches_only_wanted_entries() -> None:
    memory = Memory()
    amd64, arm64 = memory.image("amd64"), memory.image("arm64")
    # an entry that declares no platform is fetched, and its config decides
    undeclared = memory.image("s390x")
    index = [_entry(amd64, "amd64"), _entry(arm64, "arm64"), _entry(undeclared)]
    images = list(_walk(memory, ("linux/arm64",)).entries(index, "index.json"))
    assert _platforms(images) == ["linux/arm64"]
    assert amd64 not in memory.fetched and undeclared in memory.fetched


def test_repeated_and_looping_entries_are_read_once() -> None:
    memory = Memory()
    image = memory.image("amd64")
    # content addressing forbids a loop; a store that does not verify can still hold one
    top = "sha256:" + "1" * 64
    loop = {"manifests": [_entry(image), _entry(image), _entry(top)]}
    memory.docs[top] = (loop, None)
    images = list(_walk(memory).document(loop, top))
    assert _platforms(images) == ["linux/amd64"]
    assert memory.fetched.count(image) == 1 and top not in memory.fetched


def test_depth_limit() -> None:
    memory = Memory()
    digest = memory.image("amd64")
    for _ in range(MAX_INDEX_DEPTH):
        digest = memory.put({"manifests": [_entry(digest)]})
    # MAX_INDEX_DEPTH indexes down to the image are read; one more is too many
    assert _platforms(list(_walk(memory).entries([_entry(digest)], "index.json"))) == [
        "linux/amd64"
    ]
    deeper = memory.put({"manifests": [_entry(digest)]})
    with pytest.raises(SourceError, match=f"nested more than {MAX_INDEX_DEPTH} deep"):
        list(_walk(memory).entries([_entry(deeper)], "index.json"))


@pytest.mark.parametrize(
    ("doc", "media", "message"),
    [
        ([1], (), "is not a JSON object"),
        ({"schemaVersion": 2}, (), "neither an image manifest nor an index"),
        ({}, (OCI_INDEX,), "has no manifests list"),
        (
            {"manifests": [{"digest": "md5:00"}]},
            (),
            "mem: index sha256:[0-9a-f]+: unsupported digest",
        ),
        ({"config": {"digest": "sha256:" + "0" * 64}}, (OCI_MANIFEST,), "has no layers list"),
        ({"layers": []}, (OCI_MANIFEST,), "has no config"),
    ],
)
def test_malformed_documents(doc: Any, media: tuple[str, ...], message: str) -> None:
    memory = Memory()
    memory.docs["sha256:" + "0" * 64] = ({"os": "linux"}, None)
    with pytest.raises(SourceError, match=message):
        list(_walk(memory).document(doc, _digest(doc), media))


def test_layers_built_from_the_manifest_and_the_source() -> None:
    memory = Memory()
    ids = [_digest("a"), _digest("b")]
    config = memory.put({"os": "linux", "architecture": "amd64", "rootfs": {"diff_ids": ids[:1]}})
    layers = [
        {"digest": ids[0], "size": 5, "mediaType": "application/vnd.oci.image.layer.v1.tar"},
        {"digest": ids[1], "size": -1, "mediaType": FOREIGN},
    ]
    manifest = {"config": {"digest": config}, "layers": layers}
    (image,) = _walk(memory).document(manifest, _digest(manifest), (OCI_MANIFEST,))
    first, second = image.layers
    assert (first.index, first.diff_id, first.digest, first.size) == (0, ids[0], ids[0], 5)
    assert first.media_type == layers[0]["mediaType"] and first.unavailable is None
    assert first.opener().read() == ids[0].encode()
    # a negative size is no size; a layer the config does not list has no diff_id
    assert (second.diff_id, second.size, second.unavailable) == (None, None, "foreign")
    assert [p.message for p in image.errors] == [
        "manifest lists 2 layers but the config has 1 diff_ids"
    ]
    assert image.config_digest == config and image.platform == "linux/amd64"
