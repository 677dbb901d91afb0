"""Accepted findings: a baseline of fingerprints, and rules and paths to ignore. Suppressed
findings are counted in the report, never silently dropped. (The settings file that can
carry them is read by :mod:`leakscan.settings`.)"""

from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leakscan import model as m
from leakscan.errors import InputError

BASELINE_VERSION = 1


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


def read_baseline(path: str | os.PathLike[str]) -> frozenset[str]:
    """The fingerprints in a baseline file written by ``leakscan baseline``."""
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
    return frozenset(p for p in prints if isinstance(p, str))


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
                where.update(history_index=loc.history_index)
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
