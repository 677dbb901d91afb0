"""Every string of the attestations that travel with an image (SLSA provenance, SBOMs,
signature payloads, any JSON predicate), split so that each value is judged on its own and
reported at its JSON path, as history and config strings are. BuildKit's ``mode=max``
provenance embeds the Dockerfile (base64): it is decoded and read line by line, each
instruction judged as a history entry's would be."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from leakscan.metadata import MAX_STRINGS, Text, split_created_by
from leakscan.model import Attestation, AttestationLocation, Problem, SourceImage

# deeper values are not read: BuildKit's statements are a dozen levels deep at most
MAX_DEPTH = 64
# build arguments are recorded under this prefix (SLSA v0.2 and v1 alike)
BUILD_ARG = "build-arg:"
# embedded files decoded at most (a Dockerfile is a few KiB)
MAX_EMBEDDED_BYTES = 4 << 20


@dataclass
class AttestationTexts:
    """The strings to scan of an image's attestations, and what could not be read."""

    texts: list[Text] = field(default_factory=list)
    errors: list[Problem] = field(default_factory=list)
    skipped: list[Problem] = field(default_factory=list)


def attestation_texts(image: SourceImage) -> AttestationTexts:
    """Every string of every attestation of ``image``, and the problems of those that
    could not be read (an error) or were deliberately not read (a skip)."""
    out = AttestationTexts()
    for one in image.attestations:
        if one.problem is not None:
            (out.skipped if one.skipped else out.errors).append(one.problem)
            continue
        walk = _Walk(one)
        out.texts.extend(walk.texts())
        if walk.too_deep:
            out.skipped.append(
                Problem(
                    f"attestation {one.digest}: values nested deeper than {MAX_DEPTH} levels "
                    "not scanned"
                )
            )
        if walk.count >= MAX_STRINGS:
            out.skipped.append(
                Problem(f"attestation {one.digest}: strings beyond {MAX_STRINGS} not scanned")
            )
    return out


def _name(key: str) -> str:
    """The name a value is judged under: a build argument's own name."""
    return key.removeprefix(BUILD_ARG)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _Walk:
    """One attestation's strings with their JSON paths, bounded in depth and count."""

    def __init__(self, attestation: Attestation) -> None:
        self.one = attestation
        self.count = 0
        self.too_deep = False

    def at(self, path: str, line: int | None = None) -> AttestationLocation:
        one = self.one
        return AttestationLocation(one.digest, one.predicate_type, path, one.subject, line)

    def texts(self) -> Iterator[Text]:
        for note in self.one.annotations:
            yield Text(self.at(f"annotations.{note.key}"), f"{note.key}={note.value}")
        # iterative: a hostile statement cannot exhaust the stack
        stack: list[tuple[str, str | None, Any, int]] = [("", None, self.one.statement, 0)]
        while stack and self.count < MAX_STRINGS:
            path, key, value, depth = stack.pop()
            if depth > MAX_DEPTH:
                self.too_deep = True
                continue
            if isinstance(value, str):
                if value:
                    self.count += 1
                    yield Text(self.at(path), f"{_name(key)}={value}" if key else value)
            elif isinstance(value, dict):
                yield from self.embedded(path, value)
                for k, inner in reversed(list(value.items())):
                    name = str(k)
                    if name:
                        # a key is a string of the statement too (a map of variables)
                        self.count += 1
                        yield Text(self.at(path), name)
                    stack.append((_join(path, name), name, inner, depth + 1))
            elif isinstance(value, list):
                for i in range(len(value) - 1, -1, -1):
                    stack.append((f"{path}[{i}]", None, value[i], depth + 1))

    def embedded(self, path: str, value: dict[str, Any]) -> Iterator[Text]:
        """A file BuildKit embeds (``source.infos[]``: filename, language, base64 data):
        decoded, each line judged alone and each instruction split like a history entry."""
        data = value.get("data")
        if not isinstance(data, str) or not ("filename" in value or "language" in value):
            return
        if len(data) > MAX_EMBEDDED_BYTES * 4 // 3 + 4:
            return
        try:
            text = base64.b64decode(data, validate=True).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            return  # not base64: the string itself is scanned as it stands
        where = _join(path, "data")
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                yield Text(self.at(where, number), line)
        # imported here: only an attestation with a Dockerfile needs its parser
        from leakscan.dockerfile import parse_dockerfile

        for inst in parse_dockerfile(text):
            for piece in split_created_by(f"{inst.keyword} {inst.body}"):
                yield Text(self.at(where, inst.line), piece)


def where(loc: AttestationLocation) -> str:
    """An attestation place in words, as the renderers show it."""
    short = loc.attestation_digest.split(":", 1)[-1][:12]
    kind = f" {loc.predicate_type}" if loc.predicate_type else ""
    line = f":{loc.line}" if loc.line is not None else ""
    return f"attestation {short}{kind} {loc.path}{line}"
