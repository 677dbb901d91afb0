"""Renderers: one module per output format, each turning a ScanReport into text."""

from __future__ import annotations

from typing import Protocol

from leakscan.model import ScanReport


class Renderer(Protocol):
    """Turns a report into text; ``color`` and ``width`` matter to the table only."""

    def __call__(
        self, report: ScanReport, *, color: bool = ..., width: int | None = ...
    ) -> str: ...


def renderer(name: str) -> Renderer:
    """The renderer for a ``--format`` value."""
    if name == "json":
        from leakscan.report.json import render
    elif name == "sarif":
        from leakscan.report.sarif import render
    elif name == "table":
        from leakscan.report.table import render
    else:
        raise ValueError(f"unknown format {name!r}")
    return render
