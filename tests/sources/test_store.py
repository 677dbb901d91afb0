"""Blob stores refuse names and links that leave the image."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from leakscan.errors import SourceError, UnsafePathError
from leakscan.sources.store import DirStore, TarStore


def _tar(path: Path, members: list[tuple[str, str, bytes | str]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                assert isinstance(payload, bytes)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                assert isinstance(payload, str)
                info.linkname = payload
                tar.addfile(info)
    return path


@pytest.mark.parametrize("name", ["../etc/passwd", "/etc/passwd", "blobs/../../x", ""])
def test_dir_store_refuses_names_outside(name: str, tmp_path: Path) -> None:
    store = DirStore(str(tmp_path))
    with pytest.raises(UnsafePathError):
        store.open(name)
    with pytest.raises(UnsafePathError):
        store.exists(name)


def test_dir_store_refuses_symlink_to_outside(tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("host file")
    root = tmp_path / "layout"
    (root / "blobs").mkdir(parents=True)
    os.symlink(outside, root / "blobs" / "abs")
    os.symlink("../../secret.txt", root / "blobs" / "rel")
    os.symlink("inside", root / "blobs" / "ok")
    (root / "blobs" / "inside").write_bytes(b"blob")
    store = DirStore(str(root))
    for name in ("blobs/abs", "blobs/rel"):
        with pytest.raises(UnsafePathError):
            store.open(name)
    with store.open("blobs/ok") as fh:
        assert fh.read() == b"blob"


def test_dir_store_missing_and_not_regular(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    store = DirStore(str(tmp_path))
    with pytest.raises(SourceError, match="missing"):
        store.open("nothere")
    with pytest.raises(SourceError, match="not a regular file"):
        store.open("d")


def test_tar_store_follows_inner_links(tmp_path: Path) -> None:
    path = _tar(
        tmp_path / "a.tar",
        [
            ("abc.tar", "file", b"layer bytes"),
            ("id/layer.tar", "sym", "../abc.tar"),
            ("hard", "hard", "abc.tar"),
            ("./dot/x", "file", b"dotted"),
        ],
    )
    store = TarStore(str(path))
    for name in ("abc.tar", "id/layer.tar", "hard"):
        with store.open(name) as fh:
            assert fh.read() == b"layer bytes"
    assert store.size("id/layer.tar") == len(b"layer bytes")
    with store.open("dot/x") as fh:
        assert fh.read() == b"dotted"


@pytest.mark.parametrize(
    ("members", "name", "error"),
    [
        ([("l", "sym", "/etc/passwd")], "l", "absolute path"),
        ([("a/l", "sym", "../../outside")], "a/l", "outside the archive"),
        ([("a", "sym", "b"), ("b", "sym", "a")], "a", "link loop"),
        ([("a", "sym", "a")], "a", "link loop"),
        ([("h", "hard", "../x")], "h", "outside the archive"),
    ],
)
def test_tar_store_refuses_bad_links(
    members: list[tuple[str, str, bytes | str]], name: str, error: str, tmp_path: Path
) -> None:
    store = TarStore(str(_tar(tmp_path / "bad.tar", members)))
    with pytest.raises(UnsafePathError, match=error):
        store.open(name)


def test_tar_store_ignores_members_outside_root(tmp_path: Path) -> None:
    store = TarStore(str(_tar(tmp_path / "t.tar", [("../evil", "file", b"x")])))
    assert "../evil" not in store.names()
    with pytest.raises(UnsafePathError):
        store.open("../evil")


def test_tar_store_not_a_tar(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00garbage" * 200)
    with pytest.raises(SourceError, match="junk"):
        TarStore(str(junk))


@pytest.mark.parametrize("compressed", [False, True])
def test_tar_store_members_read_in_place_give_tarfiles_bytes(
    compressed: bool, tmp_path: Path
) -> None:
    """A member of an uncompressed archive is read through a descriptor of its own (no
    tarfile reader), of a compressed one through tarfile: the same bytes either way, in
    reads of any size, after the store is pickled for a worker too; two members open at
    once do not disturb each other."""
    import gzip
    import pickle

    big, small = os.urandom(300_000), os.urandom(5000)
    path = _tar(tmp_path / "a.tar", [("big", "file", big), ("small", "file", small)])
    if compressed:
        path.with_suffix(".tgz").write_bytes(gzip.compress(path.read_bytes()))
        path = path.with_suffix(".tgz")
    store = TarStore(str(path))
    for one in (store, pickle.loads(pickle.dumps(store))):
        with one.open("big") as a, one.open("small") as b:
            assert (type(a).__name__ == "_Member") is not compressed
            got, other = [], []
            for size in (1, 511, 70_000, 1 << 20):
                got.append(a.read(size))
                other.append(b.read(size // 2 + 1))
            assert a.read(10) == b"" and a.read() == b""
            assert b"".join(got) == big and b"".join(other) == small
        with one.open("small") as fh:
            assert fh.read() == small
        one.close()


def test_tar_store_member_of_a_truncated_archive_ends_where_the_file_does(
    tmp_path: Path,
) -> None:
    """A member the archive's end cuts short reads as far as the file goes, then ends (the
    layer's reader says the tar ends too soon); its descriptor is closed with it."""
    data = os.urandom(100_000)
    path = _tar(tmp_path / "a.tar", [("x", "file", b"head"), ("big", "file", data)])
    store = TarStore(str(path))
    with open(path, "r+b") as fh:
        fh.truncate(store._member("big").offset_data + 60_000)
    fds = len(os.listdir("/proc/self/fd"))
    with store.open("big") as member:
        assert len(os.listdir("/proc/self/fd")) == fds + 1
        assert member.read() == data[:60_000]
        assert member.read(10) == b""
    assert len(os.listdir("/proc/self/fd")) == fds
