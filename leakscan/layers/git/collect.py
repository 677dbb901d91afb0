"""A layer's git object stores, gathered while the layer is walked.

A git directory is many tar members, met one at a time in a walk that never goes back. Its
object-store files (loose objects, ``objects/pack/*.pack`` and their ``.idx``) are copied into
one private spool per layer, an unnamed temporary file (``TemporaryFile``: no name on disk,
gone when closed, mode 0600), up to ``GitLimits.max_spool`` bytes; only the spool offsets
are kept in memory. Once the walk is over every git directory is read from the spool: a
pack of any size costs memory only for the objects being resolved (and a bounded cache of
delta bases), never its whole size. A layer with no git directory spools nothing.

Each layer's object store is read on its own: objects a later layer adds to the same git
directory (a ``git pull`` in a ``RUN``) are read in that layer, and history that spans
layers names blobs by object id where a commit's trees are in another layer.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from leakscan.layers.archives.limits import human
from leakscan.layers.git.history import GitBlob, read_repository
from leakscan.layers.git.objects import (
    Budget,
    GitFormatError,
    ObjectStore,
    OverBudget,
    Spool,
)

# <git dir>/objects/ab/cdef... (sha1 loose objects) or <git dir>/objects/pack/NAME.pack and
# its NAME.idx (ids and offsets: each delta then resolved once, see objects.py)
_OBJECT = re.compile(
    r"^(?P<dir>/.*?)/objects/(?:(?P<fan>[0-9a-f]{2})/(?P<rest>[0-9a-f]{38})"
    r"|pack/(?P<pack>[^/]+)\.(?P<ext>pack|idx))$"
)
# an index larger than this is not read (git's: 28-36 bytes an object; 2M objects ~72 MiB)
_MAX_INDEX = 96 << 20
_COPY = 1 << 20


@dataclass(frozen=True)
class GitLimits:
    """What reading the git directories of one layer may cost."""

    max_spool: int = 4 << 30  # object-store bytes of one layer spooled to be read
    max_objects: int = 2_000_000  # objects of one git directory
    max_inflated: int = 16 << 30  # bytes inflated for one git directory (deltas included)
    max_object_size: int = 256 << 20  # one object, whole or a delta's result
    max_depth: int = 4095  # delta chain (git itself never writes deeper)


@dataclass
class _Dir:
    """One git directory's object-store files: (name, spool offset, length)."""

    loose: list[tuple[bytes, str, int, int]] = field(default_factory=list)
    packs: list[tuple[str, int, int]] = field(default_factory=list)
    indexes: dict[str, tuple[int, int]] = field(default_factory=dict)  # by the pack's path
    digests: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Repository:
    """A git directory of the layer, read: its blobs and messages, and what was not read."""

    git_dir: str
    blobs: Iterator[tuple[GitBlob, str, bytes]]  # the blob, its holder file and its digest
    problems: list[str]


class GitCollector:
    """Takes a layer's git object-store files during its walk; reads them after it."""

    def __init__(self, limits: GitLimits) -> None:
        self.limits = limits
        self._spool: BinaryIO | None = None
        self._spooled = 0
        self._dirs: dict[str, _Dir] = {}

    def wants(self, path: str) -> bool:
        """Whether ``path`` is a git object-store file."""
        return "/objects/" in path and _OBJECT.match(path) is not None

    def take(self, path: str, size: int, stream: BinaryIO) -> str | None:
        """Spool the object-store file ``path``; or say why it is not (the caller scans it
        as a file instead, its stream untouched)."""
        if self._spooled + size > self.limits.max_spool:
            return (
                f"git object store over {human(self.limits.max_spool)} in this layer: "
                "not read as history, scanned as a file"
            )
        found = _OBJECT.match(path)
        assert found is not None
        if self._spool is None:
            self._spool = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        start = self._spooled
        self._spool.seek(start)
        length = 0
        while data := stream.read(_COPY):
            self._spool.write(data)
            length += len(data)
        self._spooled += length
        one = self._dirs.setdefault(found["dir"], _Dir())
        if found["fan"]:
            oid = bytes.fromhex(found["fan"] + found["rest"])
            one.loose.append((oid, path, start, length))
        elif found["ext"] == "idx":
            one.indexes[path[: -len("idx")] + "pack"] = (start, length)
        else:
            one.packs.append((path, start, length))
        return None

    def digest(self, path: str, digest: bytes) -> None:
        """The digest of an object-store file taken (it decides the file's fate)."""
        found = _OBJECT.match(path)
        if found is not None and found["dir"] in self._dirs:
            self._dirs[found["dir"]].digests[path] = digest

    def repositories(self) -> Iterator[Repository]:
        """Every git directory taken, read (after the walk)."""
        if self._spool is not None:
            self._spool.flush()
        for git_dir, one in sorted(self._dirs.items()):
            yield self._read(git_dir, one)

    def _read(self, git_dir: str, one: _Dir) -> Repository:
        lim = self.limits
        budget = Budget(lim.max_objects, lim.max_inflated, lim.max_object_size, lim.max_depth)
        store = ObjectStore(budget)
        problems: list[str] = []
        assert self._spool is not None
        bad = 0
        names: list[str] = []
        try:
            for oid, path, start, length in one.loose:
                try:
                    store.add_loose(oid, Spool(self._spool, start, length))
                    names.append(path)
                except GitFormatError:
                    bad += 1
                    store.loose.pop()
            for path, start, length in one.packs:
                index = None
                if path in one.indexes and one.indexes[path][1] <= _MAX_INDEX:
                    at, size = one.indexes[path]
                    index = Spool(self._spool, at, size).read(0, size)
                for why in store.add_pack(Spool(self._spool, start, length), index):
                    problems.append(f"{path}: {why}")
        except OverBudget as exc:
            problems.append(f"{git_dir}: {exc}: the rest of its objects not read")
        if bad:
            problems.append(f"{git_dir}: {bad} loose objects unreadable")
        holders = [path for path, _, _ in one.packs]

        def blobs() -> Iterator[tuple[GitBlob, str, bytes]]:
            items, late = read_repository(store)
            try:
                for blob in items:
                    where = (store.locate(bytes.fromhex(blob.object_id)) or (0, 0))[0]
                    holder = holders[where] if where >= 0 else names[-1 - where]
                    yield blob, holder, one.digests.get(holder, b"")
                    del blob  # (not held while the next one is read)
            except OverBudget as exc:
                late.append(f"{git_dir}: {exc}: the rest of its objects not read")
            except GitFormatError as exc:
                late.append(f"{git_dir}: {exc}")
            problems.extend(late)

        return Repository(git_dir, blobs(), problems)

    def close(self) -> None:
        """Drop the spool."""
        if self._spool is not None:
            self._spool.close()
            self._spool = None
