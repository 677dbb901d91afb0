"""Whether an unchanged tag's referrers are those its kept reports read
(leakscan.audit.referrers): the decision both the full and the quick re-audit take."""

from __future__ import annotations

from leakscan import model as m
from leakscan.audit.referrers import UNLISTED, kept_listing, listing_of, moved, subjects

INDEX = "sha256:" + "1" * 64
AMD = "sha256:" + "2" * 64
SIG = "sha256:" + "3" * 64
SBOM = "sha256:" + "4" * 64


def _report(manifest: str, *attestations: m.Attestation) -> m.ImageReport:
    return m.ImageReport(
        "r/app:1", "registry", "linux/amd64", manifest, "sha256:" + "9" * 64,
        (), (), (), (), (), attestations=attestations,
    )  # fmt: skip


def _referrer(digest: str, subject: str, via: str = "referrer") -> m.Attestation:
    return m.Attestation(digest, None, None, None, subject, via)  # type: ignore[arg-type]


def test_listing_of_a_referrers_answer() -> None:
    index = {
        "manifests": [{"digest": SIG}, {"digest": 7}, "x", {"mediaType": "a"}, {"digest": SBOM}]
    }
    assert listing_of(index) == {SIG, SBOM}
    assert listing_of({"manifests": "no"}) == frozenset() == listing_of([])


def test_subjects_are_the_tag_digest_and_each_platform_manifest() -> None:
    reports = [_report(AMD), _report(AMD), _report(None)]  # type: ignore[arg-type]
    assert subjects("r/app", INDEX, reports) == sorted([("r/app", INDEX), ("r/app", AMD)])


def test_kept_listing_per_subject() -> None:
    """The referrers read of a subject, from every platform's report; attestations of
    the index (BuildKit's) are no referrers; a skip that names the subject is UNLISTED."""
    reports = [
        _report(AMD, _referrer(SIG, AMD), _referrer(SBOM, INDEX), _referrer(SIG, AMD, "index")),
        _report(AMD, _referrer(SBOM, INDEX)),
    ]
    assert kept_listing(reports, AMD) == {SIG}
    assert kept_listing(reports, INDEX) == {SBOM}
    assert kept_listing([_report(AMD)], AMD) == frozenset()
    assert kept_listing([_report(AMD, _referrer(AMD, AMD))], AMD) == UNLISTED


def test_moved() -> None:
    reports = [_report(AMD, _referrer(SIG, AMD))]
    pairs = [("r/app", AMD)]
    assert not moved(reports, pairs, {("r/app", AMD): frozenset({SIG})})
    assert moved(reports, pairs, {("r/app", AMD): frozenset({SIG, SBOM})})  # one came
    assert moved(reports, pairs, {("r/app", AMD): frozenset()})  # one went
    assert moved(reports, pairs, {("r/app", AMD): UNLISTED})  # could not be listed now
    # no API now: only a listing that failed last time is tried again
    assert not moved(reports, pairs, None)
    assert moved([_report(AMD, _referrer(AMD, AMD))], pairs, None)
