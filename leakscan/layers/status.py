"""The one place that interprets whiteouts: for a file seen in one layer, is the same
content still in the final filesystem, or did a later layer delete or overwrite it?

Rules (OCI image-spec, layer changesets):
- ``.wh.NAME`` in a layer removes NAME, and everything below it, from the layers beneath.
- ``.wh..wh..opq`` in a directory hides every child of that directory from the layers
  beneath; the same layer's own children stay.
- A later entry at the same path replaces the file. Identical bytes leave it present.
- A later non-directory entry at an ancestor path replaces the whole subtree.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from leakscan.layers.walker import PATH_MAX, LayerRecord
from leakscan.terms import Status

_State = Literal["ours", "gone", "other"]


@dataclass(frozen=True)
class Fate:
    """Where a file's content ended up in the final filesystem."""

    status: Status
    removed_in_layer: int | None


def ancestors(path: str) -> list[str]:
    """Proper ancestors of an absolute path, nearest first, ending with ``/``."""
    out = []
    while path != "/":
        path = posixpath.dirname(path)
        out.append(path)
    return out


def _after(
    record: LayerRecord, path: str, parents: list[str], digest: bytes, state: _State
) -> _State:
    """The state of ``path`` once ``record`` is laid over it."""
    if (
        path in record.whiteouts
        or any(p in record.whiteouts or p in record.opaques for p in parents)
        or any((e := record.entries.get(p)) is not None and e.kind != "dir" for p in parents)
    ):
        state = "gone"
    entry = record.entries.get(path)
    if entry is not None:
        same = entry.kind in ("file", "hardlink") and entry.digest == digest
        state = "ours" if same else "other"
    return state


def fate(records: Sequence[LayerRecord], layer_index: int, path: str, digest: bytes) -> Fate:
    """Decide the fate of the file ``path`` with content ``digest`` from layer ``layer_index``.

    ``records`` holds every layer of the image in order. ``removed_in_layer`` names the
    layer that last took the content away (a layer may delete it and a later one put the
    same bytes back, which makes it present again).
    """
    if len(path) > PATH_MAX:
        # no filesystem holds such a path, so no later layer can change it: the bytes ship
        return Fate("present", None)
    parents = ancestors(path)
    own = records[layer_index].entries.get(path)
    # the same path twice in one layer: the last copy is the one that is extracted
    state: _State = "ours" if own is not None and own.digest == digest else "other"
    removed: int | None = None if state == "ours" else layer_index
    lost_as: _State = state
    for j in range(layer_index + 1, len(records)):
        new = _after(records[j], path, parents, digest, state)
        if state == "ours" and new != "ours":
            # how the content was lost decides the status, not what the path became later
            removed, lost_as = j, new
        state = new
    if state == "ours":
        return Fate("present", None)
    return Fate("deleted" if lost_as == "gone" else "overwritten", removed)
