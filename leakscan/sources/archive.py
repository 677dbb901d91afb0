"""``docker save`` archives (``docker-archive:PATH[:REF]``) in every layout seen in the
wild: the classic ``<id>/layer.tar`` layout, Docker 25+'s OCI layout with a
``manifest.json`` beside it, skopeo's top-level ``<diffid>.tar`` blobs behind in-archive
symlinks, and gzip-compressed blobs inside the save. manifest.json is what ``docker
load`` reads, so it is what we follow too."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from leakscan.errors import InputError, SourceError
from leakscan.model import Attestation, LayerBlob, Problem, SourceImage
from leakscan.sources.attestations import bounded, read_attestations, referenced_digest
from leakscan.sources.base import (
    check_digest,
    config_platform,
    count_mismatch,
    platform_wanted,
    read_blob_json,
)
from leakscan.sources.manifests import MAX_INDEX_DEPTH, is_attestation, kind_of, layer_diff_ids
from leakscan.sources.store import BlobStore, DirStore, TarStore, read_json

if TYPE_CHECKING:
    from leakscan.sources.oci import OciLayoutSource

_BLOB_NAME = re.compile(r"^blobs/(sha256|sha512)/([0-9a-f]+)$")


def _normalise_tag(ref: str) -> str:
    """``app`` -> ``app:latest``; docker writes RepoTags with an explicit tag."""
    last = ref.rsplit("/", 1)[-1]
    return ref if ":" in last or "@" in last else ref + ":latest"


def _tag_variants(tag: str) -> set[str]:
    """A RepoTag in the forms a user may type it (with or without docker.io/library/)."""
    tag = _normalise_tag(tag)
    out = {tag}
    for prefix in ("docker.io/library/", "docker.io/", "library/"):
        if tag.startswith(prefix):
            out.add(tag[len(prefix) :])
    if "/" not in tag.split(":", 1)[0]:
        out.add("docker.io/library/" + tag)
    return out


def _repo_tags(entry: dict[str, Any]) -> list[str]:
    tags = entry.get("RepoTags")
    return [str(t) for t in tags] if isinstance(tags, list) else []


class DockerArchiveSource:
    """Images listed in a docker-save ``manifest.json``."""

    def __init__(self, store: BlobStore, reference: str, ref: str | None) -> None:
        self.store = store
        self.reference = reference
        self.ref = ref
        # Docker 25+ saves: attestations of index.json's images, by config digest
        self._attested: dict[str, tuple[Attestation, ...]] | None = None
        self._attested_problem: Problem | None = None

    @classmethod
    def from_path(
        cls, path: str, reference: str, ref: str | None, is_dir: bool
    ) -> DockerArchiveSource:
        """A save tar, or a directory holding an unpacked save."""
        store: BlobStore = DirStore(path) if is_dir else TarStore(path)
        return cls(store, reference, ref)

    def close(self) -> None:
        self.store.close()

    def _entries(self) -> list[tuple[int, dict[str, Any]]]:
        if not self.store.exists("manifest.json"):
            raise SourceError(
                f"{self.store.location}: no manifest.json: not a docker-archive "
                "(for an OCI layout use oci-archive:)"
            )
        manifest = read_json(self.store, "manifest.json", "manifest")
        if not isinstance(manifest, list) or not all(isinstance(e, dict) for e in manifest):
            raise SourceError(f"{self.store.location}: manifest.json is not a list of images")
        entries = list(enumerate(manifest))
        if self.ref is None:
            return entries
        if self.ref.startswith("@") and self.ref[1:].isdigit():
            wanted = int(self.ref[1:])
            chosen = [e for e in entries if e[0] == wanted]
        else:
            variants = _tag_variants(self.ref)
            chosen = [e for e in entries if variants & set(_repo_tags(e[1]))]
        if not chosen:
            tags = sorted(t for _, e in entries for t in _repo_tags(e))
            known = ", ".join(tags) if tags else "none"
            raise InputError(f"{self.store.location}: no image {self.ref!r} (tags: {known})")
        return chosen

    def images(self, platforms: Sequence[str]) -> Iterator[SourceImage]:
        for number, entry in self._entries():
            image = self._image(number, entry)
            if platform_wanted(image.platform, platforms):
                yield image

    def _image(self, number: int, entry: dict[str, Any]) -> SourceImage:
        where = f"{self.store.location}: manifest.json entry {number}"
        config_name = entry.get("Config")
        if not isinstance(config_name, str):
            raise SourceError(f"{where} has no Config")
        expected = _digest_from_name(config_name)
        config, config_digest = read_blob_json(self.store, config_name, "config", expected)
        if not isinstance(config, dict):
            raise SourceError(f"{self.store.location}: config {config_name} is not an object")
        names = entry.get("Layers")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise SourceError(f"{where} has no Layers list")
        diff_ids = layer_diff_ids(config)
        mismatch = count_mismatch("manifest.json", len(names), len(diff_ids))
        errors: list[Problem] = [mismatch] if mismatch else []
        foreign = entry.get("LayerSources")
        if not isinstance(foreign, dict):
            foreign = {}
        layers = []
        for i, name in enumerate(names):
            diff_id = diff_ids[i] if i < len(diff_ids) else None
            unavailable = None
            media = None
            source = foreign.get(diff_id) if diff_id else None
            if not self.store.exists(name):
                if isinstance(source, dict):
                    media = source.get("mediaType")
                    unavailable = "foreign layer: not stored in the archive, not scanned"
                else:
                    raise SourceError(f"{self.store.location}: layer {i} file {name} is missing")
            layers.append(
                LayerBlob(
                    index=i,
                    diff_id=diff_id,
                    digest=_digest_from_name(name),
                    media_type=media if isinstance(media, str) else None,
                    size=self.store.size(name),
                    opener=partial(self.store.open, name),
                    unavailable=unavailable,
                )
            )
        attested = self._attestations().get(config_digest, ())
        if self._attested_problem is not None:
            errors.append(self._attested_problem)
        return SourceImage(
            reference=self.reference,
            source="docker-archive",
            platform=config_platform(config),
            manifest_digest=None,
            config_digest=config_digest,
            config=config,
            layers=tuple(layers),
            errors=tuple(errors),
            attestations=attested,
        )

    def _attestations(self) -> dict[str, tuple[Attestation, ...]]:
        """A Docker 25+ save is an OCI layout too: its index.json leads to the attestation
        manifests beside each image (manifest.json does not name them), matched to
        manifest.json's entries by config digest. What the save left out (other platforms'
        blobs) is passed over: manifest.json is what is scanned."""
        if self._attested is None:
            self._attested = {}
            if self.store.exists("index.json"):
                # imported here: the layout source imports the walk, a save needs it rarely
                from leakscan.sources.oci import OciLayoutSource

                layout = OciLayoutSource(self.store, self.reference, "oci-archive", None)
                try:
                    top = read_json(self.store, "index.json", "index")
                    self._attested = attested_by_config(layout, top)
                except SourceError as exc:
                    self._attested_problem = Problem(f"index.json: attestations not read: {exc}")
        return self._attested


def attested_by_config(
    layout: OciLayoutSource, index: Any, depth: int = 0
) -> dict[str, tuple[Attestation, ...]]:
    """The attestation manifests of an index and the indexes under it, by the config
    digest of the image each describes."""
    out: dict[str, tuple[Attestation, ...]] = {}
    entries = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(entries, list) or depth >= MAX_INDEX_DEPTH:
        return out
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("digest"), str):
            continue
        got = layout.attached(check_digest(entry["digest"], "index.json"))
        if got is None or not isinstance(got[0], dict):
            continue  # what is not an index or a manifest names no attestation
        if not is_attestation(entry):
            if kind_of(got[0], entry.get("mediaType")) == "index":
                for config_digest, found in attested_by_config(layout, got[0], depth + 1).items():
                    out.setdefault(config_digest, found)
            continue
        subject = referenced_digest(entry)
        image = layout.attached(check_digest(subject, "attestation subject")) if subject else None
        described = image[0].get("config") if image and isinstance(image[0], dict) else None
        config_hash = described.get("digest") if isinstance(described, dict) else None
        if isinstance(config_hash, str):
            read = read_attestations(got[0], entry["digest"], subject, "index", layout.blob)
            out[config_hash] = bounded(out.get(config_hash, ()) + tuple(read))
    return out


def _digest_from_name(name: str) -> str | None:
    """Docker 25+ names blobs by digest; the classic layout names configs ``<hex>.json``."""
    m = _BLOB_NAME.match(name)
    if m:
        return check_digest(f"{m.group(1)}:{m.group(2)}", name)
    m = re.fullmatch(r"([0-9a-f]{64})\.json", name)
    if m:
        return f"sha256:{m.group(1)}"
    return None
