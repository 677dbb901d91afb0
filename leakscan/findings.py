"""Finding assembly: the raw matches of one scanned image become the findings of its report.

Matches of one secret at one place merge into one finding; each gets its fingerprint, its
confidence in the light of where it is, and its remediation; suppressions and the confidence
threshold sort out what is reported. Everything here works on clear text: the whole report
is redacted afterwards in one step (:func:`leakscan.redact.redact_report`).
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from leakscan import model as m
from leakscan.detectors import Match
from leakscan.detectors.context import in_context
from leakscan.detectors.tokens import PAIR_RULES
from leakscan.instructions import history_keys, normalised
from leakscan.layers.status import fate
from leakscan.layers.walker import LayerRecord
from leakscan.layerscan import FileHit, LayerScan
from leakscan.metadata import HistoryMap, Text
from leakscan.redact import MIN_MASKED_LENGTH
from leakscan.remediation import remediation as remediation_text
from leakscan.sightings import Seen, merged, secret_sha256
from leakscan.suppress import Suppressions
from leakscan.terms import CONFIDENCE_RANK, Confidence

UNKNOWN_DIGEST = "sha256:unknown"


@dataclass
class ImageScan:
    """What scanning one image produced, before it becomes a report."""

    image: m.SourceImage
    layers: list[LayerScan]
    history: HistoryMap
    texts: list[tuple[Text, Match]]
    errors: list[m.Problem]
    # layers whose result came from the result store
    recalled: frozenset[int] = frozenset()
    # what was deliberately not read beside the layers (attestations too big, not JSON)
    skipped: list[m.Problem] = field(default_factory=list)

    def secrets(self) -> Iterator[str]:
        """Every value any engine matched, in every form it stands in the input (findings
        below the threshold and suppressed ones included: all are masked alike)."""
        for layer in self.layers:
            for hit in layer.hits:
                for one in hit.seen:
                    yield from one.forms()
        for _, match in self.texts:
            yield match.secret
            if match.raw:
                yield match.raw
        yield from spelled_in_places(self.layers)


def spelled_in_places(layers: Iterable[LayerScan]) -> Iterator[str]:
    """Secrets the result store answered for by hash only (a file's content seen before),
    found again where a report shows them or a layer's record names them: in the path of
    the file that holds them (a folder or an archive member named after a token), in a git
    place, in a skipped path. Without this such a path would be printed, or stored, in
    clear."""
    layers = list(layers)
    wanted = {
        x.secret_sha256: x.masked
        for layer in layers
        for hit in layer.hits
        for x in hit.seen
        if not x.secret
    }
    if not wanted:
        return
    places: set[str] = set()
    for layer in layers:
        places.update(p.path for p in layer.skipped + layer.errors if p.path)
        for hit in layer.hits:
            places.update((hit.path, hit.shown))
            if hit.git is not None:
                g = hit.git
                places.update(p for p in (g.git_dir, g.repo_path, g.subject) if p)
    for text in places:
        yield from spelled(text, wanted)


# the longest stretch of a path searched for a secret known by hash only
_SPELLED_MAX = 512


def spelled(text: str, wanted: dict[str, str]) -> Iterator[str]:
    """The substrings of ``text`` whose sha256 is a key of ``wanted`` (the value: the
    secret's masked form, whose first characters a long secret's candidates must share)."""
    text = text[:_SPELLED_MAX]
    prefixes = {masked[:4] for masked in wanted.values() if not masked.startswith("*")}
    short = any(masked.startswith("*") for masked in wanted.values())
    for i in range(len(text)):
        # a secret of 16 characters or more is masked as its first four and stars
        long_ok = text[i : i + 4] in prefixes
        if not long_ok and not short:
            continue
        stop = len(text) if long_ok else min(len(text), i + 15)
        for j in range(i + MIN_MASKED_LENGTH, stop + 1):
            piece = text[i:j]
            if secret_sha256(piece) in wanted:
                yield piece


def remediation(
    loc: m.Location, history: Sequence[m.HistoryInfo] = (), secret: str | None = None
) -> str:
    """What to do about a secret at ``loc``, for its place and the instruction that made it
    (``history``: the image's entries; ``secret``, when known, names the build argument or
    variable that holds it)."""
    return remediation_text(loc, history_keys(history), secret)


def fingerprint(rule_id: str, secret_sha: str, place: str) -> str:
    """A finding's identity across rebuilds."""
    # the place leaves out layer digests and line numbers, so an accepted finding keeps its
    # fingerprint when unrelated files of its layer change
    return hashlib.sha256(f"v1\0{rule_id}\0{secret_sha}\0{place}".encode()).hexdigest()


def place(
    loc: m.Location, history: Sequence[m.HistoryInfo] = (), secret: str | None = None
) -> str:
    """Where a finding is, as its fingerprint sees it: a file by its path, a config string
    by its field and key, a history entry by its instruction (one spelling whatever the
    builder, ``secret`` masked, build arguments that do not hold it left out) and its
    occurrence among identical instructions of ``history``. Never an index or a digest: an
    instruction added before it, a new base, a new layer digest keep the place."""
    if isinstance(loc, m.FileLocation) and loc.git is not None:
        # a blob by its git directory and its path in the repository, not the commit that
        # brought it (a rebase, a squash or a new clone keep the place)
        git = loc.git
        return f"git\0{git.git_dir}\0{git.part}\0{git.repo_path or git.object_id}"
    if isinstance(loc, m.FileLocation):
        return f"file\0{loc.path}"
    if isinstance(loc, m.HistoryLocation):
        occurrence = history_keys(history).occurrence(loc.history_index)
        if occurrence is None:
            # no history to count in: the index, as baselines of version 1 keyed it
            return f"history\0{loc.history_index}"
        return f"history\0{normalised(loc.created_by, secret)}\0{occurrence}"
    if isinstance(loc, m.AttestationLocation):
        # the attestation's digest changes with every build: its predicate type and the
        # path in it are the place (the line of an embedded Dockerfile is not)
        return f"attestation\0{loc.predicate_type or ''}\0{loc.path}"
    return f"config\0{loc.field}\0{loc.key or ''}"


def _finding(
    loc: m.Location, group: tuple[Seen, ...], show: bool, history: Sequence[m.HistoryInfo] = ()
) -> m.Finding:
    """One finding from every match of one secret at one place."""
    # the most confident engine's view of the secret (its exact extent) is the one reported,
    # each engine's confidence judged in the light of where the file is
    path = _context_path(loc) if isinstance(loc, m.FileLocation) else None
    rated = [(in_context(x.rule_id, x.confidence, path), x) for x in group]
    # at equal confidence a pair names the finding: that the id's secret is beside it (or
    # the secret's id) is what the reader must know
    confidence, best = max(
        rated, key=lambda pair: (CONFIDENCE_RANK[pair[0]], pair[1].rule_id in PAIR_RULES)
    )
    detectors = tuple(sorted({f"{x.detector}:{x.rule_id}" for x in group}))
    own = fingerprint(best.rule_id, best.secret_sha256, place(loc, history, best.secret))
    aliases = {
        fingerprint(x.rule_id, x.secret_sha256, place(loc, history, x.secret or best.secret))
        for x in group
    }
    return m.Finding(
        rule_id=best.rule_id,
        description=best.description,
        secret_sha256=best.secret_sha256,
        redacted=best.masked,
        fingerprint=own,
        aliases=tuple(sorted(aliases - {own})),
        location=loc,
        confidence=confidence,
        detectors=detectors,
        remediation=remediation(loc, history, best.secret),
        secret=best.secret if show else None,
    )


def _layer_infos(one: ImageScan) -> list[m.LayerInfo]:
    infos = []
    for blob, layer in zip(one.image.layers, one.layers, strict=True):
        h_index = one.history.layer_history[blob.index]
        created_by = one.history.entries[h_index].created_by if h_index is not None else None
        infos.append(
            m.LayerInfo(
                index=blob.index,
                digest=blob.digest,
                diff_id=layer.diff_id or blob.digest or UNKNOWN_DIGEST,
                media_type=blob.media_type,
                size=blob.size,
                history_index=h_index,
                created_by=created_by,
            )
        )
    return infos


Group = tuple[m.Location, tuple[Seen, ...]]


def _context_path(loc: m.FileLocation) -> str:
    """The path whose kind (test, vendored, sample) rates a generic match: a blob of a git
    history by its path in the repository below the git directory."""
    git = loc.git
    if git is not None and git.repo_path is not None:
        return f"{git.git_dir}!/{git.repo_path}"
    return loc.path


def _in_working_tree(records: Sequence[LayerRecord], git: m.GitPlace) -> bool:
    """Whether a blob of a ``.git`` directory's history is also in that repository's
    working tree, at its path, with the same bytes, in some layer: that file's finding is
    the one reported."""
    if git.repo_path is None or git.blob_digest is None or not git.git_dir.endswith("/.git"):
        return False
    path = posixpath.join(posixpath.dirname(git.git_dir), git.repo_path)
    want = bytes.fromhex(git.blob_digest)
    return any((e := r.entries.get(path)) is not None and e.digest == want for r in records)


def _file_location(
    hit: FileHit, records: Sequence[LayerRecord], infos: list[m.LayerInfo]
) -> m.FileLocation:
    where = fate(records, hit.layer_index, hit.path, hit.digest)
    return m.FileLocation(
        layer_index=hit.layer_index,
        diff_id=infos[hit.layer_index].diff_id,
        path=hit.shown,
        line=hit.seen[0].line,
        status=where.status,
        removed_in_layer=where.removed_in_layer,
        git=hit.git,
    )


def _older(git: m.GitPlace | None, than: m.Location) -> bool:
    """Whether ``git`` was committed before the blob ``than`` is."""
    other = than.git if isinstance(than, m.FileLocation) else None
    if git is None or other is None or not git.author_date or not other.author_date:
        return False
    try:
        return datetime.fromisoformat(git.author_date) < datetime.fromisoformat(other.author_date)
    except ValueError:
        return False


def _file_key(hit: FileHit) -> str:
    """The place a layer file's hit is grouped in: the path shown, or for a blob of a git
    history its path in the repository (every version of a file that holds the same secret
    is one place; the first, the oldest, names it)."""
    git = hit.git
    if git is not None and git.part == "blob" and git.repo_path is not None:
        return f"{git.git_dir}\0{git.repo_path}"
    return hit.shown


def _groups(one: ImageScan, infos: list[m.LayerInfo]) -> list[Group]:
    """Every secret at every place, its matches grouped."""
    records = [layer.record for layer in one.layers]
    # a path written twice in one layer is one place: its groups of the same secret join
    files: dict[tuple[int, str], list[tuple[m.FileLocation, tuple[Seen, ...]]]] = {}
    for layer in one.layers:
        for hit in layer.hits:
            if hit.git is not None and _in_working_tree(records, hit.git):
                continue
            groups = files.setdefault((hit.layer_index, _file_key(hit)), [])
            shas = {x.secret_sha256 for x in hit.seen}
            for n, (loc, group) in enumerate(groups):
                if shas & {x.secret_sha256 for x in group}:
                    if _older(hit.git, loc):
                        # the oldest version of a file in a history names the place
                        loc = _file_location(hit, records, infos)
                    groups[n] = (loc, group + hit.seen)
                    break
            else:
                groups.append((_file_location(hit, records, infos), hit.seen))
    out: list[Group] = [g for gs in files.values() for g in gs]
    # history and config strings: the pieces of one place (a build argument and the whole
    # command line that holds it) are merged like the engines' matches of one file
    texts: dict[tuple[str, str], tuple[m.Location, list[Match]]] = {}
    for text, match in one.texts:
        key = (text.location.kind, place(text.location, one.history.entries))
        texts.setdefault(key, (text.location, []))[1].append(match)
    for text_loc, matches in texts.values():
        out.extend((text_loc, group) for group in merged(matches))
    return out


def image_report(
    one: ImageScan, min_confidence: Confidence, suppressions: Suppressions, show: bool
) -> m.ImageReport:
    """The report of one scanned image, in clear: findings at or above ``min_confidence``
    that the user has not accepted, the others counted."""
    image = one.image
    infos = _layer_infos(one)
    threshold = CONFIDENCE_RANK[min_confidence]
    findings = []
    below = 0
    suppressed: dict[str, int] = {}
    accepted: list[tuple[str, m.Finding]] = []
    # a layer's result from the result store knows its secrets by hash only; where the
    # same secret is in a history or config string (a build argument), that names it
    known = {secret_sha256(x.secret): x.secret for _, x in one.texts}
    for loc, group in _groups(one, infos):
        named = tuple(
            x if x.secret else replace(x, secret=known.get(x.secret_sha256)) for x in group
        )
        finding = _finding(loc, named, show, one.history.entries)
        if CONFIDENCE_RANK[finding.confidence] < threshold:
            below += 1
            continue
        why = suppressions.reason(finding)
        if why is not None:
            suppressed[why] = suppressed.get(why, 0) + 1
            accepted.append((why, finding))
        else:
            findings.append(finding)
    errors = list(one.errors)
    skipped: list[m.Problem] = list(one.skipped)
    for layer in one.layers:
        errors.extend(layer.errors)
        skipped.extend(layer.skipped)
    return m.ImageReport(
        reference=image.reference,
        source=image.source,
        platform=image.platform,
        manifest_digest=image.manifest_digest,
        config_digest=image.config_digest,
        layers=tuple(infos),
        history=one.history.entries,
        findings=tuple(findings),
        errors=tuple(errors),
        skipped=tuple(skipped),
        below_threshold=below,
        suppressed=tuple(sorted(suppressed.items())),
        accepted=tuple(accepted),
        # the statements themselves are not reported: what matters of them is in findings
        attestations=tuple(replace(a, statement=None) for a in image.attestations),
    )

