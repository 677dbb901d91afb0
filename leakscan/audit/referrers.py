"""Whether the referrers of an unchanged tag are those its kept reports read.

A referrer (OCI distribution 1.1: a manifest whose ``subject`` names an image) attached to an
image, or taken from it, leaves the image's digest as it was. Where the registry keeps
referrers in the tag schema's ``sha256-HEX`` tags, the walk of the tags sees it; where it
has the referrers API, what the API lists for each manifest an unchanged tag's reports read
is held against the referrers those reports read. Both the full audit and the quick
re-audit (:mod:`leakscan.audit.quick`) decide here; this module imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from leakscan import model as m

# what the referrers API lists for a subject: the digests of its referrers, or UNLISTED
# when it would not list them (an error: a full read of the tag says so in a skip)
UNLISTED = "unlisted"
Listing = frozenset[str] | str


def listing_of(index: Any) -> frozenset[str]:
    """The referrer digests of a referrers answer (an OCI index)."""
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list):
        return frozenset()
    return frozenset(
        d["digest"] for d in manifests if isinstance(d, dict) and isinstance(d.get("digest"), str)
    )


def subjects(
    repository: str, digest: str, reports: Sequence[m.ImageReport]
) -> list[tuple[str, str]]:
    """(repository, digest) of every manifest an unchanged tag's reports read: the digest
    the tag names (an index or the manifest), and each platform's manifest."""
    digests = {digest} | {r.manifest_digest for r in reports if r.manifest_digest}
    return [(repository, d) for d in sorted(digests)]


def kept_listing(reports: Sequence[m.ImageReport], subject: str) -> Listing:
    """What the referrers listing of ``subject`` was when ``reports`` were made: the
    digests of the referrers they read, or UNLISTED (their skip that says so names the
    subject in place of a referrer)."""
    digests: set[str] = set()
    for report in reports:
        for one in report.attestations:
            if one.via == "referrer" and one.subject == subject:
                if one.digest == subject:
                    return UNLISTED
                digests.add(one.digest)
    return frozenset(digests)


def moved(
    reports: Sequence[m.ImageReport],
    pairs: Sequence[tuple[str, str]],
    listed: Mapping[tuple[str, str], Listing] | None,
) -> bool:
    """Whether the referrers of an unchanged tag's subjects (``pairs``) are not those its
    kept ``reports`` read: the API (``listed``) lists others, or, on a registry that
    answers as one without the API (None), a listing that failed last time may work now."""
    for pair in pairs:
        kept = kept_listing(reports, pair[1])
        if listed is None:
            if kept == UNLISTED:
                return True
        elif listed[pair] != kept:
            return True
    return False
