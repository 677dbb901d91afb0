"""Accepted findings: a baseline of fingerprints, and rules and paths to ignore. Suppressed
findings are counted in the report, never silently dropped. (The settings file that can
carry them is read by :mod:`leakscan.settings`.)"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leakscan import model as m
from leakscan.errors import InputError

# 2: history findings are keyed by their instruction and its occurrence (version 1 keyed
# them by the history index, which an instruction added before them shifts)
BASELINE_VERSION = 2


def legacy_fingerprint(finding: m.Finding) -> str | None:
    """The fingerprint a history finding had in baselines of version 1 (None for other
    kinds: their fingerprints did not change)."""
    loc = finding.location
    if not isinstance(loc, m.HistoryLocation):
        return None
    key = f"v1\0{finding.rule_id}\0{finding.secret_sha256}\0history\0{loc.history_index}"
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Suppressions:
    """What the user has accepted. Rule ids and paths are shell-style globs; a path glob is
    matched against the file's path in the image (``OUTER!/INNER`` for archive members)."""

    fingerprints: frozenset[str] = frozenset()
    rules: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()

    def reason(self, finding: m.Finding) -> str | None:
        """Why ``finding`` is suppressed, or None when it is not."""
        if finding.fingerprint in self.fingerprints:
            return "baseline"
        # made when another rule that finds the secret here was the finding's rule
        if not self.fingerprints.isdisjoint(finding.aliases):
            return "baseline"
        # a baseline of version 1 still matches history findings where they were
        legacy = legacy_fingerprint(finding) if self.fingerprints else None
        if legacy is not None and legacy in self.fingerprints:
            return "baseline"
        for pattern in self.rules:
            if fnmatch.fnmatchcase(finding.rule_id, pattern) or any(
                fnmatch.fnmatchcase(d.split(":", 1)[-1], pattern) for d in finding.detectors
            ):
                return f"rule {pattern}"
        loc = finding.location
        if isinstance(loc, m.FileLocation):
            for pattern in self.paths:
                if fnmatch.fnmatchcase(loc.path, pattern):
                    return f"path {pattern}"
        return None

    def __bool__(self) -> bool:
        return bool(self.fingerprints or self.rules or self.paths)


@dataclass(frozen=True)
class Baseline:
    """A baseline file's fingerprints, and a one-line notice when it should be regenerated."""

    fingerprints: frozenset[str]
    notice: str | None = None


def read_baseline(path: str | os.PathLike[str]) -> frozenset[str]:
    """The fingerprints in a baseline file written by ``leakscan baseline``."""
    return load_baseline(path).fingerprints


def load_baseline(path: str | os.PathLike[str]) -> Baseline:
    """A baseline file written by ``leakscan baseline``, of any version."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"baseline {path}: cannot read: {exc.strerror}") from None
    except (ValueError, RecursionError) as exc:
        raise InputError(f"baseline {path}: not valid JSON: {type(exc).__name__}") from None
    entries = data.get("findings") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise InputError(f"baseline {path}: no findings list (write one with leakscan baseline)")
    prints = [e.get("fingerprint") for e in entries if isinstance(e, dict)]
    if not all(isinstance(p, str) for p in prints):
        raise InputError(f"baseline {path}: a finding has no fingerprint")
    notice = None
    version = data.get("version", 1)
    places = [e.get("location") for e in entries if isinstance(e, dict)]
    kinds = [p.get("kind") for p in places if isinstance(p, dict)]
    if version == 1 and "history" in kinds:
        notice = (
            f"baseline {path} is of version 1: its {kinds.count('history')} history findings "
            "match only while no instruction is added or removed before them; regenerate it "
            "with leakscan baseline"
        )
    return Baseline(frozenset(p for p in prints if isinstance(p, str)), notice)


def baseline_json(report: m.ScanReport) -> str:
    """A baseline accepting every finding of ``report``. Besides the fingerprints it keeps
    what a reviewer needs to judge each entry, never the secret."""
    entries = []
    seen: set[str] = set()
    for image in report.images:
        for f in image.findings:
            if f.fingerprint in seen:
                continue
            seen.add(f.fingerprint)
            loc = f.location
            where: dict[str, Any] = {"kind": loc.kind}
            if isinstance(loc, m.FileLocation):
                where.update(path=loc.path, layer_index=loc.layer_index, status=loc.status)
            elif isinstance(loc, m.HistoryLocation):
                where.update(history_index=loc.history_index, created_by=loc.created_by)
            elif isinstance(loc, m.AttestationLocation):
                where.update(predicate_type=loc.predicate_type, path=loc.path)
            else:
                where.update(field=loc.field, key=loc.key)
            entries.append(
                {
                    "fingerprint": f.fingerprint,
                    "rule_id": f.rule_id,
                    "redacted": f.redacted,
                    "location": where,
                }
            )
    doc = {"version": BASELINE_VERSION, "image": report.reference, "findings": entries}
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
