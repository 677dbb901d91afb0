"""Accepted findings: a baseline of fingerprints, rules and paths to ignore, and the
``.leakscan.toml`` / ``[tool.leakscan]`` config that can carry them. Suppressed findings
are counted in the report, never silently dropped."""

from __future__ import annotations

import fnmatch
import json
import os
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class FileConfig:
    """Settings from ``.leakscan.toml`` or ``[tool.leakscan]``; command-line flags add to
    the lists and override the single values."""

    source: str | None = None
    ignore_rules: tuple[str, ...] = ()
    ignore_paths: tuple[str, ...] = ()
    baseline: str | None = None
    min_confidence: str | None = None
    detect_secrets_plugins: tuple[str, ...] = field(default=())


_KEYS = {"ignore-rules", "ignore-paths", "baseline", "min-confidence", "detect-secrets-plugins"}


def _strings(table: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{where}: {key} must be a list of strings")
    return tuple(value)


def _single(table: dict[str, Any], key: str, where: str) -> str | None:
    value = table.get(key)
    if value is not None and not isinstance(value, str):
        raise InputError(f"{where}: {key} must be a string")
    return value


def load_config(explicit: str | None = None, start: str | None = None) -> FileConfig:
    """Read ``explicit``, else ``.leakscan.toml`` or ``pyproject.toml`` ``[tool.leakscan]``
    in ``start`` (the working directory). Relative paths in it are relative to its folder."""
    folder = Path(start or os.getcwd())
    candidates: Iterable[Path]
    if explicit is not None:
        candidates = [Path(explicit)]
        if not candidates[0].is_file():
            raise InputError(f"config {explicit}: no such file")
    else:
        candidates = [folder / ".leakscan.toml", folder / "pyproject.toml"]
    for path in candidates:
        if not path.is_file():
            continue
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise InputError(f"config {path}: {exc}") from None
        if path.name == "pyproject.toml" and explicit is None:
            table = doc.get("tool", {}).get("leakscan")
            if table is None:
                continue
        else:
            table = doc.get("tool", {}).get("leakscan", doc)
        if not isinstance(table, dict):
            raise InputError(f"config {path}: [tool.leakscan] must be a table")
        where = f"config {path}"
        unknown = sorted(set(table) - _KEYS)
        if unknown:
            raise InputError(f"{where}: unknown setting {unknown[0]!r}")
        baseline = _single(table, "baseline", where)
        plugins = _strings(table, "detect-secrets-plugins", where)
        level = _single(table, "min-confidence", where)
        if level is not None and level not in ("high", "medium", "low"):
            raise InputError(f"{where}: min-confidence must be high, medium or low")
        return FileConfig(
            source=str(path),
            ignore_rules=_strings(table, "ignore-rules", where),
            ignore_paths=_strings(table, "ignore-paths", where),
            baseline=str(path.parent / baseline) if baseline else None,
            min_confidence=level,
            detect_secrets_plugins=tuple(str(path.parent / p) for p in plugins),
        )
    return FileConfig()
