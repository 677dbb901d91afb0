"""Tar headers, parsed by leakscan itself: the one parser for layer tars (the walker) and for
tars inside layer files (the archive reader), so both read the same tar the same way.

:class:`Headers` reads a tar front to back from a :class:`Blocks` source and yields its real
entries, with pax (local and global) and GNU long-name headers applied to them; it never
reads member data (its caller skips or reads it). Damage is a :class:`TarError`
(:class:`Truncated` or :class:`Corrupt`), which each caller words its own way.

It is parsed here rather than by :mod:`tarfile`, whose stream mode costs several times more
per entry, on what is the hot path of every scan.
"""

from __future__ import annotations

import zlib
from typing import Literal, Protocol

EntryKind = Literal["file", "dir", "symlink", "hardlink", "other"]
# typeflag, length of the data stored after the header, name, link name (raw bytes)
Header = tuple[bytes, int, bytes, bytes]

BLOCK = 512

# pax and GNU long-name headers are read whole: they hold names, not data, and a hostile
# one may declare gigabytes
META_MAX = 1 << 20

_ZERO_BLOCK = bytes(BLOCK)
_HIGH_BYTES = bytes(range(0x80, 0x100))
_USTAR_MAGIC = b"ustar\x00"  # POSIX; GNU tar writes "ustar  \0" and has no prefix field
# regular files: '0', the old NUL, contiguous '7' and old GNU sparse 'S'
_KINDS: dict[bytes, EntryKind] = {
    b"0": "file",
    b"\x00": "file",
    b"7": "file",
    b"S": "file",
    b"1": "hardlink",
    b"2": "symlink",
    b"5": "dir",
}
# links, devices, directories, FIFOs: their size field says nothing about data (none follows)
NO_DATA = frozenset((b"1", b"2", b"3", b"4", b"5", b"6"))
_GNU_META = frozenset((b"L", b"K"))
_PAX_META = frozenset((b"x", b"X", b"g"))  # 'X' is Solaris' name for 'x'
_META = _GNU_META | _PAX_META
_PAX_KEYS = frozenset((b"path", b"linkpath", b"size", b"GNU.sparse.name"))
_GLOBAL_KEYS = frozenset((b"path", b"linkpath", b"size"))


class TarError(Exception):
    """A tar that cannot be read on; the message says why (no entry name: callers add it)."""


class Truncated(TarError):
    """The stream ends inside a header, an extended header or before the entry one
    announces."""


class Corrupt(TarError):
    """A header or an extended header that cannot be what it claims to be."""


class Blocks(Protocol):
    """What the parser reads from: a forward-only stream."""

    def exact(self, n: int, /) -> bytes:
        """The next ``n`` bytes; fewer only at the end of the stream."""

    def skip(self, n: int, /) -> bool:
        """Pass over ``n`` bytes; False if the stream ended first."""


def entry_kind(kind: bytes, name: bytes) -> EntryKind:
    """What an entry of typeflag ``kind`` named ``name`` is (unknown types are "other")."""
    if kind == b"\x00" and name.endswith(b"/"):
        return "dir"  # old v7 tars mark a directory by its trailing slash only
    return _KINDS.get(kind, "other")


def _number(field: bytes) -> int:
    """A numeric header field: octal digits ended or padded by NULs and spaces, or GNU
    base-256 (a first byte of 0x80, or 0xff for a negative number)."""
    lead = field[0]
    if lead == 0x80:
        return int.from_bytes(field[1:], "big")
    if lead == 0xFF:
        return int.from_bytes(field, "big", signed=True)
    try:
        # int() would also take a sign or underscores: harmless (a negative size is refused)
        return int(field.partition(b"\x00")[0].strip() or b"0", 8)
    except ValueError:
        raise ValueError(f"bad number field {field!r}") from None


def _check_sum(block: bytes) -> None:
    """Raise ValueError unless the header's checksum field matches its bytes, summed as
    unsigned or as signed bytes (tar writers have done both), the field counting as spaces."""
    cut = block[148:156]
    stored = _number(cut)
    # the low half of an Adler-32 is 1 + the byte sum modulo 65521: exact for 256 bytes
    # (at most 65280), and far faster than sum() over the block
    total = (zlib.adler32(block[:256]) & 0xFFFF) + (zlib.adler32(block[256:]) & 0xFFFF) - 2
    unsigned = total - sum(cut) + 8 * 0x20
    if stored == unsigned:
        return
    high = len(block) - len(block.translate(None, _HIGH_BYTES))
    high -= len(cut) - len(cut.translate(None, _HIGH_BYTES))
    if stored != unsigned - 256 * high:
        raise ValueError("bad header checksum")


def header(block: bytes) -> Header:
    """Typeflag, size, name and link name of a (non-zero) header block, the size as its
    field says; ValueError if it is not one."""
    _check_sum(block)
    kind = block[156:157]
    size = _number(block[124:136])
    if size < 0:
        raise ValueError(f"negative size {size}")
    name = block[:100].partition(b"\x00")[0]
    link = block[157:257].partition(b"\x00")[0]
    if block[257:263] == _USTAR_MAGIC and kind not in _GNU_META and kind != b"S":
        prefix = block[345:500].partition(b"\x00")[0]
        if prefix:
            name = prefix + b"/" + name
    return kind, size, name, link


def _pax_records(payload: bytes) -> dict[bytes, bytes]:
    """The keys we use from a pax header's ``"%d key=value\\n"`` records; ValueError when a
    record is malformed."""
    found: dict[bytes, bytes] = {}
    size = len(payload.rstrip(b"\x00"))  # records end in "\n": NULs after them are padding
    pos = 0
    while pos < size:
        space = payload.find(b" ", pos, pos + 24)
        length = payload[pos:space]
        if space < 0 or not length.isdigit():
            raise ValueError("bad pax record length")
        end = pos + int(length)
        if end > size or end < space + 3 or payload[end - 1] != 0x0A:
            raise ValueError("bad pax record length")
        eq = payload.find(b"=", space + 1, end - 1)
        if eq <= space + 1:
            raise ValueError("pax record without key=value")
        key = payload[space + 1 : eq]
        if key in _PAX_KEYS:
            found[key] = payload[eq + 1 : end - 1]
        pos = end
    return found


class Headers:
    """The entries of a tar, header by header: pax and GNU long-name headers are applied to
    the entry they describe, so that only real entries come out."""

    def __init__(self, blocks: Blocks) -> None:
        self._blocks = blocks
        # a header has been read: before that, damage means the bytes are no tar at all
        self.started = False
        self._ext: dict[bytes, bytes] = {}  # pax and GNU long-name values for the next entry
        self._glob: dict[bytes, bytes] = {}  # pax global values for all later entries

    def next(self) -> Header | None:
        """The next entry's typeflag, length of stored data (0 for links, directories and
        devices, whatever their size field says), name and link name; None at the end of the
        archive. The caller passes over the data (and its padding to the block) first."""
        blocks = self._blocks
        while True:
            block = blocks.exact(BLOCK)
            if len(block) < BLOCK:
                if not self.started:
                    raise Truncated("truncated header" if block else "empty file")
                if block or self._ext:
                    raise Truncated("truncated header")
                # no end-of-archive marker, but the stream ends between entries: tarfile
                # took that for the end, and so do we
                return None
            if block == _ZERO_BLOCK:
                if self._ext:
                    raise Corrupt("an extended header is followed by the end of the archive")
                return None
            try:
                kind, size, name, link = header(block)
            except ValueError as exc:
                raise Corrupt(str(exc)) from None
            self.started = True
            if kind in _META:
                self._meta(kind, size)
                continue
            if self._ext or self._glob:
                name, size, link = self._apply(name, size, link)
            if kind == b"S" and block[482]:
                # old GNU sparse: map blocks follow the header while the last one flags more
                # (at 482 in the header, 504 in map blocks). The data stored after them is
                # the file's non-hole parts in order; those bytes are what is scanned (holes
                # are zeros, nothing to find there), so the map itself is not needed
                while True:
                    more = blocks.exact(BLOCK)
                    if len(more) < BLOCK:
                        raise Truncated("truncated sparse map")
                    if not more[504]:
                        break
            return kind, 0 if kind in NO_DATA else size, name, link

    def _meta(self, kind: bytes, size: int) -> None:
        if size > META_MAX:
            raise Corrupt(f"an extended header of {size} bytes (more than {META_MAX >> 20} MiB)")
        payload = self._blocks.exact(size)
        if len(payload) < size or not self._blocks.skip(-size % BLOCK):
            raise Truncated("truncated extended header")
        if kind == b"L":
            self._ext[b"path"] = payload.partition(b"\x00")[0]
            return
        if kind == b"K":
            self._ext[b"linkpath"] = payload.partition(b"\x00")[0]
            return
        try:
            found = _pax_records(payload)
        except ValueError as exc:
            raise Corrupt(str(exc)) from None
        if kind != b"g":
            self._ext.update(found)
            return
        for key, value in found.items():
            if key not in _GLOBAL_KEYS:
                continue
            # an empty value undoes an earlier global one
            if value:
                self._glob[key] = value
            else:
                self._glob.pop(key, None)

    def _apply(self, name: bytes, size: int, link: bytes) -> tuple[bytes, int, bytes]:
        over = {**self._glob, **self._ext} if self._glob else self._ext
        self._ext = {}
        # empty values stand for the header's own field
        name = over.get(b"GNU.sparse.name") or over.get(b"path") or name
        link = over.get(b"linkpath") or link
        declared = over.get(b"size")
        if declared:
            # a pax size is decimal; int() also refuses more than 4300 digits
            try:
                if not declared.isdigit():
                    raise ValueError
                size = int(declared)
            except ValueError:
                raise Corrupt(f"bad pax size {declared[:40]!r}") from None
        return name, size, link
