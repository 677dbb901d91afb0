"""Image indexes and manifests, wherever they are read from: the walk from an index down to
its images (nested indexes, Docker manifest lists, attestation manifests skipped, the
platform filter, a depth limit, loops cut) and the image a manifest describes, with the
attestations and referrers that describe it attached (never images of their own). OCI layouts
read the documents from blobs in a store, registries fetch them over HTTP: a
:class:`Documents` says how, and is all the two sources differ in."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, BinaryIO, Literal, Protocol

from leakscan.errors import SourceError
from leakscan.model import Annotation, Attestation, LayerBlob, Problem, SourceImage, SourceKind
from leakscan.sources.attestations import (
    bounded,
    read_attestations,
    referenced_digest,
    subject_of,
)
from leakscan.sources.base import (
    check_digest,
    config_platform,
    count_mismatch,
    platform_string,
    platform_wanted,
)

INDEX_TYPES = frozenset(
    {
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    }
)
MANIFEST_TYPES = frozenset(
    {
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    }
)
MAX_INDEX_DEPTH = 8

Kind = Literal["index", "manifest", "unknown"]
Opener = Callable[[], BinaryIO]


@dataclass(frozen=True)
class LayerDescriptor:
    """A manifest's layer entry, checked."""

    index: int
    digest: str
    media_type: str | None
    size: int | None


class Documents(Protocol):
    """How a source gets an image's parts by digest, each verified against it."""

    def manifest(self, digest: str) -> tuple[Any, str | None]:
        """The index or manifest ``digest`` names, and the media type it was served as
        (None where the storage does not say, as in a layout's blobs)."""
        ...

    def config(self, digest: str) -> Any:
        """The image config ``digest`` names."""
        ...

    def layer(self, entry: LayerDescriptor) -> tuple[Opener, str | None]:
        """How to open a layer's blob, and why it cannot be read when that is known now."""
        ...

    def attached(self, digest: str) -> tuple[Any, str | None] | None:
        """Like :meth:`manifest`, for a manifest that travels with an image (an attestation,
        a referrer): None when the image does not hold it."""
        ...

    def blob(self, digest: str) -> bytes | None:
        """A small blob (a statement) whole, verified; None when the image does not hold it."""
        ...

    def referrers(self, digest: str) -> list[dict[str, Any]]:
        """Descriptors of the manifests whose ``subject`` is ``digest`` (OCI 1.1)."""
        ...


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


def annotations_at(where: str, value: Any) -> tuple[Annotation, ...]:
    """An ``annotations`` object as the report lists it; anything else is none."""
    if not isinstance(value, dict):
        return ()
    return tuple(Annotation(where, str(k), str(v)) for k, v in value.items())


def kind_of(doc: dict[str, Any], *media: Any) -> Kind:
    """Index or image manifest: the first known media type of ``media`` (what the document
    was served as, what its descriptor says), else the document's own, else its shape
    (mediaType is optional in older documents, and some registries answer
    application/json)."""
    said = [m for m in (*media, doc.get("mediaType")) if isinstance(m, str)]
    known = next((m for m in said if m in INDEX_TYPES | MANIFEST_TYPES), None)
    if known in INDEX_TYPES:
        return "index"
    if known in MANIFEST_TYPES:
        return "manifest"
    if isinstance(doc.get("manifests"), list):
        return "index"
    if "config" in doc and "layers" in doc:
        return "manifest"
    return "unknown"


class ManifestWalk:
    """One walk from index entries or a fetched document down to the images, for one
    source: every platform is an image unless ``platforms`` leaves it out."""

    def __init__(
        self,
        documents: Documents,
        *,
        where: str,
        reference: str,
        source: SourceKind,
        platforms: Sequence[str],
    ) -> None:
        self.documents = documents
        self.where = where
        self.reference = reference
        self.source: SourceKind = source
        self.platforms = platforms
        # digests met so far: the same manifest under two tags, or an index that loops
        self.seen: set[str] = set()
        # attestation and referrer manifests read so far, by digest
        self._attestations: dict[str, list[Attestation]] = {}

    def entries(
        self,
        descriptors: Sequence[Any],
        listed_in: str,
        inherited: tuple[Annotation, ...] = (),
        depth: int = 0,
        attached: tuple[Attestation, ...] = (),
    ) -> Iterator[SourceImage]:
        """The images behind an index's entries (``listed_in`` names the index), each with
        the attestation manifests of the index that name it (those naming no image go with
        every image of the index) and ``attached``, what describes the index itself."""
        marked: dict[str | None, list[dict[str, Any]]] = {}
        for descriptor in descriptors:
            if isinstance(descriptor, dict) and is_attestation(descriptor):
                marked.setdefault(referenced_digest(descriptor), []).append(descriptor)
        for descriptor in descriptors:
            if not isinstance(descriptor, dict) or is_attestation(descriptor):
                continue
            digest = check_digest(descriptor.get("digest"), f"{self.where}: {listed_in}")
            if digest in self.seen:
                continue
            self.seen.add(digest)
            if excluded_by_platform(descriptor, self.platforms):
                continue
            doc, served_as = self.documents.manifest(digest)
            media = (served_as, descriptor.get("mediaType"))
            if subject_of(doc) is not None and kind_of(doc, *media) == "manifest":
                # a referrer listed beside its subject (an OCI layout): read with the subject
                continue
            own = marked.get(digest, []) + marked.get(None, [])
            found = attached + tuple(a for d in own for a in self._attestation(d, digest))
            yield from self.document(doc, digest, media, inherited, depth, found)

    def document(
        self,
        doc: Any,
        digest: str,
        media: Sequence[Any] = (),
        inherited: tuple[Annotation, ...] = (),
        depth: int = 0,
        attached: tuple[Attestation, ...] = (),
    ) -> Iterator[SourceImage]:
        """The images of a fetched index or manifest; ``media`` are the media types it is
        said to have, most trusted first; ``attached`` what describes it already."""
        self.seen.add(digest)
        if not isinstance(doc, dict):
            raise SourceError(f"{self.where}: manifest {digest} is not a JSON object")
        kind = kind_of(doc, *media)
        if kind == "manifest":
            image = self.image(digest, doc, inherited)
            if platform_wanted(image.platform, self.platforms):
                found = attached + self._referrers(digest)
                yield replace(image, attestations=bounded(found)) if found else image
            return
        if kind != "index":
            raise SourceError(f"{self.where}: {digest} is neither an image manifest nor an index")
        if depth >= MAX_INDEX_DEPTH:
            raise SourceError(f"{self.where}: indexes nested more than {MAX_INDEX_DEPTH} deep")
        children = doc.get("manifests")
        if not isinstance(children, list):
            raise SourceError(f"{self.where}: index {digest} has no manifests list")
        notes = inherited + annotations_at(f"index {digest}", doc.get("annotations"))
        found = attached + self._referrers(digest)
        yield from self.entries(children, f"index {digest}", notes, depth + 1, found)

    def _attestation(self, descriptor: dict[str, Any], subject: str) -> list[Attestation]:
        """The statements of an attestation-manifest entry of an index."""
        digest = descriptor.get("digest")
        if not isinstance(digest, str):
            return []
        return self._read(digest, subject, "index")

    def _referrers(self, subject: str) -> tuple[Attestation, ...]:
        """The statements of every manifest whose subject is ``subject``."""
        try:
            descriptors = self.documents.referrers(subject)
        except SourceError as exc:
            return (
                Attestation(
                    subject,
                    None,
                    None,
                    None,
                    subject,
                    "referrer",
                    # the image itself is read: a registry that will not list referrers
                    # (a 403 on an endpoint it does not know) must not fail every scan
                    problem=Problem(f"referrers of {subject} not listed, not scanned: {exc}"),
                    skipped=True,
                ),
            )
        out: list[Attestation] = []
        for descriptor in descriptors:
            digest = descriptor.get("digest")
            if isinstance(digest, str):
                out.extend(self._read(digest, subject, "referrer"))
        return tuple(out)

    def _read(
        self, digest: str, subject: str, via: Literal["index", "referrer"]
    ) -> list[Attestation]:
        """An attestation or referrer manifest, read once however many images it names."""
        if digest in self._attestations:
            return self._attestations[digest]
        here = f"{via} manifest {digest}"
        try:
            check_digest(digest, here)
            got = self.documents.attached(digest)
        except SourceError as exc:
            found = [Attestation(digest, None, None, None, subject, via, problem=Problem(str(exc)))]
        else:
            if got is None:
                message = f"{here} is not in the image: not scanned"
                found = [
                    Attestation(
                        digest,
                        None,
                        None,
                        None,
                        subject,
                        via,
                        problem=Problem(message),
                        skipped=True,
                    )
                ]
            else:
                found = read_attestations(got[0], digest, subject, via, self.documents.blob)
        self._attestations[digest] = found
        return found

    def image(
        self, digest: str, manifest: dict[str, Any], inherited: tuple[Annotation, ...]
    ) -> SourceImage:
        """The image an image manifest describes, its config fetched and verified."""
        here = f"{self.where}: manifest {digest}"
        config_desc = manifest.get("config")
        if not isinstance(config_desc, dict):
            raise SourceError(f"{here} has no config")
        config_digest = check_digest(config_desc.get("digest"), f"{here} config")
        config = self.documents.config(config_digest)
        if not isinstance(config, dict):
            raise SourceError(f"{self.where}: config {config_digest} is not an object")
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
            opener, unavailable = self.documents.layer(entry)
            layers.append(
                LayerBlob(
                    index=i,
                    diff_id=diff_ids[i] if i < len(diff_ids) else None,
                    digest=entry.digest,
                    media_type=entry.media_type,
                    size=entry.size,
                    opener=opener,
                    unavailable=unavailable,
                )
            )
        return SourceImage(
            reference=self.reference,
            source=self.source,
            platform=config_platform(config),
            manifest_digest=digest,
            config_digest=config_digest,
            config=config,
            layers=tuple(layers),
            annotations=inherited + annotations_at("manifest", manifest.get("annotations")),
            errors=tuple(errors),
        )


def layer_diff_ids(config: dict[str, Any]) -> list[str]:
    """The config's rootfs.diff_ids, each checked to be a digest."""
    rootfs = config.get("rootfs")
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(ids, list):
        return []
    return [check_digest(d, f"config diff_id {i}") for i, d in enumerate(ids)]
