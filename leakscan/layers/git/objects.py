"""Git objects as they are stored: loose objects (one zlib stream each) and pack files
(version 2 and 3; whole objects and OFS_DELTA / REF_DELTA deltas), read from a spool.

Everything here is hostile input. Every declared size is checked before anything is
inflated and every inflation is bounded by the size its header declares, so a zlib bomb
costs at most that much; every byte inflated is charged to a :class:`Budget`; delta chains
are resolved without recursion, at most ``max_depth`` deep, and a chain that comes back to
an object already in it is an error; a delta copy that reaches outside its base, a base
outside the pack, a result of another size than declared are errors. The ``.idx`` files
are not needed: the pack is read front to back (and ids computed), which also reads packs
whose index is missing or lies.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections import OrderedDict
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
    d = zlib.decompressobj()
    first = b""
    out: bytearray | None = None
    have = 0
    at = offset
    # input read at once: about what deflate can make of ``size`` bytes at worst (zlib
    # copies whatever input is left over after the stream, so a fixed large piece per
    # small object cost a copy of that piece each time)
    chunk = min(WINDOW, size + (size >> 8) + 64)

    def keep(piece: bytes) -> None:
        nonlocal first, out, have
        if out is not None:
            out += piece
        elif have == 0:
            first = piece
        else:
            out = bytearray(first)
            out += piece
            first = b""
        have += len(piece)
        budget.charge(len(piece))

    while not d.eof:
        data = spool.read(at, chunk)
        if not data:
            raise GitFormatError(f"truncated object at offset {offset}")
        at += len(data)
        try:
            # never more than one byte past what the header declared (a bomb stops
            # there), and at most OUT_PIECE at a time (what a piece costs beside the rest)
            piece = d.decompress(data, min(OUT_PIECE, size + 1 - have))
            while d.unconsumed_tail and have + len(piece) <= size and not d.eof:
                keep(piece)
                piece = d.decompress(d.unconsumed_tail, min(OUT_PIECE, size + 1 - have))
        except zlib.error as exc:
            raise GitFormatError(f"corrupt object at offset {offset}: {exc}") from None
        keep(piece)
        if have > size:
            raise GitFormatError(f"object at offset {offset} is larger than declared")
        if d.unconsumed_tail and not d.eof:
            raise GitFormatError(f"object at offset {offset} is larger than declared")
        chunk = WINDOW
    if have != size:
        raise GitFormatError(f"object at offset {offset} is smaller than declared")
    end = at - len(d.unused_data)
    return (first if out is None else out), end


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


def apply_delta(base: bytes, delta: bytes | bytearray, max_size: int) -> bytes:
    """``delta`` applied to ``base``: git's copy and insert instructions, every copy within
    the base and the result exactly the size the delta declares (at most ``max_size``)."""
    src, pos = _varint(delta, 0)
    dst, pos = _varint(delta, pos)
    if src != len(base):
        raise GitFormatError("delta base of another size than the delta expects")
    if dst > max_size:
        raise GitFormatError(f"a delta result of {dst} bytes (more than the limit)")
    # the result is joined once at the end from views of the base (long copies, which
    # cost no memory) and runs of what lies between them: allocated once at its size,
    # never grown nor copied whole again (a 24 MiB blob built in one bytearray cost a
    # second 24 MiB when it was made bytes); short pieces go in runs, not one object each
    pieces: list[bytearray | memoryview] = []
    run = bytearray()
    have = 0
    n = len(delta)
    nbase = len(base)
    view = memoryview(base)
    dview = memoryview(delta)
    try:
        while pos < n:
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
    if have != dst:
        raise GitFormatError("delta result of another size than declared")
    if not pieces:
        return bytes(run)
    pieces.append(run)
    return b"".join(pieces)


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

    def get(self, key: object) -> tuple[int, bytes, int] | None:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, key: object, item: tuple[int, bytes, int]) -> None:
        if len(item[1]) > CACHE_ONE or key in self._items:
            return
        self._items[key] = item
        self._bytes += len(item[1])
        while self._bytes > CACHE_BYTES:
            _, (_, old, _) = self._items.popitem(last=False)
            self._bytes -= len(old)


@dataclass(frozen=True)
class Where:
    """Where an object is: a pack (its number) and offset, or a loose object (pack -1)."""

    pack: int
    offset: int


# An object's place and type in one int (a tuple of two ints and a second dict cost about
# 100 bytes more an object: 5-6 MiB on a repository of 57,000 objects): the pack number
# (-1 - n for loose object n) biased to stay positive, the offset, the type in 3 bits.
# Packed ints sort as (number, offset) tuples did.
_PLACE_BIAS = 1 << 31
_OFFSET_BITS = 41  # a spool holds at most GitLimits.max_spool bytes, far below 2 TiB


def _place(number: int, at: int, kind: int) -> int:
    if not 0 <= at < 1 << _OFFSET_BITS:
        raise GitFormatError(f"offset {at} out of range")
    return ((number + _PLACE_BIAS) << (_OFFSET_BITS + 3)) | (at << 3) | kind


def _where(place: int) -> tuple[int, int]:
    return (place >> (_OFFSET_BITS + 3)) - _PLACE_BIAS, (place >> 3) & ((1 << _OFFSET_BITS) - 1)


class ObjectStore:
    """Every object of one git directory that could be read: by id, with its type."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.packs: list[Spool] = []
        self.loose: list[Spool] = []
        # id -> place and type (_place)
        self._places: dict[bytes, int] = {}
        self._cache = _Cache()

    def locate(self, oid: bytes) -> tuple[int, int] | None:
        """Where an object is: (pack number, or -1 - loose number; offset), or None."""
        place = self._places.get(oid)
        return None if place is None else _where(place)

    def kind_of(self, oid: bytes) -> int | None:
        """An object's type, or None when it is not in the store."""
        place = self._places.get(oid)
        return None if place is None else place & 7

    def __contains__(self, oid: bytes) -> bool:
        return oid in self._places

    # --- loading --------------------------------------------------------------------

    def add_loose(self, oid: bytes, spool: Spool) -> None:
        """A loose object (read when it is wanted; its type read now)."""
        self.budget.count()
        n = len(self.loose)
        self.loose.append(spool)
        kind, data = read_loose(
            spool.read(0, spool.length), self.budget.max_object_size, self.budget
        )
        self._places.setdefault(oid, _place(-1 - n, 0, kind))
        self._cache.put((-1 - n, 0), (kind, data, 0))

    def add_pack(self, spool: Spool) -> list[str]:
        """Read a pack front to back, computing every object's id; what could not be read
        (a truncated or corrupt tail, deltas on missing bases) is said in the list returned.
        Raises OverBudget when a budget ran out (what was read stays)."""
        head = spool.read(0, PACK_HEADER)
        if len(head) < PACK_HEADER or head[:4] != b"PACK":
            return ["not a pack file"]
        version = int.from_bytes(head[4:8], "big")
        count = int.from_bytes(head[8:12], "big")
        if version not in (2, 3):
            return [f"pack version {version}"]
        number = len(self.packs)
        self.packs.append(spool)
        # the offsets where objects start (an OFS_DELTA base must be one); only while read
        offsets: set[int] = set()
        problems: list[str] = []
        waiting: list[int] = []  # REF_DELTA objects whose base was not known yet
        at = PACK_HEADER
        # the trailing sha1 is no object; a count larger than the bytes allow ends in an error
        for _ in range(count):
            self.budget.count()
            try:
                entry = entry_at(spool, at, self.budget.max_object_size)
                read = inflate if entry.kind < OFS_DELTA else inflate_delta
                data, end = read(spool, entry.data_at, entry.size, self.budget)
                kind = entry.kind
                if kind == OFS_DELTA and entry.base not in offsets:
                    raise GitFormatError(f"delta at offset {at} has no object as its base")
                if kind == REF_DELTA and entry.base not in self._places:
                    waiting.append(at)
                    offsets.add(at)
                    at = end
                    continue
                if kind >= OFS_DELTA:
                    # the delta's data is at hand: its base resolved, applied here
                    base_key = (
                        (number, entry.base)
                        if isinstance(entry.base, int)
                        else _where(self._places[entry.base])  # type: ignore[index]
                    )
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
                self._places.setdefault(oid, _place(number, at, kind))
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
        ready = [oid for oid in on if oid in self._places]
        left = len(waiting)
        while ready:
            for at in on.pop(ready.pop(), []):
                left -= 1
                try:
                    oid = self._name(number, at)
                except GitFormatError as exc:
                    problems.append(str(exc))
                    continue
                if oid in on:
                    ready.append(oid)
        if left:
            problems.append(f"{left} deltas on objects that are not in the repository")
        return problems

    def _name(self, number: int, at: int) -> bytes:
        """Resolve the delta at ``at`` to learn its id and type."""
        kind, data, _ = self._resolve(number, at)
        oid = object_id(kind, data)
        self._places.setdefault(oid, _place(number, at, kind))
        return oid

    # --- reading --------------------------------------------------------------------

    def get(self, oid: bytes) -> tuple[int, bytes] | None:
        """An object's type and content, or None when it is not in the store."""
        where = self.locate(oid)
        if where is None:
            return None
        kind, data, _ = self._resolve(*where)
        return kind, data

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
                data, _ = inflate(self.packs[key[0]], entry.data_at, entry.size, self.budget)
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
            delta, _ = inflate_delta(
                self.packs[step_key[0]], entry.data_at, entry.size, self.budget
            )
            data = apply_delta(data, delta, self.budget.max_object_size)
            self.budget.charge(len(data))
            depth += 1
            self._cache.put(step_key, (kind, data, depth))
        return kind, data, depth

    def ids(self, kind: int) -> list[bytes]:
        """Every id of that type, in the order they are stored (packs by offset, which
        keeps deltas next to their bases, then loose objects)."""
        out = [oid for oid, place in self._places.items() if place & 7 == kind]
        out.sort(key=self._places.__getitem__)
        return out
