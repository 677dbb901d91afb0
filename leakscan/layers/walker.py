"""The streaming tar walk of one layer.

The walker reads a layer once, front to back, never seeking and never extracting. It hands
each regular file to the caller as a stream and writes down what the layer does to the
filesystem (a :class:`LayerRecord`): the entries it adds and the whiteouts and opaque
markers it carries. It records whiteouts but does not interpret them; that happens in
exactly one place, :mod:`leakscan.layers.status`.
"""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Literal, cast

from leakscan.errors import LayerError
from leakscan.layers.compression import HashingReader

EntryKind = Literal["file", "dir", "symlink", "hardlink", "other"]

# tarfile's stream mode slices its whole buffer on every 512-byte header read: a large
# buffer makes each small read cost its size (a 1 MiB buffer made small files 5x slower);
# the BufferedReader under it does the large reads
TAR_BUFSIZE = 16 << 10

# no container filesystem holds a longer path (Linux PATH_MAX): such entries are still
# scanned, but not recorded for status (a hostile layer of 64 KiB names would otherwise
# hold gigabytes of them)
PATH_MAX = 4096

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"


@dataclass(frozen=True, slots=True)
class EntryRecord:
    """One path a layer adds, with the raw sha256 of its bytes for files and hard links.

    Records live until the whole image is walked, one per path of every layer: they are kept
    small (slots, 32-byte digests, one shared record for each kind without content).
    """

    kind: EntryKind
    digest: bytes | None = None


_SHARED = {kind: EntryRecord(kind) for kind in ("dir", "symlink", "other", "hardlink")}


@dataclass
class LayerRecord:
    """What one layer does to the filesystem, exactly as its tar says it."""

    entries: dict[str, EntryRecord] = field(default_factory=dict)
    whiteouts: set[str] = field(default_factory=set)
    opaques: set[str] = field(default_factory=set)
    # paths that appear more than once in this layer: the last one wins on extraction
    repeated: set[str] = field(default_factory=set)
    # whiteout names that name nothing (a bare ".wh."), kept for the report
    odd_whiteouts: list[str] = field(default_factory=list)
    # entries whose path is longer than PATH_MAX: scanned, not recorded
    too_long: int = 0


class _EndOnce:
    """The tar stream as tarfile sees it: after the end, a second read is an error.

    tarfile skips an entry's data by reading it block by block, and goes on reading empty
    blocks past the end of the stream for as long as the header's size says: a 1.5 KB layer
    declaring 2^70 bytes would keep it looping for ever.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._ended = False

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        if not data and size != 0:
            if self._ended:
                raise EOFError("read past the end of the layer")
            self._ended = True
        return data


class _MemberReader(HashingReader):
    """A tar member's bytes; a tar that ends inside the member is a LayerError here too,
    since the caller, not the walker, is the one reading."""

    def __init__(self, raw: BinaryIO, path: str) -> None:
        super().__init__(raw)
        self._path = path

    def read(self, size: int = -1) -> bytes:
        try:
            return super().read(size)
        except (tarfile.TarError, EOFError):
            raise LayerError(f"tar stream is truncated in {self._path}") from None


@dataclass(frozen=True)
class FileEntry:
    """A regular file met in the walk; ``stream`` is valid until the next entry."""

    path: str
    size: int
    reader: HashingReader

    @property
    def stream(self) -> BinaryIO:
        """The file's bytes."""
        return self.reader  # type: ignore[return-value]

    def digest(self) -> bytes:
        """Raw sha256 of the whole file (reads whatever the caller left unread)."""
        self.reader.drain()
        return self.reader.hasher.digest()


def display_name(name: str) -> str:
    """Make a tar name printable: bytes that are not UTF-8 become backslash escapes."""
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeError:
        return name.encode("utf-8", "backslashreplace").decode("utf-8")


def normalize(name: str) -> str:
    """Absolute, normalised path for a tar member name (``./a/../b/`` -> ``/b``).

    ``..`` cannot climb above the root, so a hostile name stays inside the image.
    """
    path = posixpath.normpath("/" + display_name(name))
    # normpath keeps a leading "//" (POSIX allows it to be special); the image root is one
    return "/" + path.lstrip("/")


def _kind(info: tarfile.TarInfo) -> EntryKind:
    if info.isreg():
        return "file"
    if info.isdir():
        return "dir"
    if info.issym():
        return "symlink"
    if info.islnk():
        return "hardlink"
    return "other"


def walk(tar_stream: BinaryIO, record: LayerRecord) -> Iterator[FileEntry]:
    """Yield every regular file of an uncompressed layer tar, filling ``record``.

    The caller may read as much of each file's stream as it likes; the rest is read here
    so that the file's digest covers all of it. Raises :class:`LayerError` when the tar
    cannot be read to its end.
    """
    try:
        guarded = cast(BinaryIO, _EndOnce(tar_stream))
        tar = tarfile.open(fileobj=guarded, mode="r|", bufsize=TAR_BUFSIZE)  # noqa: SIM115
    except (tarfile.TarError, ValueError, EOFError) as exc:
        raise LayerError(f"not a tar stream: {exc}") from None
    path = ""
    try:
        while (info := tar.next()) is not None:
            # a streaming TarFile still appends every header to tar.members; nothing here
            # looks back, and a layer of 200,000 files would otherwise hold them all
            tar.members.clear()  # type: ignore[attr-defined]
            path = normalize(info.name)
            if len(path) > PATH_MAX:
                record.too_long += 1
                if info.isreg():
                    reader = tar.extractfile(info)
                    if reader is not None:
                        member = _MemberReader(reader, path)  # type: ignore[arg-type]
                        yield FileEntry(path, info.size, member)
                continue
            base = posixpath.basename(path)
            parent = posixpath.dirname(path)
            if base.startswith(WHITEOUT_PREFIX):
                _record_whiteout(record, parent, base)
                continue
            if path in record.entries:
                record.repeated.add(path)
            kind = _kind(info)
            if kind == "file":
                reader = tar.extractfile(info)
                if reader is None:  # pragma: no cover - tarfile returns one for regular files
                    record.entries[path] = _SHARED["other"]
                    continue
                entry = FileEntry(path, info.size, _MemberReader(reader, path))  # type: ignore[arg-type]
                yield entry
                record.entries[path] = EntryRecord("file", entry.digest())
            elif kind == "hardlink":
                # the target is earlier in this same layer; its bytes were scanned there
                target = record.entries.get(normalize(info.linkname))
                digest = target.digest if target is not None else None
                record.entries[path] = (
                    EntryRecord("hardlink", digest) if digest else _SHARED["hardlink"]
                )
            else:
                record.entries[path] = _SHARED[kind]
    except (tarfile.TarError, ValueError) as exc:
        # tarfile raises ValueError on some malformed headers (a GNU sparse map of non-numbers)
        where = f" after {path}" if path else ""
        raise LayerError(f"tar stream is corrupt{where}: {exc}") from None
    except EOFError:
        where = f" in {path}" if path else ""
        raise LayerError(f"tar stream is truncated{where}") from None


def _record_whiteout(record: LayerRecord, parent: str, base: str) -> None:
    if base == OPAQUE_MARKER:
        record.opaques.add(parent)
    elif base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
        # other ".wh..wh." names are aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): no effect
        return
    elif base == WHITEOUT_PREFIX:
        record.odd_whiteouts.append(posixpath.join(parent, base))
    else:
        record.whiteouts.add(posixpath.join(parent, base[len(WHITEOUT_PREFIX) :]))
