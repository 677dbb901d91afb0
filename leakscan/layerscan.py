"""One layer, read once: decompress, walk the tar, hand every file to the engines, check
the layer's digests. Runs in the scanning process or in a worker process alike."""

from __future__ import annotations

import hashlib
import io
import posixpath
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import TYPE_CHECKING, BinaryIO, NamedTuple, Protocol

from leakscan import model as m
from leakscan.detectors import Scanners, Subject
from leakscan.detectors.context import is_vendored
from leakscan.detectors.stream import PendingScan, ScanRunner, start_scan
from leakscan.errors import LeakscanError
from leakscan.layers.archives import ArchiveLimits, Skipped, expand
from leakscan.layers.compression import ExpansionGuard, HashingReader, decompressed
from leakscan.layers.walker import LayerRecord, file_digest, walk
from leakscan.sightings import Seen, merged

if TYPE_CHECKING:
    # the git readers load with the first scan of a layer: a re-scan the store answers
    # whole reads no layer
    from leakscan.layers.git import GitBlob, GitLimits

# a layer stream may expand this much per compressed byte once past RATIO_FLOOR bytes
MAX_LAYER_RATIO = 1000
RATIO_FLOOR = 256 << 20
# chunks that may wait for the helper thread (each up to CHUNK_SIZE bytes)
SCAN_DEPTH = 4
# files whose scans may still be running before the walk waits for the oldest
MAX_PENDING_FILES = 64
# files up to this large are looked up by their content before the engines see them (a
# file seen before, in any layer of any image, is not scanned again); a larger one is
# streamed, never held whole. Small files too: a lookup among a batch costs microseconds,
# handing a file to the engines far more (a re-layered 400 MiB image took 28% less CPU
# once files under 16 KiB were looked up as well). Up to 64 MiB: shared libraries and
# binaries of tens of MiB are what a rebuilt base image repeats most bytes of (the
# re-layered 400 MiB image of bench/cache.py: 13% less CPU than with 16 MiB, for a peak
# 40 MiB higher, one such file held per process)
MEMO_MIN = 0
MEMO_MAX = 64 << 20
# a file larger than this is looked up first by its size and first HEAD_BYTES (a head
# kept with the result of every such file scanned): a file whose head the memo never saw
# cannot be known, and is streamed to the engines as without a memo. Read whole into one
# copy, the 20 files of 1-45 MiB of bench/compare.py's 400 MiB image made a cold scan with
# an empty store copy and page in 186 MB more than one without it (3% of its CPU, its
# peak 60 MiB higher)
MEMO_WHOLE = 1 << 20
HEAD_BYTES = 64 << 10
# files read whole before their contents are looked up in one query: a query per file
# released the GIL 18,000 times on a 400 MiB image, each time waiting for the engines'
# thread to hand it back (seconds of a scan)
LOOKUP_FILES = 128
LOOKUP_BYTES = 8 << 20


@dataclass(frozen=True)
class FileHit:
    """A secret in a file of a layer (every engine's match of it, merged), with the file's
    raw digest (:func:`~leakscan.layers.walker.file_digest`, to judge its fate).

    ``path`` is the layer file; ``shown`` is where the secret is, the same path or an archive
    member in it (``OUTER!/INNER``), whose fate is the layer file's.
    """

    layer_index: int
    path: str
    shown: str
    digest: bytes
    seen: tuple[Seen, ...]
    # a secret in a git directory's history: ``path`` is then the object-store file that
    # holds it, ``shown`` the git directory, commit and path in the repository
    git: m.GitPlace | None = None


@dataclass(frozen=True)
class FileResult:
    """What scanning one layer file yielded, relative to the file: the secrets of each
    place in it (``suffix`` is empty for the file, ``!/INNER`` for an archive member) and
    what was skipped in it."""

    groups: tuple[tuple[str, tuple[Seen, ...]], ...]
    skipped: tuple[tuple[str, str], ...]  # (suffix, reason)


_NOTHING = FileResult((), ())


class ContentMemo(Protocol):
    """Results of file contents seen before, by :func:`memo_key`."""

    def recall_many(self, keys: list[str]) -> dict[str, FileResult]:
        """The results known for those contents (see :func:`memo_key`)."""
        ...

    def keep(self, key: str, result: FileResult, head: str | None = None) -> None:
        """Remember a complete result for that content (and that a file of that ``head``,
        see :func:`head_key`, was kept)."""
        ...

    def knows_head(self, head: str) -> bool:
        """Whether a file of that :func:`head_key` was kept."""
        ...


@dataclass(frozen=True)
class _Known:
    """A file's (or a git blob's) result from the memo, waiting in line with the scans
    still running; its skips are already in the layer's list, as a scan's would be."""

    result: FileResult
    git: m.GitPlace | None = None

    def done(self) -> bool:
        return True


class _Tally:
    """The scans of one memoized file, gathered until the last has settled. ``base`` is
    the place its hits are shown at (the layer file, or a git blob's place), which the
    suffix of each of its places follows. ``key`` is empty for a file streamed before its
    digest was known (set once it has been read); ``head`` the file's :func:`head_key`
    when it has one."""

    # one per file a cold scan with a store reads: a plain class with slots is made in a
    # third of the time a dataclass with two list factories takes
    __slots__ = ("base", "key", "waiting", "head", "groups", "skipped")

    def __init__(self, base: str, key: str, head: str | None = None) -> None:
        self.base = base
        self.key = key
        self.waiting = 0
        self.head = head
        self.groups: list[tuple[str, tuple[Seen, ...]]] = []
        self.skipped: list[tuple[str, str]] = []


class _Waiting(NamedTuple):
    """A file read whole, its content not yet looked up in the memo (a named tuple: one is
    made for every file a scan with a store reads, a frozen dataclass costs three times
    as much to make)."""

    path: str
    key: str
    # the file's bytes as the walk's pieces hold them (not copied: joined only for a file
    # the memo does not know, a few in a re-scan)
    parts: list[bytes | memoryview]
    digest: bytes
    head: str | None


@dataclass(frozen=True)
class _GitWaiting:
    """A blob (or commit message) of a git directory, not yet looked up in the memo."""

    blob: GitBlob
    git_dir: str
    holder: str  # the object-store file that holds it (its fate is the blob's)
    digest: bytes  # that file's digest
    key: str
    place: m.GitPlace


@dataclass
class LayerScan:
    """What one layer holds: its record for whiteout interpretation, hits, problems."""

    record: LayerRecord = field(default_factory=LayerRecord)
    hits: list[FileHit] = field(default_factory=list)
    errors: list[m.Problem] = field(default_factory=list)
    skipped: list[m.Problem] = field(default_factory=list)
    diff_id: str | None = None


def scan_layer(
    blob: m.LayerBlob,
    engines: Scanners,
    limits: ArchiveLimits,
    moved: Callable[[int], None] | None = None,
    max_file_size: int | None = None,
    helper_thread: bool = False,
    memo: ContentMemo | None = None,
    git_limits: GitLimits | None = None,
) -> LayerScan:
    """Scan ``blob``, opening archives in it within ``limits`` and skipping files larger
    than ``max_file_size``; ``moved`` hears how many stored bytes have been read so far.

    With ``helper_thread`` the engines run on a second thread while the walk reads on:
    worth it when this is the only process scanning (a quarter off a 400 MB layer on two
    cores), not when worker processes already keep every core busy (no faster, ~9% more
    CPU time, measured on the same image).

    With ``memo``, a file of MEMO_MIN to MEMO_MAX bytes whose content was scanned before
    takes that result, and the result of one scanned now is handed to it. Such files are
    looked up a batch at a time; a batch is settled before any other file is handled, so
    that hits, skips and scans keep the walk's order. A file over MEMO_WHOLE is read whole
    for that only when the memo knows its head (:func:`head_key`); otherwise it is
    streamed, and its result kept once it has been read.

    Git object stores in the layer (loose objects, packs) are not scanned as files: they
    are gathered during the walk and read after it (:mod:`leakscan.layers.git`), every
    blob and commit message scanned, within ``git_limits``. With ``memo`` they are looked
    up as files are (by their bytes and the path the engines are told, :func:`git_subject`):
    a blob with the bytes of the working-tree file at its path, scanned in the walk, or
    one of an image scanned before, is not handed to the engines again.
    """
    out = LayerScan(diff_id=blob.diff_id)
    i = blob.index
    if blob.unavailable:
        out.skipped.append(m.Problem(blob.unavailable, layer_index=i))
        return out
    path = None
    # scans still running, each with the layer file it belongs to, that file's digest, and
    # the tally of a memoized file
    pending: deque[tuple[PendingScan | _Known, str, str, bytes, _Tally | None]] = deque()
    # the git place of a pending scan of a git blob, by the scan
    places: dict[int, m.GitPlace] = {}
    from leakscan.layers.git import GitCollector, GitLimits

    gits = GitCollector(git_limits or GitLimits())

    def settle(keep: int) -> None:
        while len(pending) > keep or (pending and pending[0][0].done()):
            scan, layer_path, shown, digest, tally = pending.popleft()
            if isinstance(scan, _Known):
                # a result from the memo, in its turn: hits keep the walk's order (``shown``
                # is the place its suffixes follow)
                for suffix, group in scan.result.groups:
                    out.hits.append(FileHit(i, layer_path, shown + suffix, digest, group, scan.git))
                continue
            groups = merged(scan.result())
            git = places.pop(id(scan), None)
            for group in groups:
                out.hits.append(FileHit(i, layer_path, shown, digest, group, git))
            if tally is not None:
                suffix = shown[len(tally.base) :]
                tally.groups.extend((suffix, group) for group in groups)
                tally.waiting -= 1
                if tally.waiting == 0:
                    kept(tally)

    def kept(tally: _Tally) -> None:
        """Hand a memoized file's complete result to the memo."""
        if memo is not None:
            if tally.groups or tally.skipped:
                result = FileResult(tuple(tally.groups), tuple(tally.skipped))
            else:
                result = _NOTHING  # most files
            memo.keep(tally.key, result, tally.head)

    def start(
        layer_path: str,
        stream: BinaryIO,
        size: int,
        digest: Callable[[], bytes],
        tally: _Tally | None,
    ) -> None:
        """Hand a layer file (and the members of archives in it) to the engines."""
        scans: list[tuple[PendingScan, str]] = []
        for item in expand(layer_path, stream, limits, size=size):
            if isinstance(item, Skipped):
                out.skipped.append(m.Problem(item.reason, layer_index=i, path=item.path))
                if tally is not None:
                    tally.skipped.append((item.path[len(layer_path) :], item.reason))
                continue
            scanner = engines.scanner(Subject(item.path, item.size))
            if scanner is not None:
                scans.append((start_scan(scanner, item.stream, runner), item.path))
        if tally is not None:
            if not tally.key:  # streamed: its digest is known now that it has been read
                tally.key = memo_key(digest(), layer_path)
            tally.waiting = len(scans)
            if not scans:
                kept(tally)
        if scans:
            # the digest is that of the whole layer file, archive members included
            whole = digest()
            pending.extend((scan, layer_path, at, whole, tally) for scan, at in scans)
        settle(MAX_PENDING_FILES)

    # files waiting for the memo, and the bytes of the pieces their parts keep alive
    waiting: list[_Waiting] = []
    held = 0
    last_piece: object = None

    def look_up() -> None:
        """Settle the files waiting for the memo: known results in line, the others to the
        engines."""
        nonlocal waiting, held, last_piece
        batch, waiting, held, last_piece = waiting, [], 0, None
        if not batch or memo is None:
            return
        known = memo.recall_many(list(dict.fromkeys(w.key for w in batch)))
        for w in batch:
            result = known.get(w.key)
            if result is not None:
                # its skips now, where a scan's would be listed; its hits in their turn
                out.skipped.extend(
                    m.Problem(why, layer_index=i, path=w.path + suffix)
                    for suffix, why in result.skipped
                )
                pending.append((_Known(result), w.path, w.path, w.digest, None))
                settle(MAX_PENDING_FILES)
                continue
            tally = _Tally(w.path, w.key, w.head)
            data = b"".join(w.parts)
            start(w.path, io.BytesIO(data), len(data), partial(bytes, w.digest), tally)
            del data

    def start_git(w: _GitWaiting, tally: _Tally | None) -> None:
        """Hand a git blob (and the members of archives in it) to the engines."""
        shown = git_shown(w.git_dir, w.blob)
        scans = 0
        for scan, at in _git_scans(w.git_dir, w.blob, engines, limits, runner):
            if isinstance(scan, str):
                out.skipped.append(m.Problem(scan, layer_index=i, path=at))
                if tally is not None:
                    tally.skipped.append((at[len(shown) :], scan))
                continue
            places[id(scan)] = w.place
            pending.append((scan, w.holder, at, w.digest, tally))
            scans += 1
        if tally is not None:
            tally.waiting = scans
            if not scans:
                kept(tally)
        settle(MAX_PENDING_FILES)

    # git blobs waiting for the memo, and their bytes
    git_waiting: list[_GitWaiting] = []
    git_held = 0

    def look_up_git() -> None:
        """Settle the git blobs waiting for the memo, as :func:`look_up` the files."""
        nonlocal git_waiting, git_held
        batch, git_waiting, git_held = git_waiting, [], 0
        if not batch or memo is None:
            return
        known = memo.recall_many(list(dict.fromkeys(w.key for w in batch)))
        for w in batch:
            result = known.get(w.key)
            if result is None:
                start_git(w, _Tally(git_shown(w.git_dir, w.blob), w.key))
                continue
            shown = git_shown(w.git_dir, w.blob)
            out.skipped.extend(
                m.Problem(why, layer_index=i, path=shown + suffix) for suffix, why in result.skipped
            )
            pending.append((_Known(result, w.place), w.holder, shown, w.digest, None))
            settle(MAX_PENDING_FILES)

    try:
        with blob.opener() as fh, ScanRunner(1 if helper_thread else 0, SCAN_DEPTH) as runner:
            raw = HashingReader(fh)
            kind, stream = decompressed(raw)  # type: ignore[arg-type]
            # the stored bytes need a hash of their own only when a digest names them and
            # it is not the diff_id of the same uncompressed bytes
            raw.hashing = blob.digest is not None and not (
                kind == "none" and blob.digest == blob.diff_id
            )
            guarded = ExpansionGuard(stream, raw, MAX_LAYER_RATIO, RATIO_FLOOR)
            tar = HashingReader(guarded)  # type: ignore[arg-type]
            for entry in walk(tar, out.record):  # type: ignore[arg-type]
                path = entry.path
                if max_file_size is not None and entry.size > max_file_size:
                    look_up()  # the files before it first: skips keep the walk's order
                    why = f"larger than --max-file-size ({entry.size} > {max_file_size} bytes)"
                    out.skipped.append(m.Problem(why, layer_index=i, path=entry.path))
                    continue
                if gits.wants(entry.path):
                    refused = gits.take(entry.path, entry.size, entry.stream)
                    if refused is None:
                        gits.digest(entry.path, entry.digest())
                        continue
                    look_up()
                    out.skipped.append(m.Problem(refused, layer_index=i, path=entry.path))
                head = None
                if memo is not None and MEMO_WHOLE < entry.size <= MEMO_MAX:
                    head = head_key(entry.size, entry.head(HEAD_BYTES), entry.path)
                    if not memo.knows_head(head):
                        look_up()  # the files before this one first
                        tally = _Tally(entry.path, "", head)
                        start(entry.path, entry.stream, entry.size, entry.digest, tally)
                        if moved:
                            moved(raw.count)
                        continue
                if memo is not None and MEMO_MIN <= entry.size <= MEMO_MAX:
                    parts = entry.parts()
                    digest = entry.digest()
                    key = memo_key(digest, entry.path)
                    waiting.append(_Waiting(entry.path, key, parts, digest, head))
                    for part in parts:
                        # a view keeps its whole piece: what is held is the pieces
                        piece = part.obj if isinstance(part, memoryview) else part
                        if piece is not last_piece:
                            held += len(piece)  # type: ignore[arg-type]
                            last_piece = piece
                    if len(waiting) >= LOOKUP_FILES or held >= LOOKUP_BYTES:
                        look_up()
                else:
                    look_up()  # the files before this one first
                    start(entry.path, entry.stream, entry.size, entry.digest, None)
                if moved:
                    moved(raw.count)
            look_up()
            path = None
            if memo is not None:
                # every file's result kept before the history is read: a blob with the
                # bytes of the working-tree file at its path is answered by that file
                # (the walk is over: nothing is left to read beside these scans)
                settle(0)
            for repo in gits.repositories():
                path = repo.git_dir
                for one, holder, digest in repo.blobs:
                    # the digest a working-tree file of these bytes has (its key, its record)
                    content = file_digest(one.data)
                    key = ""
                    if memo is not None:
                        key = memo_key(content, git_subject(repo.git_dir, one))
                    place = git_place(repo.git_dir, one, content)
                    w = _GitWaiting(one, repo.git_dir, holder, digest, key, place)
                    del one  # (its bytes not held by this name while the next is read)
                    if memo is not None and MEMO_MIN <= len(w.blob.data) <= MEMO_MAX:
                        git_waiting.append(w)
                        git_held += len(w.blob.data)
                        if len(git_waiting) >= LOOKUP_FILES or git_held >= LOOKUP_BYTES:
                            look_up_git()
                    else:
                        look_up_git()  # the blobs before this one first
                        start_git(w, None)
                    del w
                look_up_git()
                out.skipped.extend(m.Problem(why, i, repo.git_dir) for why in repo.problems)
            path = None
            settle(0)
            raw.drain()
    except LeakscanError as exc:
        gits.close()
        git_waiting.clear()  # a git directory is read after the walk: none was cut off
        _finish(look_up, settle)  # what was read before the layer broke off is still reported
        out.errors.append(m.Problem(f"layer {i}: {exc}", layer_index=i, path=path))
        return out
    except OSError as exc:
        gits.close()
        git_waiting.clear()
        _finish(look_up, settle)
        out.errors.append(m.Problem(f"layer {i}: read failed: {exc}", layer_index=i, path=path))
        return out
    gits.close()
    actual = tar.digest()
    if blob.diff_id is None:
        out.diff_id = actual
    elif blob.diff_id.startswith("sha256:") and actual != blob.diff_id:
        out.errors.append(
            m.Problem(f"layer {i}: content does not match its diff_id {blob.diff_id}", i)
        )
    stored = raw.digest() if raw.hashing else actual
    if blob.digest and blob.digest.startswith("sha256:") and stored != blob.digest:
        out.errors.append(m.Problem(f"layer {i}: blob does not match its digest {blob.digest}", i))
    # files scanned whose status rests on an assumption (overlong paths, bare whiteouts)
    out.skipped.extend(m.Problem(why, i, at) for why, at in out.record.oddities())
    return out


def _finish(look_up: Callable[[], None], settle: Callable[[int], None]) -> None:
    """After a layer broke off: scan the files read before the break (the engines do not
    read the layer), then wait for every scan."""
    try:
        look_up()
    finally:
        settle(0)


# how much of a path the engines read to choose how they scan a file (kingfisher's
# path-scoped rules read the file name or e.g. .git/config, the credential-file readers the
# name and its folder, detect-secrets the name and whether the tree is vendored)
_PATH_TAIL = 3


def memo_key(digest: bytes, path: str) -> str:
    """Where a file's result is kept: its content, and what of its path the engines read
    (the same bytes as a README and as an .env are not scanned alike)."""
    tail = "/".join(path.rsplit("/", _PATH_TAIL)[-_PATH_TAIL:])
    # whether a path is vendored is a matter of its folders (every pattern of it ends in a
    # slash): asked once per folder, not once per file
    h = _SHA256.copy()
    h.update(f"{_vendored_folder(path[: path.rfind('/') + 1])}\0{tail}".encode())
    return f"{digest.hex()}:{h.hexdigest()[:16]}"


# hashers are copied from this one (hashlib.sha256() looks the algorithm up each time)
_SHA256 = hashlib.sha256()


@lru_cache(maxsize=4096)
def _vendored_folder(folder: str) -> bool:
    """:func:`is_vendored` of a path in ``folder`` (written with its final slash)."""
    return is_vendored(folder)


def head_key(size: int, head: bytes, path: str) -> str:
    """Where the memo notes that a file of ``size`` bytes beginning with ``head`` was kept,
    for :func:`memo_key`'s reading of ``path``: a hint that the file may be known, never
    a result (its whole content is looked up before anything is taken from the memo)."""
    return memo_key(file_digest(b"head\0%d\0" % size + head), path)


def git_shown(git_dir: str, blob: GitBlob) -> str:
    """How a report writes a blob's place: ``GITDIR!SHORTID:PATH`` (the commit that brought
    it and its path there), ``GITDIR!SHORTID`` for a commit message, ``GITDIR!OBJECTID``
    for a blob no commit of the layer names."""
    if blob.commit is None:
        return f"{git_dir}!{blob.object_id}"
    short = blob.commit.oid[:SHORT_ID]
    if blob.part == "message" or blob.repo_path is None:
        return f"{git_dir}!{short}"
    return f"{git_dir}!{short}:{blob.repo_path}"


def git_subject(git_dir: str, blob: GitBlob) -> str:
    """The path the engines are told a blob has, so that a ``.env`` in the history is read
    as a ``.env``: for a ``.git`` directory, the path it has in the working tree beside it
    (``/app/.git`` and ``config/.env``: ``/app/config/.env``), which is what it is, and
    which lets the memo answer a blob with the bytes of that working-tree file (the engines
    were told the same path and the same bytes); otherwise (a bare repository, a
    submodule's ``modules/NAME``) its path in the repository below the git directory, as
    an archive member is written (``GITDIR!/PATH``)."""
    if blob.part == "message":
        return f"{git_dir}!/COMMIT_EDITMSG"
    if blob.repo_path is None:
        return f"{git_dir}!/{blob.object_id}"
    if git_dir.endswith("/.git"):
        return posixpath.join(posixpath.dirname(git_dir), blob.repo_path)
    return f"{git_dir}!/{blob.repo_path}"


SHORT_ID = 7


def git_place(git_dir: str, blob: GitBlob, content: bytes) -> m.GitPlace:
    """Where a developer finds ``blob`` (whose bytes have the :func:`file_digest`
    ``content``) in its history."""
    commit = blob.commit
    is_blob = blob.part != "message"
    return m.GitPlace(
        git_dir=git_dir,
        object_id=blob.object_id,
        part="blob" if is_blob else "message",
        blob_sha256=hashlib.sha256(blob.data).hexdigest() if is_blob else None,
        commit=commit.oid if commit else None,
        author_date=commit.author_date if commit else None,
        subject=commit.subject if commit else None,
        repo_path=blob.repo_path,
        blob_digest=content.hex() if is_blob else None,
    )


def _git_scans(
    git_dir: str, blob: GitBlob, engines: Scanners, limits: ArchiveLimits, runner: ScanRunner
) -> Iterator[tuple[PendingScan | str, str]]:
    """Scans of one blob of a git directory (archives in it opened, as in a layer file),
    each with where it is shown, and what of it was skipped (a reason in place of the
    scan)."""
    shown = git_shown(git_dir, blob)
    subject = git_subject(git_dir, blob)
    for item in expand(subject, io.BytesIO(blob.data), limits, size=len(blob.data)):
        # an archive member of the blob keeps its suffix after the blob's place
        at = shown + item.path[len(subject) :]
        if isinstance(item, Skipped):
            yield item.reason, at
            continue
        scanner = engines.scanner(Subject(item.path, item.size))
        if scanner is not None:
            yield start_scan(scanner, item.stream, runner), at
