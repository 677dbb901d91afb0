"""A git directory's history, read from its objects: which commit brought each blob in,
at which path, and what every commit message says.

Commits are taken oldest first (by author time, then committer time) and the tree of each
walked, every tree only once: the first commit whose tree holds a blob is the one that
introduced it, its path there the blob's path. Nothing needs the commit graph to be whole:
a shallow clone's cut-off parents, a tree missing from a truncated pack, a blob no commit
names, all still leave the blobs readable, named by their object id.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from leakscan.layers.git.objects import BLOB, COMMIT, TREE, Budget, GitFormatError, ObjectStore

SHORT = 7  # a short commit id, as git prints it
MAX_PATH = 4096
MAX_TREE_DEPTH = 256


@dataclass(frozen=True)
class Commit:
    """What a report says of a commit."""

    oid: str
    tree: bytes | None
    author_date: str | None
    subject: str
    message: bytes
    when: tuple[int, int]  # author and committer times, for ordering


@dataclass(frozen=True)
class GitBlob:
    """A blob (or a commit message) of a git directory, with where a developer can act."""

    object_id: str
    data: bytes
    commit: Commit | None  # the commit that introduced it (None: no commit names it)
    repo_path: str | None  # its path in that commit's tree
    part: str = "blob"  # "blob" or "message"


def _date(seconds: int, tz: bytes) -> str | None:
    """``1700000000 +0100`` as ISO 8601 with its offset."""
    try:
        sign = -1 if tz[:1] == b"-" else 1
        hours, minutes = int(tz[1:3]), int(tz[3:5])
        offset = timezone(sign * timedelta(hours=hours, minutes=minutes))
        return datetime.fromtimestamp(seconds, offset).isoformat()
    except (ValueError, OverflowError, OSError):
        return None


def _person_time(value: bytes) -> tuple[int, bytes]:
    """The time and zone at the end of an author or committer line."""
    parts = value.rsplit(b" ", 2)
    if len(parts) == 3 and parts[1].isdigit() and len(parts[1]) <= 15:
        return int(parts[1]), parts[2]
    return 0, b"+0000"


def parse_commit(oid: bytes, data: bytes) -> Commit:
    """A commit's tree, author date and message (the headers git writes; others ignored)."""
    head, _, message = data.partition(b"\n\n")
    tree: bytes | None = None
    author = committer = (0, b"+0000")
    for line in head.split(b"\n"):
        key, _, value = line.partition(b" ")
        if key == b"tree" and tree is None and len(value) == 40:
            try:
                tree = bytes.fromhex(value.decode("ascii"))
            except ValueError:
                tree = None
        elif key == b"author":
            author = _person_time(value)
        elif key == b"committer":
            committer = _person_time(value)
    subject = message.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    return Commit(
        oid.hex(),
        tree,
        _date(*author) if author[0] else None,
        subject,
        message,
        (author[0], committer[0]),
    )


def tree_entries(data: bytes) -> Iterator[tuple[bytes, bytes, bytes]]:
    """``(mode, name, id)`` of every entry of a tree object."""
    pos = 0
    n = len(data)
    while pos < n:
        space = data.find(b" ", pos)
        nul = data.find(b"\0", space + 1) if space >= 0 else -1
        if space < 0 or nul < 0 or nul + 21 > n:
            raise GitFormatError("corrupt tree")
        yield data[pos:space], data[space + 1 : nul], data[nul + 1 : nul + 21]
        pos = nul + 21


def _name(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


class Names:
    """Each blob some commit's tree holds: the oldest such commit and the blob's path, kept
    compact (a repository of 50,000 blobs held ~25 MiB as a dict of tuples of a commit and
    a str): the commit by its number in the list, the path as bytes in one buffer."""

    def __init__(self, commits: list[Commit]) -> None:
        self._commits = commits
        # blob id -> commit number << 40 | where its path starts in _paths (NUL-ended: a
        # tree entry's name never holds a NUL)
        self._at: dict[bytes, int] = {}
        self._paths = bytearray()

    def add(self, oid: bytes, commit: int, path: bytes) -> None:
        """Name ``oid`` unless it is named already (the oldest commit comes first)."""
        if oid not in self._at:
            self._at[oid] = (commit << 40) | len(self._paths)
            self._paths += path
            self._paths.append(0)

    def get(self, oid: bytes) -> tuple[Commit, str] | None:
        """The commit that introduced ``oid`` and its path there, or None."""
        value = self._at.get(oid)
        if value is None:
            return None
        at = value & ((1 << 40) - 1)
        end = self._paths.index(0, at)
        return self._commits[value >> 40], _name(bytes(self._paths[at:end]))

    def __contains__(self, oid: bytes) -> bool:
        return oid in self._at

    def __len__(self) -> int:
        return len(self._at)


def attribute(store: ObjectStore, commits: list[Commit]) -> Names:
    """Each blob some commit's tree holds: the oldest such commit (``commits`` are oldest
    first) and the blob's path."""
    named = Names(commits)
    trees_seen: set[bytes] = set()
    for number, commit in enumerate(commits):
        if commit.tree is None:
            continue
        stack: list[tuple[bytes, bytes, int]] = [(commit.tree, b"", 0)]
        while stack:
            tree, prefix, depth = stack.pop()
            if tree in trees_seen or depth > MAX_TREE_DEPTH:
                continue
            trees_seen.add(tree)
            got = store.get(tree) if store.kind_of(tree) == TREE else None
            if got is None:
                continue  # not in this store: a shallow or partial history
            try:
                entries = list(tree_entries(got[1]))
            except GitFormatError:
                continue
            for mode, name, oid in entries:
                # (a path is made only for what is new: most entries of a tree are not)
                if mode in (b"40000", b"040000"):
                    if oid not in trees_seen:
                        path = prefix + name
                        if len(path) < MAX_PATH:
                            stack.append((oid, path + b"/", depth + 1))
                elif mode == b"160000":
                    continue  # a submodule's commit: its objects are in its own git dir
                elif oid not in named:
                    path = prefix + name
                    if len(path) <= MAX_PATH:
                        named.add(oid, number, path)
    return named


def read_repository(store: ObjectStore) -> tuple[Iterator[GitBlob], list[str]]:
    """Every blob and commit message of ``store``, each named as well as the history
    allows, blobs in the order they are stored; and what could not be read."""
    problems: list[str] = []
    commits: list[Commit] = []
    for oid in store.ids(COMMIT):
        got = store.get(oid)
        if got is not None:
            commits.append(parse_commit(oid, got[1]))
    commits.sort(key=lambda c: (c.when, c.oid))
    try:
        named = attribute(store, commits)
    except GitFormatError as exc:
        problems.append(f"history not walked: {exc}")
        named = Names(commits)

    def blobs() -> Iterator[GitBlob]:
        for commit in commits:
            yield GitBlob(commit.oid, commit.message, commit, None, "message")
        for oid in store.ids(BLOB):
            try:
                got = store.read(oid)
            except GitFormatError as exc:
                problems.append(f"blob {oid.hex()} not read: {exc}")
                continue
            if got is None:
                continue
            # named by the id its bytes have (another than asked only when an index lied)
            real = got[2]
            known = named.get(real)
            if known is None:
                yield GitBlob(real.hex(), got[1], None, None)
            else:
                yield GitBlob(real.hex(), got[1], known[0], known[1])
            # not held while the next blob is resolved (a large one would be held twice)
            del got
        problems.extend(store.problems)

    return blobs(), problems


def new_budget(max_objects: int, max_inflated: int, max_object_size: int, max_depth: int) -> Budget:
    """A fresh budget for one git directory."""
    return Budget(max_objects, max_inflated, max_object_size, max_depth)
