"""Images from a registry (Registry HTTP API v2 / OCI distribution spec): ``docker://REF``.

Manifests are negotiated as OCI index or manifest, Docker manifest list or schema 2; every
platform of an index is an image, attestation manifests are not. Layer blobs are not
downloaded here: each :class:`LayerBlob` carries a picklable :class:`BlobOpener` that streams
the blob when the scan reads it (in this process or a worker), retrying and resuming with
``Range`` when the connection drops. The scan verifies each blob against its digest.
HTTP (scheme, TLS, authentication, retries) is :class:`RegistryClient`'s.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import requests

from leakscan.errors import InputError, SourceError
from leakscan.model import SourceImage
from leakscan.sources.attestations import (
    MAX_STATEMENT_BYTES,
    referrer_descriptors,
    tag_schema,
)
from leakscan.sources.auth import RegistryOptions
from leakscan.sources.base import digest_of
from leakscan.sources.blobstream import BlobOpener
from leakscan.sources.manifests import LayerDescriptor, ManifestWalk, Opener, is_foreign
from leakscan.sources.reference import ImageReference, parse_reference
from leakscan.sources.registry_client import RegistryClient
from leakscan.sources.store import parse_json

__all__ = ["BlobOpener", "RegistryClient", "RegistryOptions", "RegistrySource"]

ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
# what a registry without the referrers API answers to it (the distribution spec says 404)
NO_REFERRERS_API = frozenset({400, 404, 405, 501})
SCHEMA1_TYPES = {
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
}


def _content_type(resp: requests.Response) -> str:
    return resp.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()


def referrers_api(
    client: RegistryClient, repository: str, digest: str
) -> list[dict[str, Any]] | None:
    """The descriptors the referrers API (OCI distribution 1.1) lists for ``digest``; None
    where the registry has no such API (a registry that has one never answers 404)."""
    where = client.where
    resp, body = client.get_small(f"/v2/{repository}/referrers/{digest}", OCI_INDEX)
    if resp.status_code == 200:
        return referrer_descriptors(parse_json(body, f"{where}: referrers of {digest}"))
    if resp.status_code not in NO_REFERRERS_API:
        raise SourceError(
            f"{where}: registry answered {resp.status_code} {resp.reason} for the "
            f"referrers of {digest}"
        )
    return None


class RegistrySource:
    """Every image a registry reference names, one per platform."""

    def __init__(
        self,
        reference: str,
        ref: ImageReference,
        options: RegistryOptions,
        after_daemon: bool = False,
    ) -> None:
        self.reference = reference
        self.ref = ref
        self.client = RegistryClient(ref, options)
        # a plain name that no docker daemon had: errors say so too
        self.after_daemon = after_daemon

    @classmethod
    def open(
        cls,
        reference: str,
        name: str,
        options: RegistryOptions | None = None,
        after_daemon: bool = False,
    ) -> RegistrySource:
        """The source for ``name`` (a docker reference); ``reference`` is what the user typed."""
        return cls(reference, parse_reference(name), options or RegistryOptions(), after_daemon)

    def close(self) -> None:
        self.client.close()

    def images(self, platforms: Sequence[str]) -> Iterator[SourceImage]:
        try:
            doc, digest, media = self._manifest(self.ref.ref, self.ref.digest, top=True)
        except (InputError, SourceError) as exc:
            if not self.after_daemon:
                raise
            raise type(exc)(f"{exc} (and no docker daemon has {self.reference})") from None
        walk = ManifestWalk(
            self,
            where=self.client.where,
            reference=self.reference,
            source="registry",
            platforms=platforms,
        )
        yield from walk.document(doc, digest, (media,))

    def _manifest(
        self, ref: str, expected: str | None, top: bool = False, absent_ok: bool = False
    ) -> tuple[Any, str, str]:
        """Fetch a manifest or index by tag or digest; verify it against ``expected``.
        Returns the document, its digest and the media type it was served as (``absent_ok``:
        None for the document when the registry has none)."""
        where = self.client.where
        resp, body = self.client.get_small(f"/v2/{self.ref.repository}/manifests/{ref}", ACCEPT)
        if resp.status_code == 404:
            if absent_ok:
                return None, "", ""
            if top:
                raise InputError(f"image not found: {self.ref}")
            raise SourceError(f"{where}: manifest {ref}, listed in an index, is missing")
        if resp.status_code != 200:
            raise SourceError(
                f"{where}: registry answered {resp.status_code} {resp.reason} for manifest {ref}"
            )
        media = _content_type(resp)
        if media in SCHEMA1_TYPES:
            raise SourceError(f"{where}: {ref} is a Docker schema 1 manifest, which is not read")
        header = resp.headers.get("Docker-Content-Digest")
        algo = (expected or header or "sha256:").split(":", 1)[0]
        if algo not in ("sha256", "sha512"):
            algo = "sha256"
        actual = digest_of(body, algo)
        if expected is not None and actual != expected:
            raise SourceError(f"{where}: manifest does not match its digest {expected}")
        if header and header.startswith(f"{algo}:") and header != actual:
            raise SourceError(f"{where}: manifest {ref} does not match its digest {header}")
        doc = parse_json(body, f"{where}: manifest {ref}")
        return doc, actual, media

    # -- the Documents a ManifestWalk reads: GETs from the repository

    def manifest(self, digest: str) -> tuple[Any, str | None]:
        doc, _, media = self._manifest(digest, digest)
        return doc, media

    def config(self, digest: str) -> Any:
        where = self.client.where
        resp, body = self.client.get_small(f"/v2/{self.ref.repository}/blobs/{digest}")
        if resp.status_code == 404:
            raise SourceError(f"{where}: config blob {digest} not found")
        if resp.status_code != 200:
            raise SourceError(
                f"{where}: registry answered {resp.status_code} {resp.reason} for config {digest}"
            )
        if digest_of(body, digest.split(":", 1)[0]) != digest:
            raise SourceError(f"{where}: config blob does not match its digest {digest}")
        return parse_json(body, f"{where}: config {digest}")

    def attached(self, digest: str) -> tuple[Any, str | None] | None:
        doc, _, media = self._manifest(digest, digest, absent_ok=True)
        return None if doc is None else (doc, media)

    def blob(self, digest: str) -> bytes | None:
        where = self.client.where
        resp, body = self.client.get_small(f"/v2/{self.ref.repository}/blobs/{digest}")
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise SourceError(
                f"{where}: registry answered {resp.status_code} {resp.reason} for blob {digest}"
            )
        if len(body) <= MAX_STATEMENT_BYTES and digest_of(body, digest.split(":", 1)[0]) != digest:
            raise SourceError(f"{where}: blob does not match its digest {digest}")
        return body

    def referrers(self, digest: str) -> list[dict[str, Any]]:
        """The referrers API (OCI distribution 1.1), and where the registry has none the
        tag schema's fallback: an index tagged ``sha256-<hex>``."""
        listed = referrers_api(self.client, self.ref.repository, digest)
        if listed is not None:
            return listed
        doc, _, _ = self._manifest(tag_schema(digest), None, absent_ok=True)
        return referrer_descriptors(doc)

    def layer(self, entry: LayerDescriptor) -> tuple[Opener, str | None]:
        unavailable = None
        if is_foreign(entry.media_type):
            unavailable = "foreign layer: not distributed by the registry, not scanned"
        return BlobOpener(self.client, entry.digest, entry.size), unavailable
