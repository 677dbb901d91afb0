"""Archives inside layer files: every kind, nesting, damage, and the budgets against bombs.

Every archive is built in memory and read through a stream that cannot seek or tell, as
the walker's member streams cannot.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import random
import struct
import tarfile
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable, Iterable
from typing import BinaryIO, cast

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from imagebuilder import make_zip

from leakscan.errors import LayerError
from leakscan.layers.archives import (
    ArchiveLimits,
    Member,
    Skipped,
    archive_kind,
    expand,
)

# every test runs with each deflate engine (tests/layers/conftest.py)
pytestmark = pytest.mark.usefixtures("deflate_engine")

DEFAULT = ArchiveLimits()
Item = tuple[str, bytes] | Skipped


class NoSeek:
    """Readable only: no seek, no tell, short reads welcome."""

    def __init__(self, data: bytes, max_read: int | None = None) -> None:
        self._data = io.BytesIO(data)
        self._max_read = max_read

    def read(self, size: int = -1) -> bytes:
        if self._max_read is not None and (size < 0 or size > self._max_read):
            size = self._max_read
        return self._data.read(size)


def source(data: bytes, max_read: int | None = None) -> BinaryIO:
    return cast(BinaryIO, NoSeek(data, max_read))


def run(
    path: str, data: bytes, limits: ArchiveLimits = DEFAULT, read: int | None = None
) -> list[Item]:
    """Expand; read each member whole (or its first ``read`` bytes) in small pieces."""
    out: list[Item] = []
    for item in expand(path, source(data), limits):
        if isinstance(item, Skipped):
            out.append(item)
            continue
        parts = []
        got = 0
        while read is None or got < read:
            want = 7919 if read is None else min(7919, read - got)
            chunk = item.stream.read(want)
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        out.append((item.path, b"".join(parts)))
    return out


def members(items: Iterable[Item]) -> dict[str, bytes]:
    return {x[0]: x[1] for x in items if not isinstance(x, Skipped)}


def skipped(items: Iterable[Item]) -> list[Skipped]:
    return [x for x in items if isinstance(x, Skipped)]


def make_tar(files: dict[str, bytes], mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:  # type: ignore[call-overload]
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# --- recognising archives ---------------------------------------------------------------------


def test_archive_kind_by_magic() -> None:
    assert archive_kind("/x", make_zip({"a": b"1"})) == "zip"
    assert archive_kind("/x", make_zip({})) == "zip"  # empty: end record only
    assert archive_kind("/x", make_tar({"a": b"1"})) == "tar"
    assert archive_kind("/x", gzip.compress(b"1")) == "gzip"
    assert archive_kind("/x", bz2.compress(b"1")) == "bzip2"
    assert archive_kind("/x", bz2.compress(b"")) == "bzip2"
    assert archive_kind("/x", lzma.compress(b"1")) == "xz"
    assert archive_kind("/x", zstandard.ZstdCompressor().compress(b"1")) == "zstd"
    # names do not make archives, nor do near-misses of a magic
    assert archive_kind("/a.zip", b"plain text") is None
    assert archive_kind("/x", b"BZh9 is how a text file might start") is None
    assert archive_kind("/x", b"\x1f\x8b") is None
    assert archive_kind("/x", b"") is None


def test_v7_tar_only_when_named_tar() -> None:
    v7 = make_tar({"etc/key": b"k"}, "w")
    block = bytearray(v7[:512])
    block[257:265] = bytes(8)  # no ustar magic, as in a v7 tar
    block[148:156] = b"        "
    block[148:156] = b"%06o\0 " % sum(block)
    old = bytes(block) + v7[512:]
    assert archive_kind("/x", old) is None
    assert archive_kind("/backup.TAR", old) == "tar"
    assert members(run("/backup.tar", old)) == {"/backup.tar!/etc/key": b"k"}
    # a .tar name on something else is still nothing
    assert archive_kind("/notes.tar", b"x" * 600) is None


def test_not_an_archive_is_its_own_leaf() -> None:
    items = list(expand("/etc/app.conf", source(b"a=1\n"), DEFAULT, size=4))
    assert len(items) == 1 and isinstance(items[0], Member)
    assert (items[0].path, items[0].size, items[0].stream.read()) == ("/etc/app.conf", 4, b"a=1\n")


# --- each kind, with the right names ----------------------------------------------------------


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED, zipfile.ZIP_BZIP2])
@pytest.mark.parametrize("streamed", [False, True], ids=["sized", "descriptors"])
@pytest.mark.parametrize("zip64", [False, True], ids=["zip32", "zip64"])
def test_zip_members(method: int, streamed: bool, zip64: bool) -> None:
    files = {
        "conf/app.properties": b"db.password=hunter2\n",
        "META-INF/": b"",
        "empty": b"",
        # a stored member holding what looks like a data descriptor signature
        "tricky.bin": b"xx PK\x07\x08 \x00\x00\x00\x00" * 50,
        "big.txt": b"".join(b"line %d of the log\n" % i for i in range(50_000)),
    }
    data = make_zip(files, method, streamed=streamed, zip64=zip64)
    if streamed:
        assert data[6] & 0x08  # bit 3: sizes only after the data
    items = run("/app/lib/a.jar", data)
    assert skipped(items) == []
    want = {f"/app/lib/a.jar!/{k}": v for k, v in files.items() if not k.endswith("/")}
    assert members(items) == want


def test_zip_member_sizes() -> None:
    sized = make_zip({"a": b"12345"})
    streamed = make_zip({"a": b"12345"}, streamed=True)
    for data, size in ((sized, 5), (streamed, None)):
        (item,) = expand("/a.zip", source(data), DEFAULT)
        assert isinstance(item, Member) and item.size == size


def test_zip_other_methods() -> None:
    data = make_zip({"x.txt": b"xz inside zip"}, zipfile.ZIP_LZMA)
    assert skipped(run("/a.zip", data)) == [
        Skipped("/a.zip!/x.txt", "unsupported zip compression method 14")
    ]
    # zstd (93) and xz (95) members, as newer writers make them: patch a stored zip
    for method, packed in (
        (93, zstandard.ZstdCompressor().compress(b"zstd member")),
        (95, lzma.compress(b"xz member")),
    ):
        raw = bytearray(make_zip({"m.txt": packed, "n.txt": b"next"}, zipfile.ZIP_STORED))
        raw[8:10] = struct.pack("<H", method)
        assert members(run("/b.zip", bytes(raw)))["/b.zip!/m.txt"].endswith(b"member")
        assert members(run("/b.zip", bytes(raw)))["/b.zip!/n.txt"] == b"next"


def test_tar_members_names_and_links() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:

        def add(
            name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = ""
        ) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.size = kind, link, len(data)
            tf.addfile(info, io.BytesIO(data))

        add("./a/../b/key.pem", b"-----BEGIN-----")
        add("../../../etc/shadow", b"root:x")
        add("dir", kind=tarfile.DIRTYPE)
        add("link", kind=tarfile.SYMTYPE, link="/etc/passwd")
        add("hard", kind=tarfile.LNKTYPE, link="b/key.pem")
        add("fifo", kind=tarfile.FIFOTYPE)
        add("d/" + "long" * 80 + ".txt", b"pax path")
        add("caf\udce9.txt", b"latin-1 name")  # a byte that is not UTF-8
    items = run("/srv/data.tar", buf.getvalue())
    assert skipped(items) == []
    assert members(items) == {
        "/srv/data.tar!/b/key.pem": b"-----BEGIN-----",
        "/srv/data.tar!/etc/shadow": b"root:x",
        "/srv/data.tar!/d/" + "long" * 80 + ".txt": b"pax path",
        "/srv/data.tar!/caf\\xe9.txt": b"latin-1 name",
    }


def test_gnu_tar_long_names() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        info = tarfile.TarInfo("g/" + "n" * 300)
        info.size = 2
        tf.addfile(info, io.BytesIO(b"ok"))
    assert members(run("/g.tar", buf.getvalue())) == {"/g.tar!/g/" + "n" * 300: b"ok"}


def test_zip_names_normalised() -> None:
    raw = make_zip({"./x/../../../y.txt": b"1", "cafX.txt": b"2"})
    raw = raw.replace(b"cafX", b"caf\xe9")  # not UTF-8, and no UTF-8 flag
    assert members(run("/n.zip", raw)) == {"/n.zip!/y.txt": b"1", "/n.zip!/caf\\xe9.txt": b"2"}


@pytest.mark.parametrize(
    ("name", "pack"),
    [
        ("app.log.gz", gzip.compress),
        ("app.log.bz2", bz2.compress),
        ("app.log.xz", lzma.compress),
        ("app.log.zst", zstandard.ZstdCompressor().compress),
    ],
)
def test_single_stream_files(name: str, pack: Callable[[bytes], bytes]) -> None:
    assert run(f"/var/log/{name}", pack(b"token=abc\n")) == [
        (f"/var/log/{name}!/app.log", b"token=abc\n")
    ]


def test_single_stream_without_suffix_and_concatenated() -> None:
    assert run("/blob", gzip.compress(b"a") + gzip.compress(b"b")) == [("/blob!/blob", b"ab")]
    assert run("/b.bz2", bz2.compress(b"a") + bz2.compress(b"b")) == [("/b.bz2!/b", b"ab")]
    assert run("/b.xz", lzma.compress(b"a") + bytes(4) + lzma.compress(b"b")) == [
        ("/b.xz!/b", b"ab")
    ]
    zc = zstandard.ZstdCompressor()
    assert run("/b.zst", zc.compress(b"a") + zc.compress(b"b")) == [("/b.zst!/b", b"ab")]
    # tape padding after a gzip member is not garbage
    assert run("/p.gz", gzip.compress(b"pad") + bytes(1000)) == [("/p.gz!/p", b"pad")]


@pytest.mark.parametrize(
    "name", ["x.tar.gz", "x.tgz", "x.tar.bz2", "x.tar.xz", "x.tar.zst", "x.gz"]
)
def test_compressed_tar_is_one_level(name: str) -> None:
    tar = make_tar({"etc/creds": b"secret"})
    packers: dict[str, Callable[[bytes], bytes]] = {
        "gz": gzip.compress,
        "tgz": gzip.compress,
        "bz2": bz2.compress,
        "xz": lzma.compress,
        "zst": zstandard.ZstdCompressor().compress,
    }
    pack = packers[name.rsplit(".", 1)[1]]
    assert run(f"/srv/{name}", pack(tar)) == [(f"/srv/{name}!/etc/creds", b"secret")]
    # and it counts as one level
    assert members(run(f"/srv/{name}", pack(tar), ArchiveLimits(max_depth=1)))


# --- nesting and depth ------------------------------------------------------------------------


def nested(extra_level: bool) -> bytes:
    deepest = {"META-INF/creds.properties": b"aws_secret=abc\n"}
    if extra_level:
        deepest["lib/inner.zip"] = make_zip({"deep.txt": b"four levels down"})
    jar = make_zip(deepest)
    bundle = make_tar({"lib/x.jar": jar}, "w:gz")
    return make_zip({"bundle.tar.gz": bundle, "README": b"hi"}, streamed=True)


def test_nested_to_depth_three() -> None:
    items = run("/srv/outer.zip", nested(extra_level=False))
    assert skipped(items) == []
    assert members(items) == {
        "/srv/outer.zip!/bundle.tar.gz!/lib/x.jar!/META-INF/creds.properties": b"aws_secret=abc\n",
        "/srv/outer.zip!/README": b"hi",
    }


def test_depth_limit() -> None:
    items = run("/srv/outer.zip", nested(extra_level=True))
    assert skipped(items) == [
        Skipped(
            "/srv/outer.zip!/bundle.tar.gz!/lib/x.jar!/lib/inner.zip",
            "archive depth limit 3 reached",
        )
    ]
    # the levels above still come through, members after the skipped one too
    assert set(members(items)) == {
        "/srv/outer.zip!/bundle.tar.gz!/lib/x.jar!/META-INF/creds.properties",
        "/srv/outer.zip!/README",
    }
    deeper = members(run("/srv/outer.zip", nested(extra_level=True), ArchiveLimits(max_depth=4)))
    assert deeper["/srv/outer.zip!/bundle.tar.gz!/lib/x.jar!/lib/inner.zip!/deep.txt"]
    assert skipped(run("/o.zip", nested(True), ArchiveLimits(max_depth=0))) == [
        Skipped("/o.zip", "archive depth limit 0 reached")
    ]


def test_depth_counts_from_the_caller() -> None:
    data = make_zip({"a.txt": b"1"})
    items = list(expand("/x.zip", source(data), DEFAULT, depth=3))
    assert items == [Skipped("/x.zip", "archive depth limit 3 reached")]


# --- damage -----------------------------------------------------------------------------------


def test_encrypted_members_skipped_others_read() -> None:
    for streamed in (False, True):
        raw = bytearray(make_zip({"secret.txt": b"x" * 100, "plain.txt": b"ok"}, streamed=streamed))
        raw[6] |= 0x01  # the first local header says: encrypted
        items = run("/e.zip", bytes(raw))
        assert skipped(items) == [Skipped("/e.zip!/secret.txt", "encrypted zip member")]
        assert members(items) == {"/e.zip!/plain.txt": b"ok"}


def test_corrupt_header_in_the_middle() -> None:
    files = {"one": b"1" * 100, "two": b"2" * 100, "three": b"3" * 100}
    raw = make_zip(files)
    second = raw.index(b"PK\x03\x04", 4)
    bad = raw[:second] + b"JUNK" + raw[second + 4 :]
    items = run("/c.zip", bad)
    assert members(items) == {"/c.zip!/one": b"1" * 100}
    assert items[-1] == Skipped(
        "/c.zip", f"unreadable zip: no local file header at offset {second}"
    )


def test_corrupt_data_in_the_middle() -> None:
    files = {"one": b"1" * 100, "two": bytes(range(256)) * 40, "three": b"3" * 100}
    raw = bytearray(make_zip(files))
    second = raw.index(b"PK\x03\x04", 4)
    raw[second + 30 + 3 : second + 30 + 40] = b"\xff" * 37  # the deflate data of "two"
    items = run("/c.zip", bytes(raw))
    got = members(items)
    assert got["/c.zip!/one"] == b"1" * 100
    assert got["/c.zip!/three"] == b"3" * 100  # its size was known: the zip goes on
    (skip,) = skipped(items)
    assert skip.path == "/c.zip!/two" and skip.reason.startswith("unreadable zip: deflate data")

    # with data descriptors the end of a broken member cannot be found: the zip stops there
    raw = bytearray(make_zip(files, streamed=True))
    second = raw.index(b"PK\x03\x04", 4)
    raw[second + 30 + 3 : second + 30 + 40] = b"\xff" * 37
    items = run("/d.zip", bytes(raw))
    assert members(items)["/d.zip!/one"] == b"1" * 100
    assert "/d.zip!/three" not in members(items)
    (skip,) = skipped(items)
    assert skip.path == "/d.zip!/two" and skip.reason.startswith("unreadable zip: deflate data")


@pytest.mark.parametrize("streamed", [False, True])
def test_truncated_zip(streamed: bool) -> None:
    raw = make_zip({"one": b"1" * 100, "two": bytes(range(256)) * 400}, streamed=streamed)
    second = raw.index(b"PK\x03\x04", 4)
    items = run("/t.zip", raw[: second + 500])
    assert members(items)["/t.zip!/one"] == b"1" * 100
    assert skipped(items)  # and no exception


def test_damaged_single_streams() -> None:
    data = gzip.compress(bytes(range(256)) * 1000)
    items = run("/d.gz", data[: len(data) // 2])
    assert items[-1] == Skipped("/d.gz", "unreadable gzip: gzip data truncated")
    bad = bytearray(data)
    bad[100:120] = b"\x00" * 20
    items = run("/d.gz", bytes(bad))
    assert isinstance(items[-1], Skipped) and "corrupt" in items[-1].reason
    items = run("/d.bz2", bz2.compress(b"x" * 1000)[:-10])
    assert items[-1] == Skipped("/d.bz2", "unreadable bzip2: bzip2 data truncated")


def test_truncated_tar() -> None:
    raw = make_tar({"a": b"1" * 600, "b": b"2" * 2000})
    items = run("/t.tar", raw[:2500])
    assert members(items)["/t.tar!/a"] == b"1" * 600
    assert items[-1] == Skipped("/t.tar", "unreadable tar: truncated in /t.tar!/b")
    bad = bytearray(raw)
    bad[0] ^= 0xFF  # header checksum no longer matches
    assert run("/t.tar", bytes(bad)) == [
        Skipped("/t.tar", "unreadable tar: bad header checksum at offset 0")
    ]


def test_decoder_memory_caps() -> None:
    packed = bytearray(lzma.compress(b"x" * 100, filters=[{"id": lzma.FILTER_LZMA2, "preset": 1}]))
    # claim a 4 GiB dictionary in the block header (and fix its CRC): nothing is allocated
    size = (packed[12] + 1) * 4
    header = packed[12 : 12 + size]
    assert header[1] == 0 and header[2:4] == b"\x21\x01"  # no sizes; LZMA2, 1 property byte
    header[4] = 40
    header[-4:] = struct.pack("<I", zlib.crc32(bytes(header[:-4])))
    packed[12 : 12 + size] = header
    items = run("/big.xz", bytes(packed))
    assert items[-1] == Skipped(
        "/big.xz", "unreadable xz: xz data needs more than 16 MiB of memory to decode"
    )
    params = zstandard.ZstdCompressionParameters(window_log=27, write_content_size=False)
    cobj = zstandard.ZstdCompressor(compression_params=params).compressobj()
    wide = cobj.compress(b"y" * 100) + cobj.flush()
    assert run("/w.zst", wide)[-1] == Skipped(
        "/w.zst", "unreadable zstd: zstd data needs a window over 16 MiB to decode"
    )


def fuzz_bases() -> dict[str, bytes]:
    """Small archives of every kind, built deterministically (gzip headers carry no time)."""
    pax = io.BytesIO()
    with tarfile.open(fileobj=pax, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in (
            ("p" * 150 + "/x", b"pax"),
            ("t/two.gz", gzip.compress(b"2" * 300, mtime=0)),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    mixed = make_zip(
        {
            "a.txt": b"alpha " * 50,
            "in.tar.gz": gzip.compress(pax.getvalue(), mtime=0),
            "s.zip": make_zip({"z": b"zz" * 100}, zipfile.ZIP_STORED, streamed=True),
            "b.bz2": bz2.compress(b"b" * 300),
        },
        streamed=True,
    )
    return {
        "mixed.zip": mixed,
        "stored64.zip": make_zip(
            {"a": b"a" * 300, "d/": b"", "c": b"c"}, 0, streamed=True, zip64=True
        ),
        "sized.zip": make_zip({"a": b"a" * 300, "c": b"c" * 10}),
        "bz.zip": make_zip({"a": b"a" * 300, "c": b"c"}, zipfile.ZIP_BZIP2, streamed=True),
        "p.tar.xz": lzma.compress(pax.getvalue()),
        "p.tar.zst": zstandard.ZstdCompressor().compress(pax.getvalue()),
    }


FUZZ = fuzz_bases()
FUZZ_LIMITS = ArchiveLimits(max_expanded_bytes=8 << 20)


@pytest.mark.parametrize("name", list(FUZZ))
def test_every_truncation_never_raises(name: str) -> None:
    data = FUZZ[name]
    assert skipped(run(f"/{name}", data)) == []
    step = max(1, len(data) // 400)
    for cut in range(0, len(data), step):
        run(f"/{name}", data[:cut], FUZZ_LIMITS)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    name=st.sampled_from(sorted(FUZZ)),
    flips=st.lists(st.tuples(st.integers(0, 4000), st.integers(1, 255)), min_size=1, max_size=6),
    read=st.sampled_from([None, 0, 3]),
)
def test_damage_never_raises(name: str, flips: list[tuple[int, int]], read: int | None) -> None:
    raw = bytearray(FUZZ[name])
    for at, xor in flips:
        raw[at % len(raw)] ^= xor
    run(f"/{name}", bytes(raw), FUZZ_LIMITS, read=read)
    run(f"/{name}", bytes(raw), ArchiveLimits(max_members=2, max_member_size=100), read=read)


# --- budgets against bombs --------------------------------------------------------------------


class Bits:
    """Deflate's bit packing: fields least significant bit first, Huffman codes MSB first."""

    def __init__(self) -> None:
        self.acc = 0
        self.n = 0
        self.out = bytearray()

    def bits(self, value: int, count: int) -> None:
        self.acc |= value << self.n
        self.n += count
        while self.n >= 8:
            self.out.append(self.acc & 0xFF)
            self.acc >>= 8
            self.n -= 8

    def code(self, code: int, length: int) -> None:
        self.bits(int(format(code, f"0{length}b")[::-1], 2), length)

    def symbol(self, sym: int) -> None:
        """A literal/length symbol of the fixed Huffman code."""
        if sym < 144:
            self.code(0x30 + sym, 8)
        elif sym < 256:
            self.code(0x190 + sym - 144, 9)
        elif sym < 280:
            self.code(sym - 256, 7)
        else:
            self.code(0xC0 + sym - 280, 8)

    def copy(self, length: int, distance: int) -> None:
        lbase = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67]
        lbase += [83, 99, 115, 131, 163, 195, 227, 258]
        lextra = [0] * 8 + [1] * 4 + [2] * 4 + [3] * 4 + [4] * 4 + [5] * 4 + [0]
        dbase = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385]
        i = max(k for k, b in enumerate(lbase) if b <= length)
        self.symbol(257 + i)
        self.bits(length - lbase[i], lextra[i])
        j = max(k for k, b in enumerate(dbase) if b <= distance)
        self.code(j, 5)
        self.bits(distance - dbase[j], max(0, j // 2 - 1))

    def zeros(self, count: int) -> None:
        """``count`` zero bits, whole bytes at a time where possible."""
        first = min(count, (8 - self.n) % 8)
        self.bits(0, first)
        count -= first
        if count >= 8:
            self.out += bytes(count // 8)
            count %= 8
        self.bits(0, count)

    def take(self) -> bytes:
        assert self.n == 0
        data, self.out = bytes(self.out), bytearray()
        return data


def deflate_zeros(n: int) -> bytes:
    """Raw deflate of ``n`` zero bytes at deflate's best ratio (about 1032:1), written
    directly so the test never holds or compresses the expanded bytes.

    One dynamic-Huffman block whose codes are: literal 0 -> "10", end of block -> "11",
    length 258 -> "0", distance 1 -> "0". After one literal zero, every 258 zeros cost
    two zero bits, so the body is all zero bytes.
    """
    w = Bits()
    w.bits(0, 1)
    w.bits(2, 2)  # dynamic Huffman
    w.bits(286 - 257, 5)  # literal/length codes up to 285
    w.bits(0, 5)  # one distance code
    w.bits(18 - 4, 4)  # code-length code lengths given, in deflate's order:
    order = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]
    cl_lengths = {18: 1, 1: 2, 2: 2}
    for sym in order[:18]:
        w.bits(cl_lengths.get(sym, 0), 3)
    cl_codes = {18: (0b0, 1), 1: (0b10, 2), 2: (0b11, 2)}

    def put(sym: int, zeros: int = 0) -> None:
        w.code(*cl_codes[sym])
        if sym == 18:  # a run of 11-138 zero lengths
            w.bits(zeros - 11, 7)

    put(2)  # literal 0: 2 bits
    put(18, 138)
    put(18, 117)  # literals 1-255: unused
    put(2)  # end of block: 2 bits
    put(18, 28)  # lengths 257-284: unused
    put(1)  # 285 (length 258): 1 bit
    put(1)  # distance code 0 (distance 1): 1 bit
    w.code(0b10, 2)  # the one literal zero
    copies, rest = divmod(n - 1, 258)
    w.zeros(2 * copies)
    for _ in range(rest):
        w.code(0b10, 2)
    w.code(0b11, 2)  # end of block, then an empty final stored block
    w.bits(1, 1)
    w.bits(0, 2)
    w.bits(0, (8 - w.n) % 8)
    return w.take() + struct.pack("<HH", 0, 0xFFFF)


def gzip_zeros(n: int) -> bytes:
    crc = 0
    zeros = bytes(1 << 20)
    for at in range(0, n, len(zeros)):
        crc = zlib.crc32(zeros[: min(len(zeros), n - at)], crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    return header + deflate_zeros(n) + struct.pack("<II", crc, n & 0xFFFFFFFF)


@pytest.mark.parametrize("n", [1, 258, 259, 3_000_000])
def test_bomb_builder_is_a_real_gzip(n: int) -> None:
    assert gzip.decompress(gzip_zeros(n)) == bytes(n)


def test_gzip_bomb_stopped_by_ratio() -> None:
    bomb = gzip_zeros(1 << 30)
    assert len(bomb) < 2 << 20  # over 1000:1
    tracemalloc.start()
    try:
        items = run("/tmp/bomb.gz", bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    ratio = Skipped("/tmp/bomb.gz", "compression ratio over 200:1 (a decompression bomb?)")
    assert len(items) == 2 and items[1] == ratio
    path, scanned = cast(tuple[str, bytes], items[0])
    # what came out before the check tripped was handed on, and no more than that
    assert path == "/tmp/bomb.gz!/bomb" and 1 << 20 < len(scanned) <= 3 << 20
    # stopped early, measured in bytes rather than seconds (a clock fails on a busy machine)
    assert peak < 50 << 20


def test_small_well_compressed_files_pass_the_ratio_check() -> None:
    data = gzip.compress(bytes(1 << 20))  # over 1000:1, but only 1 MiB
    assert run("/z.gz", data) == [("/z.gz!/z", bytes(1 << 20))]


def test_zip_bomb_member_ratio_then_next_member() -> None:
    raw = make_zip({"zeros": bytes(16 << 20), "after.txt": b"still read"})
    items = run("/z.zip", raw)
    assert skipped(items) == [
        Skipped("/z.zip!/zeros", "compression ratio over 200:1 (a decompression bomb?)")
    ]
    assert members(items)["/z.zip!/after.txt"] == b"still read"


def test_zip_bomb_member_with_descriptor_stops_the_zip() -> None:
    raw = make_zip({"zeros": bytes(16 << 20), "after.txt": b"lost"}, streamed=True)
    items = run("/z.zip", raw)
    assert skipped(items) == [
        Skipped("/z.zip!/zeros", "compression ratio over 200:1 (a decompression bomb?)"),
        Skipped("/z.zip", "rest of the zip not read: /z.zip!/zeros was not decoded"),
    ]
    assert "/z.zip!/after.txt" not in members(items)


def test_zip_bomb_many_members_hits_the_budget() -> None:
    one = make_zip({"m00": bytes(1 << 20)})  # 1 MiB each: under the ratio check's floor
    local = one[: one.index(b"PK\x01\x02")]
    bomb = b"".join(local[:31] + b"%02d" % i + local[33:] for i in range(100))
    assert len(bomb) < 200 << 10
    items = run("/bomb.zip", bomb, ArchiveLimits(max_expanded_bytes=32 << 20))
    assert items[-1] == Skipped("/bomb.zip!/m32", "expanded-bytes budget (32 MiB) exhausted")
    got = members(items)
    assert list(got) == [f"/bomb.zip!/m{i:02}" for i in range(32)]
    assert all(v == bytes(1 << 20) for v in got.values())


def test_budget_spans_all_levels_and_stops_everything() -> None:
    inner = make_zip({"a": bytes(1 << 20), "b": bytes(1 << 20)})
    outer = make_zip({"one.zip": inner, "two.zip": inner, "three.zip": inner})
    items = run("/o.zip", outer, ArchiveLimits(max_expanded_bytes=(3 << 20) + 10))
    assert list(members(items))[:3] == [
        "/o.zip!/one.zip!/a",
        "/o.zip!/one.zip!/b",
        "/o.zip!/two.zip!/a",
    ]
    assert skipped(items) == [
        Skipped("/o.zip!/two.zip!/a", "expanded-bytes budget (3145738 bytes) exhausted")
    ]
    # the bytes of the inner zips count too, so two.zip!/a is cut short; three.zip is never
    # opened
    assert len(members(items)["/o.zip!/two.zip!/a"]) < 1 << 20


def test_unread_bytes_are_skipped_and_charged_when_decoded() -> None:
    files = {"big": random.Random(7).randbytes(2 << 20), "next": b"after"}
    limits = ArchiveLimits(max_expanded_bytes=1 << 20)
    # sizes known: the unread rest is stepped over compressed, at no cost
    sized = run("/s.zip", make_zip(files), limits, read=0)
    assert sized == [("/s.zip!/big", b""), ("/s.zip!/next", b"")]
    assert members(run("/s.zip", make_zip(files), limits, read=10))["/s.zip!/next"] == b"after"
    # data descriptors: the end is found by decoding, and that is charged to the budget
    streamed = run("/d.zip", make_zip(files, streamed=True), limits, read=0)
    assert streamed[-1] == Skipped("/d.zip!/big", "expanded-bytes budget (1 MiB) exhausted")


def test_member_count_limit() -> None:
    limits = ArchiveLimits(max_members=10)
    files = {f"f{i:02}": b"x" for i in range(20)}
    for path, raw in (("/m.zip", make_zip(files)), ("/m.tar", make_tar(files))):
        items = run(path, raw, limits)
        assert len(members(items)) == 10
        assert items[-1] == Skipped(path, "more than 10 members")


def test_member_size_limit() -> None:
    limits = ArchiveLimits(max_member_size=1000)
    files = {"small": b"s" * 1000, "large": b"l" * 1001, "after": b"a"}
    for path, raw in (("/m.zip", make_zip(files)), ("/m.tar", make_tar(files))):
        items = run(path, raw, limits)
        assert members(items) == {f"{path}!/small": b"s" * 1000, f"{path}!/after": b"a"}
        assert skipped(items) == [Skipped(f"{path}!/large", "larger than 1000 bytes")]
    # size unknown up front: only the start is scanned
    items = run("/l.gz", gzip.compress(b"l" * 5000), limits)
    assert items == [
        ("/l.gz!/l", b"l" * 1000),
        Skipped("/l.gz!/l", "larger than 1000 bytes: only its start was scanned"),
    ]


# --- self-containing archives -----------------------------------------------------------------


def zip_quine() -> bytes:
    """A zip whose one member, inflated, is the whole zip again (the LZ77 quine idea:
    deflate stored blocks print, back-references repeat). Every op is 5 bytes: a stored
    block header, or a fixed-Huffman block with copies padded to exactly 40 bits."""

    def lit(units: int) -> bytes:
        return b"\x00" + struct.pack("<HH", 5 * units, 0xFFFF ^ (5 * units))

    def rep(units: int, final: bool = False) -> bytes:
        w = Bits()
        w.bits(int(final), 1)
        w.bits(1, 2)
        if units == 4:
            w.copy(10, 20)
            w.copy(10, 20)
            w.symbol(256)
        else:
            w.copy(5 * units, 5 * units)
            w.symbol(256)
            w.bits(0, 1)  # an empty fixed block brings it to 40 bits
            w.bits(1, 2)
            w.symbol(256)
        out = w.take()
        assert len(out) == 5
        return out

    name = b"r" * 26 + b".zip"
    suffix = b"PK\x05\x06" + bytes(11)  # an end record: the walk stops there
    p, s = 12, 3  # prefix (local header) and suffix, in 5-byte units
    count = 45
    header = b"PK\x03\x04" + struct.pack(
        "<HHHHHIIIHH", 20, 0, 8, 0, 0, 0, 5 * count, 60 + 5 * count + 15, len(name), 0
    )
    prefix = header + name
    assert len(prefix) == 5 * p and len(suffix) == 5 * s
    ops = [lit(p + 1), prefix, lit(p + 1), rep(p + 1), lit(1), rep(p + 1), lit(1), lit(1)]
    ops += [lit(4), rep(p + 1), lit(1), lit(1), lit(4), rep(4)]
    ops += [lit(4), rep(4), lit(4), rep(4), lit(4), rep(4)]
    ops += [lit(4), rep(4), lit(0), lit(0), lit(s + 1), rep(4), lit(0), lit(0)]
    ops += [lit(s + 1), rep(s + 1, final=True), suffix, rep(s + 1, final=True)]
    body = b"".join(ops)
    assert len(body) == 5 * count
    whole = prefix + body + suffix
    assert zlib.decompress(body, -15) == whole  # it really contains itself
    return whole


def test_zip_containing_itself_terminates() -> None:
    quine = zip_quine()
    inner = "/r.zip" + "!/" + "r" * 26 + ".zip"
    assert run("/r.zip", quine) == [
        Skipped("/r.zip" + inner[6:] * 3, "archive depth limit 3 reached")
    ]
    deep = run("/r.zip", quine, ArchiveLimits(max_depth=32))
    assert deep == [Skipped("/r.zip" + inner[6:] * 32, "archive depth limit 32 reached")]


def test_gzip_in_gzip_chain_terminates() -> None:
    data = b"core"
    for _ in range(10):
        data = gzip.compress(data)
    items = run("/c.gz", data)
    assert items == [Skipped("/c.gz!/c!/c!/c", "archive depth limit 3 reached")]


# --- streams ----------------------------------------------------------------------------------


def test_short_reads_from_the_source() -> None:
    raw = nested(extra_level=False)
    got = []
    for item in expand("/o.zip", source(raw, max_read=3), DEFAULT):
        assert isinstance(item, Member)
        got.append((item.path, item.stream.read()))
    assert dict(got) == members(run("/o.zip", raw))


def test_source_errors_propagate() -> None:
    class Broken:
        def __init__(self) -> None:
            self._data = io.BytesIO(make_zip({"a": b"x" * 100_000}, zipfile.ZIP_STORED))

        def read(self, size: int = -1) -> bytes:
            if self._data.tell() > 50_000:
                raise LayerError("tar stream is truncated in /a.zip")
            return self._data.read(min(size, 4096))

    with pytest.raises(LayerError):
        for item in expand("/a.zip", cast(BinaryIO, Broken()), DEFAULT):
            if isinstance(item, Member):
                item.stream.read()


def test_member_stream_api() -> None:
    (item,) = expand("/a.gz", source(gzip.compress(b"0123456789")), DEFAULT)
    assert isinstance(item, Member) and isinstance(item.stream, io.RawIOBase)
    buf = bytearray(4)
    assert item.stream.readinto(buf) == 4 and buf == b"0123"
    assert item.stream.read(0) == b""
    assert item.stream.read() == b"456789"
    assert item.stream.read(10) == b""


def test_limits_validated() -> None:
    with pytest.raises(ValueError):
        ArchiveLimits(max_depth=-1)
    with pytest.raises(ValueError):
        ArchiveLimits(max_depth=1000)
    with pytest.raises(ValueError):
        ArchiveLimits(max_ratio=0)
