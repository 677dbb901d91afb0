"""The command line's settings file: ``.leakscan.toml``, or ``[tool.leakscan]`` in
``pyproject.toml``, in the working directory (or ``--config FILE``). Command-line flags add to
its lists and win over its single values (see :func:`leakscan.cli._options`)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leakscan.errors import InputError


@dataclass(frozen=True)
class FileConfig:
    """What one settings file says (``source``: which file; None when there is none)."""

    source: str | None = None
    ignore_rules: tuple[str, ...] = ()
    ignore_paths: tuple[str, ...] = ()
    baseline: str | None = None
    min_confidence: str | None = None
    detect_secrets_plugins: tuple[str, ...] = ()
    # what fails the gate, in --fail-on words (leakscan.policy.parse_fail_on reads them)
    fail_on: tuple[str, ...] = ()


_KEYS = {
    "ignore-rules",
    "ignore-paths",
    "baseline",
    "min-confidence",
    "detect-secrets-plugins",
    "fail-on",
}


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


def _fail_on(table: dict[str, Any], where: str) -> tuple[str, ...]:
    """``fail-on``: a list of words, or one comma-separated string; checked here so that a
    typo is named with the file it is in."""
    from leakscan.policy import parse_fail_on

    value = table.get("fail-on", [])
    words = (value,) if isinstance(value, str) else _strings(table, "fail-on", where)
    parse_fail_on(words, f"{where}: fail-on")
    return tuple(words)


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
        import tomllib  # only when there is a file to read: most scans have none

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
            fail_on=_fail_on(table, where),
        )
    return FileConfig()
