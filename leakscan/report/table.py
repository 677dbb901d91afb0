"""The human report: per image, each secret once, with every place it leaked to, what to do
about it, and the gate's verdict.

Written for a CI log as much as a terminal: lines are wrapped by words to the width (80
columns reads well), and nothing that names something (a path, a rule id, a digest, a
status such as ``deleted in layer 3``) is ever broken across lines.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.text import Text

from leakscan import model as m
from leakscan import provenance
from leakscan.policy import Gate

DEFAULT_WIDTH = 120
MIN_WIDTH = 40
# an instruction quoted in the table takes at most this many lines
INSTRUCTION_LINES = 2
_STATUS_STYLE = {"present": "bold red", "deleted": "yellow", "overwritten": "yellow"}


@dataclass(frozen=True)
class _Unit:
    """A piece of a line that is never broken: a word, an id, a status phrase."""

    text: str
    style: str = ""
    # what stands before it on a line: fields are set apart by two spaces, words by one
    sep: str = "  "


# words that belong with the next one: an option and its value, RUN and its first flag
_JOINED = ("RUN", "--fail-on", "docker", "--secret", "-e")


def _git_line(git: m.GitPlace) -> str:
    """A blob of a git history: the commit that brought it, when, and its subject."""
    if git.commit is None:
        return f"git object {git.object_id} (no commit names it)"
    date = (git.author_date or "")[:10]
    what = "message of commit" if git.part == "message" else "commit"
    return f"{what} {git.commit[:7]} {date} {_clip(git.subject or '', 60)!r}".replace("  ", " ")


def _words(text: str, style: str = "") -> list[_Unit]:
    """Free text as units of words (a word and the option it introduces kept together)."""
    units: list[_Unit] = []
    words = text.split()
    i = 0
    while i < len(words):
        word = words[i]
        if word in _JOINED and i + 1 < len(words) and (word != "RUN" or words[i + 1][:2] == "--"):
            word, i = f"{word} {words[i + 1]}", i + 1
        units.append(_Unit(word, style, " "))
        i += 1
    return units


def _wrap(units: Sequence[_Unit], width: int, indent: int, hang: int = 2) -> list[Text]:
    """``units`` on lines of at most ``width`` columns (a unit longer than a line gets a
    line of its own, unbroken); continuation lines indented ``hang`` more."""
    lines: list[Text] = []
    line = Text(" " * indent)
    used, empty = indent, True
    for unit in units:
        size = len(unit.text)
        if not empty and used + len(unit.sep) + size > width:
            lines.append(line)
            line = Text(" " * (indent + hang))
            used, empty = indent + hang, True
        if not empty:
            line.append(unit.sep)
            used += len(unit.sep)
        line.append(unit.text, style=unit.style or None)
        used += size
        empty = False
    if not empty:
        lines.append(line)
    return lines


def _clip(text: str | None, room: int) -> str:
    """An instruction in one spelling of whitespace, cut to ``room`` characters."""
    if not text:
        return "-"
    text = " ".join(text.split())
    if len(text) <= room:
        return text
    # cut between words (a word longer than the room is kept whole: it is an id)
    cut = text[: room + 1].rsplit(" ", 1)[0] if " " in text[: room + 1] else text.split(" ")[0]
    return cut + " …"


def _short(digest: str | None) -> str:
    if not digest:
        return "-"
    return digest.split(":", 1)[-1][:12]


def _secret(f: m.Finding) -> str:
    return f.secret if f.secret is not None else f.redacted


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _rank(f: m.Finding) -> tuple[int, int]:
    """Places in reading order: files by layer, then history, then config."""
    loc = f.location
    if isinstance(loc, m.FileLocation):
        return (0, loc.layer_index)
    if isinstance(loc, m.HistoryLocation):
        return (1, loc.history_index)
    if isinstance(loc, m.AttestationLocation):
        return (3, 0)
    return (2, 0)


def groups(findings: Iterable[m.Finding]) -> list[list[m.Finding]]:
    """Findings of the same secret (``secret_sha256``) together, each group and its places
    in reading order."""
    by_secret: dict[str, list[m.Finding]] = {}
    for f in sorted(findings, key=_rank):
        by_secret.setdefault(f.secret_sha256, []).append(f)
    return list(by_secret.values())


def _fix(group: Sequence[m.Finding]) -> str:
    """One remediation for a group: the history's first (a build argument or ENV is where
    the secret came from, the file it wrote follows), else a file's, else the config's."""
    order = {"history": 0, "file": 1, "config": 2, "attestation": 3}
    return min(group, key=lambda f: order[f.location.kind]).remediation


class _Writer:
    """Lines of one report at one width."""

    def __init__(self, width: int, gate: Gate | None) -> None:
        self.width = width
        self.lines: list[Text] = []
        let_through = gate.passing if gate is not None and gate.failing else ()
        self._let_through = {id(f) for f in let_through}

    def add(
        self, units: Sequence[_Unit], indent: int, hang: int = 2, most: int | None = None
    ) -> None:
        """``units`` wrapped; with ``most``, cut to that many lines (ending in …)."""
        lines = _wrap(units, self.width, indent, hang)
        if most is not None:
            # whole units are dropped, never a part of one: an id is shown whole or not at all
            keep = len(units)
            while len(lines) > most and keep > 1:
                keep -= 1
                lines = _wrap([*units[:keep], _Unit("…", sep=" ")], self.width, indent, hang)
        self.lines.extend(lines)

    def instruction(self, text: str | None) -> list[_Unit]:
        return _words(_clip(text, self.width * INSTRUCTION_LINES))

    def place(self, f: m.Finding, multi_rule: bool) -> None:
        loc = f.location
        units: list[_Unit]
        if isinstance(loc, m.FileLocation):
            where = loc.path + (f":{loc.line}" if loc.line else "")
            status: str = loc.status
            if loc.removed_in_layer is not None:
                status += f" in layer {loc.removed_in_layer}"
            units = [
                _Unit(where, "bold"),
                _Unit(f"layer {loc.layer_index}"),
                _Unit(status, _STATUS_STYLE[loc.status]),
            ]
        elif isinstance(loc, m.HistoryLocation):
            layer = f" (layer {loc.layer_index})" if loc.layer_index is not None else ""
            units = [_Unit(f"history {loc.history_index}{layer}", "bold")]
        elif isinstance(loc, m.AttestationLocation):
            units = _words(provenance.where(loc))
            units[0] = _Unit(units[0].text, "bold")
        else:
            units = [_Unit(f"config {loc.field}" + (f" {loc.key}" if loc.key else ""), "bold")]
        if multi_rule:
            units += [_Unit(f.rule_id, "dim"), _Unit(f.confidence, "dim")]
        if id(f) in self._let_through:
            units.append(_Unit("(let through by the gate)", "dim"))
        self.add(units, 4)
        if isinstance(loc, m.HistoryLocation):
            self.add(self.instruction(loc.created_by), 6, most=INSTRUCTION_LINES)
        if isinstance(loc, m.FileLocation) and loc.git is not None:
            self.add(_words(_git_line(loc.git)), 6, most=INSTRUCTION_LINES)

    def group(self, group: Sequence[m.Finding]) -> None:
        first = group[0]
        rules = {(f.rule_id, f.confidence) for f in group}
        head = [_Unit(_secret(first), "bold red")]
        if len(rules) == 1:
            head += [_Unit(first.rule_id), _Unit(first.confidence)]
        head.append(_Unit(f"in {_count(len(group), 'place')}"))
        self.add(head, 2)
        for f in group:
            self.place(f, multi_rule=len(rules) > 1)
        self.add([_Unit("fix:", "bold green"), *_words(_fix(group))], 4, hang=5)

    def image(self, image: m.ImageReport) -> None:
        platform = [_Unit(image.platform, "bold")] if image.platform else []
        self.add([_Unit(image.reference, "bold"), *platform], 0)
        found = groups(image.findings)
        self.add(
            _words(
                f"source {image.source}, config {_short(image.config_digest)}, "
                f"{_count(len(image.layers), 'layer')}, "
                + (
                    f"{_count(len(found), 'secret')} in {_count(len(image.findings), 'place')}"
                    if found
                    else "0 findings"
                )
            ),
            2,
        )
        files = [f.location for f in image.findings if isinstance(f.location, m.FileLocation)]
        leaked = sorted({loc.layer_index for loc in files})
        for layer in (image.layers[i] for i in leaked if i < len(image.layers)):
            units = [_Unit(f"layer {layer.index}", "bold"), _Unit(_short(layer.diff_id), "dim")]
            self.add(units + self.instruction(layer.created_by), 2, 4, INSTRUCTION_LINES)
        for group in found:
            self.lines.append(Text())
            self.group(group)
        for p in image.errors:
            self.add([_Unit("error:", "red"), *_words(p.message, "red")], 2)
        for p in image.skipped:
            where = [_Unit(p.path)] if p.path else []
            at = [_Unit(f"(layer {p.layer_index}):")] if p.layer_index is not None else []
            self.add([_Unit("skipped:"), *where, *at, *_words(p.message)], 2)
        self.lines.append(Text())


def _summary(report: m.ScanReport) -> str:
    findings = report.findings
    kinds: dict[str, int] = {}
    for f in findings:
        loc = f.location
        key = loc.status if isinstance(loc, m.FileLocation) else loc.kind
        kinds[key] = kinds.get(key, 0) + 1
    parts = [f"{n} {k}" for k, n in kinds.items()]
    detail = f" ({', '.join(parts)})" if parts else ""
    images = len(report.images)
    line = f"{_count(len(findings), 'finding')}{detail} in {_count(images, 'image')}"
    if findings:
        secrets = len({f.secret_sha256 for f in findings})
        line += f": {_count(secrets, 'secret')} in {_count(len(findings), 'place')}"
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


def render(
    report: m.ScanReport,
    *,
    color: bool = False,
    width: int | None = None,
    gate: Gate | None = None,
) -> str:
    """The table report as text (with ANSI colour when ``color``), ``width`` columns wide
    (default 120; ``COLUMNS`` is read by the command line)."""
    cols = max(width or DEFAULT_WIDTH, MIN_WIDTH)
    out = _Writer(cols, gate)
    for image in report.images:
        out.image(image)
    for p in report.errors:
        out.add([_Unit("error:", "red"), *_words(p.message, "red")], 0)
    out.add(_words(_summary(report), "bold"), 0)
    if gate is not None:
        style = "bold green" if gate.status == "passed" else "bold red"
        out.add([_Unit("gate:", style), *_words(gate.why(), style)], 0)
    buf = io.StringIO()
    console = Console(
        file=buf,
        force_terminal=color,
        no_color=not color,
        width=cols,
        highlight=False,
        soft_wrap=True,
    )
    for line in out.lines:
        console.print(line)
    return buf.getvalue()
