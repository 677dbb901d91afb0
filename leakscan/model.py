"""The data that flows through leakscan: images as sources describe them, and the
findings, layers and history that a scan reports. Frozen dataclasses throughout."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Literal

from leakscan.terms import Confidence, Status

SourceKind = Literal["daemon", "docker-archive", "oci", "oci-archive", "registry"]


# --- what a source hands to the scan ---------------------------------------------------


@dataclass(frozen=True)
class LayerBlob:
    """One layer as stored: identifiers, and a way to open its (maybe compressed) bytes."""

    index: int
    diff_id: str | None
    digest: str | None
    media_type: str | None
    size: int | None
    opener: Callable[[], BinaryIO] = field(repr=False, compare=False)
    # why the layer cannot be read, when that is known before trying (a foreign layer)
    unavailable: str | None = None


@dataclass(frozen=True)
class Annotation:
    """An annotation on a manifest or an index, where it was found."""

    where: str
    key: str
    value: str


@dataclass(frozen=True)
class SourceImage:
    """One platform image, as every source describes it."""

    reference: str
    source: SourceKind
    platform: str | None
    manifest_digest: str | None
    config_digest: str
    config: Mapping[str, Any] = field(repr=False, compare=False)
    layers: tuple[LayerBlob, ...]
    annotations: tuple[Annotation, ...] = ()
    # problems met while reading the manifest that do not stop the scan
    errors: tuple[Problem, ...] = ()
    # what travels with the image: BuildKit attestation manifests and OCI referrers
    attestations: tuple[Attestation, ...] = ()


@dataclass(frozen=True)
class Attestation:
    """One statement or payload that describes an image (never an image of its own): an
    in-toto layer of a BuildKit attestation manifest, or a layer of an OCI referrer.
    ``statement`` is the parsed JSON (or text); ``problem`` says why it was not read."""

    digest: str  # the attestation manifest (or referrer manifest)
    layer_digest: str | None
    predicate_type: str | None
    media_type: str | None
    subject: str | None  # the manifest digest of the image (or index) it describes
    via: Literal["index", "referrer"]
    statement: Any = field(default=None, repr=False, compare=False)
    annotations: tuple[Annotation, ...] = ()
    problem: Problem | None = None
    # True when the problem is a deliberate skip (too big, not a statement), not an error
    skipped: bool = False


# --- what a scan reports ----------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """Something that could not be read (an error) or was deliberately not scanned (a skip)."""

    message: str
    layer_index: int | None = None
    path: str | None = None


@dataclass(frozen=True)
class GitPlace:
    """Where in a git directory's history a secret is: the blob (or the commit whose
    message holds it), the commit that introduced it and the path in the repository, as
    far as the history could be walked (None where it could not)."""

    git_dir: str
    object_id: str
    part: Literal["blob", "message"]
    blob_sha256: str | None
    commit: str | None
    author_date: str | None
    subject: str | None
    repo_path: str | None
    # the blob's bytes as the layer walk digests a file (BLAKE3, hex): what tells whether
    # the working tree beside the git directory holds the same bytes at its path
    blob_digest: str | None = None


@dataclass(frozen=True)
class FileLocation:
    """A secret in a file of a layer; ``git`` when it is in the history a git directory
    of the layer holds (``path`` is then ``GITDIR!SHORTID:PATH``; the status is that of
    the object-store file that holds it)."""

    layer_index: int
    diff_id: str
    path: str
    line: int | None
    status: Status
    removed_in_layer: int | None
    kind: Literal["file"] = "file"
    git: GitPlace | None = None


@dataclass(frozen=True)
class HistoryLocation:
    """A secret in a history entry (a build argument, an ENV or LABEL instruction...)."""

    history_index: int
    layer_index: int | None
    created_by: str | None
    kind: Literal["history"] = "history"


@dataclass(frozen=True)
class ConfigLocation:
    """A secret in the image config or a manifest annotation."""

    field: str
    key: str | None
    kind: Literal["config"] = "config"


@dataclass(frozen=True)
class AttestationLocation:
    """A secret in an attestation that travels with the image: its manifest digest, its
    predicate type and the JSON path of the string (``line`` in a decoded Dockerfile)."""

    attestation_digest: str
    predicate_type: str | None
    path: str
    subject: str | None
    line: int | None = None
    kind: Literal["attestation"] = "attestation"


Location = FileLocation | HistoryLocation | ConfigLocation | AttestationLocation


@dataclass(frozen=True)
class Finding:
    """One secret at one place. ``secret`` is None unless the user asked to see secrets."""

    rule_id: str
    description: str
    secret_sha256: str
    redacted: str
    fingerprint: str
    location: Location
    confidence: Confidence
    detectors: tuple[str, ...]
    remediation: str
    secret: str | None = None
    # the fingerprints the other rules that found it give this secret at this place: a
    # baseline made when one of them was the finding's rule (before a pair or a named value
    # outranked it) still accepts it
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class LayerInfo:
    """A layer of a scanned image, with the history entry that made it."""

    index: int
    digest: str | None
    diff_id: str
    media_type: str | None
    size: int | None
    history_index: int | None
    created_by: str | None


@dataclass(frozen=True)
class HistoryInfo:
    """A history entry of a scanned image."""

    index: int
    created_by: str | None
    created: str | None
    empty_layer: bool
    layer_index: int | None


@dataclass(frozen=True)
class ImageReport:
    """Everything found in one platform image."""

    reference: str
    source: SourceKind
    platform: str | None
    manifest_digest: str | None
    config_digest: str
    layers: tuple[LayerInfo, ...]
    history: tuple[HistoryInfo, ...]
    findings: tuple[Finding, ...]
    errors: tuple[Problem, ...]
    skipped: tuple[Problem, ...]
    # findings below the confidence threshold, counted so they are never silently dropped
    below_threshold: int = 0
    # findings the user accepted (baseline, ignored rule or path), counted by reason
    suppressed: tuple[tuple[str, int], ...] = ()
    # the accepted findings themselves with the reason, for formats that list them as
    # suppressed results (SARIF); the counts above stay the summary everyone reads
    accepted: tuple[tuple[str, Finding], ...] = ()
    # the attestations read with the image (statements are not kept in the report)
    attestations: tuple[Attestation, ...] = ()


@dataclass(frozen=True)
class CacheInfo:
    """What the result store answered in one scan (the only part of a report that differs
    between a scan from the store and one that read everything)."""

    layers_cached: int
    layers_scanned: int
    texts_cached: int
    texts_scanned: int


@dataclass(frozen=True)
class ScanReport:
    """The result of scanning one reference: one image per platform."""

    reference: str
    images: tuple[ImageReport, ...]
    # errors that stopped a source before any image could be reported
    errors: tuple[Problem, ...] = ()
    # None when the scan ran without a result store
    cache: CacheInfo | None = None

    @property
    def complete(self) -> bool:
        """True when every image was read to the end."""
        return not self.errors and all(not image.errors for image in self.images)

    @property
    def findings(self) -> tuple[Finding, ...]:
        """Findings of every image."""
        return tuple(f for image in self.images for f in image.findings)
