"""Git objects as they are stored: loose objects (one zlib stream each) and pack files
(version 2 and 3; whole objects and OFS_DELTA / REF_DELTA deltas), read from a spool.

Everything here is hostile input. Every declared size is checked before anything is
inflated and every inflation is bounded by the size its header declares, so a zlib bomb
costs at most that much; every byte inflated is charged to a :class:`Budget`; delta chains
are resolved without recursion, at most ``max_depth`` deep, and a chain that comes back to
an object already in it is an error; a delta copy that reaches outside its base, a base
outside the pack, a result of another size than declared are errors.

A pack's ``.idx`` gives every object's id and offset without inflating anything: with one,
objects are typed from their headers alone and each delta is resolved once, when it is
read. The index is checked first (its size, its count against the pack's, ids sorted,
offsets inside the pack and distinct, the pack's checksum) and every object read from it
is hashed again: an object whose bytes are not the id the index gives is said and named by
its own id, bytes after an object that the index does not name are said. A pack without
an index (or with one that fails the checks) is read front to back, every object resolved
once to learn its id and again when it is read.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import sys
import zlib
from array import array
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

# object types in a pack header (5 is reserved)
COMMIT, TREE, BLOB, TAG, OFS_DELTA, REF_DELTA = 1, 2, 3, 4, 6, 7
TYPE_NAMES = {COMMIT: b"commit", TREE: b"tree", BLOB: b"blob", TAG: b"tag"}
NAME_TYPES = {name: t for t, name in TYPE_NAMES.items()}
PACK_HEADER = 12
OID_SIZE = 20
# what is read from the spool at once while walking a pack (most objects are a few KB)
WINDOW = 1 << 20
# resolved objects kept as delta bases (git writes a base before the deltas on it, so the
# recent ones are what the next deltas need)
CACHE_BYTES = 4 << 20
CACHE_ONE = 1 << 20
# a delta copy at least this long is kept as a view of its base until the result is joined
LONG_COPY = 1 << 12
# the most one call of zlib inflates at once
OUT_PIECE = 4 << 20
# a delta's instructions larger than this are applied as they are inflated, in pieces of
# this size
STREAM_DELTA = 1 << 20


class GitFormatError(Exception):
    """An object store that is not what git writes (truncated, corrupt or hostile)."""


class OverBudget(Exception):
    """A budget of :class:`Budget` is spent; what was read so far stands."""


@dataclass
class Budget:
    """What reading one git directory may cost."""

    max_objects: int
    max_inflated: int
    max_object_size: int
    max_depth: int
    objects: int = 0
    inflated: int = 0

    def count(self) -> None:
        self.objects += 1
        if self.objects > self.max_objects:
            raise OverBudget(f"more than {self.max_objects} objects")

    def charge(self, n: int) -> None:
        self.inflated += n
        if self.inflated > self.max_inflated:
            raise OverBudget(f"more than {self.max_inflated >> 20} MiB inflated")

    def size(self, n: int) -> None:
        if n > self.max_object_size:
            raise GitFormatError(f"an object of {n} bytes (more than the limit)")


class Spool:
    """The bytes of one spooled file, read at any offset."""

    def __init__(self, fh: BinaryIO, start: int, length: int) -> None:
        self._fh = fh  # (held: the file stays open while a spool of it is read)
        self._fd = fh.fileno()
        self.start = start
        self.length = length
        self._win_at = 0
        self._win = b""

    def read(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes at ``offset`` (fewer at the end)."""
        n = max(0, min(n, self.length - offset))
        if n == 0 or offset < 0:
            return b""
        at = offset - self._win_at
        if at >= 0 and at + n <= len(self._win):
            return self._win[at : at + n]
        if n >= WINDOW:
            return os.pread(self._fd, n, self.start + offset)
        want = min(WINDOW, self.length - offset)
        self._win = os.pread(self._fd, want, self.start + offset)
        self._win_at = offset
        return self._win[:n]


def inflate(spool: Spool, offset: int, size: int, budget: Budget) -> tuple[bytes, int]:
    """The zlib stream at ``offset`` of ``spool`` inflated, which must make exactly ``size``
    bytes, and the offset after the stream."""
    data, end = _inflate(spool, offset, size, budget)
    return (data if isinstance(data, bytes) else bytes(data)), end


def inflate_delta(
    spool: Spool, offset: int, size: int, budget: Budget
) -> tuple[bytearray | bytes, int]:
    """As :func:`inflate`, for a delta's instructions (read only by :func:`apply_delta`):
    a large one is not copied once more into bytes."""
    return _inflate(spool, offset, size, budget)


def _inflate(spool: Spool, offset: int, size: int, budget: Budget) -> tuple[bytearray | bytes, int]:
    """The zlib stream at ``offset``: bytes when it came in one piece (most objects), else
    the pieces gathered in one bytearray as they come (never a list of pieces joined at
    the end, which held a large object twice)."""
    first = b""
    out: bytearray | None = None
    ends: list[int] = []
    for piece in inflate_pieces(spool, offset, size, budget, ends):
        if out is not None:
            out += piece
        elif not first:
            first = piece
        else:
            out = bytearray(first)
            out += piece
            first = b""
    return (first if out is None else out), ends[0]


def inflate_pieces(
    spool: Spool, offset: int, size: int, budget: Budget, ends: list[int], most: int = OUT_PIECE
) -> Iterator[bytes]:
    """The zlib stream at ``offset`` inflated in pieces of at most ``most`` bytes, which
    must make exactly ``size`` bytes in all (never a byte more is inflated: a bomb stops
    there); every piece charged to ``budget``; the offset after the stream appended to
    ``ends`` once it is all read."""
    d = zlib.decompressobj()
    have = 0
    at = offset
    # input read at once: about what deflate can make of ``size`` bytes at worst (zlib
    # copies whatever input is left over after the stream, so a fixed large piece per
    # small object cost a copy of that piece each time)
    chunk = min(WINDOW, size + (size >> 8) + 64)
    while not d.eof:
        data = spool.read(at, chunk)
        if not data:
            raise GitFormatError(f"truncated object at offset {offset}")
        at += len(data)
        while True:
            try:
                # never more than one byte past what the header declared
                piece = d.decompress(data, min(most, size + 1 - have))
            except zlib.error as exc:
                raise GitFormatError(f"corrupt object at offset {offset}: {exc}") from None
            have += len(piece)
            budget.charge(len(piece))
            if have > size:
                raise GitFormatError(f"object at offset {offset} is larger than declared")
            if piece:
                yield piece
            tail = d.unconsumed_tail
            if not tail or d.eof:
                break
            if not piece and len(tail) == len(data):
                raise GitFormatError(f"corrupt object at offset {offset}")
            data = tail
        chunk = WINDOW
    if have != size:
        raise GitFormatError(f"object at offset {offset} is smaller than declared")
    ends.append(at - len(d.unused_data))


def _varint(data: bytes | bytearray, pos: int) -> tuple[int, int]:
    """A delta header's size (little-endian base-128) at ``pos``, and the position after."""
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise GitFormatError("bad delta header")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, pos


# for each copy instruction (0x80-0xff): the shifts of the offset bytes and of the size
# bytes that follow it, in order (its low 7 bits say which of them are there)
_COPY_ARGS = [
    (
        tuple(8 * i for i in range(4) if op & (1 << i)),
        tuple(8 * i for i in range(3) if op & (0x10 << i)),
    )
    for op in range(256)
]


def _delta_sizes(delta: bytes | bytearray, base: bytes, max_size: int) -> tuple[int, int]:
    """A delta's result size (checked) and where its instructions start."""
    src, pos = _varint(delta, 0)
    dst, pos = _varint(delta, pos)
    if src != len(base):
        raise GitFormatError("delta base of another size than the delta expects")
    if dst > max_size:
        raise GitFormatError(f"a delta result of {dst} bytes (more than the limit)")
    return dst, pos


class _Result:
    """A delta's result while it is made: joined once at the end from views of the base
    (long copies, which cost no memory) and runs of what lies between them: allocated once
    at its size, never grown nor copied whole again (a 24 MiB blob built in one bytearray
    cost a second 24 MiB when it was made bytes); short pieces go in runs, not one object
    each."""

    def __init__(self, base: bytes, dst: int) -> None:
        self.view = memoryview(base)
        self.nbase = len(base)
        self.dst = dst
        self.pieces: list[bytearray | memoryview] = []
        self.run = bytearray()
        self.have = 0

    def apply(self, delta: bytes | bytearray, pos: int, stop: int) -> int:
        """Apply the instructions that start in ``delta[pos:stop]`` (the last may run
        past ``stop``, not past the end); the position after them."""
        n = len(delta)
        dview = memoryview(delta)
        view, nbase, dst, pieces = self.view, self.nbase, self.dst, self.pieces
        run, have = self.run, self.have
        try:
            while pos < stop:
                op = delta[pos]
                pos += 1
                if op & 0x80:
                    offs, sizes = _COPY_ARGS[op]
                    off = size = 0
                    for shift in offs:
                        off |= delta[pos] << shift
                        pos += 1
                    for shift in sizes:
                        size |= delta[pos] << shift
                        pos += 1
                    if size == 0:
                        size = 0x10000
                    if off + size > nbase:
                        raise GitFormatError("delta copies from outside its base")
                    if size >= LONG_COPY:
                        if run:
                            pieces.append(run)  # (joined as it is: never copied twice)
                            run = bytearray()
                        pieces.append(view[off : off + size])
                    else:
                        run += view[off : off + size]
                    have += size
                elif op:
                    if pos + op > n:
                        raise GitFormatError("delta insert past its end")
                    run += dview[pos : pos + op]
                    have += op
                    pos += op
                else:
                    raise GitFormatError("delta instruction 0")
                if have > dst:
                    raise GitFormatError("delta result larger than declared")
        except IndexError:
            # an instruction cut off by the end of the delta
            raise GitFormatError("delta ends inside an instruction") from None
        finally:
            dview.release()
        self.run, self.have = run, have
        return pos

    def join(self) -> bytes:
        if self.have != self.dst:
            raise GitFormatError("delta result of another size than declared")
        if not self.pieces:
            return bytes(self.run)
        self.pieces.append(self.run)
        return b"".join(self.pieces)


def apply_delta(base: bytes, delta: bytes | bytearray, max_size: int) -> bytes:
    """``delta`` applied to ``base``: git's copy and insert instructions, every copy within
    the base and the result exactly the size the delta declares (at most ``max_size``)."""
    dst, pos = _delta_sizes(delta, base, max_size)
    result = _Result(base, dst)
    result.apply(delta, pos, len(delta))
    return result.join()


# an instruction is at most 128 bytes long (an insert of 127); the last one started in a
# piece of a streamed delta must end in it
_LONGEST_OP = 128


def apply_delta_pieces(base: bytes, pieces: Iterator[bytes], max_size: int) -> bytes:
    """As :func:`apply_delta`, the delta coming in pieces (a large delta's instructions
    are never held whole: a 24 MiB delta on a 24 MiB base cost another ~22 MiB)."""
    buf: bytes = b""
    result: _Result | None = None
    pos = 0
    for piece in pieces:
        buf = buf[pos:] + piece
        pos = 0
        if result is None:
            if len(buf) < 2 * 10:  # (two sizes of at most 10 bytes each)
                continue
            dst, pos = _delta_sizes(buf, base, max_size)
            result = _Result(base, dst)
        pos = result.apply(buf, pos, len(buf) - _LONGEST_OP)
    if result is None:
        dst, pos = _delta_sizes(buf, base, max_size)
        result = _Result(base, dst)
    result.apply(buf, pos, len(buf))
    return result.join()


def object_id(kind: int, data: bytes) -> bytes:
    """The sha1 git names an object by."""
    h = hashlib.sha1(usedforsecurity=False)
    h.update(b"%s %d\0" % (TYPE_NAMES[kind], len(data)))
    h.update(data)
    return h.digest()


def read_loose(data: bytes, max_size: int, budget: Budget) -> tuple[int, bytes]:
    """A loose object's type and content: one zlib stream of ``TYPE SIZE\\0`` and the bytes."""
    d = zlib.decompressobj()
    try:
        head = d.decompress(data, 64)
        end = head.find(b"\0")
        if end < 0:
            raise GitFormatError("loose object without a header")
        name, _, size_text = head[:end].partition(b" ")
        kind = NAME_TYPES.get(name)
        if kind is None or not size_text.isdigit() or len(size_text) > 19:
            raise GitFormatError("loose object of unknown type")
        size = int(size_text)
        if size > max_size:
            raise GitFormatError(f"an object of {size} bytes (more than the limit)")
        rest = head[end + 1 :]
        if len(rest) > size:
            raise GitFormatError("loose object larger than declared")
        # (never a max_length of 0: zlib reads that as no limit at all)
        more = d.decompress(d.unconsumed_tail, size + 1 - len(rest))
        body = rest + more
        budget.charge(len(body))
    except zlib.error as exc:
        raise GitFormatError(f"corrupt loose object: {exc}") from None
    if len(body) != size or not d.eof:
        raise GitFormatError("loose object of another size than declared")
    return kind, body


@dataclass(frozen=True)
class PackEntry:
    """Where one object of a pack is and what it is before deltas are applied."""

    kind: int
    size: int
    data_at: int
    base: int | bytes | None  # the base's offset (OFS_DELTA) or id (REF_DELTA)


def entry_at(spool: Spool, offset: int, max_size: int) -> PackEntry:
    """The object header at ``offset``."""
    head = spool.read(offset, 32)
    if not head:
        raise GitFormatError(f"truncated pack at offset {offset}")
    b = head[0]
    kind = (b >> 4) & 7
    size = b & 15
    shift = 4
    pos = 1
    while b & 0x80:
        if pos >= len(head) or shift > 60:
            raise GitFormatError(f"bad object header at offset {offset}")
        b = head[pos]
        pos += 1
        size |= (b & 0x7F) << shift
        shift += 7
    if kind in (0, 5):
        raise GitFormatError(f"object of type {kind} at offset {offset}")
    if size > max_size:
        raise GitFormatError(f"an object of {size} bytes at offset {offset} (over the limit)")
    base: int | bytes | None = None
    if kind == OFS_DELTA:
        if pos >= len(head):
            raise GitFormatError(f"bad delta offset at offset {offset}")
        b = head[pos]
        pos += 1
        back = b & 0x7F
        while b & 0x80:
            if pos >= len(head) or back > 1 << 56:
                raise GitFormatError(f"bad delta offset at offset {offset}")
            b = head[pos]
            pos += 1
            back = ((back + 1) << 7) | (b & 0x7F)
        base = offset - back
        if back <= 0 or base < PACK_HEADER:
            raise GitFormatError(f"delta at offset {offset} points outside the pack")
    elif kind == REF_DELTA:
        base = head[pos : pos + OID_SIZE]
        pos += OID_SIZE
        if len(base) != OID_SIZE:
            raise GitFormatError(f"truncated pack at offset {offset}")
    return PackEntry(kind, size, offset + pos, base)


class _Cache:
    """Resolved objects by key (type, bytes and how many deltas deep), least recently
    used dropped past CACHE_BYTES."""

    def __init__(self) -> None:
        self._items: OrderedDict[object, tuple[int, bytes, int]] = OrderedDict()
        self._bytes = 0
        # the last object put, whatever its size: a large blob is often the base of the
        # next one (git writes them side by side), and is still held by its scan then
        self._last: tuple[object, tuple[int, bytes, int]] | None = None

    def get(self, key: object) -> tuple[int, bytes, int] | None:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        elif self._last is not None and self._last[0] == key:
            item = self._last[1]
        return item

    def put(self, key: object, item: tuple[int, bytes, int]) -> None:
        self._last = (key, item)
        if len(item[1]) > CACHE_ONE or key in self._items:
            return
        self._items[key] = item
        self._bytes += len(item[1])
        while self._bytes > CACHE_BYTES:
            _, (_, old, _) = self._items.popitem(last=False)
            self._bytes -= len(old)


class _Ids:
    """Sorted 20-byte ids held in one bytes, seen as a sequence (what bisect needs): 20
    bytes an id instead of a bytes object and a dict slot (~100 bytes)."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def __len__(self) -> int:
        return len(self.raw) // OID_SIZE

    def __getitem__(self, i: int) -> bytes:
        return self.raw[i * OID_SIZE : (i + 1) * OID_SIZE]


_UNREAD = 0  # a kind no object has: not readable (bad header, base missing, loop, budget)
_IDX_MAGIC = b"\377tOc\0\0\0\2"
_IDX_FANOUT = 8
_IDX_IDS = _IDX_FANOUT + 256 * 4


class PackIndex:
    """One pack's objects in compact arrays: ids sorted (one bytes), and at the same
    position each object's offset and type (``_UNREAD`` when it cannot be read); the
    positions in pack order, and the offsets sorted (an offset's object, the next one)."""

    def __init__(self, ids: bytes, offsets: array[int], kinds: bytearray, checked: bool) -> None:
        self.ids = _Ids(ids)
        self.offsets = offsets
        self.kinds = kinds
        # from a .idx: every object read is hashed again against the id the index gives
        self.checked = checked
        n = len(offsets)
        self.order = array("L", sorted(range(n), key=offsets.__getitem__))
        self.sorted = array("Q", (offsets[i] for i in self.order))
        fan = array("L", [0]) * 257
        for k in range(n):
            fan[ids[k * OID_SIZE] + 1] += 1
        for b in range(256):
            fan[b + 1] += fan[b]
        self.fan = fan

    def find(self, oid: bytes) -> int:
        """The position of ``oid``, or -1."""
        if len(oid) != OID_SIZE:
            return -1
        lo, hi = self.fan[oid[0]], self.fan[oid[0] + 1]
        i = bisect.bisect_left(self.ids, oid, lo, hi)
        return i if i < hi and self.ids[i] == oid else -1

    def rank(self, offset: int) -> int:
        """The rank in pack order of the object at ``offset``, or -1 when none starts there."""
        r = bisect.bisect_left(self.sorted, offset)
        return r if r < len(self.sorted) and self.sorted[r] == offset else -1


def _offsets_4(raw: bytes) -> array[int]:
    """Big-endian 4-byte unsigned ints."""
    out = array("I")
    if out.itemsize != 4:  # (never on the platforms Python builds for)
        return array("Q", (int.from_bytes(raw[k : k + 4], "big") for k in range(0, len(raw), 4)))
    out.frombytes(raw)
    if sys.byteorder == "little":
        out.byteswap()
    return out


def read_index(data: bytes, pack: Spool, count: int) -> tuple[bytes, array[int]]:
    """A version 2 ``.idx``'s sorted ids and their offsets, checked against its pack: the
    size it must have, its count, ids strictly sorted, offsets inside the pack and distinct,
    the pack's checksum."""
    if data[:8] != _IDX_MAGIC:
        raise GitFormatError("not a version 2 index")
    if len(data) < _IDX_IDS + 40:
        raise GitFormatError("truncated index")
    n = int.from_bytes(data[_IDX_IDS - 4 : _IDX_IDS], "big")
    if n != count:
        raise GitFormatError(f"an index of {n} objects for a pack of {count}")
    crcs = _IDX_IDS + OID_SIZE * n
    small_at = crcs + 4 * n
    large_at = small_at + 4 * n
    if len(data) < large_at + 40:
        raise GitFormatError("truncated index")
    small = _offsets_4(data[small_at:large_at])
    nlarge = sum(1 for v in small if v & 0x80000000)
    if len(data) != large_at + 8 * nlarge + 40:
        raise GitFormatError("index of another size than its count gives")
    offsets = array("Q", bytes(8 * n))
    for i, v in enumerate(small):
        if v & 0x80000000:
            k = v & 0x7FFFFFFF
            if k >= nlarge:
                raise GitFormatError("index offset out of its table")
            v = int.from_bytes(data[large_at + 8 * k : large_at + 8 * k + 8], "big")
        offsets[i] = v
    if data[-40:-20] != pack.read(pack.length - OID_SIZE, OID_SIZE):
        raise GitFormatError("index of another pack (checksums differ)")
    ids = data[_IDX_IDS:crcs]
    view = _Ids(ids)
    if any(view[i] >= view[i + 1] for i in range(n - 1)):
        raise GitFormatError("index ids not sorted")
    end = pack.length - OID_SIZE
    ordered = sorted(offsets)
    if ordered and (ordered[0] < PACK_HEADER or ordered[-1] >= end):
        raise GitFormatError("index offset outside the pack")
    if any(ordered[i] == ordered[i + 1] for i in range(n - 1)):
        raise GitFormatError("index names one offset twice")
    return ids, offsets


class ObjectStore:
    """Every object of one git directory that could be read: by id, with its type."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.packs: list[Spool] = []
        self.loose: list[Spool] = []
        # one per pack, in compact arrays (a dict of id -> place cost ~150 bytes an object)
        self._indexes: list[PackIndex] = []
        # loose objects: id -> loose number << 3 | type (few: a dict is fine)
        self._loose: dict[bytes, int] = {}
        # the objects of the pack being read front to back: id -> offset << 3 | type
        self._walking: dict[bytes, int] = {}
        self._cache = _Cache()
        # what reading objects found wrong (an index that lies, bytes it does not name)
        self.problems: list[str] = []
        self._said: set[tuple[int, int]] = set()

    def _find(self, oid: bytes) -> tuple[int, int, int] | None:
        """(pack number, or -1 - loose number; offset; type) of ``oid``: a loose object
        first, then the packs in the order they were added."""
        place = self._loose.get(oid)
        if place is not None:
            return -1 - (place >> 3), 0, place & 7
        for number, index in enumerate(self._indexes):
            i = index.find(oid)
            if i >= 0 and index.kinds[i] != _UNREAD:
                return number, index.offsets[i], index.kinds[i]
        place = self._walking.get(oid)
        if place is not None:
            return len(self._indexes), place >> 3, place & 7
        return None

    def locate(self, oid: bytes) -> tuple[int, int] | None:
        """Where an object is: (pack number, or -1 - loose number; offset), or None."""
        found = self._find(oid)
        return None if found is None else found[:2]

    def kind_of(self, oid: bytes) -> int | None:
        """An object's type, or None when it is not in the store."""
        found = self._find(oid)
        return None if found is None else found[2]

    def __contains__(self, oid: bytes) -> bool:
        return self._find(oid) is not None

    # --- loading --------------------------------------------------------------------

    def add_loose(self, oid: bytes, spool: Spool) -> None:
        """A loose object (read when it is wanted; its type read now)."""
        self.budget.count()
        n = len(self.loose)
        self.loose.append(spool)
        kind, data = read_loose(
            spool.read(0, spool.length), self.budget.max_object_size, self.budget
        )
        self._loose.setdefault(oid, (n << 3) | kind)
        self._cache.put((-1 - n, 0), (kind, data, 0))

    def add_pack(self, spool: Spool, index: bytes | None = None) -> list[str]:
        """Add a pack, with the bytes of its ``.idx`` when there is one; what could not be
        read (a truncated or corrupt tail, deltas on missing bases, an index not used) is
        said in the list returned. Raises OverBudget when a budget ran out (what was read
        stays)."""
        head = spool.read(0, PACK_HEADER)
        if len(head) < PACK_HEADER or head[:4] != b"PACK":
            return ["not a pack file"]
        version = int.from_bytes(head[4:8], "big")
        count = int.from_bytes(head[8:12], "big")
        if version not in (2, 3):
            return [f"pack version {version}"]
        problems: list[str] = []
        if index is not None:
            try:
                ids, offsets = read_index(index, spool, count)
            except GitFormatError as exc:
                problems.append(f"its index not used ({exc}): read front to back")
            else:
                self.packs.append(spool)
                return self._typed(spool, ids, offsets)
        self.packs.append(spool)
        return problems + self._walk(spool, count)

    def _typed(self, spool: Spool, ids: bytes, offsets: array[int]) -> list[str]:
        """Type every object of an indexed pack from the headers alone (a delta has its
        base's type): chains walked without recursion, at most ``max_depth`` deep, a loop
        or a base that is not an object makes every object on it unreadable."""
        index = PackIndex(ids, offsets, bytearray(len(offsets)), checked=True)
        self._indexes.append(index)
        kinds = index.kinds
        bad = _UNREAD + 8  # marks a chain found unreadable while typing
        why: dict[str, int] = {}
        n = len(offsets)
        limit = n
        over: OverBudget | None = None
        for r in range(n):
            try:
                self.budget.count()
            except OverBudget as exc:
                limit, over = r, exc
                break
        max_size, max_depth = self.budget.max_object_size, self.budget.max_depth
        for r in range(n):
            i = index.order[r]
            if kinds[i]:
                continue
            chain: list[int] = []
            on: set[int] = set()
            j = i
            kind = bad
            reason = ""
            while True:
                if kinds[j]:
                    kind = kinds[j]
                    break
                if j in on:
                    reason = "a delta chain that loops"
                    break
                if len(chain) > max_depth:
                    reason = f"a delta chain deeper than {max_depth}"
                    break
                chain.append(j)
                on.add(j)
                try:
                    entry = entry_at(spool, offsets[j], max_size)
                except GitFormatError as exc:
                    reason = str(exc)
                    break
                if entry.kind < OFS_DELTA:
                    kind = entry.kind
                    break
                if entry.kind == OFS_DELTA:
                    assert isinstance(entry.base, int)
                    rank = index.rank(entry.base)
                    if rank < 0:
                        reason = "a delta whose base is no object"
                        break
                    j = index.order[rank]
                    continue
                assert isinstance(entry.base, bytes)
                k = index.find(entry.base)
                if k >= 0:
                    j = k
                    continue
                other = self._find(entry.base)
                if other is None:
                    reason = "a delta on an object not in the repository"
                else:
                    kind = other[2]
                break
            if reason:
                # (every object on the chain: a loop's, or all that rest on a bad base)
                why[reason] = why.get(reason, 0) + len(chain)
            for c in chain:
                kinds[c] = kind
        for i in range(n):
            if kinds[i] == bad:
                kinds[i] = _UNREAD
        for r in range(limit, n):
            kinds[index.order[r]] = _UNREAD
        problems = [f"{k} objects not read: {reason}" for reason, k in why.items()]
        if over is not None:
            raise OverBudget(str(over))
        return problems

    def _walk(self, spool: Spool, count: int) -> list[str]:
        """Read a pack without an index front to back, computing every object's id."""
        number = len(self._indexes)
        # the offsets where objects start (an OFS_DELTA base must be one); only while read
        offsets: set[int] = set()
        problems: list[str] = []
        waiting: list[int] = []  # REF_DELTA objects whose base was not known yet
        self._walking = {}
        try:
            at = PACK_HEADER
            # the trailing sha1 is no object; a count larger than the bytes allow ends in an
            # error
            for _ in range(count):
                self.budget.count()
                try:
                    entry = entry_at(spool, at, self.budget.max_object_size)
                    read = inflate if entry.kind < OFS_DELTA else inflate_delta
                    data, end = read(spool, entry.data_at, entry.size, self.budget)
                    kind = entry.kind
                    if kind == OFS_DELTA and entry.base not in offsets:
                        raise GitFormatError(f"delta at offset {at} has no object as its base")
                    if kind == REF_DELTA:
                        assert isinstance(entry.base, bytes)
                        if self._find(entry.base) is None:
                            waiting.append(at)
                            offsets.add(at)
                            at = end
                            continue
                    if kind >= OFS_DELTA:
                        # the delta's data is at hand: its base resolved, applied here
                        if isinstance(entry.base, int):
                            base_key = (number, entry.base)
                        else:
                            assert isinstance(entry.base, bytes)
                            base_key = self.locate(entry.base)  # type: ignore[assignment]
                        kind, base, depth = self._resolve(*base_key)
                        depth += 1
                        if depth > self.budget.max_depth:
                            raise GitFormatError(
                                f"delta chain deeper than {self.budget.max_depth} at offset {at}"
                            )
                        data = apply_delta(base, data, self.budget.max_object_size)
                        self.budget.charge(len(data))
                    else:
                        # (whole objects come as bytes: only a delta's instructions do not)
                        data, depth = bytes(data), 0
                    oid = object_id(kind, data)
                    offsets.add(at)
                    if self._find(oid) is None:
                        self._walking[oid] = (at << 3) | kind
                    self._cache.put((number, at), (kind, data, depth))
                except GitFormatError as exc:
                    problems.append(f"{exc}: the rest of the pack not read")
                    break
                at = end
            # REF_DELTA bases may come later in the pack (or be one of those deltas): each
            # delta is resolved once its base has an id, in one pass over what waits on what
            on: dict[bytes, list[int]] = {}
            for at in waiting:
                ref = entry_at(spool, at, self.budget.max_object_size).base
                assert isinstance(ref, bytes)
                on.setdefault(ref, []).append(at)
            ready = [oid for oid in on if self._find(oid) is not None]
            left = len(waiting)
            while ready:
                for at in on.pop(ready.pop(), []):
                    left -= 1
                    try:
                        kind, data, _ = self._resolve(number, at)
                    except GitFormatError as exc:
                        problems.append(str(exc))
                        continue
                    oid = object_id(kind, data)
                    if self._find(oid) is None:
                        self._walking[oid] = (at << 3) | kind
                    if oid in on:
                        ready.append(oid)
            if left:
                problems.append(f"{left} deltas on objects that are not in the repository")
        finally:
            # what was read stays, in the compact form (also when a budget ran out)
            found = sorted(self._walking.items())
            self._walking = {}
            self._indexes.append(
                PackIndex(
                    b"".join(oid for oid, _ in found),
                    array("Q", (place >> 3 for _, place in found)),
                    bytearray(place & 7 for _, place in found),
                    checked=False,
                )
            )
        return problems

    # --- reading --------------------------------------------------------------------

    def get(self, oid: bytes) -> tuple[int, bytes] | None:
        """An object's type and content, or None when it is not in the store."""
        got = self.read(oid)
        return None if got is None else got[:2]

    def read(self, oid: bytes) -> tuple[int, bytes, bytes] | None:
        """An object's type, content and the id its bytes have (``oid`` unless a pack's
        index lied about it), or None when it is not in the store."""
        where = self.locate(oid)
        if where is None:
            return None
        kind, data, _ = self._resolve(*where)
        if where[0] >= 0 and self._indexes[where[0]].checked:
            real = object_id(kind, data)
            if real != oid:
                self.problems.append(
                    f"object at offset {where[1]} is {real.hex()}, not {oid.hex()} as the "
                    "pack's index says"
                )
                return kind, data, real
        return kind, data, oid

    def _resolve(self, number: int, at: int) -> tuple[int, bytes, int]:
        """The object at offset ``at`` of pack ``number`` (a loose object when negative),
        its delta chain applied, and how deep that chain is: walked down to a whole object
        (or one in the cache) without recursion, at most ``max_depth`` deltas, never the
        same object twice."""
        chain: list[tuple[tuple[int, int], PackEntry]] = []
        seen: set[tuple[int, int]] = set()
        key = (number, at)
        while True:
            cached = self._cache.get(key)
            if cached is not None:
                kind, data, depth = cached
                break
            if key in seen:
                raise GitFormatError(f"delta chain loops at offset {key[1]}")
            seen.add(key)
            if key[0] < 0:
                spool = self.loose[-1 - key[0]]
                kind, data = read_loose(
                    spool.read(0, spool.length), self.budget.max_object_size, self.budget
                )
                depth = 0
                self._cache.put(key, (kind, data, 0))
                break
            entry = entry_at(self.packs[key[0]], key[1], self.budget.max_object_size)
            if entry.kind < OFS_DELTA:
                data, end = inflate(self.packs[key[0]], entry.data_at, entry.size, self.budget)
                self._ends(key, end)
                kind, depth = entry.kind, 0
                self._cache.put(key, (kind, data, 0))
                break
            chain.append((key, entry))
            if len(chain) > self.budget.max_depth:
                raise GitFormatError(
                    f"delta chain deeper than {self.budget.max_depth} at offset {at}"
                )
            if entry.kind == OFS_DELTA:
                assert isinstance(entry.base, int)
                key = (key[0], entry.base)
            else:
                assert isinstance(entry.base, bytes)
                base = self.locate(entry.base)
                if base is None:
                    raise GitFormatError(f"delta at offset {key[1]} on a missing object")
                key = base
        if depth + len(chain) > self.budget.max_depth:
            raise GitFormatError(f"delta chain deeper than {self.budget.max_depth} at offset {at}")
        for step_key, entry in reversed(chain):
            spool = self.packs[step_key[0]]
            ends: list[int] = []
            if entry.size > STREAM_DELTA:
                pieces = inflate_pieces(
                    spool, entry.data_at, entry.size, self.budget, ends, STREAM_DELTA
                )
                data = apply_delta_pieces(data, pieces, self.budget.max_object_size)
            else:
                delta, end = inflate_delta(spool, entry.data_at, entry.size, self.budget)
                ends.append(end)
                data = apply_delta(data, delta, self.budget.max_object_size)
                del delta
            self._ends(step_key, ends[0])
            self.budget.charge(len(data))
            depth += 1
            self._cache.put(step_key, (kind, data, depth))
        return kind, data, depth

    def _ends(self, key: tuple[int, int], end: int) -> None:
        """An object of an indexed pack must end where the next one starts (or at the
        pack's checksum): bytes between them are something the index does not name."""
        if not 0 <= key[0] < len(self._indexes) or not self._indexes[key[0]].checked:
            return
        index = self._indexes[key[0]]
        r = index.rank(key[1])
        if r < 0:
            return
        nxt = index.sorted[r + 1] if r + 1 < len(index.sorted) else self.packs[key[0]].length - 20
        if end != nxt and key not in self._said:
            self._said.add(key)
            self.problems.append(
                f"{nxt - end} bytes after the object at offset {key[1]} that the pack's "
                "index does not name"
            )

    def ids(self, kind: int) -> Iterator[bytes]:
        """Every id of that type, in the order they are stored (loose objects, then packs
        by offset, which keeps deltas next to their bases); an id in two places once."""
        several = len(self._indexes) + bool(self._loose) > 1
        for oid, place in self._loose.items():
            if place & 7 == kind:
                yield oid
        for number, index in enumerate(self._indexes):
            kinds = index.kinds
            for i in index.order:
                if kinds[i] == kind:
                    oid = index.ids[i]
                    if several and (self.locate(oid) or (None,))[0] != number:
                        continue
                    yield oid
