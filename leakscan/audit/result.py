"""What an audit yields, and the last steps every audit takes (the full one in
:mod:`leakscan.audit.core`, the re-audit of an unchanged registry in
:mod:`leakscan.audit.quick`): the sightings written to the audit database, the images as
reported, the layers of kept reports counted. One copy of these steps, so that both ways
of auditing give the same report.

Light on purpose: it imports the model and the database, not the scanners nor the
registry client."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from leakscan import model as m
from leakscan.audit.db import AuditDb, Seen

# an image as an audit reports it: repository, tag (None: untagged), its report
Entry = tuple[str, str | None, m.ImageReport]


@dataclass(frozen=True)
class AuditedImage:
    """One repository/tag/platform image, its report, and when its findings were first
    seen (by fingerprint)."""

    repository: str
    tag: str | None
    report: m.ImageReport
    first_seen: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class AuditStats:
    """What the audit covered and what it cost."""

    repositories: int
    images: int
    layers_total: int
    layers_unique: int
    layers_scanned: int
    layers_cached: int
    bytes_scanned: int
    seconds: float


@dataclass(frozen=True)
class AuditReport:
    """Every image audited; ``errors`` are repositories, tags or images that could not be."""

    registry: str
    images: tuple[AuditedImage, ...]
    errors: tuple[m.Problem, ...]
    stats: AuditStats
    audit_id: int
    started: float
    new_only: bool = False
    since: float | None = None

    @property
    def complete(self) -> bool:
        """True when everything could be audited."""
        return not self.errors and all(not i.report.errors for i in self.images)

    @property
    def findings(self) -> tuple[m.Finding, ...]:
        """Every finding reported."""
        return tuple(f for i in self.images for f in i.report.findings)


@dataclass(frozen=True)
class AuditProgress:
    """Where an audit is: ``phase`` is walk, scan or report."""

    phase: str
    done: int
    total: int | None
    what: str = ""


AuditCallback = Callable[[AuditProgress], None]


def kept_layer_ids(reports: Iterable[m.ImageReport]) -> list[str]:
    """The identity (as :func:`leakscan.audit.core.layer_id` gives it) of every layer of
    reports kept from an earlier audit, once per layer of each report."""
    out = []
    for report in reports:
        for layer in report.layers:
            lid = layer.diff_id if layer.diff_id.startswith("sha256:") else layer.digest
            out.append(lid or f"unknown:{layer.index}")
    return out


def record(
    db: AuditDb, target: str, audit_id: int, entries: Sequence[Entry], now: float
) -> dict[tuple[str, str], Seen]:
    """Write the images and findings an audit saw; every finding's first sighting."""
    rows = [
        (
            r,
            t if t is not None else f"@{rep.config_digest}",
            rep.platform or "",
            rep.manifest_digest,
            rep.config_digest,
        )
        for r, t, rep in entries
    ]
    return db.record(
        target,
        audit_id,
        rows,
        [(r, f.fingerprint) for r, _, rep in entries for f in rep.findings],
        now,
    )


def audited(
    entries: Sequence[Entry],
    sightings: dict[tuple[str, str], Seen],
    audit_id: int,
    new_only: bool,
    since: float | None,
) -> tuple[AuditedImage, ...]:
    """The images as reported: each finding with its first sighting, only the new ones
    with ``new_only``, only those first seen at ``since`` or later."""
    images = []
    for repository, tag, rep in entries:
        firsts = {f.fingerprint: sightings[(repository, f.fingerprint)] for f in rep.findings}
        shown = tuple(
            f
            for f in rep.findings
            if (not new_only or firsts[f.fingerprint].first_audit == audit_id)
            and (since is None or firsts[f.fingerprint].first_seen >= since)
        )
        images.append(
            AuditedImage(
                repository,
                tag,
                replace(rep, findings=shown),
                tuple(sorted((fp, s.first_seen) for fp, s in firsts.items())),
            )
        )
    return tuple(images)
