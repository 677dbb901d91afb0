"""The command line: flags -> options -> library call -> renderer -> exit status.

Exit status: 0 the scan completed and found nothing; 1 findings; 2 the scan could not be
completed (errors win over findings).
"""

from __future__ import annotations

import enum
import shutil
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer

from leakscan import __version__
from leakscan.model import ScanReport
from leakscan.scan import Progress, ProgressCallback, ScanOptions, scan

EXIT_CLEAN, EXIT_FINDINGS, EXIT_INCOMPLETE = 0, 1, 2


class Format(str, enum.Enum):
    table = "table"
    json = "json"
    sarif = "sarif"


class Level(str, enum.Enum):
    high = "high"
    medium = "medium"
    low = "low"


def _say(message: str) -> None:
    """One line on stderr."""
    print(f"leakscan: {' '.join(message.split())}", file=sys.stderr)


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
        )
        self._task = self._progress.add_task("loading detection rules", total=None)

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


def scan_command(
    image: Annotated[
        str,
        typer.Argument(
            help="Image: a name, or docker-archive:PATH, "
            "oci:DIR[:TAG], oci-archive:PATH, a tar or a directory.",
            show_default=False,
        ),
    ],
    format: Annotated[Format, typer.Option("--format", "-f", help="Report format.")] = Format.table,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the report to FILE.")
    ] = None,
    platform: Annotated[
        list[str] | None,
        typer.Option(
            "--platform",
            help="Only this platform, os/arch[/variant] (repeatable). Default: every platform.",
        ),
    ] = None,
    min_confidence: Annotated[
        Level, typer.Option("--min-confidence", help="Report findings of at least this confidence.")
    ] = Level.medium,
    show_secrets: Annotated[
        bool,
        typer.Option("--show-secrets", help="Print secrets in clear (they are masked otherwise)."),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show a traceback on internal errors.")
    ] = False,
) -> None:
    """Find secrets leaked into a container image, layer by layer."""
    options = ScanOptions(
        platforms=tuple(platform or ()),
        min_confidence=min_confidence.value,
        show_secrets=show_secrets,
    )
    try:
        report = _run(image, options)
        from leakscan.report import renderer

        to_terminal = output is None and sys.stdout.isatty()
        width = shutil.get_terminal_size().columns if to_terminal else None
        text = renderer(format.value)(report, color=to_terminal, width=width)
        if output is None:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            output.write_text(text, encoding="utf-8", errors="backslashreplace")
    except OSError as exc:
        _say(f"error: cannot write the report to {exc.filename or output}: {exc.strerror}")
        raise typer.Exit(EXIT_INCOMPLETE) from None
    except KeyboardInterrupt:
        _say("interrupted")
        raise typer.Exit(130) from None
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, no traceback
        if debug:
            traceback.print_exc()
        # the message of an unexpected error could quote image content: name the type only
        _say(f"internal error ({type(exc).__name__}); run with --debug for details")
        raise typer.Exit(EXIT_INCOMPLETE) from None
    for problem in list(report.errors) + [p for i in report.images for p in i.errors]:
        _say(f"error: {problem.message}")
    raise typer.Exit(exit_status(report))


def _run(image: str, options: ScanOptions) -> ScanReport:
    if sys.stderr.isatty():
        with _Bar() as progress:
            return scan(image, options, progress)
    return scan(image, options)


def rules_command() -> None:
    """List every rule of every detection engine."""
    from leakscan.detectors import default_detectors

    for rule in sorted(default_detectors().rules(), key=lambda r: r.rule_id):
        print(f"{rule.rule_id}\t{rule.detector}\t{rule.description}")


def _version(value: bool) -> None:
    if value:
        print(f"leakscan {__version__}")
        raise typer.Exit(0)


def main() -> None:
    """Console entry point: ``leakscan IMAGE ...`` or ``leakscan rules``."""
    if len(sys.argv) > 1 and sys.argv[1] == "rules":
        sys.argv.pop(1)
        typer.run(rules_command)
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--version":
        _version(True)
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
    app.command(
        context_settings={"help_option_names": ["-h", "--help"]},
        epilog="Exit status: 0 nothing found, 1 findings, 2 the scan could not be completed. "
        "Other commands: leakscan rules.",
    )(scan_command)
    app(prog_name="leakscan")
