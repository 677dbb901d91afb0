"""The command line: flags -> options -> library call -> renderer -> exit status.

Exit status: 0 the scan completed and found nothing; 1 findings; 2 the scan could not be
completed (errors win over findings).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import inspect
import re
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, get_type_hints

import typer

from leakscan import __version__
from leakscan.command import Flags, failure
from leakscan.command import cache_spec as _cache_spec
from leakscan.command import options_for as _options
from leakscan.command import report_problems as _report_problems
from leakscan.command import say as _say
from leakscan.detectors import DetectorConfig
from leakscan.errors import InputError, LeakscanError
from leakscan.layers.archives import ArchiveLimits
from leakscan.model import Problem, ScanReport
from leakscan.preflight import refuse_early
from leakscan.scan import Progress, ProgressCallback, ScanOptions, scan
from leakscan.settings import load_config
from leakscan.sources.auth import RegistryOptions, parse_creds
from leakscan.suppress import baseline_json

EXIT_CLEAN, EXIT_FINDINGS, EXIT_INCOMPLETE = 0, 1, 2


class Format(enum.StrEnum):
    table = "table"
    json = "json"
    sarif = "sarif"


class Level(enum.StrEnum):
    high = "high"
    medium = "medium"
    low = "low"


def exit_status(report: ScanReport) -> int:
    """0 clean, 1 findings, 2 incomplete."""
    if not report.complete:
        return EXIT_INCOMPLETE
    return EXIT_FINDINGS if report.findings else EXIT_CLEAN


class _Bar:
    """A progress bar on stderr, only when stderr is a terminal."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            console=Console(stderr=True),
            transient=True,
            # no refresh thread: worker processes are forked only from a single-threaded
            # process, so the bar is redrawn from update() instead
            auto_refresh=False,
        )
        self._task = self._progress.add_task("loading detection rules", total=None)
        self._drawn = 0.0

    def __enter__(self) -> ProgressCallback:
        self._progress.start()
        return self.update

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, event: Progress) -> None:
        self._progress.update(
            self._task,
            description=f"{event.image}: layer {event.layer_index + 1}/{event.layer_count}",
            completed=event.bytes_read,
            total=event.bytes_total,
        )
        now = time.monotonic()
        if now - self._drawn >= 0.1 or event.layer_done:
            self._drawn = now
            self._progress.refresh()


ImageArg = Annotated[
    str,
    typer.Argument(
        help="Image: a name (docker daemon, else registry), docker://NAME, docker-archive:PATH, "
        "oci:DIR[:TAG], oci-archive:PATH, a tar or a directory.",
        show_default=False,
    ),
]
PlatformOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--platform",
        help="Only this platform, os/arch[/variant] (repeatable). Default: every platform.",
    ),
]
LevelOpt = Annotated[
    Level | None,
    typer.Option(
        "--min-confidence",
        help="Report findings of at least this confidence. Default: medium.",
        show_default=False,
    ),
]
ConfigOpt = Annotated[
    str | None,
    typer.Option(
        "--config",
        help="Settings file. Default: .leakscan.toml, else [tool.leakscan] in pyproject.toml.",
    ),
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show a traceback on internal errors.")]
PluginOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--detect-secrets-plugin",
        help="A detect-secrets plugin file of your own (repeatable).",
    ),
]
DepthOpt = Annotated[
    int,
    typer.Option("--max-archive-depth", min=0, max=32, help="Archive levels opened in a file."),
]
ExpandOpt = Annotated[
    str,
    typer.Option(
        "--max-expanded-bytes",
        help="Bytes unpacked from the archives in one file (K, M, G, T: powers of 1024).",
    ),
]
FileSizeOpt = Annotated[
    str | None,
    typer.Option(
        "--max-file-size",
        help="Skip (and list) files larger than this (K, M, G, T). Default: no limit.",
    ),
]
CacheOpt = Annotated[
    str | None,
    typer.Option(
        "--cache",
        metavar="SPEC",
        help="Result store: a SQLite file, or redis://HOST:PORT/DB to share it between "
        "machines (default: a file in the user cache folder, or $LEAKSCAN_CACHE_DIR).",
    ),
]
CacheDirOpt = Annotated[
    Path | None,
    typer.Option("--cache-dir", help="Keep the result store in this folder."),
]
NoCacheOpt = Annotated[
    bool, typer.Option("--no-cache", help="Neither read nor write the result store.")
]
WorkersOpt = Annotated[
    int,
    typer.Option(
        "--workers",
        "-j",
        min=0,
        help="Processes scanning layers side by side (0: one per CPU; 1: none).",
    ),
]
BaselineOpt = Annotated[
    Path | None,
    typer.Option("--baseline", help="Accept the findings listed in FILE (leakscan baseline)."),
]
ReportFileOpt = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write the report here.")
]
# --- registry flags ---
CredsOpt = Annotated[
    str | None,
    typer.Option(
        "--creds", help="Registry credentials USER:PASSWORD.", show_default=False, metavar="U:P"
    ),
]
UsernameOpt = Annotated[
    str | None,
    typer.Option("--username", help="Registry user; the password is read with --password-stdin."),
]
PasswordStdinOpt = Annotated[
    bool, typer.Option("--password-stdin", help="Read the registry password from stdin.")
]
CaFileOpt = Annotated[
    str | None,
    typer.Option(
        "--ca-file", metavar="PATH", help="CA bundle to verify registries' TLS certificates with."
    ),
]
TlsVerifyOpt = Annotated[
    bool,
    typer.Option(
        "--tls-verify/--no-tls-verify",
        help="Verify registries' TLS certificates (--tls-verify=false works too).",
    ),
]
PlainHttpOpt = Annotated[
    bool,
    typer.Option(
        "--plain-http",
        help="Reach registries over plain HTTP (localhost and 127.x fall back to it unasked).",
    ),
]


def _registry_options(
    creds: str | None,
    username: str | None,
    password_stdin: bool,
    ca_file: str | None,
    tls_verify: bool,
    plain_http: bool,
) -> RegistryOptions:
    """Registry flags -> RegistryOptions; the password never goes into a message."""
    if creds is not None and (username is not None or password_stdin):
        raise LeakscanError("give either --creds or --username with --password-stdin")
    if (username is None) != (not password_stdin):
        raise LeakscanError("--username and --password-stdin go together")
    given = None
    if creds is not None:
        given = parse_creds(creds)
    elif username is not None:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise LeakscanError("--password-stdin: no password on stdin")
        given = parse_creds(f"{username}:{password}", "--username/--password-stdin")
    return RegistryOptions(
        creds=given, ca_file=ca_file, tls_verify=tls_verify, plain_http=plain_http
    )


def _tls_verify_spelling(args: list[str]) -> list[str]:
    """skopeo's ``--tls-verify=false``: click's on/off flags take no value, so it becomes
    ``--no-tls-verify`` (and ``=true`` the plain flag)."""
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--":
            return out + args[i:]
        value = arg.removeprefix("--tls-verify=").lower() if arg.startswith("--tls-verify=") else ""
        if value in ("false", "0", "no", "off"):
            arg = "--no-tls-verify"
        elif value in ("true", "1", "yes", "on"):
            arg = "--tls-verify"
        out.append(arg)
    return out


# --- end registry flags ---


@dataclass(frozen=True)
class StoreFlags:
    """--cache, --cache-dir and --no-cache, declared once for every command that scans."""

    cache: CacheOpt = None
    cache_dir: CacheDirOpt = None
    no_cache: NoCacheOpt = False

    def spec(self) -> str | None:
        """The result store the command uses (None with --no-cache)."""
        return _cache_spec(self.cache, self.cache_dir, self.no_cache)


@dataclass(frozen=True)
class RegistryFlags:
    """The credential and TLS flags, declared once for every command that reads registries."""

    creds: CredsOpt = None
    username: UsernameOpt = None
    password_stdin: PasswordStdinOpt = False
    ca_file: CaFileOpt = None
    tls_verify: TlsVerifyOpt = True
    plain_http: PlainHttpOpt = False

    def options(self) -> RegistryOptions:
        """As :func:`_registry_options`: reads stdin for --password-stdin, so call it inside
        the command's guard."""
        return _registry_options(
            self.creds,
            self.username,
            self.password_stdin,
            self.ca_file,
            self.tls_verify,
            self.plain_http,
        )


@dataclass(frozen=True)
class ReadFlags:
    """How scan and baseline read an image: plugins of one's own, the archive and file
    limits and the worker processes, declared once for both."""

    detect_secrets_plugin: PluginOpt = None
    max_archive_depth: DepthOpt = ArchiveLimits.max_depth
    max_expanded_bytes: ExpandOpt = "2G"
    max_file_size: FileSizeOpt = None
    workers: WorkersOpt = 0

    def flags(self) -> Flags:
        """These as scanning flags, sizes in bytes: a bad size is a usage error, so call it
        before anything else the command does."""
        return Flags(
            detect_secrets_plugin=self.detect_secrets_plugin,
            max_archive_depth=self.max_archive_depth,
            max_expanded_bytes=_size_flag("--max-expanded-bytes", self.max_expanded_bytes),
            max_file_size=_file_size_flag(self.max_file_size),
            workers=self.workers,
        )


_GROUPS: tuple[type, ...] = (StoreFlags, RegistryFlags, ReadFlags)


def _grouped(command: Callable[..., None]) -> Callable[..., None]:
    """Typer knows no groups of options: it is shown each group parameter of ``command``
    (typed :class:`StoreFlags`, :class:`RegistryFlags` or :class:`ReadFlags`) as the
    group's own options, in that parameter's place, so that the order in --help is the
    command's; the command is called with the group back as one value. A command without
    a group is returned as it is."""
    signature = inspect.signature(command, eval_str=True)
    params: list[inspect.Parameter] = []
    groups: dict[str, tuple[type, tuple[str, ...]]] = {}
    for param in signature.parameters.values():
        if param.annotation not in _GROUPS:
            params.append(param)
            continue
        hints = get_type_hints(param.annotation, include_extras=True)
        fields = dataclasses.fields(param.annotation)
        groups[param.name] = (param.annotation, tuple(f.name for f in fields))
        params += [
            inspect.Parameter(f.name, param.kind, default=f.default, annotation=hints[f.name])
            for f in fields
        ]
    if not groups:
        return command
    names = [p.name for p in params]
    assert len(names) == len(set(names)), f"{command.__name__}: a group field repeats a name"

    @functools.wraps(command)
    def run(**given: Any) -> None:
        for name, (group, fields) in groups.items():
            given[name] = group(**{field: given.pop(field) for field in fields})
        command(**given)

    run.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    # typer resolves the annotations of parameters without an Option too: the real ones
    run.__annotations__ = {p.name: p.annotation for p in params}
    return run


_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(?:([KMGT])(?:I?B|I)?|B)?", re.IGNORECASE)
_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
MAX_SIZE = (1 << 63) - 1  # sizes go on to C code (zlib, zstd, file offsets): int64 at most
# why 0 is refused, and what the user may have meant by it
_ZERO = {
    "--max-file-size": "leave the option out for no limit",
    "--max-expanded-bytes": "--max-archive-depth 0 opens no archives",
}


def parse_size(text: str) -> int:
    """``512``, ``64K``, ``1.5M``, ``2G``, ``2GiB`` (powers of 1024) as a number of bytes.

    Only digits with an optional fraction and unit: ``inf``, ``nan``, ``1e3`` and signs are
    refused (ValueError, saying why), as is anything above :data:`MAX_SIZE`."""
    match = _SIZE.fullmatch(text.strip())
    if match is None and text.strip().startswith("-"):
        raise ValueError("a size cannot be negative")
    if match is None:
        raise ValueError("not a size (a number of bytes, or with K, M, G or T: 512M, 2G)")
    number, unit = match.groups()
    # exact arithmetic: a float would round a long number and overflow on a huge one
    size = int(Fraction(number) * _UNITS.get((unit or "").upper(), 1))
    if size > MAX_SIZE:
        raise ValueError(f"too large: at most {MAX_SIZE} bytes")
    return size


def _size_flag(option: str, text: str) -> int:
    """A size option's value: a usage error (one line, exit 2) unless it is at least 1 byte."""
    try:
        size = parse_size(text)
    except ValueError as exc:
        raise LeakscanError(f"{option} {text!r}: {exc}") from None
    if size < 1:
        raise LeakscanError(f"{option} {text!r}: must be at least 1 byte ({_ZERO[option]})")
    return size


def _file_size_flag(text: str | None) -> int | None:
    """--max-file-size as bytes; None, no limit, when it is not given."""
    return None if text is None else _size_flag("--max-file-size", text)


def _guarded(debug: bool, work: Callable[[], int]) -> None:
    """Run ``work`` and exit with its status; every failure is one line on stderr."""
    try:
        status = work()
    except (LeakscanError, OSError) as exc:
        _say(failure(exc))
        status = EXIT_INCOMPLETE
    except KeyboardInterrupt:
        _say("interrupted")
        status = 130
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, no traceback
        if debug:
            traceback.print_exc()
        # the message of an unexpected error could quote image content: name the type only
        _say(f"internal error ({type(exc).__name__}); run with --debug for details")
        status = EXIT_INCOMPLETE
    raise typer.Exit(status)


def _write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        output.write_text(text, encoding="utf-8", errors="backslashreplace")
    except OSError as exc:
        raise LeakscanError(f"cannot write {output}: {exc.strerror}") from None


def scan_command(
    image: ImageArg,
    format: Annotated[
        list[str] | None,
        typer.Option(
            "--format",
            "-f",
            metavar="FORMAT[=FILE]",
            help="Report format: table, json, sarif or gitlab (GitLab's Secret Detection "
            "report); FORMAT=FILE writes it to FILE (repeatable: --format table --format "
            "sarif=leakscan.sarif). Default: table.",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the report (the --format without =FILE) here."),
    ] = None,
    platform: PlatformOpt = None,
    min_confidence: LevelOpt = None,
    fail_on: Annotated[
        list[str] | None,
        typer.Option(
            "--fail-on",
            metavar="WHAT",
            help="What fails the gate (exit 1): present, deleted, overwritten, file, history, "
            "config, attestation, all, none, confidence=LEVEL; comma-separated or repeated. "
            "Default: every finding shown.",
        ),
    ] = None,
    show_secrets: Annotated[
        bool,
        typer.Option("--show-secrets", help="Print secrets in clear (they are masked otherwise)."),
    ] = False,
    baseline: BaselineOpt = None,
    ignore_rule: Annotated[
        list[str] | None,
        typer.Option(
            "--ignore-rule", help="Suppress findings of this rule id or glob (repeatable)."
        ),
    ] = None,
    ignore_path: Annotated[
        list[str] | None,
        typer.Option(
            "--ignore-path", help="Suppress findings in files matching GLOB (repeatable)."
        ),
    ] = None,
    read: ReadFlags = ReadFlags(),
    store: StoreFlags = StoreFlags(),
    registry: RegistryFlags = RegistryFlags(),
    config: ConfigOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Find secrets leaked into a container image, layer by layer."""

    def work() -> int:
        # sizes first: a bad one is a usage error before stdin, the settings or the image
        read_flags = read.flags()
        from leakscan.policy import judge, policy_for
        from leakscan.report import parse_outputs, write_outputs

        # usage errors before the scan: a bad --format or --fail-on costs no scan
        outputs = parse_outputs(format or (), output)
        policy = policy_for(fail_on, config)
        try:
            refuse_early(image)  # before stdin, the settings, the store and the engines
        except InputError as exc:
            # refused in milliseconds, and reported as a scan that could not be done: a
            # JSON or SARIF report asked for is still written, the error in it
            report = ScanReport(image, (), (Problem(str(exc)),))
        else:
            flags = dataclasses.replace(
                read_flags,
                platform=platform,
                min_confidence=min_confidence,
                show_secrets=show_secrets,
                baseline=baseline,
                ignore_rule=ignore_rule,
                ignore_path=ignore_path,
                registry=registry.options(),
                cache=store.spec(),
            )
            report = _run(image, _options(config, flags))
        gate = judge(report, policy)
        write_outputs(report, outputs, gate)
        _report_problems(report)
        return gate.exit_status()

    _guarded(debug, work)


def baseline_command(
    image: ImageArg,
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="Where to write the baseline.", show_default=False),
    ],
    platform: PlatformOpt = None,
    min_confidence: LevelOpt = None,
    read: ReadFlags = ReadFlags(),
    store: StoreFlags = StoreFlags(),
    registry: RegistryFlags = RegistryFlags(),
    config: ConfigOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Write a baseline accepting every finding in IMAGE; scan later with --baseline FILE.

    Exit status 0 when written, 2 when the scan was incomplete (the baseline is still
    written, so that what was read can be reviewed)."""

    def work() -> int:
        read_flags = read.flags()
        refuse_early(image)
        flags = dataclasses.replace(
            read_flags,
            platform=platform,
            min_confidence=min_confidence,
            registry=registry.options(),
            cache=store.spec(),
        )
        options = _options(config, flags)
        report = _run(image, options)
        _write(baseline_json(report), output)
        _report_problems(report)
        return EXIT_CLEAN if report.complete else EXIT_INCOMPLETE

    _guarded(debug, work)


def _warning(message: str) -> None:
    _say(f"warning: {message}")


def _run(image: str, options: ScanOptions) -> ScanReport:
    if sys.stderr.isatty():
        with _Bar() as progress:
            return scan(image, options, progress, warn=_warning)
    return scan(image, options, warn=_warning)


def rules_command(
    detect_secrets_plugin: PluginOpt = None, config: ConfigOpt = None, debug: DebugOpt = False
) -> None:
    """List every rule of every detection engine (id, engine, description)."""

    def work() -> int:
        from leakscan.detectors import build_detectors

        plugins = load_config(config).detect_secrets_plugins + tuple(detect_secrets_plugin or ())
        try:
            engines = build_detectors(DetectorConfig(detect_secrets_plugins=plugins))
        except ValueError as exc:
            raise LeakscanError(str(exc)) from None
        for rule in sorted(engines.rules(), key=lambda r: r.rule_id):
            print(f"{rule.rule_id}\t{rule.detector}\t{rule.description}")
        return EXIT_CLEAN

    _guarded(debug, work)


def schema_command() -> None:
    """Print the JSON Schema (2020-12) that every `--format json` report follows."""
    from leakscan.report.schema import schema_text

    sys.stdout.write(schema_text())


_DURATION = re.compile(r"(\d+)\s*([smhdw])", re.IGNORECASE)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> int:
    """``30d``, ``12h``, ``90m``, ``3600s``, ``2w`` as seconds."""
    found = _DURATION.fullmatch(text.strip())
    if not found:
        raise typer.BadParameter(f"{text!r} is not a duration such as 30d, 12h or 90m")
    return int(found.group(1)) * _SECONDS[found.group(2).lower()]


def _store_spec(cache: str | None, cache_dir: Path | None) -> str:
    spec = _cache_spec(cache, cache_dir, no_cache=False)
    assert spec is not None
    return spec


# the cache commands let a StoreError through: it is a LeakscanError, one line and exit 2


AuditDbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="The audit database (default: beside the store, as leakscan audit puts it).",
    ),
]


def _on_audit_db(
    db: str | None, cache_dir: Path | None, spec: str, use: Callable[[Any], Any]
) -> tuple[str, Any] | None:
    """``use`` called with the audit database the cache commands look at (an AuditDb):
    its path and what ``use`` returned; None when there is none (they never make one).
    ``--db`` naming none, or a database that cannot be read, is one line and exit 2."""
    import os
    import sqlite3

    from leakscan.audit.db import AuditDb, AuditDbError, audit_db_path

    path = audit_db_path(db, cache_dir, spec)
    if not os.path.isfile(path):
        if db:
            raise InputError(f"--db {db}: no such audit database")
        return None
    try:
        audit_db = AuditDb(path)
        try:
            return path, use(audit_db)
        finally:
            audit_db.close()
    except (AuditDbError, sqlite3.Error) as exc:
        raise InputError(f"audit database {path}: {exc}") from None


def cache_info_command(
    cache: CacheOpt = None,
    cache_dir: CacheDirOpt = None,
    db: AuditDbOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Where the result store is, its size, its entries and how often it answered; and
    what the audit database beside it keeps."""

    def work() -> int:
        from leakscan.store import store_info

        spec = _store_spec(cache, cache_dir)
        info = store_info(spec)
        print(f"location  {info.location}")
        print(f"size      {info.size_bytes} bytes")
        for kind in sorted(set(info.entries) | set(info.hits) | set(info.misses)):
            hits, misses = info.hits.get(kind, 0), info.misses.get(kind, 0)
            rate = f"{100 * hits / (hits + misses):.0f}%" if hits + misses else "-"
            print(
                f"{kind:<8}  {info.entries.get(kind, 0)} entries, "
                f"{hits} hits, {misses} misses, hit rate {rate}"
            )
        held = _on_audit_db(db, cache_dir, spec, lambda a: a.counts())
        if held is not None:
            path, rows = held
            print(f"audit db  {path}, {Path(path).stat().st_size} bytes")
            print("          " + ", ".join(f"{n} {what}" for what, n in rows.items()))
        return EXIT_CLEAN

    _guarded(debug, work)


def cache_prune_command(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Remove entries unused this long (30d, 12h).")
    ] = "30d",
    cache: CacheOpt = None,
    cache_dir: CacheDirOpt = None,
    db: AuditDbOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Remove what no scan or audit has used for a while."""
    seconds = parse_duration(older_than)

    def work() -> int:
        from leakscan.store import prune_store

        spec = _store_spec(cache, cache_dir)
        removed = prune_store(seconds, spec)
        print(f"removed {removed} entries unused for {older_than}")
        held = _on_audit_db(db, cache_dir, spec, lambda a: a.prune(seconds))
        if held is not None:
            print(f"removed {held[1]} kept reports, layer results and tags of {held[0]}")
        return EXIT_CLEAN

    _guarded(debug, work)


def cache_clear_command(
    cache: CacheOpt = None, cache_dir: CacheDirOpt = None, debug: DebugOpt = False
) -> None:
    """Remove every entry of the result store."""

    def work() -> int:
        from leakscan.store import clear_store

        removed = clear_store(_store_spec(cache, cache_dir))
        print(f"removed {removed} entries")
        return EXIT_CLEAN

    _guarded(debug, work)


class AuditFormat(enum.StrEnum):
    table = "table"
    json = "json"
    html = "html"


def audit_command(
    target: Annotated[
        str,
        typer.Argument(
            help="A registry (host:port, https://HOST, http://HOST) or docker-daemon: (every "
            "image of the engine, untagged and intermediate ones included).",
            show_default=False,
        ),
    ],
    repo: Annotated[
        list[str] | None,
        typer.Option(
            "--repo", help="Only repositories matching GLOB (repeatable); plain names are "
            "audited without reading the catalog.", metavar="GLOB"
        ),
    ] = None,
    repos_from: Annotated[
        str | None,
        typer.Option("--repos-from", metavar="FILE", help="Repository names, one a line."),
    ] = None,
    tag: Annotated[
        str | None, typer.Option("--tag", metavar="REGEX", help="Only tags matching REGEX.")
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            "--db", metavar="PATH", help="Audit database (default: beside the result store)."
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", "-j", min=1, help="Local processes scanning layers.")
    ] = 1,
    dask: Annotated[
        str | None,
        typer.Option("--dask", metavar="ADDRESS", help="Scan layers on this Dask scheduler."),
    ] = None,
    format: Annotated[
        AuditFormat, typer.Option("--format", "-f", help="Report format.")
    ] = AuditFormat.table,
    output: ReportFileOpt = None,
    new_only: Annotated[
        bool, typer.Option("--new-only", help="Report only findings first seen in this audit.")
    ] = False,
    since: Annotated[
        str | None,
        typer.Option("--since", metavar="DATE", help="Report only findings first seen after DATE."),
    ] = None,
    min_confidence: LevelOpt = None,
    detect_secrets_plugin: PluginOpt = None,
    max_file_size: FileSizeOpt = None,
    store: StoreFlags = StoreFlags(),
    registry: RegistryFlags = RegistryFlags(),
    config: ConfigOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Audit every image of a registry: each unique layer scanned once, only new layers
    scanned again by the next audit."""

    def work() -> int:
        from leakscan.audit import AuditOptions, audit
        from leakscan.audit.cli import progress_bar, render
        from leakscan.audit.db import audit_db_path

        file_size = _file_size_flag(max_file_size)
        from leakscan.audit.target import since_time

        after = since_time(since) if since is not None else None
        flags = Flags(
            min_confidence=min_confidence,
            detect_secrets_plugin=detect_secrets_plugin,
            max_file_size=file_size,
            registry=registry.options(),
            cache=store.spec(),
        )
        options = AuditOptions(
            scan=_options(config, flags),
            repos=tuple(repo or ()),
            repos_from=repos_from,
            tag_pattern=tag,
            db=audit_db_path(db, store.cache_dir, store.spec()),
            workers=workers,
            dask=dask,
            new_only=new_only,
            since=after,
        )
        with progress_bar(sys.stderr.isatty()) as bar:
            report = audit(target, options, bar, warn=_warning)
        _write(render(report, format.value), output)
        for problem in report.errors:
            _say(f"error: {problem.message}")
        if not report.complete:
            return EXIT_INCOMPLETE
        return EXIT_FINDINGS if report.findings else EXIT_CLEAN

    _guarded(debug, work)


class DockerfileFormat(enum.StrEnum):
    table = "table"
    json = "json"


def dockerfile_command(
    path: Annotated[
        str | None,
        typer.Argument(help="A Dockerfile, or a folder holding one. Default: the current folder."),
    ] = None,
    context: Annotated[
        str | None,
        typer.Option("--context", metavar="DIR", help="The build context. Default: its folder."),
    ] = None,
    format: Annotated[
        DockerfileFormat, typer.Option("--format", "-f", help="Report format.")
    ] = DockerfileFormat.table,
    output: ReportFileOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Before a build: what the Dockerfile will leak into the image (secret build arguments
    and ENV, credential files copied from the context). Exit 0 nothing, 1 findings, 2 not
    readable."""

    def work() -> int:
        from leakscan.dockerfile import check, to_json, to_table
        from leakscan.report import table_width

        result = check(path, context)
        if format == DockerfileFormat.json:
            text = to_json(result)
        else:
            text = to_table(result, table_width(output is None and sys.stdout.isatty()) or 100)
        _write(text, output)
        return result.exit_status()

    _guarded(debug, work)


def push_command(
    image: Annotated[
        str,
        typer.Argument(
            help="An image of the local docker daemon, e.g. registry:5000/app:1.",
            show_default=False,
        ),
    ],
    format: Annotated[
        list[str] | None,
        typer.Option("--format", "-f", metavar="FORMAT[=FILE]", help="As for a scan."),
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="As for a scan.")] = None,
    fail_on: Annotated[
        list[str] | None,
        typer.Option("--fail-on", metavar="WHAT", help="What stops the push (as for a scan)."),
    ] = None,
    min_confidence: LevelOpt = None,
    baseline: BaselineOpt = None,
    workers: WorkersOpt = 0,
    store: StoreFlags = StoreFlags(),
    config: ConfigOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Scan IMAGE as the local docker daemon holds it, and push it only when the gate
    passes. Exit 0 pushed, 1 findings (not pushed), 2 incomplete scan or failed push."""

    def work() -> int:
        from leakscan.policy import judge, policy_for
        from leakscan.push import daemon_name, push_image, split_tag
        from leakscan.report import parse_outputs, write_outputs

        name = daemon_name(image)
        split_tag(name)  # a digest is refused before the scan
        outputs = parse_outputs(format or (), output)
        policy = policy_for(fail_on, config)
        flags = Flags(
            min_confidence=min_confidence,
            baseline=baseline,
            workers=workers,
            cache=store.spec(),
        )
        options = _options(config, flags)
        # the daemon's image, which is what gets pushed: never the registry's copy
        report = _run(f"docker-daemon:{name}", options)
        gate = judge(report, policy)
        write_outputs(report, outputs, gate)
        _report_problems(report)
        if gate.exit_status() != EXIT_CLEAN:
            _say(f"not pushed: {name} (the gate {gate.status})")
            return gate.exit_status()
        pushed = push_image(name)
        _say(f"pushed {pushed.reference}" + (f" ({pushed.digest})" if pushed.digest else ""))
        return EXIT_CLEAN

    _guarded(debug, work)


def serve_command(
    harbor: Annotated[
        bool, typer.Option("--harbor", help="Serve Harbor's pluggable scanner API v1.2.")
    ] = False,
    listen: Annotated[
        str, typer.Option("--listen", metavar="HOST:PORT", help="Address (port 0: any free one).")
    ] = "127.0.0.1:8080",
    auth_token_file: Annotated[
        Path | None,
        typer.Option("--auth-token-file", help="File holding the Bearer token Harbor sends."),
    ] = None,
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", help="Serve HTTPS.")] = None,
    tls_key: Annotated[
        Path | None, typer.Option("--tls-key", help="The key of --tls-cert.")
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", "-j", min=1, help="Scans side by side (one process each).")
    ] = 2,
    queue_size: Annotated[
        int, typer.Option("--queue-size", min=1, help="Scans waiting at most (then 429).")
    ] = 100,
    scan_timeout: Annotated[
        str, typer.Option("--scan-timeout", help="A scan longer than this is stopped (fails).")
    ] = "10m",
    result_ttl: Annotated[
        str, typer.Option("--result-ttl", help="How long reports are kept after a scan.")
    ] = "1h",
    reuse_for: Annotated[
        str,
        typer.Option("--reuse-for", help="A digest scanned this recently is not scanned again."),
    ] = "5m",
    severity: Annotated[
        list[str] | None,
        typer.Option(
            "--severity",
            metavar="PLACE.CONFIDENCE=SEVERITY",
            help="Change the severity map (repeatable); see docs/harbor.md.",
        ),
    ] = None,
    address_file: Annotated[
        Path | None, typer.Option("--address-file", help="Write the bound HOST:PORT here.")
    ] = None,
    grace: Annotated[
        str, typer.Option("--grace", help="Time running scans get to end on SIGTERM.")
    ] = "30s",
    min_confidence: LevelOpt = None,
    store: StoreFlags = StoreFlags(),
    ca_file: CaFileOpt = None,
    tls_verify: TlsVerifyOpt = True,
    config: ConfigOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Serve a scanner adapter: `leakscan serve --harbor` lets Harbor scan every image it
    holds for leaked secrets (docs/harbor.md). Logs JSON lines on stderr; stops on SIGTERM."""
    # a wrong duration is a usage error, as for the other commands
    timeout, ttl, reuse, grace_s = (
        float(parse_duration(x)) for x in (scan_timeout, result_ttl, reuse_for, grace)
    )

    def work() -> int:
        # imported here: the adapter's modules are no part of a scan's start-up
        from leakscan.harbor.jobs import Settings
        from leakscan.harbor.report import SeverityMap
        from leakscan.harbor.server import ServerConfig, serve

        if not harbor:
            raise LeakscanError("leakscan serve: give --harbor (the only API served so far)")
        host, colon, port = listen.rpartition(":")
        if not colon or not port.isdigit() or int(port) > 65535:
            raise LeakscanError(f"--listen {listen!r}: expected HOST:PORT")
        if (tls_cert is None) != (tls_key is None):
            raise LeakscanError("--tls-cert and --tls-key go together")
        token = None
        if auth_token_file is not None:
            token = auth_token_file.read_text().strip()
            if not token:
                raise LeakscanError(f"--auth-token-file {auth_token_file}: the file is empty")
        try:
            severities = SeverityMap.parse(severity or ())
        except ValueError as exc:
            raise LeakscanError(str(exc)) from None
        settings = Settings(
            workers=workers,
            queue_size=queue_size,
            timeout=timeout,
            result_ttl=ttl,
            reuse_for=reuse,
        )
        flags = Flags(min_confidence=min_confidence, cache=store.spec())
        server = ServerConfig(
            host=host.strip("[]") or "0.0.0.0",
            port=int(port),
            token=token,
            tls_cert=str(tls_cert) if tls_cert else None,
            tls_key=str(tls_key) if tls_key else None,
            settings=settings,
            severities=severities,
            options=_options(config, flags),
            ca_file=ca_file,
            tls_verify=tls_verify,
            grace=grace_s,
            address_file=str(address_file) if address_file else None,
        )
        return serve(server)

    _guarded(debug, work)


def _cache_app() -> typer.Typer:
    app = typer.Typer(
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        no_args_is_help=True,
        help="The result store: what was scanned, kept so that it is not scanned again.",
    )
    settings = {"help_option_names": ["-h", "--help"]}
    app.command("info", context_settings=settings)(cache_info_command)
    app.command("prune", context_settings=settings)(cache_prune_command)
    app.command("clear", context_settings=settings)(cache_clear_command)
    return app


def _app(command: Callable[..., None], epilog: str | None = None) -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
    # grouped here, not where the command is defined: only the command run pays for it
    grouped = _grouped(command)
    app.command(context_settings={"help_option_names": ["-h", "--help"]}, epilog=epilog)(grouped)
    return app


SUBCOMMANDS: dict[str, Callable[..., None]] = {
    "rules": rules_command,
    "baseline": baseline_command,
    "schema": schema_command,
    "audit": audit_command,
    "dockerfile": dockerfile_command,
    "push": push_command,
    "serve": serve_command,
}


def main() -> None:
    """Console entry point: ``leakscan IMAGE ...``, ``leakscan rules``, ``leakscan baseline``."""
    sys.argv[1:] = _tls_verify_spelling(sys.argv[1:])
    if len(sys.argv) > 1 and sys.argv[1] == "cache":
        sys.argv.pop(1)
        _cache_app()(prog_name="leakscan cache")
        return
    if len(sys.argv) > 1 and sys.argv[1] in SUBCOMMANDS:
        name = sys.argv.pop(1)
        _app(SUBCOMMANDS[name])(prog_name=f"leakscan {name}")
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--version":
        from leakscan.detectors.kingfisher import catalog_info

        # what the last compile recorded: compiling for --version would cost seconds
        info = catalog_info()
        rules = str(info) if info else "kingfisher catalog not compiled yet (leakscan warm-up)"
        print(f"leakscan {__version__}\nrules: {rules}")
        return
    epilog = (
        "Exit status: 0 nothing found (or nothing --fail-on fails on), 1 findings that fail "
        "the gate, 2 the scan could not be completed. "
        "Other commands: leakscan rules, leakscan baseline IMAGE -o FILE, leakscan schema, "
        "leakscan cache info|prune|clear, leakscan warm-up."
    )
    _app(scan_command, epilog)(prog_name="leakscan")
