"""What the scanning commands share and need no command-line framework for: the flags as
typed, merged with the settings file into :class:`ScanOptions`, the result store a scan
uses, and the one-line messages on stderr. :mod:`leakscan.cli` parses the flags;
:mod:`leakscan.quick` answers a re-scan the result store knows whole with the same code,
before the framework is even imported."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from leakscan.settings import FileConfig, load_config

if TYPE_CHECKING:  # imported where used: a re-scan the store answers whole needs none of them
    from leakscan.model import ScanReport
    from leakscan.scan import ScanOptions
    from leakscan.sources.auth import RegistryOptions


def say(message: str) -> None:
    """One line on stderr."""
    print(f"leakscan: {' '.join(message.split())}", file=sys.stderr)


def failure(exc: Exception) -> str:
    """The line said for a failure the commands expect: ours (a LeakscanError) as it is
    worded, an OSError by its file and reason (never Python's repr of it)."""
    if isinstance(exc, OSError):
        return f"error: {exc.filename or ''}: {exc.strerror or exc}"
    return f"error: {exc}"


@dataclass(frozen=True)
class Flags:
    """The scanning flags as typed; a command without some of them leaves the default."""

    platform: list[str] | None = None
    min_confidence: str | None = None
    show_secrets: bool = False
    baseline: Path | None = None
    ignore_rule: list[str] | None = None
    ignore_path: list[str] | None = None
    detect_secrets_plugin: list[str] | None = None
    # None: ArchiveLimits' own default
    max_archive_depth: int | None = None
    max_expanded_bytes: int | None = None
    max_file_size: int | None = None
    workers: int = 0
    registry: RegistryOptions | None = None
    cache: str | None = None  # the result store, resolved: None without one


def merged(config: FileConfig, flags: Flags) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """The threshold, ignored rules and ignored paths of flags and config file together:
    flags add to the lists and win over single values."""
    level = str(flags.min_confidence) if flags.min_confidence else config.min_confidence
    return (
        level or "medium",
        config.ignore_rules + tuple(flags.ignore_rule or ()),
        config.ignore_paths + tuple(flags.ignore_path or ()),
    )


def options_for(config_path: str | None, flags: Flags) -> ScanOptions:
    """Flags and the config file, merged: flags add to the lists and win over single values."""
    from leakscan.detectors import DetectorConfig
    from leakscan.layers.archives import ArchiveLimits
    from leakscan.scan import ScanOptions
    from leakscan.sources.auth import RegistryOptions
    from leakscan.suppress import Suppressions, load_baseline

    config = load_config(config_path)
    fingerprints: frozenset[str] = frozenset()
    baseline_file = str(flags.baseline) if flags.baseline is not None else config.baseline
    if baseline_file is not None:
        accepted = load_baseline(baseline_file)
        fingerprints = accepted.fingerprints
        if accepted.notice:
            say(accepted.notice)
    level, rules, paths = merged(config, flags)
    plugins = config.detect_secrets_plugins + tuple(flags.detect_secrets_plugin or ())
    limits = {
        name: value
        for name, value in (
            ("max_depth", flags.max_archive_depth),
            ("max_expanded_bytes", flags.max_expanded_bytes),
        )
        if value is not None
    }
    return ScanOptions(
        platforms=tuple(flags.platform or ()),
        min_confidence=level,  # type: ignore[arg-type]
        show_secrets=flags.show_secrets,
        detectors=DetectorConfig(detect_secrets_plugins=plugins),
        workers=flags.workers,
        archives=ArchiveLimits(**limits),
        max_file_size=flags.max_file_size,
        suppressions=Suppressions(
            fingerprints=fingerprints,
            rules=rules,
            paths=paths,
        ),
        registry=flags.registry or RegistryOptions(),
        cache=flags.cache,
    )


def cache_spec(cache: str | None, cache_dir: Path | None, no_cache: bool) -> str | None:
    """The result store a scan uses: --no-cache none, --cache SPEC, --cache-dir DIR, else
    the default file (user cache folder or $LEAKSCAN_CACHE_DIR)."""
    if no_cache:
        return None
    if cache:
        return cache
    from leakscan.store import FILE_NAME, default_location

    return str(cache_dir / FILE_NAME) if cache_dir is not None else str(default_location())


def report_problems(report: ScanReport) -> None:
    """Each error of the report, one line on stderr."""
    for problem in list(report.errors) + [p for i in report.images for p in i.errors]:
        say(f"error: {problem.message}")
