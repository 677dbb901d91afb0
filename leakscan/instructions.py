"""Dockerfile instructions as image histories record them, read back into one spelling.

Builders write the same instruction differently: the classic docker builder and buildah
``/bin/sh -c #(nop)  ENV A=b`` for a metadata instruction and ``|1 NPM_TOKEN=x /bin/sh -c
npm ci`` for a ``RUN`` with a build argument, BuildKit ``ENV A=b`` and ``RUN |1 NPM_TOKEN=x
/bin/sh -c npm ci # buildkit``. :func:`parse` reads any of them into an
:class:`Instruction`; :func:`normalised` gives the one spelling a finding's identity is keyed
by, so that a rebuild with another builder, or with other instructions around it, keeps it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from leakscan import model as m

_BUILDKIT_SUFFIX = re.compile(r"\s*#\s*buildkit\s*$")
_NOP = re.compile(r"^/bin/sh -c #\(nop\)\s*")
_SHELL = re.compile(r"^/bin/sh -c\s+")
_ARG_COUNT = re.compile(r"^\|(\d+)\s+")
_ARG = re.compile(r"([A-Za-z_][A-Za-z0-9_.-]*)=(\S*)\s*")
# the classic builder names what COPY/ADD took by the hash of its content: another byte in
# any copied file would change the instruction
_CONTENT_HASH = re.compile(r"\b(file|dir|multi):[0-9a-f]{64}\b")
_KEYWORD = re.compile(r"^([A-Z]+)\b\s*(.*)$", re.S)
_KNOWN = frozenset(
    ("RUN", "ENV", "LABEL", "ARG", "COPY", "ADD", "CMD", "ENTRYPOINT", "WORKDIR", "USER")
    + ("EXPOSE", "VOLUME", "SHELL", "ONBUILD", "HEALTHCHECK", "STOPSIGNAL", "MAINTAINER")
)
SECRET_MARK = "<secret>"


@dataclass(frozen=True)
class Instruction:
    """One history entry's instruction: its keyword (``RUN``, ``ENV``, ``COPY``...; empty
    when the entry names none), the rest of it in one spelling, and the build arguments a
    ``RUN`` was given (``|N A=x B=y``), in order."""

    keyword: str
    body: str
    build_args: tuple[tuple[str, str], ...] = ()

    @property
    def text(self) -> str:
        """The instruction as a Dockerfile would spell it, build arguments left out."""
        return f"{self.keyword} {self.body}".strip()


def parse(created_by: str | None) -> Instruction:
    """Read a history entry's ``created_by`` in any builder's spelling."""
    text = " ".join((created_by or "").split())
    text = _BUILDKIT_SUFFIX.sub("", text)
    run = False
    if text.startswith("RUN "):
        run, text = True, text[4:]
    args: list[tuple[str, str]] = []
    count = _ARG_COUNT.match(text)
    if count:
        run, text = True, text[count.end() :]
        for _ in range(int(count.group(1))):
            arg = _ARG.match(text)
            if arg is None:
                break
            args.append((arg.group(1), arg.group(2)))
            text = text[arg.end() :]
    nop = _NOP.match(text)
    if nop and not run:
        text = text[nop.end() :]
    else:
        shell = _SHELL.match(text)
        if shell:
            run, text = True, text[shell.end() :]
    if run:
        return Instruction("RUN", text, tuple(args))
    word = _KEYWORD.match(text)
    if word and word.group(1) in _KNOWN:
        body = _CONTENT_HASH.sub(r"\1:", word.group(2))
        return Instruction(word.group(1), body.strip(), tuple(args))
    return Instruction("", text, tuple(args))


def normalised(created_by: str | None, secret: str | None = None) -> str:
    """The instruction's identity: one spelling whatever the builder, whitespace collapsed,
    content hashes of COPY/ADD left out, and build arguments left out but the one holding
    ``secret`` (by name: docker records every build argument in scope, so an ``ARG`` added
    elsewhere in the Dockerfile must not change it). ``secret`` is masked wherever it
    stands."""
    inst = parse(created_by)
    text = inst.text
    if secret:
        held = [name for name, value in inst.build_args if secret in value]
        if held:
            text = " ".join(f"{name}={SECRET_MARK}" for name in held) + " " + text
        text = text.replace(secret, SECRET_MARK)
    return text


class HistoryKeys:
    """Each history entry's occurrence among entries of the same instruction: the second
    identical ``RUN`` is told from the first without its index, which moves whenever an
    instruction is added or removed before it."""

    def __init__(self, history: Sequence[m.HistoryInfo]) -> None:
        seen: Counter[str] = Counter()
        self._occurrence: dict[int, int] = {}
        self._layer_instruction: dict[int, str | None] = {}
        for entry in history:
            key = normalised(entry.created_by)
            self._occurrence[entry.index] = seen[key]
            seen[key] += 1
            if entry.layer_index is not None:
                self._layer_instruction[entry.layer_index] = entry.created_by

    def occurrence(self, history_index: int) -> int | None:
        """How many entries before this one have its instruction (None: not in the history)."""
        return self._occurrence.get(history_index)

    def layer_instruction(self, layer_index: int | None) -> str | None:
        """The created_by of the entry that made a layer, when the history pairs them."""
        return None if layer_index is None else self._layer_instruction.get(layer_index)


# one history's keys, built once per image, not once per finding: a hostile history of many
# entries, each with a secret, would otherwise cost the square of its length
_last: list[tuple[Sequence[m.HistoryInfo], HistoryKeys]] = []


def history_keys(history: Sequence[m.HistoryInfo]) -> HistoryKeys:
    """The keys of ``history`` (the last history asked for is kept)."""
    cached = _last[:1]
    if cached and cached[0][0] is history:
        return cached[0][1]
    keys = HistoryKeys(history)
    _last[:] = [(history, keys)]
    return keys
