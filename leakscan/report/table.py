"""The human report: per image, per layer, what leaked and whether it is still there."""

from __future__ import annotations

import io
from collections import Counter

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from leakscan import model as m

_STATUS_STYLE = {"present": "bold red", "deleted": "yellow", "overwritten": "yellow"}
_CREATED_BY_WIDTH = 90


def _short(digest: str | None) -> str:
    if not digest:
        return "-"
    return digest.split(":", 1)[-1][:12]


def _clip(text: str | None, width: int = _CREATED_BY_WIDTH) -> str:
    if not text:
        return "-"
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _secret(f: m.Finding) -> str:
    return f.secret if f.secret is not None else f.redacted


def _layer_tables(image: m.ImageReport) -> list[Text | Table]:
    """A heading per layer that leaked (index, diff_id, instruction), then its findings."""
    by_layer: dict[int, list[m.Finding]] = {}
    for f in image.findings:
        if isinstance(f.location, m.FileLocation):
            by_layer.setdefault(f.location.layer_index, []).append(f)
    out: list[Text | Table] = []
    for layer in image.layers:
        found = by_layer.get(layer.index)
        if not found:
            continue
        heading = Text(f"  layer {layer.index}  ", style="bold")
        heading.append(_short(layer.diff_id), style="dim")
        heading.append(f"  {_clip(layer.created_by)}")
        out.append(heading)
        table = Table(box=box.SIMPLE, padding=(0, 1), pad_edge=True, show_edge=False)
        for col in ("path:line", "rule", "secret", "status", "confidence"):
            table.add_column(col, overflow="fold")
        for f in found:
            loc = f.location
            assert isinstance(loc, m.FileLocation)
            status: str = loc.status
            if loc.removed_in_layer is not None:
                status += f" in layer {loc.removed_in_layer}"
            place = loc.path + (f":{loc.line}" if loc.line else "")
            table.add_row(
                place,
                f.rule_id,
                _secret(f),
                Text(status, style=_STATUS_STYLE[loc.status]),
                f.confidence,
            )
        out.append(table)
    return out


def _meta_table(image: m.ImageReport) -> Table | None:
    found = [f for f in image.findings if not isinstance(f.location, m.FileLocation)]
    if not found:
        return None
    table = Table(
        title="  history and config", title_justify="left", box=box.SIMPLE, show_edge=False
    )
    for col in ("where", "rule", "secret", "confidence"):
        table.add_column(col, overflow="fold")
    for f in found:
        loc = f.location
        if isinstance(loc, m.HistoryLocation):
            layer = f" (layer {loc.layer_index})" if loc.layer_index is not None else ""
            where = f"history {loc.history_index}{layer}: {_clip(loc.created_by)}"
        else:
            assert isinstance(loc, m.ConfigLocation)
            where = f"config {loc.field}" + (f" {loc.key}" if loc.key else "")
        table.add_row(where, f.rule_id, _secret(f), f.confidence)
    return table


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _summary(report: m.ScanReport) -> str:
    findings = report.findings
    kinds: Counter[str] = Counter()
    for f in findings:
        loc = f.location
        kinds[loc.status if isinstance(loc, m.FileLocation) else loc.kind] += 1
    parts = [f"{n} {k}" for k, n in kinds.items()]
    detail = f" ({', '.join(parts)})" if parts else ""
    images = len(report.images)
    line = f"{_count(len(findings), 'finding')}{detail} in {_count(images, 'image')}"
    below = sum(i.below_threshold for i in report.images)
    if below:
        line += f"; {below} below the confidence threshold not shown"
    suppressed = sum(n for i in report.images for _, n in i.suppressed)
    if suppressed:
        line += f"; {suppressed} suppressed (baseline or ignore rules)"
    errors = len(report.errors) + sum(len(i.errors) for i in report.images)
    if errors:
        line += f"; {_count(errors, 'error')}: the scan is INCOMPLETE"
    return line


def render(report: m.ScanReport, *, color: bool = False, width: int | None = None) -> str:
    """The table report as text (with ANSI colour when ``color``)."""
    buf = io.StringIO()
    console = Console(
        file=buf,
        force_terminal=color,
        no_color=not color,
        width=width or 120,
        highlight=False,
        soft_wrap=False,
    )
    for image in report.images:
        platform = f"  {image.platform}" if image.platform else ""
        console.print(Text(f"{image.reference}{platform}", style="bold"))
        console.print(
            f"  source {image.source}, config {_short(image.config_digest)}, "
            f"{len(image.layers)} layers, {_count(len(image.findings), 'finding')}"
        )
        for part in _layer_tables(image):
            console.print(part)
        meta = _meta_table(image)
        if meta is not None:
            console.print(meta)
        for p in image.errors:
            console.print(Text(f"  error: {p.message}", style="red"))
        for p in image.skipped:
            where = f" {p.path}" if p.path else ""
            layer = f" (layer {p.layer_index})" if p.layer_index is not None else ""
            console.print(f"  skipped{where}{layer}: {p.message}")
        console.print()
    for p in report.errors:
        console.print(Text(f"error: {p.message}", style="red"))
    console.print(Text(_summary(report), style="bold"))
    return buf.getvalue()
