"""Zip (jar, war, ear, whl, egg, nupkg, ...) walked front to back through its local file
headers, never its central directory: the file is a stream that cannot seek."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Generator
from dataclasses import dataclass

from leakscan.layers.archives.decoders import Decoded, codec
from leakscan.layers.archives.limits import (
    CHUNK,
    STEP,
    ZIP_LOCAL,
    Budget,
    Entry,
    Skipped,
    Walk,
    human,
    join,
)
from leakscan.layers.archives.sources import Damage, Limited, Reader, Source

ZIP_DESCRIPTOR = b"PK\x07\x08"
# records that follow the last member: central directory, end records, signatures
ZIP_ENDS = (
    b"PK\x01\x02",
    b"PK\x05\x06",
    b"PK\x06\x06",
    b"PK\x06\x07",
    b"PK\x05\x05",
    b"PK\x06\x08",
)
ZIP64_TAG = 0x0001
U32 = 0xFFFFFFFF
_ZIP_METHODS = {0: "stored", 8: "deflate", 12: "bzip2", 93: "zstd", 95: "xz"}


@dataclass(frozen=True)
class _ZipHeader:
    flags: int
    method: int
    csize: int
    usize: int
    name: bytes
    zip64: bool


def _zip_header(src: Source) -> _ZipHeader:
    """The local file header after its signature."""
    fixed = src.read_exact(26)
    if len(fixed) < 26:
        raise Damage("truncated local file header")
    _, flags, method, _, _, _, csize, usize, name_len, extra_len = struct.unpack(
        "<HHHHHIIIHH", fixed
    )
    name = src.read_exact(name_len)
    extra = src.read_exact(extra_len)
    if len(name) < name_len or len(extra) < extra_len:
        raise Damage("truncated local file header")
    zip64 = False
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4 : pos + 4 + length]
        pos += 4 + length
        if tag != ZIP64_TAG:
            continue
        zip64 = True
        # the zip64 field holds the sizes whose 32-bit fields are saturated, in this order
        at = 0
        if usize == U32 and len(body) >= at + 8:
            (usize,) = struct.unpack_from("<Q", body, at)
            at += 8
        if csize == U32 and len(body) >= at + 8:
            (csize,) = struct.unpack_from("<Q", body, at)
    return _ZipHeader(flags, method, csize, usize, name, zip64)


def walk_zip(budget: Budget, path: str, src: Source) -> Walk:
    """Walk the zip at ``path`` through its local file headers, front to back."""
    count = 0
    while not budget.halted:
        offset = src.pos
        sig = src.read_exact(4)
        if sig != ZIP_LOCAL:
            if sig in ZIP_ENDS or src.cut():
                return
            why = "truncated (no central directory)" if len(sig) < 4 else "no local file header"
            yield Skipped(path, f"unreadable zip: {why} at offset {offset}")
            return
        count += 1
        if count > budget.limits.max_members:
            yield Skipped(path, f"more than {budget.limits.max_members} members")
            return
        try:
            header = _zip_header(src)
        except Damage as exc:
            if not src.cut():
                yield Skipped(path, f"unreadable zip: {exc} at offset {offset}")
            return
        if not (yield from _zip_entry(budget, path, src, header)):
            return


def _zip_entry(
    budget: Budget, path: str, src: Source, h: _ZipHeader
) -> Generator[Entry | Skipped, None, bool]:
    """One zip member, from after its header to the next header; False stops the zip."""
    limits = budget.limits
    cap = limits.max_member_size
    member_path = join(path, h.name)
    encrypted = bool(h.flags & 0x41) or h.method == 99  # traditional, strong, AES
    descriptor = bool(h.flags & 0x08)
    # where the data ends: the deflate stream ends itself; otherwise the header's size,
    # or (bit 3 and no size) the data descriptor found by its signature
    data: Reader
    decoder: Decoded | None = None
    if descriptor and h.method == 8 and not encrypted:
        ends = "deflate"
        data = decoder = Decoded(budget, codec("deflate", src, limits), src, "zip")
    elif descriptor and h.csize in (0, U32):
        ends = "signature"
        data = _UntilDescriptor(src, plain=h.method == 0 and not encrypted, zip64=h.zip64)
    else:
        ends = "size"
        data = Limited(src, h.csize)

    reason = None
    if h.name.endswith(b"/"):
        reason = ""  # a directory: not a member, nothing to say
    elif encrypted:
        reason = "encrypted zip member"
    elif h.method not in _ZIP_METHODS:
        reason = f"unsupported zip compression method {h.method}"
    elif cap is not None and not descriptor and h.usize > cap:
        reason = f"larger than {human(cap)}"
    if reason is None:
        content = data
        if h.method != 0 and ends != "deflate":
            packed = Source(data)
            unpack = codec(_ZIP_METHODS[h.method], packed, limits)
            content = decoder = Decoded(budget, unpack, packed, "zip")
        size = None if descriptor else h.usize
        yield Entry(member_path, size, content)
    elif reason:
        yield Skipped(member_path, reason)

    if not budget.halted:
        # step past what the caller left: by length when there is one, so compressed
        # bytes nobody reads are not decompressed; else decoding to the end of the deflate
        # stream (charged to the budget) or scanning for the descriptor
        if isinstance(data, Limited):
            data.skip_rest()
        else:
            data.drain()
    if decoder is not None and decoder.problem:
        yield Skipped(member_path, decoder.problem)
        if ends == "deflate":
            # only decoding finds the end of this member, so the next header is out of reach
            if not budget.halted and not decoder.problem.startswith("unreadable"):
                yield Skipped(path, f"rest of the zip not read: {member_path} was not decoded")
            return False
    if budget.halted:
        return False
    if isinstance(data, Limited) and data.short:
        if not src.cut():
            yield Skipped(path, f"unreadable zip: truncated in {member_path}")
        return False
    if isinstance(data, _UntilDescriptor) and not data.found:
        if not src.cut():
            yield Skipped(path, f"unreadable zip: no data descriptor after {member_path}")
        return False
    if ends == "deflate":
        assert decoder is not None
        if not _skip_descriptor(src, decoder.consumed, decoder.produced, h.zip64, True):
            if not src.cut():
                yield Skipped(path, f"unreadable zip: bad data descriptor after {member_path}")
            return False
    elif ends == "size" and descriptor:
        # bit 3 with sizes in the header anyway: a descriptor may still follow the data
        _skip_descriptor(src, h.csize, h.usize, h.zip64, False)
    return True


def _descriptor_at(
    buf: bytes | bytearray, at: int, csize: int, usize: int | None, zip64: bool
) -> int:
    """Where a data descriptor's CRC-32 field starts at ``at`` and its sizes are ``csize``
    and ``usize`` (None: not known), return the offset after it, else 0.

    Sizes are 8 bytes in zip64 descriptors and 4 otherwise; the header's zip64 field says
    which to expect, but writers differ, so the other is tried too. Small values make the
    two ambiguous, so the next record must start with "PK" when it is in view.
    """
    for wide in (zip64, not zip64):
        end = at + (20 if wide else 12)
        if end > len(buf):
            continue
        got = struct.unpack_from("<QQ" if wide else "<II", buf, at + 4)
        mask = (1 << 64) - 1 if wide else U32
        if got[0] != csize & mask or (usize is not None and got[1] != usize & mask):
            continue
        if len(buf) >= end + 2 and buf[end : end + 2] != b"PK":
            continue
        return end
    return 0


def _skip_descriptor(src: Source, csize: int, usize: int, zip64: bool, strict: bool) -> bool:
    """Step past a data descriptor recording ``csize`` / ``usize`` (its signature is
    optional); False, reading nothing, if there is none."""
    buf = src.read_exact(28)
    starts = (4, 0) if buf.startswith(ZIP_DESCRIPTOR) else (0,)
    for at in starts:
        if end := _descriptor_at(buf, at, csize, usize, zip64):
            src.unread(buf[end:])
            return True
    src.unread(buf)
    return not strict


class _UntilDescriptor(Reader):
    """A zip member's bytes up to its data descriptor.

    A member written with bit 3 and not self-terminating (stored, or encrypted) has no
    length anywhere before the central directory. Its end is the descriptor signature
    followed by the length of the data before it (and, for stored data, its CRC-32):
    a false match would need all of that to line up by chance.
    """

    LOOKAHEAD = 28  # signature, CRC-32, two 8-byte zip64 sizes, the next record's signature

    def __init__(self, src: Source, plain: bool, zip64: bool) -> None:
        self._under = src
        self._src = src
        self._plain = plain  # the data is the member's content: its CRC can be checked
        self._zip64 = zip64
        self._buf = bytearray()
        self._eof = False
        self._crc = 0
        self.count = 0
        self.found = False
        self._done = False

    def _read(self, n: int) -> bytes:
        if self._done:
            return b""
        want = min(n, STEP)
        while len(self._buf) < want + self.LOOKAHEAD and not self._eof:
            more = self._src.read(CHUNK)
            if more:
                self._buf += more
            else:
                self._eof = True
        limit = min(want, len(self._buf))
        # CRC of the data before each candidate, extended candidate by candidate, so a
        # buffer stuffed with fake signatures costs one pass, not one pass per signature
        crc, crc_at = self._crc, 0
        start = 0
        while (p := self._buf.find(ZIP_DESCRIPTOR, start, limit + 4)) >= 0:
            if self._plain:
                crc = zlib.crc32(self._buf[crc_at:p], crc)
                crc_at = p
            end = self._descriptor_end(p, crc)
            if end:
                data = bytes(self._buf[:p])
                self._src.unread(bytes(self._buf[end:]))
                self._buf.clear()
                self._take(data)
                self.found = self._done = True
                return data
            start = p + 1
        if not self._buf:
            self._done = True  # the source ended without a descriptor; the owner says so
            return b""
        data = bytes(self._buf[:limit])
        del self._buf[:limit]
        self._take(data)
        return data

    def _descriptor_end(self, p: int, crc: int) -> int:
        size = self.count + p
        if p + 8 > len(self._buf):
            return 0  # the source ended inside what would be the descriptor
        (stored_crc,) = struct.unpack_from("<I", self._buf, p + 4)
        if self._plain and stored_crc != crc:
            return 0
        usize = size if self._plain else None
        return _descriptor_at(self._buf, p + 4, size, usize, self._zip64)

    def _take(self, data: bytes) -> None:
        if self._plain:
            self._crc = zlib.crc32(data, self._crc)
        self.count += len(data)
