"""Memory benchmark: leakscan's peak RSS and throughput on big images.

Generates, streaming to disk (no layer is ever held in memory):

- ``layers``: a ~1 GiB image (``--size-mb``) of 5 layers, written both as a legacy
  ``docker save`` tar and as an OCI layout directory with gzip layers. It holds a few
  thousand small text files, medium binary files, one big file of several hundred MiB, and
  five fake secrets planted where a scan must find them: in a file deleted by a whiteout,
  in a file overwritten later, in a file still present, in a build argument of the
  history, and at the very end of the big file.
- ``bigfile``: one layer holding a single 2 GiB file (``--big-file-mb``) with a fake
  secret at its end, as an uncompressed ``docker save`` tar.
- ``baseline``: a tiny image, to show what an idle leakscan process costs.

Then runs ``python -m leakscan REF --format json --output FILE`` on each, measures wall
time and the child's peak RSS, checks the report for every planted secret (by
``secret_sha256``) and its status, and prints a table with PASS/FAIL against the RSS bound.

Usage: python bench/memory.py [--workdir bench/out] [--size-mb 1024] [--big-file-mb 2048]
                              [--regen] [--bound-mb 250] [--rss-method auto|time|wait4]

Exit status: 0 every run passed, 1 a run failed (RSS over the bound, a planted secret
missed or misplaced, an unexpected exit status), 2 bad usage. Sizes are MiB (2**20 bytes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import posixpath
import random
import re
import secrets
import shutil
import string
import subprocess
import sys
import tarfile
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

MIB = 1 << 20
BLOCK = 256 << 10  # filler is generated and written in blocks of this size
PAGE = 4096
COPY_BUFSIZE = 1 << 20
GZIP_LEVEL = 6  # gzip's default, what docker and buildah use
MTIME = 1_704_067_200  # 2024-01-01T00:00:00Z, for every tar entry
CREATED = "2024-01-01T00:00:00Z"
GENERATOR_VERSION = 1  # bump when the generated images change, so old ones are regenerated
FILLER_SEED = 20240101  # filler bytes are reproducible; the planted secrets are not
TIME_BIN = "/usr/bin/time"
ALNUM = string.ascii_letters + string.digits
EXPECTED_EXIT = 1  # every benchmark image holds findings, except the baseline

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
OCI_TAG = "latest"

Member = tuple[tarfile.TarInfo, Iterable[bytes] | None]


# --- fake secrets -----------------------------------------------------------------------


def github_pat() -> str:
    """A GitHub classic PAT shape: ``ghp_`` + 36 random alphanumerics. Never issued."""
    return "ghp_" + "".join(secrets.choice(ALNUM) for _ in range(36))


def npm_token() -> str:
    """An npm access token shape: ``npm_`` + 36 random alphanumerics. Never issued."""
    return "npm_" + "".join(secrets.choice(ALNUM) for _ in range(36))


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Planted:
    """A secret put in an image, and where the report must place it."""

    label: str
    secret_sha256: str
    kind: str  # "file" or "history"
    layer_index: int | None = None
    path: str | None = None
    status: str | None = None  # present / deleted / overwritten, for files
    removed_in_layer: int | None = None
    history_index: int | None = None

    def where(self) -> str:
        if self.kind == "history":
            return f"history[{self.history_index}]"
        removed = f", removed in layer {self.removed_in_layer}" if self.removed_in_layer else ""
        return f"layer {self.layer_index} {self.path} ({self.status}{removed})"


# --- streaming readers and writers --------------------------------------------------------


class ChunkReader:
    """A read-only file object over an iterator of byte chunks: what ``tarfile.addfile``
    copies a member's content from, without the content ever being whole in memory."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._current = memoryview(b"")

    def read(self, size: int = -1) -> bytes:
        parts: list[memoryview] = []
        need = size if size >= 0 else sys.maxsize
        while need > 0:
            if not self._current:
                chunk = next(self._chunks, None)
                if chunk is None:
                    break
                self._current = memoryview(chunk)
            part = self._current[:need]
            parts.append(part)
            self._current = self._current[len(part) :]
            need -= len(part)
        return b"".join(parts)

    def exhausted(self) -> bool:
        """Whether every chunk was read (empty chunks left over do not count)."""
        return not self._current and not any(self._chunks)


class LayerSink:
    """Where ``tarfile`` writes a layer tar: every byte is hashed (the diff_id), written
    into the docker-save tar, and, for OCI, gzip-compressed into a blob that is hashed too
    (the layer digest). One pass, nothing kept."""

    def __init__(self, raw: BinaryIO, gz: BinaryIO | None, level: int = GZIP_LEVEL) -> None:
        self._raw = raw
        self._gz = gz
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, 31) if gz else None
        self.size = 0
        self.diff_hash = hashlib.sha256()
        self.gz_size = 0
        self.gz_hash = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.diff_hash.update(data)
        self._raw.write(data)
        self.size += len(data)
        if self._compressor is not None:
            self._emit(self._compressor.compress(data))
        return len(data)

    def tell(self) -> int:
        return self.size

    def _emit(self, data: bytes) -> None:
        if data and self._gz is not None:
            self._gz.write(data)
            self.gz_hash.update(data)
            self.gz_size += len(data)

    def finish(self) -> None:
        if self._compressor is not None:
            self._emit(self._compressor.flush())

    @property
    def diff_id(self) -> str:
        return "sha256:" + self.diff_hash.hexdigest()

    @property
    def gz_digest(self) -> str:
        return "sha256:" + self.gz_hash.hexdigest()


def _tarinfo(name: str, kind: bytes, size: int = 0, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.mode = mode
    info.mtime = MTIME
    info.uname = info.gname = "root"
    return info


def _header(info: tarfile.TarInfo) -> bytes:
    # GNU: sizes of 8 GiB and more still fit the one block (base-256), so it can be patched
    header = info.tobuf(tarfile.GNU_FORMAT, "utf-8", "strict")
    if len(header) != tarfile.BLOCKSIZE:
        raise ValueError(f"{info.name}: header is not one block")
    return header


class DockerSaveWriter:
    """A ``docker save`` tar written member by member. A layer member's header is written
    with size 0, its bytes streamed behind it, and the header patched once the size is
    known: the layer goes to disk once, straight into the archive."""

    def __init__(self, path: Path) -> None:
        self._fh = open(path, "wb", buffering=COPY_BUFSIZE)  # noqa: SIM115 - closed in close()

    def _pad(self, size: int) -> None:
        rest = size % tarfile.BLOCKSIZE
        if rest:
            self._fh.write(tarfile.NUL * (tarfile.BLOCKSIZE - rest))

    def add_dir(self, name: str) -> None:
        self._fh.write(_header(_tarinfo(name, tarfile.DIRTYPE, mode=0o755)))

    def add_bytes(self, name: str, data: bytes) -> None:
        self._fh.write(_header(_tarinfo(name, tarfile.REGTYPE, len(data))))
        self._fh.write(data)
        self._pad(len(data))

    def begin_stream(self, name: str) -> tuple[BinaryIO, int]:
        """Start a member of unknown size; returns the file to write into and a token."""
        offset = self._fh.tell()
        self._fh.write(_header(_tarinfo(name, tarfile.REGTYPE, 0)))
        return self._fh, offset

    def end_stream(self, name: str, offset: int, size: int) -> None:
        self._pad(size)
        end = self._fh.tell()
        self._fh.seek(offset)
        self._fh.write(_header(_tarinfo(name, tarfile.REGTYPE, size)))
        self._fh.seek(end)

    def close(self) -> None:
        end = self._fh.tell() + 2 * tarfile.BLOCKSIZE
        self._fh.write(tarfile.NUL * (2 * tarfile.BLOCKSIZE))
        rest = end % tarfile.RECORDSIZE
        if rest:
            self._fh.write(tarfile.NUL * (tarfile.RECORDSIZE - rest))
        self._fh.close()


# --- file content -------------------------------------------------------------------------

_WORD_TEXT = (
    "access account action adapter agent alias allow archive array asset async audit backend "
    "balance batch binary block bridge buffer build bundle cache calendar channel check "
    "client cluster codec column command commit compile config connect console context "
    "cookie counter cursor daemon dashboard data debug default delta deploy device digest "
    "direct domain driver editor engine entry error event export family feature fetch filter "
    "folder format frame gateway global graph group handler header health history host "
    "image import index inline input install kernel label layout ledger level library limit "
    "linker listen local locale logger lookup manager mapping matrix media memory merge "
    "message metric mirror module monitor mount native network node notify object offset "
    "option output owner package page parser patch path pipeline plugin policy pool port "
    "preview primary printer process profile project proxy publish queue quota range reader "
    "record region release remote render replica report request resolve resource result "
    "review route router runtime sample schedule schema scope search segment select sensor "
    "server service session shard signal socket source stage static status storage stream "
    "style switch system table target task template tenant theme thread ticket timer topic "
    "trace tracker transfer update upload user utility value vector version viewer volume "
    "watch widget worker writer zone"
)
WORDS = _WORD_TEXT.split()

LICENSE_TEXT = (
    "Permission is hereby granted, free of charge, to any person obtaining a copy of this\n"
    "software and associated documentation files, to deal in the software without\n"
    "restriction, including without limitation the rights to use, copy, modify, merge,\n"
    "publish, distribute, sublicense, and/or sell copies of the software.\n\n"
    "THE SOFTWARE IS PROVIDED AS IS, WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED.\n"
)


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _ident(rng: random.Random, parts: int = 2) -> str:
    return "_".join(rng.choice(WORDS) for _ in range(rng.randint(1, parts)))


def _sentence(rng: random.Random) -> str:
    return _words(rng, rng.randint(6, 14)).capitalize() + "."


def conf_text(rng: random.Random, name: str) -> str:
    lines = [f"# {name}: settings for the {_words(rng, 2)} service", ""]
    for _ in range(rng.randint(2, 6)):
        lines.append(f"[{_ident(rng)}]")
        for _ in range(rng.randint(3, 12)):
            value = rng.choice(
                [
                    str(rng.randint(0, 65535)),
                    rng.choice(["yes", "no", "true", "false", "auto"]),
                    f"/var/lib/{_ident(rng)}/{rng.choice(WORDS)}",
                    f'"{_words(rng, 3)}"',
                    f"{rng.randint(1, 512)}M",
                ]
            )
            lines.append(f"{_ident(rng)} = {value}")
        lines.append("")
    return "\n".join(lines)


def yaml_text(rng: random.Random, name: str) -> str:
    lines = [f"# {name}", f"name: {_ident(rng)}", f"replicas: {rng.randint(1, 9)}", "spec:"]
    for _ in range(rng.randint(3, 10)):
        lines.append(f"  {_ident(rng)}:")
        for _ in range(rng.randint(1, 5)):
            lines.append(f"    {rng.choice(WORDS)}: {rng.choice([_words(rng, 2), rng.random()])}")
    return "\n".join(lines) + "\n"


def shell_text(rng: random.Random, name: str) -> str:
    var = _ident(rng).upper()
    lines = [
        "#!/bin/sh",
        f"# {name}: {_sentence(rng)}",
        "set -eu",
        "",
        f'{var}="${{{var}:-/var/lib/{rng.choice(WORDS)}}}"',
        "",
    ]
    funcs = [_ident(rng) for _ in range(rng.randint(2, 6))]
    for func in funcs:
        lines += [f"{func}() {{", f'    echo "{_words(rng, 4)}"']
        lines += [
            f'    if [ -d "${var}/{rng.choice(WORDS)}" ]; then',
            f'        mkdir -p "${var}/{rng.choice(WORDS)}/{rng.choice(WORDS)}"',
            "    fi",
            "}",
            "",
        ]
    lines += ["main() {", *[f"    {f}" for f in funcs], "}", "", 'main "$@"', ""]
    return "\n".join(lines)


def python_text(rng: random.Random, name: str) -> str:
    lines = [f'"""{name}: {_sentence(rng)}"""', "", "from __future__ import annotations", ""]
    lines += [f"import {m}" for m in sorted(rng.sample(["os", "sys", "json", "re", "time"], 2))]
    lines.append("")
    for _ in range(rng.randint(2, 8)):
        func, arg = _ident(rng), rng.choice(WORDS)
        lines += [
            "",
            f"def {func}({arg}: str, limit: int = {rng.randint(1, 100)}) -> list[str]:",
            f'    """{_sentence(rng)}"""',
            "    out = []",
            f"    for item in {arg}.split():",
            f"        if len(out) >= limit or item == {rng.choice(WORDS)!r}:",
            "            break",
            "        out.append(item.strip())",
            "    return out",
            "",
        ]
    cls = "".join(w.capitalize() for w in _ident(rng).split("_"))
    lines += ["", f"class {cls}:", f'    """{_sentence(rng)}"""', ""]
    lines += ["    def __init__(self) -> None:", f"        self.{rng.choice(WORDS)} = {{}}", ""]
    return "\n".join(lines)


def js_text(rng: random.Random, name: str) -> str:
    lines = ["'use strict';", f"// {name}: {_sentence(rng)}", ""]
    deps = [rng.choice(WORDS) for _ in range(rng.randint(1, 4))]
    lines += [f"const {d} = require('./{d}');" for d in dict.fromkeys(deps)]
    for _ in range(rng.randint(2, 8)):
        func = "".join(w.capitalize() for w in _ident(rng).split("_"))
        lines += [
            "",
            f"function do{func}(input, options = {{}}) {{",
            f"  const limit = options.limit || {rng.randint(1, 1000)};",
            f"  return String(input).split(' ').filter((w) => w !== '{rng.choice(WORDS)}')"
            ".slice(0, limit);",
            "}",
        ]
    lines += ["", f"module.exports = {{ {', '.join(dict.fromkeys(deps))} }};", ""]
    return "\n".join(lines)


def markdown_text(rng: random.Random, name: str) -> str:
    parts = [f"# {name}", ""]
    for _ in range(rng.randint(2, 6)):
        parts += [f"## {_words(rng, 2).capitalize()}", ""]
        parts += [" ".join(_sentence(rng) for _ in range(rng.randint(2, 6))), ""]
    return "\n".join(parts)


def package_json(rng: random.Random, name: str) -> str:
    deps = {rng.choice(WORDS): f"^{rng.randint(0, 9)}.{rng.randint(0, 20)}.0" for _ in range(4)}
    doc = {
        "name": name,
        "version": f"{rng.randint(0, 5)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}",
        "description": _sentence(rng),
        "main": "index.js",
        "license": "MIT",
        "dependencies": deps,
    }
    return json.dumps(doc, indent=2) + "\n"


def mixed_chunks(rng: random.Random, size: int, random_share: float) -> Iterator[bytes]:
    """``size`` binary-looking bytes, block by block: some blocks random (gzip cannot shrink
    them), the rest a random page repeated (gzip shrinks them fast)."""
    left = size
    while left > 0:
        n = min(BLOCK, left)
        if rng.random() < random_share:
            yield rng.randbytes(n)
        else:
            yield (rng.randbytes(PAGE) * (n // PAGE + 1))[:n]
        left -= n


def repeated_chunks(rng: random.Random, size: int) -> Iterator[bytes]:
    """``size`` bytes of one random MiB over and over: fast to make, write and scan."""
    block = rng.randbytes(PAGE) * (MIB // PAGE)
    left = size
    while left > 0:
        n = min(MIB, left)
        yield block if n == MIB else block[:n]
        left -= n


def with_tail(size: int, tail: bytes, filler: Callable[[int], Iterator[bytes]]) -> Iterator[bytes]:
    """``size`` bytes that end with ``tail``."""
    yield from filler(size - len(tail))
    yield tail


# --- layer members ------------------------------------------------------------------------


class Tree:
    """Members of one layer tar, with parent directories added before their children."""

    def __init__(self) -> None:
        self._dirs: set[str] = set()

    def dirs(self, path: str) -> Iterator[Member]:
        parent = posixpath.dirname(path)
        if not parent or parent in self._dirs:
            return
        yield from self.dirs(parent)
        self._dirs.add(parent)
        yield _tarinfo(parent + "/", tarfile.DIRTYPE, mode=0o755), None

    def text(self, path: str, text: str, mode: int = 0o644) -> Iterator[Member]:
        data = text.encode()
        yield from self.dirs(path)
        yield _tarinfo(path, tarfile.REGTYPE, len(data), mode), (data,)

    def stream(
        self, path: str, size: int, chunks: Iterable[bytes], mode: int = 0o644
    ) -> Iterator[Member]:
        yield from self.dirs(path)
        yield _tarinfo(path, tarfile.REGTYPE, size, mode), chunks

    def whiteout(self, path: str) -> Iterator[Member]:
        """The OCI whiteout that deletes ``path`` from the layers beneath."""
        parent, name = posixpath.split(path)
        yield from self.text(posixpath.join(parent, ".wh." + name), "")


def medium_files(
    tree: Tree, rng: random.Random, budget: int, name: Callable[[int], str]
) -> Iterator[Member]:
    """Binary files of 1-16 MiB, 30% of their blocks random, until ``budget`` is spent."""
    n = 0
    while budget > 64 << 10:
        size = min(budget, rng.randint(1 * MIB, 16 * MIB))
        yield from tree.stream(name(n), size, mixed_chunks(rng, size, 0.3))
        budget -= size + tarfile.BLOCKSIZE
        n += 1


def write_layer(members: Iterable[Member], sink: LayerSink) -> None:
    """Write a layer tar through ``sink``, member by member."""
    with tarfile.open(fileobj=sink, mode="w", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        tar.copybufsize = COPY_BUFSIZE
        for info, chunks in members:
            if chunks is None:
                tar.addfile(info)
                continue
            reader = ChunkReader(chunks)
            tar.addfile(info, reader)
            if not reader.exhausted():
                raise RuntimeError(f"{info.name}: content is longer than its size")
    sink.finish()


# --- images -------------------------------------------------------------------------------


@dataclass
class LayerSpec:
    """A layer to generate: its history line and its members (made lazily, while written).
    ``members`` receives a function that tells how many bytes the image holds so far."""

    created_by: str
    members: Callable[[Callable[[], int]], Iterator[Member]]


@dataclass
class ImageSpec:
    name: str
    tag: str
    layers: list[LayerSpec]
    planted: list[Planted]
    oci: bool
    params: dict[str, Any]


@dataclass
class ImagePlan:
    """What was generated: written last, so a plan on disk means a complete image."""

    name: str
    generator: int
    params: dict[str, Any]
    layer_sizes: list[int]
    gz_sizes: list[int]
    diff_ids: list[str]
    planted: list[Planted] = field(default_factory=list)
    layouts: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def uncompressed(self) -> int:
        return sum(self.layer_sizes)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> ImagePlan:
        data = json.loads(path.read_text())
        data["planted"] = [Planted(**p) for p in data["planted"]]
        return cls(**data)


def layers_image(size_mb: int) -> ImageSpec:
    """The ~1 GiB, 5-layer image with five planted secrets."""
    rng = random.Random(FILLER_SEED)
    target = size_mb * MIB
    big_size = max(MIB, target * 2 // 5)
    medium = max(0, target - big_size - 16 * MIB)  # small files and tar headers: ~16 MiB
    deleted, overwritten, present, in_big = npm_token(), github_pat(), github_pat(), github_pat()
    build_arg = npm_token()
    big_path = "opt/data/model.bin"

    def base(_: Callable[[], int]) -> Iterator[Member]:
        tree = Tree()
        for i in range(160):
            name = f"etc/{_ident(rng)}{i}.conf"
            yield from tree.text(name, conf_text(rng, name))
        for i in range(320):
            pkg = f"{_ident(rng).replace('_', '-')}{i}"
            yield from tree.text(f"usr/share/doc/{pkg}/README.md", markdown_text(rng, pkg))
            yield from tree.text(f"usr/share/doc/{pkg}/copyright", LICENSE_TEXT)
        for i in range(900):
            name = f"usr/lib/python3/dist-packages/{rng.choice(WORDS)}/{_ident(rng)}{i}.py"
            yield from tree.text(name, python_text(rng, name))
        for i in range(200):
            name = f"usr/bin/{rng.choice(WORDS)}-{rng.choice(WORDS)}{i}"
            yield from tree.text(name, shell_text(rng, name), 0o755)
        yield from medium_files(
            tree,
            rng,
            medium * 35 // 100,
            lambda n: f"usr/lib/x86_64-linux-gnu/lib{rng.choice(WORDS)}{n}.so.{rng.randint(1, 9)}",
        )

    def dependencies(_: Callable[[], int]) -> Iterator[Member]:
        tree = Tree()
        yield from tree.text("root/.npmrc", f"//registry.npmjs.org/:_authToken={deleted}\n", 0o600)
        for i in range(260):
            pkg = f"{_ident(rng).replace('_', '-')}-{i}"
            root = f"app/node_modules/{pkg}"
            yield from tree.text(f"{root}/package.json", package_json(rng, pkg))
            yield from tree.text(f"{root}/index.js", js_text(rng, pkg))
            yield from tree.text(f"{root}/README.md", markdown_text(rng, pkg))
            for j in range(3):
                name = f"{root}/lib/{rng.choice(WORDS)}{j}.js"
                yield from tree.text(name, js_text(rng, name))
        yield from medium_files(
            tree,
            rng,
            medium * 25 // 100,
            lambda n: f"app/node_modules/{rng.choice(WORDS)}-native/build/Release/addon{n}.node",
        )

    def data(_: Callable[[], int]) -> Iterator[Member]:
        tree = Tree()
        yield from tree.text(
            "app/config/settings.env",
            f"APP_ENV=production\nLOG_LEVEL=info\nGITHUB_TOKEN={overwritten}\n",
            0o600,
        )
        tail = f"\ngithub_token={in_big}".encode()
        yield from tree.stream(
            big_path,
            big_size,
            with_tail(big_size, tail, lambda n: mixed_chunks(rng, n, 0.25)),
        )

    def app(written: Callable[[], int]) -> Iterator[Member]:
        tree = Tree()
        yield from tree.text("home/app/.git-credentials", f"https://ci-bot:{present}@github.com\n")
        yield from tree.text("app/config/settings.env.example", "APP_ENV=\nLOG_LEVEL=info\n")
        for i in range(360):
            name = f"app/src/{rng.choice(WORDS)}/{_ident(rng)}{i}.py"
            yield from tree.text(name, python_text(rng, name))
        for i in range(40):
            yield from tree.text(f"app/scripts/{_ident(rng)}{i}.sh", shell_text(rng, "s"), 0o755)
        for i in range(40):
            name = f"app/config/{_ident(rng)}{i}.yaml"
            yield from tree.text(name, yaml_text(rng, name))
        # the rest of the budget, so that the image lands close to --size-mb
        yield from medium_files(
            tree,
            rng,
            target - written() - (64 << 10),
            lambda n: f"app/static/media/{rng.choice(WORDS)}{n}.woff2",
        )

    def cleanup(_: Callable[[], int]) -> Iterator[Member]:
        tree = Tree()
        yield from tree.whiteout("root/.npmrc")
        yield from tree.text("app/config/settings.env", "APP_ENV=\nLOG_LEVEL=info\n", 0o600)

    npmrc = 'echo "//registry.npmjs.org/:_authToken=${NPM_TOKEN}" > /root/.npmrc'
    layers = [
        LayerSpec("/bin/sh -c #(nop) ADD file:4b1e0f2a9c3d in / ", base),
        LayerSpec(f"|1 NPM_TOKEN={build_arg} /bin/sh -c {npmrc} && npm ci", dependencies),
        LayerSpec("/bin/sh -c #(nop) COPY dir:7d2c9e1b in /opt/data ", data),
        LayerSpec("/bin/sh -c #(nop) COPY dir:a3f9b60c in /app ", app),
        LayerSpec(
            "/bin/sh -c rm -f /root/.npmrc && cp /app/config/settings.env.example "
            "/app/config/settings.env",
            cleanup,
        ),
    ]
    planted = [
        Planted(
            "npm token, file deleted by a whiteout",
            sha256_hex(deleted),
            "file",
            1,
            "/root/.npmrc",
            "deleted",
            4,
        ),
        Planted(
            "GitHub PAT, file overwritten",
            sha256_hex(overwritten),
            "file",
            2,
            "/app/config/settings.env",
            "overwritten",
            4,
        ),
        Planted(
            "GitHub PAT, file present",
            sha256_hex(present),
            "file",
            3,
            "/home/app/.git-credentials",
            "present",
        ),
        Planted(
            "npm token, build arg in history",
            sha256_hex(build_arg),
            "history",
            1,
            None,
            None,
            None,
            history_index=1,
        ),
        Planted(
            "GitHub PAT, end of the big file",
            sha256_hex(in_big),
            "file",
            2,
            "/" + big_path,
            "present",
        ),
    ]
    return ImageSpec(
        "layers", "leakscan-bench/layers:latest", layers, planted, True, {"size_mb": size_mb}
    )


def bigfile_image(big_file_mb: int) -> ImageSpec:
    """One layer, one file of ``big_file_mb`` MiB, a fake secret in its last bytes."""
    rng = random.Random(FILLER_SEED + 1)
    token = github_pat()
    size = big_file_mb * MIB
    path = "data/blob.bin"

    def members(_: Callable[[], int]) -> Iterator[Member]:
        tree = Tree()
        tail = f"\ngithub_token={token}".encode()
        yield from tree.stream(path, size, with_tail(size, tail, lambda n: repeated_chunks(rng, n)))

    planted = [
        Planted(
            "GitHub PAT, end of the big file", sha256_hex(token), "file", 0, "/" + path, "present"
        )
    ]
    layers = [LayerSpec("/bin/sh -c #(nop) COPY file:e5c8a1d0 in /data/blob.bin ", members)]
    return ImageSpec(
        "bigfile",
        "leakscan-bench/bigfile:latest",
        layers,
        planted,
        False,
        {"big_file_mb": big_file_mb},
    )


def baseline_image() -> ImageSpec:
    """A tiny image with no secrets: the cost of leakscan itself."""
    rng = random.Random(FILLER_SEED + 2)

    def members(_: Callable[[], int]) -> Iterator[Member]:
        tree = Tree()
        yield from tree.text("etc/app.conf", conf_text(rng, "etc/app.conf"))

    layers = [LayerSpec("/bin/sh -c #(nop) ADD file:0c1d2e3f in / ", members)]
    return ImageSpec("baseline", "leakscan-bench/baseline:latest", layers, [], False, {})


def _config(spec: ImageSpec, diff_ids: list[str]) -> bytes:
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": CREATED,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
            "WorkingDir": "/app",
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": CREATED, "created_by": layer.created_by} for layer in spec.layers],
    }
    return json.dumps(config, separators=(",", ":")).encode()


def generate(spec: ImageSpec, out: Path) -> ImagePlan:
    """Write ``spec`` into ``out`` as a docker-save tar (and an OCI layout when asked)."""
    start = time.perf_counter()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    blobs = out / "oci" / "blobs" / "sha256"
    if spec.oci:
        blobs.mkdir(parents=True)
    save = DockerSaveWriter(out / "docker-archive.tar")
    sizes: list[int] = []
    gz_sizes: list[int] = []
    gz_digests: list[str] = []
    diff_ids: list[str] = []
    layer_names: list[str] = []
    parent: str | None = None
    for i, layer in enumerate(spec.layers):
        layer_id = hashlib.sha256(f"{spec.name} layer {i}".encode()).hexdigest()
        save.add_dir(f"{layer_id}/")
        save.add_bytes(f"{layer_id}/VERSION", b"1.0")
        v1: dict[str, Any] = {"id": layer_id, "created": CREATED}
        if parent:
            v1["parent"] = parent
        save.add_bytes(f"{layer_id}/json", json.dumps(v1).encode())
        name = f"{layer_id}/layer.tar"
        raw, offset = save.begin_stream(name)
        tmp = blobs / f"tmp-layer-{i}"
        gz = open(tmp, "wb", buffering=COPY_BUFSIZE) if spec.oci else None  # noqa: SIM115
        try:
            sink = LayerSink(raw, gz)
            done = sum(sizes)
            write_layer(layer.members(lambda: done + sink.size), sink)  # noqa: B023
        finally:
            if gz is not None:
                gz.close()
        save.end_stream(name, offset, sink.size)
        if spec.oci:
            tmp.rename(blobs / sink.gz_digest.split(":", 1)[1])
        sizes.append(sink.size)
        gz_sizes.append(sink.gz_size)
        gz_digests.append(sink.gz_digest)
        diff_ids.append(sink.diff_id)
        layer_names.append(name)
        parent = layer_id
    config = _config(spec, diff_ids)
    config_hex = hashlib.sha256(config).hexdigest()
    save.add_bytes(f"{config_hex}.json", config)
    manifest = [{"Config": f"{config_hex}.json", "RepoTags": [spec.tag], "Layers": layer_names}]
    save.add_bytes("manifest.json", json.dumps(manifest).encode())
    repo, tag = spec.tag.rsplit(":", 1)
    save.add_bytes("repositories", json.dumps({repo: {tag: parent}}).encode())
    save.close()
    layouts = {"docker-archive": f"docker-archive:{out / 'docker-archive.tar'}"}
    if spec.oci:
        _write_oci(out / "oci", config, gz_digests, gz_sizes)
        layouts["oci"] = f"oci:{out / 'oci'}:{OCI_TAG}"
    plan = ImagePlan(
        name=spec.name,
        generator=GENERATOR_VERSION,
        params=spec.params,
        layer_sizes=sizes,
        gz_sizes=gz_sizes,
        diff_ids=diff_ids,
        planted=spec.planted,
        layouts=layouts,
        seconds=round(time.perf_counter() - start, 2),
    )
    plan.save(out / "plan.json")
    return plan


def _write_oci(root: Path, config: bytes, layer_digests: list[str], gz_sizes: list[int]) -> None:
    """The OCI layout around layer blobs already in ``root/blobs/sha256``."""
    blobs = root / "blobs" / "sha256"

    def put(data: bytes) -> str:
        hexdigest = hashlib.sha256(data).hexdigest()
        (blobs / hexdigest).write_bytes(data)
        return "sha256:" + hexdigest

    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": put(config), "size": len(config)},
        "layers": [
            {"mediaType": MT_LAYER_GZIP, "digest": digest, "size": size}
            for digest, size in zip(layer_digests, gz_sizes, strict=True)
        ],
    }
    manifest_bytes = json.dumps(manifest, separators=(",", ":")).encode()
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": MT_MANIFEST,
                "digest": put(manifest_bytes),
                "size": len(manifest_bytes),
                "annotations": {REF_NAME: OCI_TAG},
            }
        ],
    }
    (root / "index.json").write_text(json.dumps(index, separators=(",", ":")))
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')


# --- running leakscan ---------------------------------------------------------------------


@dataclass
class Run:
    """One leakscan run over one layout of one image, and what its report says."""

    image: str
    layout: str
    uncompressed: int
    wall: float
    rss_kib: int | None
    exit_code: int
    expected_exit: int
    planted: int
    found: int = 0
    placed: int = 0
    problems: list[str] = field(default_factory=list)
    extras: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def rss_ok(self, bound_mib: float) -> bool:
        return self.rss_kib is not None and self.rss_kib / 1024 < bound_mib

    def ok(self, bound_mib: float) -> bool:
        return (
            self.rss_ok(bound_mib)
            and self.exit_code == self.expected_exit
            and self.placed == self.planted
            and not self.problems
            and not self.errors
        )


_MAX_RSS = re.compile(r"Maximum resident set size \(kbytes\):\s*(\d+)")
_EXIT = re.compile(r"Exit status:\s*(\d+)")


def measure(
    cmd: list[str], cwd: Path, stderr: Path, time_log: Path, method: str
) -> tuple[float, int | None, int]:
    """Run ``cmd`` in ``cwd``; return wall seconds, the child's peak RSS in KiB, and its exit
    status.

    ``time``: GNU time's ``-v`` report. ``wait4``: the rusage the kernel hands back for this
    one child (getrusage(RUSAGE_CHILDREN) would give the largest of every child so far).
    """
    time_log.unlink(missing_ok=True)
    with open(stderr, "wb") as err:
        if method == "time":
            full = [TIME_BIN, "-v", "-o", str(time_log), *cmd]
            start = time.perf_counter()
            code = subprocess.run(full, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err).returncode
            wall = time.perf_counter() - start
            log = time_log.read_text()
            rss = _MAX_RSS.search(log)
            status = _EXIT.search(log)
            peak = int(rss.group(1)) if rss else None
            return wall, peak, int(status.group(1)) if status else code
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
        _, wait_status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(wait_status)
        return wall, usage.ru_maxrss, proc.returncode


def _describe(loc: dict[str, Any]) -> str:
    if loc.get("kind") == "file":
        removed = loc.get("removed_in_layer")
        gone = f", removed in layer {removed}" if removed is not None else ""
        return f"layer {loc.get('layer_index')} {loc.get('path')} ({loc.get('status')}{gone})"
    if loc.get("kind") == "history":
        return f"history[{loc.get('history_index')}]"
    return f"config {loc.get('field')} {loc.get('key') or ''}".rstrip()


def _located(loc: dict[str, Any], planted: Planted) -> bool:
    if loc.get("kind") != planted.kind:
        return False
    if planted.kind == "history":
        return bool(loc.get("history_index") == planted.history_index)
    return bool(
        loc.get("layer_index") == planted.layer_index
        and loc.get("path") == planted.path
        and loc.get("status") == planted.status
        and loc.get("removed_in_layer") == planted.removed_in_layer
    )


def check_report(run: Run, report_path: Path, planted: list[Planted]) -> None:
    """Fill ``run`` with what the JSON report says about the planted secrets."""
    try:
        report = json.loads(report_path.read_text())
    except (OSError, ValueError) as exc:
        run.problems.append(f"no readable report: {exc}")
        return
    images = report.get("images") or []
    run.errors += [e.get("message", "?") for e in report.get("errors") or []]
    run.errors += [e.get("message", "?") for i in images for e in i.get("errors") or []]
    findings = [f for image in images for f in image.get("findings") or []]
    for image in images:
        suppressed = {k: v for k, v in (image.get("suppressed") or {}).items() if v}
        if suppressed:
            run.notes.append(f"leakscan suppressed findings: {suppressed}")
    for secret in planted:
        hits = [f for f in findings if f.get("secret_sha256") == secret.secret_sha256]
        if not hits:
            run.problems.append(f"MISSED {secret.label}: expected at {secret.where()}")
            continue
        run.found += 1
        if any(_located(f.get("location") or {}, secret) for f in hits):
            run.placed += 1
        else:
            seen = "; ".join(sorted({_describe(f.get("location") or {}) for f in hits}))
            run.problems.append(
                f"WRONG PLACE {secret.label}: expected {secret.where()}, reported {seen}"
            )
    known = {p.secret_sha256 for p in planted}
    run.extras = sorted(
        {
            f"{f.get('rule_id')} at {_describe(f.get('location') or {})}"
            for f in findings
            if f.get("secret_sha256") not in known
        }
    )


# --- main ---------------------------------------------------------------------------------


def _mib(n: float) -> str:
    return f"{n / MIB:.1f}"


def reusable(root: Path, name: str, params: dict[str, Any]) -> ImagePlan | None:
    """The plan of a complete image generated earlier with the same parameters, if any."""
    out = root / name
    try:
        plan = ImagePlan.load(out / "plan.json")
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if plan.generator != GENERATOR_VERSION or plan.params != params:
        return None
    return plan if (out / "docker-archive.tar").is_file() else None


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def leakscan_origin(python: str, cwd: Path) -> str:
    """Where the scans import leakscan from, and its git commit: figures name their code."""
    code = "import leakscan, os; print(os.path.dirname(os.path.abspath(leakscan.__file__)))"
    where = subprocess.run(
        [python, "-c", code], cwd=cwd, capture_output=True, text=True, check=False
    ).stdout.strip()
    if not where:
        return "leakscan is not importable"

    def git(*words: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", "-C", where, *words], capture_output=True, text=True)

    rev = git("rev-parse", "--short", "HEAD")
    if rev.returncode:
        return where
    dirty = git("status", "--porcelain", "--", ".").stdout.strip()
    return f"{where} (git {rev.stdout.strip()}{' + uncommitted changes' if dirty else ''})"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure leakscan's peak memory and throughput on generated big images."
    )
    here = Path(__file__).resolve().parent
    parser.add_argument("--workdir", type=Path, default=here / "out", help="default: bench/out")
    parser.add_argument("--size-mb", type=int, default=1024, help="layers image, uncompressed")
    parser.add_argument("--big-file-mb", type=int, default=2048, help="the single big file")
    parser.add_argument("--bound-mb", type=float, default=250, help="peak RSS bound, MiB")
    parser.add_argument("--regen", action="store_true", help="regenerate images even if present")
    parser.add_argument(
        "--rss-method",
        choices=("auto", "time", "wait4"),
        default="auto",
        help="auto: /usr/bin/time -v if installed, else the child's rusage from wait4",
    )
    args = parser.parse_args(argv)
    if args.size_mb < 8 or args.big_file_mb < 1:
        parser.error("--size-mb must be at least 8 and --big-file-mb at least 1")
    if args.rss_method == "auto":
        args.rss_method = "time" if os.access(TIME_BIN, os.X_OK) else "wait4"
    elif args.rss_method == "time" and not os.access(TIME_BIN, os.X_OK):
        parser.error(f"{TIME_BIN} is missing (Debian package: time)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root: Path = args.workdir.resolve()
    root.mkdir(parents=True, exist_ok=True)
    reports = root / "reports"
    reports.mkdir(exist_ok=True)
    python = sys.executable
    version = subprocess.run(
        [python, "-m", "leakscan", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    method = f"{TIME_BIN} -v" if args.rss_method == "time" else "os.wait4 rusage"
    print(
        f"leakscan memory benchmark: {version or 'leakscan ?'}, Python "
        f"{sys.version.split()[0]}, {os.cpu_count()} CPUs, peak RSS via {method}"
    )
    print(f"leakscan from {leakscan_origin(python, reports)}")
    print(f"work dir: {root}")

    wanted = [
        ("baseline", {}, baseline_image),
        ("layers", {"size_mb": args.size_mb}, lambda: layers_image(args.size_mb)),
        ("bigfile", {"big_file_mb": args.big_file_mb}, lambda: bigfile_image(args.big_file_mb)),
    ]
    found = {
        name: None if args.regen else reusable(root, name, params) for name, params, _ in wanted
    }
    # docker-save tar + gzip blobs (about half the size here) for the layers image
    need = {"baseline": 0, "layers": args.size_mb * 8 // 5, "bigfile": args.big_file_mb}
    need_mib = sum(need[name] for name, plan in found.items() if plan is None)
    free_mib = shutil.disk_usage(root).free // MIB
    if need_mib + 256 > free_mib:
        print(f"not enough disk space in {root}: need ~{need_mib} MiB, {free_mib} MiB free")
        return 2
    plans: list[ImagePlan] = []
    for name, _, make in wanted:
        plan = found[name]
        how = f"reused (generated in {plan.seconds:.1f} s)" if plan else ""
        if plan is None:
            print(f"  {name:<9} generating ...", flush=True)
            plan = generate(make(), root / name)
            how = f"generated in {plan.seconds:.1f} s"
        gz = f", gzip {_mib(sum(plan.gz_sizes))} MiB" if sum(plan.gz_sizes) else ""
        print(
            f"  {name:<9} {how}: {len(plan.layer_sizes)} layer(s), "
            f"{_mib(plan.uncompressed)} MiB uncompressed{gz}, {len(plan.planted)} planted secrets",
            flush=True,
        )
        plans.append(plan)

    # kingfisher compiles its rules on first use and caches them on disk: not part of a scan
    subprocess.run(
        [python, "-m", "leakscan", "rules"],
        cwd=reports,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # scans run in the reports folder, so no .leakscan.toml or [tool.leakscan] of the folder
    # the benchmark was started from can suppress findings: leakscan's defaults are measured

    runs: list[Run] = []
    for plan in plans:
        for layout, ref in plan.layouts.items():
            stem = reports / f"{plan.name}-{layout}"
            report = stem.with_suffix(".json")
            report.unlink(missing_ok=True)
            cmd = [python, "-m", "leakscan", ref, "--format", "json", "--output", str(report)]
            print(f"  scanning {plan.name} ({layout}) ...", flush=True)
            wall, rss, code = measure(
                cmd,
                reports,
                stem.with_suffix(".stderr"),
                stem.with_suffix(".time"),
                args.rss_method,
            )
            run = Run(
                plan.name,
                layout,
                plan.uncompressed,
                wall,
                rss,
                code,
                EXPECTED_EXIT if plan.planted else 0,
                len(plan.planted),
            )
            check_report(run, report, plan.planted)
            runs.append(run)

    bound = args.bound_mb
    rows = [
        [
            "image",
            "layout",
            "uncompressed MiB",
            "wall s",
            "MiB/s",
            "peak RSS MiB",
            "found/planted",
            "status ok",
            "exit",
            f"RSS < {bound:g} MiB",
        ]
    ]
    for run in runs:
        peak = f"{run.rss_kib / 1024:.1f}" if run.rss_kib is not None else "?"
        rows.append(
            [
                run.image,
                run.layout,
                _mib(run.uncompressed),
                f"{run.wall:.2f}",
                f"{run.uncompressed / MIB / run.wall:.1f}" if run.wall else "-",
                peak,
                f"{run.found}/{run.planted}",
                f"{run.placed}/{run.planted}",
                f"{run.exit_code}" + ("" if run.exit_code == run.expected_exit else " (!)"),
                "PASS" if run.rss_ok(bound) else "FAIL",
            ]
        )
    print()
    print(_table(rows))
    print()
    for run in runs:
        notes = [*run.problems, *(f"report error: {e}" for e in run.errors)]
        if run.exit_code != run.expected_exit:
            notes.append(f"exit status {run.exit_code}, expected {run.expected_exit}")
        notes += [f"unplanted finding: {x}" for x in run.extras] + run.notes
        for note in notes:
            print(f"  {run.image} ({run.layout}): {note}")
    worst = max((r.rss_kib or 0 for r in runs), default=0) / 1024
    rss_pass = all(r.rss_ok(bound) for r in runs)
    all_pass = all(r.ok(bound) for r in runs)
    print(
        f"peak RSS: {'PASS' if rss_pass else 'FAIL'} (largest {worst:.1f} MiB, bound {bound:g} MiB)"
    )
    secrets_pass = all(r.placed == r.planted and not r.problems for r in runs)
    print(f"planted secrets found with the right status: {'PASS' if secrets_pass else 'FAIL'}")
    print(f"overall: {'PASS' if all_pass else 'FAIL'}  (reports in {reports})")
    return 0 if all_pass else 1


if __name__ == "__main__":
    sys.exit(main())
