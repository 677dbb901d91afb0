"""OCI image layouts: a directory (``oci:DIR[:TAG]``) or a tar of one (``oci-archive:``,
buildx ``type=oci`` output). index.json leads to manifests or to nested indexes; every
platform is an image, attestation manifests are not."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any

from leakscan.errors import InputError, SourceError
from leakscan.model import SourceImage, SourceKind
from leakscan.sources.attestations import MAX_STATEMENT_BYTES, subject_of
from leakscan.sources.base import blob_path, check_digest, digest_of, read_blob_json
from leakscan.sources.manifests import (
    LayerDescriptor,
    ManifestWalk,
    Opener,
    annotations_at,
    is_foreign,
)
from leakscan.sources.store import BlobStore, DirStore, TarStore, read_json

REF_NAME = "org.opencontainers.image.ref.name"


def _ref_name(descriptor: dict[str, Any]) -> Any:
    annotations = descriptor.get("annotations")
    return annotations.get(REF_NAME) if isinstance(annotations, dict) else None


class OciLayoutSource:
    """Images of an OCI image layout, from a directory or a tar."""

    def __init__(self, store: BlobStore, reference: str, kind: SourceKind, tag: str | None) -> None:
        self.store = store
        self.reference = reference
        self.kind = kind
        self.tag = tag
        # index.json's entries whose manifest has a subject, by subject (read on first use)
        self._referrers: dict[str, list[dict[str, Any]]] | None = None
        self._top: list[Any] = []

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
        self._top = chosen
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
        walk = ManifestWalk(
            self,
            where=self.store.location,
            reference=self.reference,
            source=self.kind,
            platforms=platforms,
        )
        top = annotations_at("index", index.get("annotations"))
        yield from walk.entries(chosen, "index.json", top)

    # -- the Documents a ManifestWalk reads: blobs of the layout

    def manifest(self, digest: str) -> tuple[Any, str | None]:
        doc, _ = read_blob_json(self.store, blob_path(digest), "manifest", digest)
        return doc, None

    def config(self, digest: str) -> Any:
        config, _ = read_blob_json(self.store, blob_path(digest), "config", digest)
        return config

    def attached(self, digest: str) -> tuple[Any, str | None] | None:
        if not self.store.exists(blob_path(digest)):
            return None
        return self.manifest(digest)

    def blob(self, digest: str) -> bytes | None:
        name = blob_path(digest)
        if not self.store.exists(name):
            return None
        with self.store.open(name) as fh:
            data = fh.read(MAX_STATEMENT_BYTES + 1)
        if len(data) <= MAX_STATEMENT_BYTES and digest_of(data, digest.split(":", 1)[0]) != digest:
            raise SourceError(f"blob {name} does not match its digest {digest}")
        return data

    def referrers(self, digest: str) -> list[dict[str, Any]]:
        """index.json's manifests whose subject is ``digest`` (oras and buildx write them
        there), whatever tag was asked for."""
        if self._referrers is None:
            self._referrers = {}
            for descriptor in self._top:
                try:
                    listed = check_digest(descriptor.get("digest"), "index.json")
                    if not self.store.exists(blob_path(listed)):
                        continue
                    doc = self.manifest(listed)[0]
                except SourceError:
                    continue  # the walk reports it when it reads the entry as an image
                subject = subject_of(doc)
                if subject is not None:
                    self._referrers.setdefault(subject, []).append(descriptor)
        return self._referrers.get(digest, [])

    def layer(self, entry: LayerDescriptor) -> tuple[Opener, str | None]:
        name = blob_path(entry.digest)
        unavailable = None
        if not self.store.exists(name):
            if not is_foreign(entry.media_type):
                raise SourceError(
                    f"{self.store.location}: layer {entry.index} blob {name} is missing"
                )
            unavailable = "foreign layer: not stored in the image, not scanned"
        return partial(self.store.open, name), unavailable
