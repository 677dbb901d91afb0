"""Renderers: one module per output format, each turning a ScanReport into text; and the
outputs of one scan (``--format table --format sarif=leakscan.sarif``), written in one go."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from leakscan.errors import LeakscanError
from leakscan.model import ScanReport

if TYPE_CHECKING:
    from leakscan.policy import Gate

FORMATS = ("table", "json", "sarif", "gitlab")


class Renderer(Protocol):
    """Turns a report into text; ``color`` and ``width`` matter to the table only, ``gate``
    (the verdict of ``--fail-on``) to the table and JSON summaries."""

    def __call__(
        self,
        report: ScanReport,
        *,
        color: bool = ...,
        width: int | None = ...,
        gate: Gate | None = ...,
    ) -> str: ...


def renderer(name: str) -> Renderer:
    """The renderer for a ``--format`` value."""
    if name == "json":
        from leakscan.report.json import render
    elif name == "sarif":
        from leakscan.report.sarif import render
    elif name == "table":
        from leakscan.report.table import render
    elif name == "gitlab":
        from leakscan.report.gitlab import render
    else:
        raise ValueError(f"unknown format {name!r}")
    return render


@dataclass(frozen=True)
class Output:
    """One report to write: its format, and its file (None: standard output)."""

    format: str
    path: Path | None


def parse_outputs(formats: Sequence[str], output: Path | None = None) -> tuple[Output, ...]:
    """``--format`` values (``FORMAT`` or ``FORMAT=FILE``, repeatable) and ``--output``
    (the file of the one format given without one). Standard output takes one report."""
    outputs: list[Output] = []
    for value in formats or ("table",):
        name, sep, file = value.partition("=")
        name = name.strip().lower()
        if name not in FORMATS:
            raise LeakscanError(f"--format {value!r}: one of {', '.join(FORMATS)}, or FORMAT=FILE")
        if sep and not file:
            raise LeakscanError(f"--format {value!r}: no file after '='")
        outputs.append(Output(name, Path(file) if sep else None))
    bare = [o for o in outputs if o.path is None]
    if output is not None:
        if len(bare) != 1:
            raise LeakscanError(
                "--output FILE names the file of the one --format given without =FILE"
            )
        outputs = [Output(o.format, output) if o.path is None else o for o in outputs]
    elif len(bare) > 1:
        raise LeakscanError(
            "only one report can go to standard output: give the others a file "
            "(--format sarif=leakscan.sarif)"
        )
    paths = [o.path.resolve() for o in outputs if o.path is not None]
    if len(paths) != len(set(paths)):
        raise LeakscanError("two reports would be written to the same file")
    return tuple(outputs)


def table_width(to_terminal: bool) -> int | None:
    """The table's width: ``COLUMNS`` when set (a terminal or not: CI logs set it), else the
    terminal's, else None (the table's default)."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    return shutil.get_terminal_size().columns if to_terminal else None


def write_outputs(
    report: ScanReport, outputs: Sequence[Output], gate: Gate | None = None
) -> None:
    """Render and write every output of one scan."""
    for out in outputs:
        to_terminal = out.path is None and sys.stdout.isatty()
        text = renderer(out.format)(
            report, color=to_terminal, width=table_width(to_terminal), gate=gate
        )
        if out.path is None:
            sys.stdout.write(text)
            sys.stdout.flush()
            continue
        try:
            out.path.write_text(text, encoding="utf-8", errors="backslashreplace")
        except OSError as exc:
            raise LeakscanError(f"cannot write {out.path}: {exc.strerror}") from None
