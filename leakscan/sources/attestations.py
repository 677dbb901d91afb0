"""What travels with an image: BuildKit attestation manifests (entries of an index marked
``vnd.docker.reference.type: attestation-manifest``) and OCI 1.1 referrers (manifests whose
``subject`` names the image). Each layer of one is read as a statement (in-toto, a DSSE
envelope, a signature payload, any JSON) and kept as an :class:`Attestation` attached to
the image it describes; a statement that cannot be read is an attestation with a problem,
never a reason to stop the scan. Bounds: the manifest and statement sizes of any manifest,
a count per image."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable
from typing import Any, Literal

from leakscan.errors import SourceError
from leakscan.model import Annotation, Attestation, Problem
from leakscan.sources.base import check_digest
from leakscan.sources.store import MAX_JSON_BYTES, parse_json

IN_TOTO = "application/vnd.in-toto+json"
DSSE = "application/vnd.dsse.envelope.v1+json"
REFERENCE_TYPE = "vnd.docker.reference.type"
REFERENCE_DIGEST = "vnd.docker.reference.digest"
PREDICATE_ANNOTATION = "in-toto.io/predicate-type"
# attestations read per image at most (BuildKit writes one manifest of two or three)
MAX_ATTESTATIONS = 64
# statements are read whole, like manifests
MAX_STATEMENT_BYTES = MAX_JSON_BYTES

Via = Literal["index", "referrer"]
# reads a blob by digest, verified against it; None when the image does not hold it
BlobReader = Callable[[str], bytes | None]


def is_statement_type(media_type: str | None) -> bool:
    """Layers read as statements: in-toto, DSSE, cosign's simple signing, any JSON."""
    if not media_type:
        return True  # a layer that says nothing is tried: JSON or not, it is told below
    return media_type in (IN_TOTO, DSSE) or media_type.endswith("json")


def referenced_digest(descriptor: dict[str, Any]) -> str | None:
    """The image an attestation-manifest entry of an index describes."""
    notes = descriptor.get("annotations")
    value = notes.get(REFERENCE_DIGEST) if isinstance(notes, dict) else None
    return value if isinstance(value, str) else None


def _notes(where: str, value: Any) -> tuple[Annotation, ...]:
    if not isinstance(value, dict):
        return ()
    return tuple(Annotation(where, str(k), str(v)) for k, v in value.items())


def _envelope(doc: Any) -> Any:
    """The statement inside a DSSE envelope (its base64 payload), else ``doc`` itself."""
    if (
        isinstance(doc, dict)
        and isinstance(doc.get("payload"), str)
        and isinstance(doc.get("payloadType"), str)
    ):
        try:
            raw = base64.b64decode(doc["payload"], validate=True)
        except (binascii.Error, ValueError):
            raise SourceError("DSSE envelope: payload is not base64") from None
        inner = parse_json(raw, "DSSE envelope payload")
        # the envelope's own fields (signatures) are kept beside the statement
        return {**{k: v for k, v in doc.items() if k != "payload"}, "payload": inner}
    return doc


def statement_of(data: bytes, media_type: str | None) -> Any:
    """The parsed statement of a layer (SourceError when it is not JSON as it says)."""
    doc = parse_json(data, f"statement ({media_type or 'no media type'})")
    return _envelope(doc)


def predicate_type_of(statement: Any, layer_notes: dict[str, Any]) -> str | None:
    """The statement's predicateType (inside a DSSE payload too), else the layer's
    ``in-toto.io/predicate-type`` annotation."""
    inner = statement.get("payload") if isinstance(statement, dict) else None
    for doc in (statement, inner):
        if isinstance(doc, dict) and isinstance(doc.get("predicateType"), str):
            return str(doc["predicateType"])
    note = layer_notes.get(PREDICATE_ANNOTATION)
    return note if isinstance(note, str) else None


def read_attestations(
    manifest: Any,
    digest: str,
    subject: str | None,
    via: Via,
    blob: BlobReader,
) -> list[Attestation]:
    """Every layer of an attestation or referrer manifest as an :class:`Attestation`."""
    out: list[Attestation] = []
    if not isinstance(manifest, dict):
        return [_problem(digest, subject, via, f"attestation {digest} is not a JSON object")]
    top_notes = _notes("manifest", manifest.get("annotations"))
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        # an artifact may carry only annotations (a referrer with no blobs): still scanned
        kind = manifest.get("mediaType") or manifest.get("artifactType")
        if isinstance(manifest.get("manifests"), list):
            return [
                _problem(digest, subject, via, f"referrer {digest} is an index: not read", True)
            ]
        return [
            Attestation(
                digest, None, None, str(kind) if kind else None, subject, via, None, top_notes
            )
        ]
    for i, desc in enumerate(layers):
        if not isinstance(desc, dict):
            out.append(
                _problem(
                    digest, subject, via, f"attestation {digest} layer {i} is not a descriptor"
                )
            )
            continue
        out.append(_layer(desc, i, digest, subject, via, blob, top_notes))
    return out


def _layer(
    desc: dict[str, Any],
    i: int,
    digest: str,
    subject: str | None,
    via: Via,
    blob: BlobReader,
    top_notes: tuple[Annotation, ...],
) -> Attestation:
    media = desc.get("mediaType")
    media_type = media if isinstance(media, str) else None
    given = desc.get("annotations")
    raw_notes: dict[str, Any] = given if isinstance(given, dict) else {}
    notes = top_notes + _notes(f"layer {i}", raw_notes)
    layer_digest = desc.get("digest")
    predicate = raw_notes.get(PREDICATE_ANNOTATION)
    base = Attestation(
        digest=digest,
        layer_digest=layer_digest if isinstance(layer_digest, str) else None,
        predicate_type=predicate if isinstance(predicate, str) else None,
        media_type=media_type,
        subject=subject,
        via=via,
        annotations=notes,
    )
    here = f"attestation {digest} layer {i}"

    def problem(message: str, skipped: bool = False) -> Attestation:
        return _with_problem(base, Problem(message), skipped)

    if not isinstance(layer_digest, str):
        return problem(f"{here} has no digest")
    try:
        check_digest(layer_digest, here)
    except SourceError as exc:
        return problem(str(exc))
    if not is_statement_type(media_type):
        return problem(f"{here}: media type {media_type} is not a statement: not scanned", True)
    size = desc.get("size")
    if isinstance(size, int) and size > MAX_STATEMENT_BYTES:
        return problem(f"{here} is larger than {MAX_STATEMENT_BYTES >> 20} MiB: not scanned", True)
    try:
        data = blob(layer_digest)
    except SourceError as exc:
        return problem(f"{here}: {exc}")
    if data is None:
        return problem(f"{here}: blob {layer_digest} is not in the image: not scanned", True)
    if len(data) > MAX_STATEMENT_BYTES:
        return problem(f"{here} is larger than {MAX_STATEMENT_BYTES >> 20} MiB: not scanned", True)
    try:
        statement = statement_of(data, media_type)
    except SourceError as exc:
        # a layer that never said it was JSON may be anything (a binary SBOM): a skip
        return problem(f"{here}: {exc}", skipped=media_type is None)
    return Attestation(
        digest=digest,
        layer_digest=layer_digest,
        predicate_type=predicate_type_of(statement, raw_notes),
        media_type=media_type,
        subject=subject,
        via=via,
        statement=statement,
        annotations=notes,
    )


def _with_problem(base: Attestation, problem: Problem, skipped: bool) -> Attestation:
    return Attestation(
        base.digest,
        base.layer_digest,
        base.predicate_type,
        base.media_type,
        base.subject,
        base.via,
        None,
        base.annotations,
        problem,
        skipped,
    )


def _problem(
    digest: str, subject: str | None, via: Via, message: str, skipped: bool = False
) -> Attestation:
    return Attestation(
        digest, None, None, None, subject, via, problem=Problem(message), skipped=skipped
    )


def bounded(attestations: Iterable[Attestation]) -> tuple[Attestation, ...]:
    """At most :data:`MAX_ATTESTATIONS`; the rest is one skip that says how many."""
    out: list[Attestation] = []
    dropped = 0
    for one in attestations:
        if len(out) < MAX_ATTESTATIONS:
            out.append(one)
        else:
            dropped += 1
    if dropped:
        last = out[-1]
        message = f"{dropped} more attestations beyond {MAX_ATTESTATIONS}: not scanned"
        out.append(_problem(last.digest, last.subject, last.via, message, True))
    return tuple(out)


def referrer_descriptors(index: Any) -> list[dict[str, Any]]:
    """The descriptors of a referrers answer (an OCI index), checked to be objects."""
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list):
        return []
    return [d for d in manifests if isinstance(d, dict)]


def subject_of(doc: Any) -> str | None:
    """The digest a referrer manifest's ``subject`` names."""
    subject = doc.get("subject") if isinstance(doc, dict) else None
    digest = subject.get("digest") if isinstance(subject, dict) else None
    return digest if isinstance(digest, str) else None


def tag_schema(digest: str) -> str:
    """The referrers tag of the OCI distribution spec's fallback: ``sha256-<hex>``."""
    return digest.replace(":", "-", 1)
