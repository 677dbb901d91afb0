"""OCI image layouts: a directory (``oci:DIR[:TAG]``) or a tar of one (``oci-archive:``,
buildx ``type=oci`` output). index.json leads to manifests or to nested indexes; every
platform is an image, attestation manifests are not."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from leakscan.errors import InputError, SourceError
from leakscan.model import Annotation, LayerBlob, Problem, SourceImage, SourceKind
from leakscan.sources.base import (
    blob_path,
    check_digest,
    config_platform,
    count_mismatch,
    platform_string,
    platform_wanted,
    read_blob_json,
)
from leakscan.sources.store import BlobStore, DirStore, TarStore, read_json

INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
MANIFEST_TYPES = {
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
}
REF_NAME = "org.opencontainers.image.ref.name"
MAX_INDEX_DEPTH = 8


def is_attestation(descriptor: dict[str, Any]) -> bool:
    """buildx attestation manifests sit in an index beside the images they describe."""
    annotations = descriptor.get("annotations")
    if (
        isinstance(annotations, dict)
        and annotations.get("vnd.docker.reference.type") == "attestation-manifest"
    ):
        return True
    platform = descriptor.get("platform")
    return (
        isinstance(platform, dict)
        and platform.get("os") == "unknown"
        and platform.get("architecture") == "unknown"
    )


def _ref_name(descriptor: dict[str, Any]) -> Any:
    annotations = descriptor.get("annotations")
    return annotations.get(REF_NAME) if isinstance(annotations, dict) else None


def _annotations(where: str, value: Any) -> tuple[Annotation, ...]:
    if not isinstance(value, dict):
        return ()
    return tuple(Annotation(where, str(k), str(v)) for k, v in value.items())


def _kind_of(descriptor: dict[str, Any], doc: Any) -> str:
    media = descriptor.get("mediaType")
    if not isinstance(media, str) or not media:
        media = doc.get("mediaType") if isinstance(doc, dict) else None
    if not isinstance(media, str):
        media = None
    if media in INDEX_TYPES:
        return "index"
    if media in MANIFEST_TYPES:
        return "manifest"
    # mediaType is optional in older documents: look at the shape
    if isinstance(doc, dict) and isinstance(doc.get("manifests"), list):
        return "index"
    if isinstance(doc, dict) and "config" in doc and "layers" in doc:
        return "manifest"
    return "unknown"


class OciLayoutSource:
    """Images of an OCI image layout, from a directory or a tar."""

    def __init__(self, store: BlobStore, reference: str, kind: SourceKind, tag: str | None) -> None:
        self.store = store
        self.reference = reference
        self.kind = kind
        self.tag = tag

    @classmethod
    def from_dir(cls, path: str, reference: str, tag: str | None) -> OciLayoutSource:
        """An ``oci:`` directory."""
        return cls(DirStore(path), reference, "oci", tag)

    @classmethod
    def from_archive(cls, path: str, reference: str, tag: str | None) -> OciLayoutSource:
        """An ``oci-archive:`` tar."""
        return cls(TarStore(path), reference, "oci-archive", tag)

    def close(self) -> None:
        self.store.close()

    def images(self, platforms: Sequence[str]) -> Iterator[SourceImage]:
        if not self.store.exists("index.json"):
            raise SourceError(f"{self.store.location}: no index.json: not an OCI image layout")
        index = read_json(self.store, "index.json", "index")
        manifests = index.get("manifests") if isinstance(index, dict) else None
        if not isinstance(manifests, list):
            raise SourceError(f"{self.store.location}: index.json has no manifests list")
        chosen = [d for d in manifests if isinstance(d, dict)]
        if self.tag is not None:
            chosen = [d for d in chosen if _ref_name(d) == self.tag]
            if not chosen:
                tags = sorted(
                    str(_ref_name(d)) for d in manifests if isinstance(d, dict) and _ref_name(d)
                )
                known = ", ".join(tags) if tags else "none"
                raise InputError(
                    f"{self.store.location}: no image tagged {self.tag!r} (tags: {known})"
                )
        seen: set[str] = set()
        top = _annotations("index", index.get("annotations"))
        for descriptor in chosen:
            yield from self._descend(descriptor, platforms, top, seen, 0)

    def _descend(
        self,
        descriptor: dict[str, Any],
        platforms: Sequence[str],
        inherited: tuple[Annotation, ...],
        seen: set[str],
        depth: int,
    ) -> Iterator[SourceImage]:
        where = self.store.location
        if depth > MAX_INDEX_DEPTH:
            raise SourceError(f"{where}: indexes nested more than {MAX_INDEX_DEPTH} deep")
        if is_attestation(descriptor):
            return
        digest = check_digest(descriptor.get("digest"), f"{where}: descriptor")
        if digest in seen:
            return  # the same manifest under two tags, or an index that loops
        seen.add(digest)
        if excluded_by_platform(descriptor, platforms):
            return
        doc, _ = read_blob_json(self.store, blob_path(digest), "manifest", digest)
        if not isinstance(doc, dict):
            raise SourceError(f"{where}: manifest {digest} is not a JSON object")
        kind = _kind_of(descriptor, doc)
        if kind == "index":
            children = doc.get("manifests")
            if not isinstance(children, list):
                raise SourceError(f"{where}: index {digest} has no manifests list")
            notes = inherited + _annotations(f"index {digest}", doc.get("annotations"))
            for child in children:
                if isinstance(child, dict):
                    yield from self._descend(child, platforms, notes, seen, depth + 1)
        elif kind == "manifest":
            image = self._image(digest, doc, inherited)
            if platform_wanted(image.platform, platforms):
                yield image
        else:
            raise SourceError(f"{where}: {digest} is neither an image manifest nor an index")

    def _image(
        self, digest: str, manifest: dict[str, Any], inherited: tuple[Annotation, ...]
    ) -> SourceImage:
        return build_image(
            where=self.store.location,
            reference=self.reference,
            source=self.kind,
            digest=digest,
            manifest=manifest,
            inherited=inherited,
            load_config=self._config,
            make_layer=self._layer,
        )

    def _config(self, digest: str) -> Any:
        config, _ = read_blob_json(self.store, blob_path(digest), "config", digest)
        return config

    def _layer(self, desc: LayerDescriptor, diff_id: str | None) -> LayerBlob:
        name = blob_path(desc.digest)
        unavailable = None
        if not self.store.exists(name):
            if not is_foreign(desc.media_type):
                raise SourceError(
                    f"{self.store.location}: layer {desc.index} blob {name} is missing"
                )
            unavailable = "foreign layer: not stored in the image, not scanned"
        return LayerBlob(
            index=desc.index,
            diff_id=diff_id,
            digest=desc.digest,
            media_type=desc.media_type,
            size=desc.size,
            opener=partial(self.store.open, name),
            unavailable=unavailable,
        )


@dataclass(frozen=True)
class LayerDescriptor:
    """A manifest's layer entry, checked."""

    index: int
    digest: str
    media_type: str | None
    size: int | None


def is_foreign(media_type: str | None) -> bool:
    """Foreign (non-distributable) layers live elsewhere, named only by URL."""
    return media_type is not None and ("foreign" in media_type or "nondistributable" in media_type)


def excluded_by_platform(descriptor: dict[str, Any], platforms: Sequence[str]) -> bool:
    """An index entry whose declared platform is not wanted (it need not be fetched)."""
    described = descriptor.get("platform")
    if not isinstance(described, dict):
        return False
    plat = platform_string(
        described.get("os"), described.get("architecture"), described.get("variant")
    )
    return plat is not None and not platform_wanted(plat, platforms)


def build_image(
    *,
    where: str,
    reference: str,
    source: SourceKind,
    digest: str,
    manifest: dict[str, Any],
    inherited: tuple[Annotation, ...],
    load_config: Callable[[str], Any],
    make_layer: Callable[[LayerDescriptor, str | None], LayerBlob],
) -> SourceImage:
    """The image an image manifest describes, whatever it was read from: ``load_config``
    fetches (and verifies) the config blob, ``make_layer`` turns a layer entry into a blob
    the pipeline can open."""
    here = f"{where}: manifest {digest}"
    config_desc = manifest.get("config")
    if not isinstance(config_desc, dict):
        raise SourceError(f"{here} has no config")
    config_digest = check_digest(config_desc.get("digest"), f"{here} config")
    config = load_config(config_digest)
    if not isinstance(config, dict):
        raise SourceError(f"{where}: config {config_digest} is not an object")
    descriptors = manifest.get("layers")
    if not isinstance(descriptors, list):
        raise SourceError(f"{here} has no layers list")
    diff_ids = layer_diff_ids(config)
    mismatch = count_mismatch("manifest", len(descriptors), len(diff_ids))
    errors: list[Problem] = [mismatch] if mismatch else []
    layers = []
    for i, desc in enumerate(descriptors):
        if not isinstance(desc, dict):
            raise SourceError(f"{here}: layer {i} is not a descriptor")
        media = desc.get("mediaType")
        size = desc.get("size")
        entry = LayerDescriptor(
            index=i,
            digest=check_digest(desc.get("digest"), f"{here} layer {i}"),
            media_type=media if isinstance(media, str) else None,
            size=size if isinstance(size, int) and size >= 0 else None,
        )
        layers.append(make_layer(entry, diff_ids[i] if i < len(diff_ids) else None))
    return SourceImage(
        reference=reference,
        source=source,
        platform=config_platform(config),
        manifest_digest=digest,
        config_digest=config_digest,
        config=config,
        layers=tuple(layers),
        annotations=inherited + _annotations("manifest", manifest.get("annotations")),
        errors=tuple(errors),
    )


def layer_diff_ids(config: dict[str, Any]) -> list[str]:
    """The config's rootfs.diff_ids, each checked to be a digest."""
    rootfs = config.get("rootfs")
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(ids, list):
        return []
    return [check_digest(d, f"config diff_id {i}") for i, d in enumerate(ids)]
