"""Real git repositories made with the ``git`` command, for the git-history tests; and
hand-made pack files (hostile ones too) for the reader's own tests."""

from __future__ import annotations

import hashlib
import os
import subprocess
import zlib
from pathlib import Path

from imagebuilder import Layer
from needs import tool

ENV = {
    "GIT_AUTHOR_NAME": "Dev",
    "GIT_AUTHOR_EMAIL": "dev@example.internal",
    "GIT_COMMITTER_NAME": "Dev",
    "GIT_COMMITTER_EMAIL": "dev@example.internal",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "HOME": os.devnull,
}


def git(repo: Path, *args: str, when: int | None = None) -> str:
    """Run git in ``repo`` (dates fixed when ``when`` is given, so commits sort)."""
    env = {**os.environ, **ENV}
    if when is not None:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = f"{when} +0100"
    done = subprocess.run(
        [tool("git"), "-c", "init.defaultBranch=main", "-c", "protocol.file.allow=always", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def cat(repo: Path, object_id: str) -> bytes:
    """A blob's bytes as git reads them."""
    env = {**os.environ, **ENV}
    done = subprocess.run(
        [tool("git"), "cat-file", "blob", object_id], cwd=repo, env=env, capture_output=True
    )
    return done.stdout


def leaky_repo(root: Path, token: str, extra_commits: int = 0) -> Path:
    """A repository whose first commit adds ``config/.env`` with ``token`` and whose second
    removes it (``git rm``); ``extra_commits`` more commits edit a text file."""
    repo = root / "repo"
    repo.mkdir(parents=True)
    git(repo, "init", "-q")
    (repo / "README.md").write_text("# demo service\n")
    (repo / "config").mkdir()
    (repo / "config" / ".env").write_text(f"GITHUB_TOKEN={token}\nLOG_LEVEL=info\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "Add service config", when=1_700_000_000)
    git(repo, "rm", "-q", "config/.env")
    git(repo, "commit", "-q", "-m", "Drop the env file", when=1_700_000_100)
    notes = repo / "NOTES.txt"
    for n in range(extra_commits):
        lines = [f"line {k}: release notes of build {k * 7919 % 1000}" for k in range(n + 40)]
        notes.write_text("\n".join(lines) + "\n")
        git(repo, "add", ".")
        git(repo, "commit", "-q", "-m", f"Notes {n}", when=1_700_000_200 + n)
    return repo


def tree_layer(root: Path, at: str, layer: Layer | None = None) -> Layer:
    """``root`` (files and folders, .git included) as files of a layer under ``at``."""
    layer = layer or Layer()
    for folder, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder) / name
            if path.is_symlink():
                continue
            rel = path.relative_to(root).as_posix()
            layer.file(f"{at.rstrip('/')}/{rel}", path.read_bytes())
    return layer


def object_ids(git_dir: Path, kind: str) -> set[str]:
    """Every object of ``kind`` git itself reads in ``git_dir``."""
    out = git(git_dir, "cat-file", "--batch-all-objects", "--batch-check")
    return {line.split()[0] for line in out.splitlines() if line.split()[1] == kind}


# --- hand-made packs -----------------------------------------------------------------------

TYPES = {"commit": 1, "tree": 2, "blob": 3, "tag": 4}


def oid(kind: str, data: bytes) -> bytes:
    return hashlib.sha1(b"%s %d\0" % (kind.encode(), len(data)) + data).digest()


def obj_header(kind: int, size: int) -> bytes:
    """A pack object header: type and size, little-endian base-128."""
    b = (kind << 4) | (size & 15)
    size >>= 4
    out = bytearray()
    while size:
        out.append(b | 0x80)
        b = size & 0x7F
        size >>= 7
    out.append(b)
    return bytes(out)


def ofs(back: int) -> bytes:
    """An OFS_DELTA's distance to its base, as git encodes it."""
    out = [back & 0x7F]
    back >>= 7
    while back:
        back -= 1
        out.append(0x80 | (back & 0x7F))
        back >>= 7
    return bytes(reversed(out))


def size_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def delta(src_size: int, dst_size: int, ops: bytes) -> bytes:
    return size_varint(src_size) + size_varint(dst_size) + ops


def copy_op(offset: int, size: int) -> bytes:
    """A delta copy of ``size`` (< 65536) bytes at ``offset`` (< 2**32) of the base."""
    op = 0x80
    args = bytearray()
    for i in range(4):
        byte = (offset >> (8 * i)) & 0xFF
        if byte:
            op |= 1 << i
            args.append(byte)
    for i in range(3):
        byte = (size >> (8 * i)) & 0xFF
        if byte:
            op |= 0x10 << i
            args.append(byte)
    return bytes([op]) + bytes(args)


def insert_op(data: bytes) -> bytes:
    assert 0 < len(data) < 128
    return bytes([len(data)]) + data


class PackWriter:
    """A pack built object by object; ``entries`` are the offsets written."""

    def __init__(self) -> None:
        self.body = bytearray()
        self.offsets: list[int] = []

    def _at(self) -> int:
        return 12 + len(self.body)

    def whole(self, kind: str, data: bytes) -> int:
        at = self._at()
        self.body += obj_header(TYPES[kind], len(data)) + zlib.compress(data)
        self.offsets.append(at)
        return at

    def ofs_delta(self, base_at: int, data: bytes, declared: int | None = None) -> int:
        at = self._at()
        size = len(data) if declared is None else declared
        self.body += obj_header(6, size) + ofs(at - base_at) + zlib.compress(data)
        self.offsets.append(at)
        return at

    def ref_delta(self, base: bytes, data: bytes) -> int:
        at = self._at()
        self.body += obj_header(7, len(data)) + base + zlib.compress(data)
        self.offsets.append(at)
        return at

    def raw(self, header: bytes, payload: bytes) -> int:
        at = self._at()
        self.body += header + payload
        self.offsets.append(at)
        return at

    def pack(self, count: int | None = None) -> bytes:
        n = len(self.offsets) if count is None else count
        data = b"PACK" + (2).to_bytes(4, "big") + n.to_bytes(4, "big") + bytes(self.body)
        return data + hashlib.sha1(data).digest()


def loose(kind: str, data: bytes) -> tuple[str, bytes]:
    """A loose object's path below ``objects/`` and its bytes."""
    name = oid(kind, data).hex()
    return f"{name[:2]}/{name[2:]}", zlib.compress(b"%s %d\0" % (kind.encode(), len(data)) + data)


def pack_index(pack: bytes, offsets: list[int], ids: list[bytes]) -> bytes:
    """A version 2 ``.idx`` for ``pack`` as git writes one: the object at ``offsets[k]``
    named ``ids[k]`` (a test may pass ids that lie), CRC32 of each object's bytes."""
    ends = sorted(offsets) + [len(pack) - 20]
    crc = {at: zlib.crc32(pack[at : ends[ends.index(at) + 1]]) for at in offsets}
    rows = sorted(zip(ids, offsets, strict=True))
    fanout = [sum(1 for i, _ in rows if i[0] <= b) for b in range(256)]
    out = bytearray(b"\377tOc" + (2).to_bytes(4, "big"))
    out += b"".join(n.to_bytes(4, "big") for n in fanout)
    out += b"".join(i for i, _ in rows)
    out += b"".join(crc[at].to_bytes(4, "big") for _, at in rows)
    out += b"".join(at.to_bytes(4, "big") for _, at in rows)
    out += pack[-20:]
    return bytes(out) + hashlib.sha1(bytes(out)).digest()
