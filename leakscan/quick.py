"""A re-scan the result store answers whole, before the command-line framework loads.

``leakscan IMAGE`` of an image scanned before is mostly start-up: the framework (typer,
which imports pydantic) took longer than reading the image's manifest and its layers'
results back. When the store file exists, :mod:`leakscan.__main__` first hands the
arguments here. They are read for the scan command's common options only; anything else
(an option this reader does not know, --show-secrets, registry credentials, a baseline, a
plugin, a shared store, a terminal on stderr...) returns None, as does an image whose
layers or strings the store does not all hold, and the full command runs as always.

What is answered here is computed by the same code as the full command: first the whole
report an earlier scan of the same images with the same settings kept
(:mod:`leakscan.store.reports`: the source is read as a scan reads it, no layer is, and
neither the scanning nor the findings modules are imported), else
:func:`leakscan.scan.scan_from_store` builds it from the layers' and strings' entries;
then the policy and the renderers. Only the argument reading is this module's own.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from leakscan.terms import CONFIDENCE_RANK

if TYPE_CHECKING:
    from leakscan.command import Flags
    from leakscan.model import ScanReport
    from leakscan.settings import FileConfig

# options taking a value: name -> (field, repeatable)
_VALUED = {
    "--format": ("formats", True),
    "-f": ("formats", True),
    "--output": ("output", False),
    "-o": ("output", False),
    "--platform": ("platform", True),
    "--min-confidence": ("level", False),
    "--fail-on": ("fail_on", True),
    "--ignore-rule": ("ignore_rule", True),
    "--ignore-path": ("ignore_path", True),
    "--cache": ("cache", False),
    "--cache-dir": ("cache_dir", False),
    "--config": ("config", False),
    "--workers": ("workers", False),
    "-j": ("workers", False),
}


@dataclass
class Args:
    """The scan command's arguments this reader knows."""

    image: str = ""
    formats: list[str] = field(default_factory=list)
    output: str | None = None
    platform: list[str] = field(default_factory=list)
    level: str | None = None
    fail_on: list[str] = field(default_factory=list)
    ignore_rule: list[str] = field(default_factory=list)
    ignore_path: list[str] = field(default_factory=list)
    cache: str | None = None
    cache_dir: str | None = None
    config: str | None = None
    workers: str = "0"


def read_options(
    argv: Sequence[str],
    into: object,
    valued: Mapping[str, tuple[str, bool]],
    switches: Mapping[str, str] | None = None,
) -> list[str] | None:
    """Set on ``into`` each option of ``argv`` (``valued``: name -> (field, repeatable),
    as ``--name VALUE`` or ``--name=VALUE``; ``switches``: name -> field set True) and
    return the other arguments; None at an option it does not know or a missing value.
    The quick paths of a scan and of an audit read their arguments this way."""
    found: list[str] = []
    rest = list(argv)
    while rest:
        arg = rest.pop(0)
        if arg == "--debug":
            continue
        if switches and arg in switches:
            setattr(into, switches[arg], True)
            continue
        if not arg.startswith("-"):
            found.append(arg)
            continue
        name, eq, value = arg.partition("=")
        if name not in valued or (eq and not name.startswith("--")):
            return None
        if not eq:
            if not rest:
                return None
            value = rest.pop(0)
        attr, many = valued[name]
        if many:
            getattr(into, attr).append(value)
        else:
            setattr(into, attr, value)
    return found


def parse(argv: list[str]) -> Args | None:
    """The arguments, when every one of them is a known option or the one image; None
    otherwise (the full command then reads them, and says what is wrong with them)."""
    args = Args()
    images = read_options(argv, args, _VALUED)
    if images is None:
        return None
    # a subcommand's name is never taken for an image: an image named here holds a ':',
    # '/' or '.' (a reference with a tag or digest, a transport, a path)
    if len(images) != 1 or not any(c in images[0] for c in ":/."):
        return None
    if args.level is not None and args.level not in CONFIDENCE_RANK:
        return None
    if not args.workers.isascii() or not args.workers.isdigit():
        return None
    args.image = images[0]
    return args


def answer(argv: list[str], on_miss: Callable[[], None] | None = None) -> int | None:
    """The exit status of the scan ``argv`` asks for, its reports written, when the result
    store answers it whole; None (nothing written, nothing said) when the full command
    must run. ``on_miss`` is called when that is because the store lacks something of the
    image (something will be scanned: the caller may start loading the rules)."""
    args = parse(argv)
    if args is None or sys.stderr.isatty():
        return None  # a terminal gets the progress bar of the full command
    try:
        return _answer(args, on_miss or (lambda: None))
    except Exception:  # noqa: BLE001 - whatever it is, the full command does it and says it
        return None


def _answer(args: Args, on_miss: Callable[[], None]) -> int | None:
    from leakscan.command import Flags, cache_spec, failure, report_problems, say
    from leakscan.errors import LeakscanError
    from leakscan.policy import judge, policy_for
    from leakscan.preflight import refuse_early
    from leakscan.report import parse_outputs, write_outputs
    from leakscan.settings import load_config

    outputs = parse_outputs(args.formats, Path(args.output) if args.output else None)
    policy = policy_for(args.fail_on or None, args.config)
    refuse_early(args.image)
    spec = cache_spec(args.cache, Path(args.cache_dir) if args.cache_dir else None, False)
    if spec is None or "://" in spec or not os.path.exists(spec):
        return None
    config = load_config(args.config)
    if config.baseline is not None or config.detect_secrets_plugins:
        return None
    flags = Flags(
        platform=args.platform or None,
        min_confidence=args.level,
        ignore_rule=args.ignore_rule or None,
        ignore_path=args.ignore_path or None,
        workers=int(args.workers),
        cache=spec,
    )
    report = _whole(args.image, config, flags, spec)
    if report is None:
        # no whole report kept: built from the layers' and strings' entries, when the
        # store holds them all (the scan then keeps the whole report for next time)
        from leakscan.command import options_for
        from leakscan.scan import scan_from_store

        warnings: list[str] = []
        report = scan_from_store(args.image, options_for(args.config, flags), warnings.append)
        if report is None:
            on_miss()
            return None
        if warnings or not report.complete:
            return None
    gate = judge(report, policy)
    # from here on the reports are being written: no second run, whatever happens
    try:
        write_outputs(report, outputs, gate)
    except (LeakscanError, OSError) as exc:
        say(failure(exc))
        return 2
    report_problems(report)
    return gate.exit_status()


def _whole(image: str, config: FileConfig, flags: Flags, spec: str) -> ScanReport | None:
    """The whole report an earlier scan of the same images with the same settings kept
    (:mod:`leakscan.store.reports`); None when there is none. The source is read as a scan
    reads it (manifests, config, digests checked); no layer is. Only for the settings this
    reader passes on, whose detection fingerprint needs neither the engines' settings
    class nor the archive readers imported (:data:`leakscan.store.keys.DEFAULT_LIMITS`)."""
    from leakscan.command import merged
    from leakscan.sources import open_source
    from leakscan.store import open_store
    from leakscan.store.keys import DEFAULT_DETECTORS, DEFAULT_LIMITS, fingerprint_of
    from leakscan.store.reports import Settings, recall_report, report_key

    level, rules, paths = merged(config, flags)
    settings = Settings(level, (), rules, paths, tuple(flags.platform or ()))
    with closing(open_source(image)) as source:
        images = list(source.images(settings.platforms))
    if not images:
        return None
    fingerprint = fingerprint_of(DEFAULT_DETECTORS, DEFAULT_LIMITS, None)
    warnings: list[str] = []
    with open_store(spec, warnings.append) as store:
        report = recall_report(store, report_key(fingerprint, image, images, settings))
        if report is None or warnings:
            store.forget_counts()  # the scan that follows counts its own lookups
            return None
    return report
