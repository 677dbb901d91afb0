"""History and config: how history entries map to layers, and every string in them that
could hold a secret, split so that each value is judged on its own."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from leakscan.model import (
    Annotation,
    ConfigLocation,
    HistoryInfo,
    HistoryLocation,
    Location,
    SourceImage,
)

# "|2 A=x B=y /bin/sh -c ..." : docker and buildah write build args this way
_BUILD_ARGS = re.compile(r"^\s*(?:RUN\s+)?\|(\d+)\s+")
_ARG = re.compile(r"([A-Za-z_][A-Za-z0-9_.-]*)=(\S*)\s*")
# the instruction inside a created_by: docker's "/bin/sh -c #(nop) ENV ...", BuildKit's "ENV ..."
_INSTRUCTION = re.compile(r"^\s*(?:/bin/sh -c #\(nop\)\s*)?(ENV|LABEL|ARG)\s+(.*)$", re.S)


@dataclass(frozen=True)
class HistoryMap:
    """History entries with their layers, and a problem when the counts disagree."""

    entries: tuple[HistoryInfo, ...]
    layer_history: tuple[int | None, ...]
    problem: str | None


def map_history(config: Mapping[str, Any], layer_count: int) -> HistoryMap:
    """Pair history entries with layers in order, skipping ``empty_layer`` entries.

    If the number of non-empty entries differs from the number of layers, nothing is
    paired: a guess would name the wrong instruction for a leak.
    """
    raw = config.get("history")
    if not isinstance(raw, list):
        # history is optional in the spec: nothing to pair, and nothing wrong
        return HistoryMap((), (None,) * layer_count, None)
    items = [h if isinstance(h, dict) else {} for h in raw]
    non_empty = [i for i, h in enumerate(items) if not h.get("empty_layer")]
    paired = len(non_empty) == layer_count
    problem = None
    if not paired:
        problem = (
            f"history has {len(non_empty)} entries that made layers but the image has "
            f"{layer_count} layers: instructions are not paired with layers"
        )
    layer_of = {h: n for n, h in enumerate(non_empty)} if paired else {}
    entries = tuple(
        HistoryInfo(
            index=i,
            created_by=_str(h.get("created_by")),
            created=_str(h.get("created")),
            empty_layer=bool(h.get("empty_layer")),
            layer_index=layer_of.get(i),
        )
        for i, h in enumerate(items)
    )
    layer_history: tuple[int | None, ...] = (
        tuple(non_empty) if paired else tuple(None for _ in range(layer_count))
    )
    return HistoryMap(entries, layer_history, problem)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Text:
    """A string to scan, and where to report what is found in it."""

    location: Location
    text: str


def split_created_by(created_by: str) -> list[str]:
    """Pieces of a created_by line, each judged on its own: every build argument
    (``KEY=value``), every ENV/LABEL pair, and the command itself."""
    pieces: list[str] = []
    rest = created_by
    m = _BUILD_ARGS.match(rest)
    if m:
        rest = rest[m.end() :]
        for _ in range(int(m.group(1))):
            arg = _ARG.match(rest)
            if not arg:
                break
            pieces.append(f"{arg.group(1)}={arg.group(2)}")
            rest = rest[arg.end() :]
    inst = _INSTRUCTION.match(rest)
    if inst:
        try:
            words = shlex.split(inst.group(2))
        except ValueError:
            words = inst.group(2).split()
        if inst.group(1) == "ENV" and len(words) >= 2 and "=" not in words[0]:
            # the legacy form "ENV KEY value with spaces"
            words = [f"{words[0]}={' '.join(words[1:])}"]
        pieces.extend(words)
    pieces.append(rest)
    return pieces


def history_texts(history: HistoryMap, raw_history: Any) -> Iterator[Text]:
    """Every history string to scan: created_by split into pieces, and comments."""
    items = raw_history if isinstance(raw_history, list) else []
    for info in history.entries:
        entry = items[info.index] if info.index < len(items) else {}
        loc = HistoryLocation(info.index, info.layer_index, info.created_by)
        if info.created_by:
            for piece in split_created_by(info.created_by):
                yield Text(loc, piece)
        if isinstance(entry, dict):
            # comment, author, created and whatever else a builder writes: every string of
            # the entry is reported, so every one is scanned
            for key, value in entry.items():
                if key != "created_by":
                    yield from (Text(loc, text) for text in _strings(value))


_CONFIG_SECTIONS = ("config", "container_config")
_STRING_FIELDS = ("User", "WorkingDir", "StopSignal")
_LIST_FIELDS = ("Cmd", "Entrypoint", "Shell", "OnBuild")
# fields of a config section that config_texts splits itself (each value judged alone)
_HANDLED = frozenset(("Env", "Labels", "Healthcheck", *_STRING_FIELDS, *_LIST_FIELDS))
# strings of one config or history entry read at most: a config is bounded in size by the
# source already, this bounds the engine calls a hostile one of many tiny strings can cost
MAX_STRINGS = 100_000


def _strings(value: Any) -> Iterator[str]:
    """Every non-empty string in a JSON value, mapping keys included."""
    stack = [value]
    seen = 0
    while stack and seen < MAX_STRINGS:
        item = stack.pop()
        if isinstance(item, str):
            if item:
                seen += 1
                yield item
        elif isinstance(item, dict):
            for key, inner in item.items():
                stack.append(inner)
                stack.append(str(key))
        elif isinstance(item, list):
            stack.extend(reversed(item))


def _other_strings(value: Any, where: str, handled: frozenset[str]) -> Iterator[Text]:
    """Every string of the config value at ``where`` (a top-level key), reported at that
    field; in a config section, the fields config_texts reads one by one are left out."""
    if isinstance(value, dict) and handled:
        for key, inner in value.items():
            if key not in handled:
                field = f"{where}.{key}"
                yield from (Text(ConfigLocation(field, None), t) for t in _strings(inner))
                if str(key):
                    yield Text(ConfigLocation(where, None), str(key))
        return
    for text in _strings(value):
        yield Text(ConfigLocation(where, None), text)


def image_texts(image: SourceImage) -> Iterator[Text]:
    """The strings a source took from manifests and indexes and reports as they stand: the
    platform, digests, media types. A damaged index can put anything there."""
    strings: list[tuple[str, str | None]] = [
        ("platform", image.platform),
        ("manifest_digest", image.manifest_digest),
        ("config_digest", image.config_digest),
    ]
    for blob in image.layers:
        for name in ("digest", "diff_id", "media_type"):
            strings.append((f"layers[{blob.index}].{name}", getattr(blob, name)))
    for where, value in strings:
        if value:
            yield Text(ConfigLocation("manifest", where), value)


def config_texts(config: Mapping[str, Any], annotations: Sequence[Annotation]) -> Iterator[Text]:
    """Every config string to scan: each Env variable and Label alone, the commands, and
    the manifest and index annotations."""
    for section in _CONFIG_SECTIONS:
        block = config.get(section)
        if not isinstance(block, dict):
            continue
        prefix = "" if section == "config" else "container_config."
        env = block.get("Env")
        if isinstance(env, list):
            for item in env:
                if isinstance(item, str):
                    key = item.split("=", 1)[0]
                    yield Text(ConfigLocation(prefix + "Env", key), item)
        labels = block.get("Labels")
        if isinstance(labels, dict):
            for key, value in labels.items():
                yield Text(ConfigLocation(prefix + "Labels", str(key)), f"{key}={value}")
        for name in _LIST_FIELDS:
            value = block.get(name)
            if isinstance(value, list):
                value = " ".join(str(v) for v in value)
            if isinstance(value, str) and value:
                # docker's container_config.Cmd holds "|1 ARG=value /bin/sh -c ..." lines
                for piece in split_created_by(value):
                    yield Text(ConfigLocation(prefix + name, None), piece)
        health = block.get("Healthcheck")
        if isinstance(health, dict) and isinstance(health.get("Test"), list):
            joined = " ".join(str(v) for v in health["Test"])
            yield Text(ConfigLocation(prefix + "Healthcheck", "Test"), joined)
        for name in _STRING_FIELDS:
            value = block.get(name)
            if isinstance(value, str) and value:
                yield Text(ConfigLocation(prefix + name, None), value)
    for key, value in config.items():
        if key in _CONFIG_SECTIONS:
            yield from _other_strings(value, key, _HANDLED)
        elif key not in ("history",):  # history_texts reads history
            yield from _other_strings(value, key, frozenset())
    for note in annotations:
        yield Text(ConfigLocation("annotations", note.key), f"{note.key}={note.value}")
