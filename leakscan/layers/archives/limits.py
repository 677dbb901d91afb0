"""The archive reader's vocabulary: the formats it opens, what opening them may cost, and
what an expansion yields."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Literal

from leakscan.layers import tarparse
from leakscan.layers.compression import ZSTD_MAGIC
from leakscan.layers.inflate import GZIP_MAGIC
from leakscan.layers.walker import normalize

if TYPE_CHECKING:
    from leakscan.layers.archives.sources import Reader

ArchiveKind = Literal["zip", "tar", "gzip", "bzip2", "xz", "zstd"]

HEAD_SIZE = 512  # enough for every magic number, the tar one (offset 257) included
CHUNK = 64 << 10  # compressed input per read: small, so the ratio check sees input closely
STEP = 1 << 20  # most output one decoder call may produce
RATIO_FLOOR = 1 << 20  # small, well-compressed files (configs, logs) pass the ratio check
MAX_DEPTH = 32  # readers nest one Python call chain per level; keep far from the stack limit

ZIP_LOCAL = b"PK\x03\x04"
ZIP_EMPTY = b"PK\x05\x06"
BZIP2_MAGIC = b"BZh"
BZIP2_BLOCK = (b"\x31\x41\x59\x26\x53\x59", b"\x17\x72\x45\x38\x50\x90")  # block, end
XZ_MAGIC = b"\xfd7zXZ\x00"
# what an old v7 tar's first entry may be: a file, a link, a directory, a device, a FIFO
_V7_TYPES = (b"0", b"\0", b"7", b"S", *sorted(tarparse.NO_DATA))


@dataclass(frozen=True)
class ArchiveLimits:
    """What opening the archives in one layer file may cost."""

    max_depth: int = 3  # archive levels opened below the layer file
    max_expanded_bytes: int = 2 << 30  # decompressed bytes from ONE layer file, all levels
    max_ratio: int = 200  # expanded / compressed per stream, judged past RATIO_FLOOR
    max_members: int = 100_000  # members of one archive
    max_member_size: int | None = None  # bigger members are skipped (None: no cap)
    max_decoder_memory: int = 16 << 20  # xz dictionary / zstd window one decoder may use

    def __post_init__(self) -> None:
        if not 0 <= self.max_depth <= MAX_DEPTH:
            raise ValueError(f"max_depth must be between 0 and {MAX_DEPTH}")
        if self.max_expanded_bytes < 0 or self.max_ratio < 1 or self.max_members < 0:
            raise ValueError("archive limits must not be negative (max_ratio at least 1)")
        if self.max_member_size is not None and self.max_member_size < 0:
            raise ValueError("max_member_size must not be negative")
        if self.max_decoder_memory < 1 << 20:
            raise ValueError("max_decoder_memory must be at least 1 MiB")


class Budget:
    """What one top-level expansion has spent; ``halted`` stops every level."""

    def __init__(self, limits: ArchiveLimits) -> None:
        self.limits = limits
        self.expanded = 0
        self.halted = False


@dataclass(frozen=True)
class Member:
    """A leaf to scan; ``stream`` is valid until the next item is requested.

    Reads may return fewer bytes than asked (like a raw stream) and b"" only at the end.
    """

    path: str
    size: int | None
    stream: BinaryIO


@dataclass(frozen=True)
class Skipped:
    """A member or archive not (wholly) scanned, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class Entry:
    """A member an archive walk has reached, for the expansion to hand out or open; the
    walk goes on past it once that is done. ``reader`` is valid until then."""

    path: str
    size: int | None
    reader: Reader


# what expanding yields, and what walking one archive yields
Items = Generator[Member | Skipped, None, None]
Walk = Generator[Entry | Skipped, None, None]


def archive_kind(path: str, head: bytes) -> ArchiveKind | None:
    """Name the archive format whose magic bytes open ``head`` (at least the first 512
    bytes of the file, fewer if it is shorter), or None. Names only matter for old v7 tars,
    which have no magic and are recognised by their header checksum when named ``*.tar``."""
    if head.startswith((ZIP_LOCAL, ZIP_EMPTY)):
        return "zip"
    if head[257:262] == b"ustar":
        return "tar"
    if head.startswith(GZIP_MAGIC + b"\x08"):  # deflate is gzip's only method
        return "gzip"
    if head.startswith(BZIP2_MAGIC) and b"1" <= head[3:4] <= b"9" and head[4:10] in BZIP2_BLOCK:
        return "bzip2"  # level digit, then a block or end-of-stream magic
    if head.startswith(XZ_MAGIC):
        return "xz"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if path.lower().endswith(".tar") and len(head) >= tarparse.BLOCK and _v7_header(head):
        return "tar"
    return None


def _v7_header(head: bytes) -> bool:
    block = head[: tarparse.BLOCK]
    if block[0] == 0 or block[156:157] not in _V7_TYPES:
        return False
    try:
        tarparse.header(block)
    except ValueError:
        return False
    return True


def join(outer: str, name: bytes) -> str:
    """The name of member ``name`` of the archive at ``outer``: ``OUTER!/INNER``."""
    return outer + "!" + normalize(name.decode("utf-8", "surrogateescape"))


def human(n: int) -> str:
    """A size as people read it: ``16 MiB``, ``1000 bytes``."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} bytes"
