"""Property tests (issue 5): valid images, damaged at random, never make leakscan crash, hang,
read outside its input, or print a secret it found.

Every example starts from an image written by ``tests/imagebuilder.py`` in one of the
layouts leakscan reads (docker-archive legacy / Docker 25 / skopeo / unpacked, OCI archive
with a multi-platform index, OCI directory; gzip, zstd and plain layers; whiteouts, links,
devices, nested archives) and damages it at one or more levels:

- the bytes of the outer tar (flip, set, insert, delete, zero, duplicate, truncate), or the
  tar cut inside one of its members;
- members of the outer tar or files of the directory: deleted, duplicated, renamed, turned
  into symlinks / hard links (to each other, to themselves, to files beside the image), into
  directories or FIFOs;
- one file's bytes (a layer blob as stored, a manifest, config or index);
- a layer's tar inside its compression: hostile entries added (whiteout edge cases, names
  that are not UTF-8 or 64 KB long, absolute and ``..`` names, devices, sparse and unknown
  types, link loops, lying sizes, bad PAX records, nested archives and small bombs),
  entries deleted, retyped or renamed, then recompressed (other codec, several members or
  frames, cut short, trailing garbage);
- manifest / config / index JSON, at the byte level or in its structure: wrong types, missing
  or renamed keys, huge numbers, deep nesting, duplicate keys, other encodings, lone
  surrogates, escaping blob names.

A damaged file's digest is optionally recomputed and every reference to it rewritten (blob
names, descriptors, diff_ids), so that the damage reaches the parsers behind the digest
checks. Beside every image lies a canary (a layer tar and a config holding a token): if a
scan ever reads it, the token shows up among the findings.

The library properties: no exception escapes ``scan``, the scan ends within HANG_SECONDS,
the JSON report validates against the schema, an image-less report says why, a secret that
was found never appears in clear anywhere in the report, and the canary is never read. The
CLI property: exit status 0/1/2, no traceback and no internal error, every stderr line starts
with ``leakscan:``, the JSON report is written and valid.

With CI=true the examples are derandomized (CI runs are reproducible) and no example database
is kept. LEAKSCAN_PROPERTY_SCALE=10 runs ten times the examples (for a longer local hunt).
Crashes found here or by ``fuzz/`` are replayed by ``test_crasher`` (CRASHERS below and the
files under ``tests/hostile/crashers/``).
"""

from __future__ import annotations

import bz2
import contextlib
import copy
import dataclasses
import gzip
import hashlib
import io
import json
import lzma
import os
import random
import signal
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from imagebuilder import (
    CREATED,
    Image,
    Index,
    Layer,
    fake_token,
    make_zip,
    write_docker_archive,
    write_oci_archive,
    write_oci_layout,
)
from schema import validate_report

from leakscan import model as m
from leakscan.detectors import DetectorConfig, Detectors, build_detectors
from leakscan.layers.archives import ArchiveLimits
from leakscan.layerscan import scan_layer
from leakscan.report.json import report_dict
from leakscan.scan import ScanOptions, scan

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SCALE = float(os.environ.get("LEAKSCAN_PROPERTY_SCALE", "1"))
HANG_SECONDS = 30
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CRASHERS_DIR = HERE / "crashers"


def _settings(examples: int) -> settings:
    """Per-test settings: derandomized and without an example database in CI. No deadline:
    a per-example time limit fails on a loaded machine; hangs are caught by hang_guard()
    and by hostile_kit's TIME_LIMIT instead, both far above any honest example."""
    extra: dict[str, Any] = {"derandomize": True, "database": None} if CI else {}
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
            HealthCheck.filter_too_much,
        ],
        **extra,
    )


@pytest.fixture(scope="session")
def engines() -> Detectors:
    """kingfisher and the credential-file readers, without detect-secrets (faster)."""
    return build_detectors(DetectorConfig(detect_secrets=False))


# --- the images --------------------------------------------------------------------------------

_RNG = random.Random(20240505)
TOKENS: dict[str, str] = {
    kind: fake_token(kind, _RNG)
    for kind in ("npm", "github", "github_fine", "gitlab", "slack", "private_key")
}
# the canary lies beside every image: a scan that reads it has read outside its input
CANARY = fake_token("github", random.Random(666))
# stands for the example's own directory (outside the image), filled in when writing
ABS = "@ABS@"


def _sha(data: bytes | str) -> str:
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()


def _zip(files: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = method
            zf.writestr(info, data)
    return buf.getvalue()


def _small_tar(files: dict[str, bytes]) -> bytes:
    layer = Layer(auto_dirs=False)
    for name, data in files.items():
        layer.file(name, data)
    return layer.tar_bytes()


def _image(arch: str = "amd64", compressions: list[str] | None = None) -> Image:
    """Three layers: a base with links, devices and nested archives; a layer that writes
    .npmrc; a layer that whites it out, makes /app opaque and overwrites /etc/passwd."""
    t = TOKENS
    npmrc = f"//registry.npmjs.org/:_authToken={t['npm']}\n".encode()
    base = Layer(created_by="/bin/sh -c #(nop) ADD file:rootfs in / ")
    base.file("etc/passwd", "root:x:0:0::/root:/bin/sh\n")
    base.file("bin/sh", b"\x7fELF\x02\x01\x01" + bytes(range(256)))
    base.symlink("bin/ash", "sh").hardlink("bin/ash2", "bin/sh").dir("root", 0o700)
    base.fifo("run/fifo").chardev("dev/null", 1, 3)
    base.file("app/config.env", f"GITLAB_TOKEN={t['gitlab']}\n")
    base.file(
        "app/lib.jar",
        _zip(
            {
                "META-INF/MANIFEST.MF": b"Manifest-Version: 1.0\n",
                "creds.properties": f"slack.token={t['slack']}\n".encode(),
            }
        ),
    )
    base.file("app/bundle.tar.gz", gzip.compress(_small_tar({".npmrc": npmrc}), mtime=0))
    base.file("app/id.gz", gzip.compress(t["private_key"].encode(), mtime=0))
    write = Layer(
        created_by=f"|1 NPM_TOKEN={t['npm']} /bin/sh -c echo $NPM_TOKEN > /root/.npmrc"
    ).file("root/.npmrc", npmrc)
    clean = (
        Layer(created_by=f"|1 NPM_TOKEN={t['npm']} /bin/sh -c rm /root/.npmrc")
        .whiteout("root/.npmrc")
        .opaque("app")
        .file("etc/passwd", "root:x:0:0::/root:/bin/bash\n")
    )
    history = [
        {"created": CREATED, "created_by": base.created_by},
        {
            "created": CREATED,
            "created_by": f"/bin/sh -c #(nop) ENV GH_TOKEN={t['github']}",
            "empty_layer": True,
        },
        {"created": CREATED, "created_by": write.created_by},
        {"created": CREATED, "created_by": clean.created_by},
    ]
    return Image(
        layers=[base, write, clean],
        history=history,
        env=[f"GH_PAT={t['github_fine']}", "PATH=/usr/bin:/bin"],
        labels={"maintainer": "fixtures@example.invalid"},
        cmd=["/bin/sh"],
        architecture=arch,
        layer_compression=compressions,
    )


EntryKind = Literal["file", "dir", "symlink", "hardlink", "fifo"]


@dataclass
class Entry:
    """A member of an image tar, or a file of an image directory."""

    name: str
    kind: EntryKind
    data: bytes = b""
    link: str = ""
    mode: int = 0o644


@dataclass(frozen=True)
class Base:
    """A valid image to damage: its entries, and how to name it to leakscan."""

    name: str
    transport: str  # docker-archive, oci-archive, oci; "" for a plain path
    is_dir: bool
    entries: tuple[Entry, ...]
    tag: str = ""  # an image named within the input (``PATH:TAG``)


def _entries_of_tar(path: Path) -> list[Entry]:
    out: list[Entry] = []
    with tarfile.open(path) as tar:
        for info in tar:
            if info.isfile():
                fh = tar.extractfile(info)
                assert fh is not None
                out.append(Entry(info.name, "file", fh.read(), mode=info.mode))
            elif info.isdir():
                out.append(Entry(info.name, "dir", mode=info.mode))
            elif info.issym():
                out.append(Entry(info.name, "symlink", link=info.linkname))
            elif info.islnk():
                out.append(Entry(info.name, "hardlink", link=info.linkname))
    return out


def _entries_of_dir(root: Path) -> list[Entry]:
    out: list[Entry] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = Path(dirpath).relative_to(root)
        if str(rel) != ".":
            out.append(Entry(rel.as_posix(), "dir", mode=0o755))
        for name in sorted(filenames):
            out.append(Entry((rel / name).as_posix(), "file", (Path(dirpath) / name).read_bytes()))
    return out


@cache
def bases() -> dict[str, Base]:
    """Every starting image, built once."""
    out: dict[str, Base] = {}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        img = _image()
        legacy = _entries_of_tar(write_docker_archive(t / "legacy.tar", img, "legacy"))
        out["docker-legacy"] = Base("docker-legacy", "docker-archive", False, tuple(legacy))
        out["docker-dir"] = Base("docker-dir", "docker-archive", True, tuple(legacy))
        out["docker-legacy-tagged"] = Base(
            "docker-legacy-tagged", "docker-archive", False, tuple(legacy), "leakscan-fixture"
        )
        d25 = write_docker_archive(t / "d25.tar", img, "docker25", gzip_blobs=True)
        out["docker25-gzip"] = Base("docker25-gzip", "", False, tuple(_entries_of_tar(d25)))
        skopeo = write_docker_archive(t / "skopeo.tar", img, "skopeo")
        out["docker-skopeo"] = Base(
            "docker-skopeo", "docker-archive", False, tuple(_entries_of_tar(skopeo))
        )
        index = Index(
            [_image("amd64", ["gzip", "zstd", "none"]), _image("arm64", ["zstd"] * 3)],
            attestations=True,
        )
        oci = write_oci_archive(t / "oci.tar", index, tag="latest")
        out["oci-archive-index"] = Base(
            "oci-archive-index", "oci-archive", False, tuple(_entries_of_tar(oci))
        )
        layout = write_oci_layout(t / "layout", _image("amd64", ["zstd", "gzip", "none"]))
        out["oci-dir"] = Base("oci-dir", "oci", True, tuple(_entries_of_dir(layout)))
        out["oci-dir-tagged"] = dataclasses.replace(
            out["oci-dir"], name="oci-dir-tagged", tag="latest"
        )
    return out


BASE_NAMES = [
    "docker-legacy",
    "docker-legacy-tagged",
    "docker-dir",
    "docker25-gzip",
    "docker-skopeo",
    "oci-archive-index",
    "oci-dir",
    "oci-dir-tagged",
]


def _canary_layer() -> bytes:
    return _small_tar(
        {
            "root/.git-credentials": f"https://user:{CANARY}@github.com\n".encode(),
            "canary.txt": f"token {CANARY}\n".encode(),
        }
    )


def _canary_config() -> bytes:
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": [f"CANARY={CANARY}"]},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [{"created_by": f"/bin/sh -c echo {CANARY}"}],
    }
    return json.dumps(config).encode()


# --- byte-level damage -------------------------------------------------------------------------


@dataclass(frozen=True)
class ByteOp:
    kind: str  # flip set insert delete zero dup truncate
    at: int  # taken modulo the length (+1)
    arg: int = 0
    data: bytes = b""


def apply_bytes(data: bytes, ops: tuple[ByteOp, ...]) -> bytes:
    buf = bytearray(data)
    for op in ops:
        i = op.at % (len(buf) + 1)
        if op.kind == "flip" and i < len(buf):
            buf[i] ^= 1 << (op.arg % 8)
        elif op.kind == "set" and i < len(buf):
            buf[i] = op.arg % 256
        elif op.kind == "insert":
            buf[i:i] = op.data
        elif op.kind == "delete":
            del buf[i : i + 1 + op.arg % 64]
        elif op.kind == "zero":
            n = len(buf[i : i + 1 + op.arg % 1024])
            buf[i : i + n] = bytes(n)
        elif op.kind == "dup":
            buf[i:i] = buf[i : i + 1 + op.arg % 512]
        elif op.kind == "truncate":
            del buf[i:]
    return bytes(buf)


_INSERTS = [
    b"\xff\xfe",
    b"\xc3",
    b"\x00" * 512,
    b"ustar\x00",
    b"\x1f\x8b\x08",
    b"\x28\xb5\x2f\xfd",
    b"PK\x03\x04",
    b"../",
    b'"',
    b"[" * 64,
]
_positions = st.one_of(st.integers(0, 1100), st.integers(0, 1 << 24))
byte_ops = st.lists(
    st.builds(
        ByteOp,
        kind=st.sampled_from(["flip", "set", "insert", "delete", "zero", "dup", "truncate"]),
        at=_positions,
        arg=st.integers(0, 1 << 16),
        data=st.one_of(st.binary(min_size=1, max_size=16), st.sampled_from(_INSERTS)),
    ),
    min_size=1,
    max_size=4,
).map(tuple)


# --- JSON damage -------------------------------------------------------------------------------

HOSTILE_STRINGS = [
    "",
    ".",
    "..",
    "/",
    "../canary.tar",
    "../../canary.tar",
    "../../../canary.tar",
    "../canary.json",
    "../../canary.json",
    f"{ABS}/canary.tar",
    f"{ABS}/canary.json",
    f"{ABS}/img/canary.tar",
    "/etc/passwd",
    "/dev/zero",
    "/proc/self/environ",
    "blobs/sha256/../../../canary.tar",
    "blobs/sha256/",
    "blobs",
    "index.json",
    "manifest.json",
    "oci-layout",
    "sha256:",
    "sha256:" + "0" * 64,
    "sha256:" + "f" * 64,
    "sha512:" + "0" * 128,
    "md5:0123",
    "sha256:../../x",
    "SHA256:" + "a" * 64,
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "attestation-manifest",
    "unknown",
    "linux",
    "amd64",
    "arm64",
    "latest",
    "leakscan-fixture:latest",
    "@0",
    "@99999999999999999999",
    "a" * 70000,
    "\x00",
    "\ud800",
    "x\udcffy",
    "é",
    "\u202e",
    "|1 NPM_TOKEN=x /bin/sh -c true",
    "/bin/sh -c #(nop) ENV A=B",
    "|99999999999999999999 A=b /bin/sh -c x",
    '/bin/sh -c #(nop) LABEL "a=b',
]
KEYS = [
    "schemaVersion",
    "mediaType",
    "manifests",
    "digest",
    "size",
    "platform",
    "os",
    "architecture",
    "variant",
    "annotations",
    "config",
    "layers",
    "rootfs",
    "diff_ids",
    "history",
    "created_by",
    "empty_layer",
    "Env",
    "Labels",
    "Cmd",
    "Entrypoint",
    "Config",
    "RepoTags",
    "Layers",
    "LayerSources",
    "org.opencontainers.image.ref.name",
    "vnd.docker.reference.type",
    "urls",
]
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, -1, 2**31, 2**63, 2**64, 10**100]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(HOSTILE_STRINGS),
    st.text(max_size=20),
)
# wrong types for any field
WRONG_TYPES: list[Any] = [None, True, False, 0, -1, 2**64, 1.5, "", "x", [], {}, [1], {"a": 1}]
# appended to every string of a document by the "taint" op
TAINTS = ["\ud800", "\udcff", "\x00", "\u202e", "é", "\n\n", " " * 5000]
json_values = st.recursive(
    _scalars,
    lambda kids: st.one_of(
        st.lists(kids, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), kids, max_size=4),
    ),
    max_leaves=10,
)


class _Dup:
    """An object written with a repeated key."""

    def __init__(self, items: list[tuple[str, Any]]) -> None:
        self.items = items


class _Nest:
    """A value wrapped ``depth`` times in arrays or objects (written without recursion)."""

    def __init__(self, depth: int, inner: Any, objects: bool) -> None:
        self.depth, self.inner, self.objects = depth, inner, objects


@dataclass(frozen=True)
class JsonOp:
    kind: str  # set delete rename append dupkey nest taint
    at: int
    value: Any = None
    key: str = ""
    depth: int = 1


@dataclass(frozen=True)
class JsonChange:
    ops: tuple[JsonOp, ...]
    ascii: bool = True
    encoding: str = "utf-8"
    then: tuple[ByteOp, ...] = ()


def _nodes(doc: Any) -> list[tuple[Any, ...]]:
    """Paths of the nodes of a JSON document, root first (at most 400)."""
    out: list[tuple[Any, ...]] = []
    todo: list[tuple[tuple[Any, ...], Any]] = [((), doc)]
    while todo and len(out) < 400:
        path, node = todo.pop(0)
        out.append(path)
        if isinstance(node, dict):
            todo.extend((path + (k,), v) for k, v in node.items())
        elif isinstance(node, list):
            todo.extend((path + (i,), v) for i, v in enumerate(node))
    return out


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _put(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    _get(doc, path[:-1])[path[-1]] = value
    return doc


def apply_json(doc: Any, ops: tuple[JsonOp, ...]) -> Any:
    for op in ops:
        paths = _nodes(doc)
        path = paths[op.at % len(paths)]
        node = _get(doc, path)
        parent = _get(doc, path[:-1]) if path else None
        if op.kind == "set":
            doc = _put(doc, path, op.value)
        elif op.kind == "delete" and parent is not None:
            del parent[path[-1]]
        elif op.kind == "rename" and isinstance(parent, dict):
            items = [(op.key if k == path[-1] else k, v) for k, v in parent.items()]
            parent.clear()
            parent.update(items)
        elif op.kind == "append" and isinstance(node, list):
            node.append(op.value)
        elif op.kind == "append" and isinstance(node, dict):
            node[op.key] = op.value
        elif op.kind == "dupkey" and isinstance(node, dict) and node:
            items = list(node.items())
            extra = (items[0][0], op.value)
            doc = _put(doc, path, _Dup(items + [extra] if op.depth % 2 else [extra] + items))
        elif op.kind == "nest":
            doc = _put(doc, path, _Nest(op.depth, node, bool(op.depth % 2)))
        elif op.kind == "taint":
            doc = _put(doc, path, _taint(node, TAINTS[op.depth % len(TAINTS)]))
    return doc


def _taint(node: Any, suffix: str) -> Any:
    """Every string under ``node`` (keys too) with ``suffix`` appended."""
    if isinstance(node, str):
        return node + suffix
    if isinstance(node, list):
        return [_taint(v, suffix) for v in node]
    if isinstance(node, dict):
        return {k + suffix: _taint(v, suffix) for k, v in node.items()}
    return node


def dump_json(doc: Any, ascii: bool) -> str:
    """JSON text of ``doc``; _Dup and _Nest write what json.dumps cannot."""
    if isinstance(doc, _Nest):
        opener, closer = ('{"a":', "}") if doc.objects else ("[", "]")
        return opener * doc.depth + dump_json(doc.inner, ascii) + closer * doc.depth
    if isinstance(doc, _Dup):
        pairs = doc.items
    elif isinstance(doc, dict):
        pairs = list(doc.items())
    elif isinstance(doc, list):
        return "[" + ",".join(dump_json(v, ascii) for v in doc) + "]"
    else:
        return json.dumps(doc, ensure_ascii=ascii)
    return (
        "{"
        + ",".join(
            json.dumps(str(k), ensure_ascii=ascii) + ":" + dump_json(v, ascii) for k, v in pairs
        )
        + "}"
    )


json_ops = st.lists(
    st.builds(
        JsonOp,
        kind=st.sampled_from(
            ["set", "set", "set", "delete", "rename", "append", "dupkey", "nest", "taint"]
        ),
        at=st.integers(0, 1 << 16),
        value=st.one_of(
            st.sampled_from(HOSTILE_STRINGS), st.sampled_from(WRONG_TYPES), json_values
        ),
        key=st.one_of(st.sampled_from(KEYS), st.text(max_size=6)),
        depth=st.one_of(st.integers(1, 40), st.integers(1, 3000)),
    ),
    min_size=1,
    max_size=4,
).map(tuple)
json_changes = st.builds(
    JsonChange,
    ops=json_ops,
    ascii=st.booleans(),
    encoding=st.sampled_from(
        ["utf-8", "utf-8", "utf-8", "utf-16", "utf-32", "utf-8-sig", "latin-1"]
    ),
    then=st.one_of(st.just(()), byte_ops),
)


def change_json(data: bytes, change: JsonChange, root: str) -> bytes:
    try:
        doc = json.loads(data)
        text = dump_json(apply_json(doc, change.ops), change.ascii).replace(ABS, root)
    except (ValueError, RecursionError):
        return data  # not JSON, or nested too deep to rewrite: left as it is
    errors = "replace" if change.encoding == "latin-1" else "surrogatepass"
    return apply_bytes(text.encode(change.encoding, errors), change.then)


# --- damage inside a layer ---------------------------------------------------------------------


def _ti(
    name: str,
    kind: bytes = tarfile.REGTYPE,
    data: bytes = b"",
    link: str = "",
    pax: dict[str, str] | None = None,
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind in (tarfile.REGTYPE, tarfile.CONTTYPE, b"Z", b"S") else 0
    info.linkname = link
    info.mode = 0o644
    info.devmajor, info.devminor = (1, 3) if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE) else (0, 0)
    if pax:
        info.pax_headers = dict(pax)
    return info, data


def _nested_gzip(data: bytes, levels: int) -> bytes:
    for _ in range(levels):
        data = gzip.compress(data, mtime=0)
    return data


_LINE = f"password={TOKENS['gitlab']}\n".encode()
SPECIAL: dict[str, Callable[[], list[tuple[tarfile.TarInfo, bytes]]]] = {
    "bare-whiteout": lambda: [_ti("etc/.wh.")],
    "root-opaque": lambda: [_ti(".wh..wh..opq")],
    "ghost-whiteout": lambda: [_ti("never/was/.wh.here")],
    "aufs-plnk": lambda: [_ti(".wh..wh.plnk/123.456")],
    "whiteout-dotdot": lambda: [_ti("../../.wh.etc")],
    "opaque-under-file": lambda: [_ti("root/.npmrc/.wh..wh..opq")],
    "whiteout-dir": lambda: [_ti(".wh.app", tarfile.DIRTYPE)],
    "non-utf8": lambda: [_ti("app/\udcff\udcfe.env", data=_LINE)],
    "long-pax-name": lambda: [_ti("d/" * 32768 + "x", data=_LINE)],
    "long-link": lambda: [_ti("app/long", tarfile.SYMTYPE, link="l/" * 20000)],
    "absolute": lambda: [_ti("/etc/shadow", data=_LINE)],
    "dotdot": lambda: [_ti("../../../etc/evil", data=_LINE)],
    "dot-slash": lambda: [_ti("./././app/./../app/x", data=_LINE)],
    "double-slash": lambda: [_ti("//root//.npmrc", data=_LINE)],
    "empty-name": lambda: [_ti("", data=_LINE)],
    "nul-name": lambda: [_ti("app/a\x00b", data=_LINE)],
    "fifo": lambda: [_ti("app/fifo", tarfile.FIFOTYPE)],
    "chardev": lambda: [_ti("dev/zero", tarfile.CHRTYPE)],
    "blockdev": lambda: [_ti("dev/sda", tarfile.BLKTYPE)],
    "contiguous": lambda: [_ti("app/contig", tarfile.CONTTYPE, _LINE)],
    "unknown-type": lambda: [_ti("app/unknown", b"Z", _LINE)],
    "sparse": lambda: [_ti("app/sparse", b"S", _LINE)],
    "pax-sparse-bad": lambda: [
        _ti("app/s", data=_LINE, pax={"GNU.sparse.map": "0,x,", "GNU.sparse.size": "9"})
    ],
    "pax-sparse-1.0": lambda: [
        _ti(
            "app/s10",
            data=b"2\n0\nzz\n" + _LINE,
            pax={"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.realsize": "9"},
        )
    ],
    "pax-size-lie": lambda: [_ti("app/p", data=_LINE, pax={"size": "99999999"})],
    "pax-bad-numbers": lambda: [
        _ti("app/n", data=_LINE, pax={"mtime": "nan", "uid": "-1", "size": "x"})
    ],
    "pax-global": lambda: [_ti("pax_global_header", tarfile.XGLTYPE, b"")],
    "symlink-loop": lambda: [
        _ti("app/la", tarfile.SYMTYPE, link="lb"),
        _ti("app/lb", tarfile.SYMTYPE, link="la"),
    ],
    "symlink-abs": lambda: [_ti("etc/abs", tarfile.SYMTYPE, link="/etc/shadow")],
    "symlink-up": lambda: [_ti("etc/up", tarfile.SYMTYPE, link="../../../../etc/passwd")],
    "hardlink-missing": lambda: [_ti("app/hl", tarfile.LNKTYPE, link="nope/nothing")],
    "hardlink-self": lambda: [_ti("app/self", tarfile.LNKTYPE, link="app/self")],
    "hardlink-dir": lambda: [_ti("app/hd", tarfile.LNKTYPE, link="etc")],
    "hardlink-up": lambda: [_ti("app/hu", tarfile.LNKTYPE, link="../../etc/passwd")],
    "same-path-twice": lambda: [_ti("app/dup", data=_LINE), _ti("app/dup", data=b"other\n")],
    "dir-then-file": lambda: [_ti("app/x", tarfile.DIRTYPE), _ti("app/x", data=_LINE)],
    "zip": lambda: [_ti("app/a.jar", data=_zip({"creds.txt": _LINE}))],
    "zip-stored": lambda: [_ti("app/s.zip", data=_zip({"c": _LINE}, zipfile.ZIP_STORED))],
    "zip-streamed": lambda: [
        _ti("app/w.whl", data=make_zip({"c": _LINE, "d": _LINE}, zipfile.ZIP_STORED, streamed=True))
    ],
    "zip-bomb": lambda: [_ti("app/bomb.zip", data=_zip({"zeros": bytes(4 << 20)}))],
    "gzip-bomb": lambda: [_ti("app/zeros.gz", data=gzip.compress(bytes(8 << 20), mtime=0))],
    "nested-gzip": lambda: [_ti("app/deep.gz", data=_nested_gzip(_LINE, 40))],
    "nested-archives": lambda: [
        _ti(
            "app/outer.tar.gz",
            data=gzip.compress(
                _small_tar({"in.zip": _zip({"in.tgz": gzip.compress(_small_tar({"c": _LINE}))})}),
                mtime=0,
            ),
        )
    ],
    "truncated-gzip": lambda: [_ti("app/t.gz", data=gzip.compress(_LINE * 50, mtime=0)[:40])],
    "zstd-file": lambda: [_ti("app/x.zst", data=zstandard.ZstdCompressor().compress(_LINE))],
    "xz-file": lambda: [_ti("app/x.xz", data=lzma.compress(_LINE))],
    "bz2-file": lambda: [_ti("app/x.bz2", data=bz2.compress(_LINE))],
    "inner-tar": lambda: [_ti("app/x.tar", data=_small_tar({"a/b": _LINE}))],
    "many-entries": lambda: [_ti(f"many/{i}") for i in range(2000)],
}
_RENAMES = [
    "",
    ".",
    "..",
    "/",
    ".wh.",
    ".wh..wh..opq",
    "app/.wh.config.env",
    "/etc/passwd",
    "../../x",
    "a\udcffb",
    "x" * 300,
    "y/" * 200,
    "root/.npmrc",
    "app/lib.jar",
]
_TYPES = [
    tarfile.REGTYPE,
    tarfile.AREGTYPE,
    tarfile.DIRTYPE,
    tarfile.SYMTYPE,
    tarfile.LNKTYPE,
    tarfile.FIFOTYPE,
    tarfile.CHRTYPE,
    tarfile.CONTTYPE,
    tarfile.GNUTYPE_SPARSE,
    tarfile.XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
    b"Z",
]


@dataclass(frozen=True)
class TarOp:
    kind: str  # add delete retype rename lie
    at: int
    special: str = "fifo"
    arg: int = 0


@dataclass(frozen=True)
class LayerChange:
    ops: tuple[TarOp, ...]
    inner: tuple[ByteOp, ...] = ()
    fmt: int = tarfile.PAX_FORMAT
    recompress: str = "same"
    fix_diff_id: bool = True


RECOMPRESS = [
    "same",
    "none",
    "gzip",
    "zstd",
    "gzip-multi",
    "zstd-frames",
    "gzip-cut",
    "zstd-cut",
    "garbage-tail",
    "zero-tail",
    "bzip2",
    "double-gzip",
]
tar_ops = st.lists(
    st.builds(
        TarOp,
        kind=st.sampled_from(["add", "add", "delete", "retype", "rename", "lie"]),
        at=st.integers(0, 1 << 16),
        special=st.sampled_from(sorted(SPECIAL)),
        arg=st.integers(0, 1 << 16),
    ),
    max_size=3,
).map(tuple)
layer_changes = st.builds(
    LayerChange,
    ops=tar_ops,
    inner=st.one_of(st.just(()), st.just(()), byte_ops),
    fmt=st.sampled_from([tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT]),
    recompress=st.sampled_from(RECOMPRESS),
    fix_diff_id=st.booleans(),
)


def sniff(data: bytes) -> str:
    if data.startswith(b"\x1f\x8b"):
        return "gzip"
    if data.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    return "none"


@lru_cache(maxsize=256)
def layer_tar(data: bytes) -> tuple[str, bytes] | None:
    """(compression, tar) when ``data`` is a layer blob, else None."""
    kind = sniff(data)
    try:
        if kind == "gzip":
            inner = gzip.decompress(data)
        elif kind == "zstd":
            inner = zstandard.ZstdDecompressor().decompressobj().decompress(data)
        else:
            inner = data
        if len(inner) < 1024 or inner[257:262] != b"ustar":
            return None
        with tarfile.open(fileobj=io.BytesIO(inner)) as tar:
            tar.getmembers()
    # tarfile raises ValueError on some damaged pax sparse records (int() of their text)
    except (OSError, EOFError, ValueError, zlib.error, tarfile.TarError, zstandard.ZstdError):
        return None
    return kind, inner


def _members(tar_bytes: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
    out = []
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        for info in tar:
            fh = tar.extractfile(info) if info.isfile() else None
            out.append((info, fh.read() if fh else b""))
    return out


def _tobuf_pax(info: tarfile.TarInfo) -> bytes:
    """A PAX header for ``info``; tarfile reads some damaged headers (a NaN mtime from a
    pax record, a size of "x") into values it cannot write back: those are zeroed."""
    try:
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    except (ValueError, RecursionError):
        pass
    clean = copy.copy(info)
    clean.pax_headers = {}
    for attr in ("mtime", "uid", "gid", "mode", "size", "devmajor", "devminor"):
        try:
            setattr(clean, attr, int(getattr(clean, attr)))
        except (ValueError, TypeError, OverflowError):
            setattr(clean, attr, 0)
    return clean.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def write_tar(members: list[tuple[tarfile.TarInfo, bytes]], fmt: int) -> bytes:
    """Headers as the TarInfo says (sizes may lie), then the data, padded to 512."""
    out = bytearray()
    for info, data in members:
        # tarfile splits long ustar names in quadratic time: such names go to PAX directly
        wide = len(info.name) > 256 or len(info.linkname) > 100
        try:
            header = info.tobuf(tarfile.PAX_FORMAT if wide else fmt, "utf-8", "surrogateescape")
        except (ValueError, RecursionError):
            header = _tobuf_pax(info)
        out += header + data + bytes(-len(data) % 512)
    return bytes(out + bytes(1024))


def recompress(tar_bytes: bytes, how: str, original: str) -> bytes:
    if how == "same":
        how = original
    if how == "none":
        return tar_bytes
    if how == "gzip":
        return gzip.compress(tar_bytes, mtime=0)
    if how == "zstd":
        return zstandard.ZstdCompressor().compress(tar_bytes)
    half = len(tar_bytes) // 2
    if how == "gzip-multi":
        return gzip.compress(tar_bytes[:half], mtime=0) + gzip.compress(tar_bytes[half:], mtime=0)
    if how == "zstd-frames":
        z = zstandard.ZstdCompressor()
        return z.compress(tar_bytes[:half]) + z.compress(tar_bytes[half:])
    if how == "gzip-cut":
        data = gzip.compress(tar_bytes, mtime=0)
        return data[: len(data) * 2 // 3]
    if how == "zstd-cut":
        data = zstandard.ZstdCompressor().compress(tar_bytes)
        return data[: len(data) * 2 // 3]
    if how == "garbage-tail":
        return recompress(tar_bytes, original, original) + b"garbage\xff" * 8
    if how == "zero-tail":
        return recompress(tar_bytes, original, original) + bytes(4096)
    if how == "bzip2":
        return bz2.compress(tar_bytes)
    if how == "double-gzip":
        return gzip.compress(gzip.compress(tar_bytes, mtime=0), mtime=0)
    raise ValueError(how)


_LIES = [-1, 1, 511, 512, 1 << 33, -(1 << 20)]


def change_layer(blob: bytes, change: LayerChange) -> tuple[bytes, bytes, bytes] | None:
    """Damage a layer blob inside its compression: (new blob, old tar, new tar)."""
    found = layer_tar(blob)
    if found is None:
        return None
    kind, old = found
    members = _members(old)
    for op in change.ops:
        i = op.at % (len(members) + 1)
        if op.kind == "add":
            members[i:i] = SPECIAL[op.special]()
        elif not members or i >= len(members):
            continue
        elif op.kind == "delete":
            del members[i]
        elif op.kind == "retype":
            info = members[i][0]
            info.type = _TYPES[op.arg % len(_TYPES)]
            if info.type == tarfile.LNKTYPE and not info.linkname:
                info.linkname = members[(i + 1) % len(members)][0].name
        elif op.kind == "rename":
            members[i][0].name = _RENAMES[op.arg % len(_RENAMES)]
        elif op.kind == "lie":
            info = members[i][0]
            info.size = max(0, info.size + _LIES[op.arg % len(_LIES)])
    new = apply_bytes(write_tar(members, change.fmt), change.inner)
    return recompress(new, change.recompress, kind), old, new


# --- damage to the image's entries -------------------------------------------------------------

ENTRY_TARGETS = [
    "@OTHER@",
    "@SELF@",
    "../canary.tar",
    "../../canary.tar",
    "../../../canary.tar",
    "../../../../canary.tar",
    f"{ABS}/canary.tar",
    f"{ABS}/canary.json",
    f"{ABS}/img/canary.tar",
    "/etc/passwd",
    "/dev/zero",
    "..",
    ".",
    "",
    "blobs/../../canary.tar",
    "missing",
]


@dataclass(frozen=True)
class EntryOp:
    kind: str  # delete duplicate symlink hardlink mkdir fifo rename move-last
    at: int
    target: str = "@OTHER@"


@dataclass(frozen=True)
class MemberChange:
    at: int
    change: tuple[ByteOp, ...] | JsonChange | LayerChange
    redigest: bool = True


@dataclass(frozen=True)
class Mutation:
    changes: tuple[MemberChange, ...] = ()
    entry_ops: tuple[EntryOp, ...] = ()
    outer: tuple[ByteOp, ...] = ()  # on the outer tar's bytes
    cut: tuple[int, int] | None = None  # (member, offset): the tar ends inside that member
    gzip_outer: bool = False


member_changes = st.builds(
    MemberChange,
    at=st.integers(0, 1 << 16),
    change=st.one_of(byte_ops, json_changes, layer_changes),
    redigest=st.booleans(),
)
entry_ops = st.builds(
    EntryOp,
    kind=st.sampled_from(
        ["delete", "duplicate", "symlink", "hardlink", "mkdir", "fifo", "rename", "move-last"]
    ),
    at=st.integers(0, 1 << 16),
    target=st.sampled_from(ENTRY_TARGETS),
)
mutations = st.builds(
    Mutation,
    changes=st.lists(member_changes, max_size=3).map(tuple),
    entry_ops=st.one_of(st.just(()), st.lists(entry_ops, max_size=2).map(tuple)),
    outer=st.one_of(st.just(()), st.just(()), st.just(()), byte_ops),
    cut=st.one_of(
        st.none(), st.none(), st.tuples(st.integers(0, 1 << 16), st.integers(0, 1 << 20))
    ),
    gzip_outer=st.sampled_from([False, False, False, True]),
)


def _is_json(data: bytes) -> bool:
    if data[:1] not in (b"{", b"["):
        return False
    try:
        json.loads(data)
    except (ValueError, RecursionError):
        return False
    return True


def _redigest(entries: list[Entry], old: bytes, new: bytes) -> None:
    """``old`` became ``new``: rename what is named by its digest and rewrite every file
    that refers to it, and so on up (manifest -> index)."""
    pending = [(_sha(old), _sha(new))]
    done: set[str] = set()
    while pending:
        a, b = pending.pop()
        if a == b or a in done:
            continue
        done.add(a)
        for e in entries:
            e.name = e.name.replace(a, b)
            e.link = e.link.replace(a, b)
            if e.kind == "file" and a.encode() in e.data:
                before = e.data
                e.data = e.data.replace(a.encode(), b.encode())
                pending.append((_sha(before), _sha(e.data)))


def _apply_change(entries: list[Entry], mc: MemberChange, root: str) -> None:
    files = [e for e in entries if e.kind == "file" and e.data]
    change = mc.change
    if isinstance(change, JsonChange):
        files = [e for e in files if _is_json(e.data)]
    elif isinstance(change, LayerChange):
        files = [e for e in files if layer_tar(e.data) is not None]
    if not files:
        return
    entry = files[mc.at % len(files)]
    old = entry.data
    if isinstance(change, JsonChange):
        entry.data = change_json(old, change, root)
    elif isinstance(change, LayerChange):
        changed = change_layer(old, change)
        if changed is None:
            return
        entry.data, old_tar, new_tar = changed
        if change.fix_diff_id:
            _redigest(entries, old_tar, new_tar)
    else:
        entry.data = apply_bytes(old, change)
    if mc.redigest:
        _redigest(entries, old, entry.data)


def _apply_entry_op(entries: list[Entry], op: EntryOp, root: str) -> None:
    if not entries:
        return
    i = op.at % len(entries)
    entry = entries[i]
    other = entries[(i + 1) % len(entries)]
    target = op.target.replace("@SELF@", entry.name).replace("@OTHER@", other.name)
    target = target.replace(ABS, root)
    if op.kind == "delete":
        del entries[i]
    elif op.kind == "duplicate":
        entries.insert(i, dataclasses.replace(entry, data=entry.data[: len(entry.data) // 2]))
    elif op.kind == "symlink":
        entries[i] = Entry(entry.name, "symlink", link=target)
    elif op.kind == "hardlink":
        entries[i] = Entry(entry.name, "hardlink", link=other.name)
    elif op.kind == "mkdir":
        entries[i] = Entry(entry.name, "dir", mode=0o755)
    elif op.kind == "fifo":
        entries[i] = Entry(entry.name, "fifo")
    elif op.kind == "rename":
        entry.name = target if not target.startswith(root) else entry.name
    elif op.kind == "move-last":
        entries.append(entries.pop(i))


def _tar_of(entries: list[Entry]) -> tuple[bytes, list[int]]:
    """The outer tar, and where each member's data starts."""
    buf = io.BytesIO()
    starts = []
    with tarfile.open(
        fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, errors="surrogateescape"
    ) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.mode, info.mtime = e.mode, 0
            info.type = {
                "file": tarfile.REGTYPE,
                "dir": tarfile.DIRTYPE,
                "symlink": tarfile.SYMTYPE,
                "hardlink": tarfile.LNKTYPE,
                "fifo": tarfile.FIFOTYPE,
            }[e.kind]
            info.linkname = e.link
            info.size = len(e.data) if e.kind == "file" else 0
            tar.addfile(info, io.BytesIO(e.data) if e.kind == "file" else None)
            starts.append(tar.offset - tarfile.BLOCKSIZE * -(-info.size // tarfile.BLOCKSIZE))
    return buf.getvalue(), starts


def _write_dir(entries: list[Entry], layout: Path) -> None:
    layout.mkdir(parents=True)
    top = os.path.realpath(layout)
    later: list[Entry] = []
    for e in entries:
        path = os.path.normpath(os.path.join(top, e.name))
        if not e.name or os.path.isabs(e.name) or not path.startswith(top + os.sep):
            continue  # never write outside the example's directory
        with contextlib.suppress(OSError):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if e.kind == "dir":
                os.makedirs(path, exist_ok=True)
            elif e.kind == "file":
                with open(path, "wb") as fh:
                    fh.write(e.data)
            elif e.kind == "symlink":
                os.symlink(e.link, path)
            elif e.kind == "fifo":
                os.mkfifo(path)
            else:
                later.append(e)
    for e in later:  # hard links once their targets exist
        with contextlib.suppress(OSError):
            os.link(os.path.join(top, e.link), os.path.join(top, e.name))


def materialise(base: Base, mutation: Mutation, root: Path) -> str:
    """Write ``base`` damaged by ``mutation`` under ``root`` (with the canaries beside it)
    and return the reference to scan."""
    for where in (root, root / "img"):
        where.mkdir(parents=True, exist_ok=True)
        (where / "canary.tar").write_bytes(_canary_layer())
        (where / "canary.json").write_bytes(_canary_config())
    entries = [dataclasses.replace(e) for e in base.entries]
    for mc in mutation.changes:
        _apply_change(entries, mc, str(root))
    for op in mutation.entry_ops:
        _apply_entry_op(entries, op, str(root))
    if base.is_dir:
        path = root / "img" / "layout"
        _write_dir(entries, path)
    else:
        data, starts = _tar_of(entries)
        if mutation.cut is not None and entries:
            i = mutation.cut[0] % len(entries)
            entries.append(entries.pop(i))
            data, starts = _tar_of(entries)
            size = len(entries[-1].data)
            data = data[: starts[-1] + mutation.cut[1] % (size + 1)]
        data = apply_bytes(data, mutation.outer)
        if mutation.gzip_outer:
            data = gzip.compress(data, mtime=0)
        path = root / "img" / "image.tar"
        path.write_bytes(data)
    ref = f"{base.transport}:{path}" if base.transport else str(path)
    return f"{ref}:{base.tag}" if base.tag else ref


# --- the properties ----------------------------------------------------------------------------


class Hang(Exception):
    """The scan ran past HANG_SECONDS."""


@contextlib.contextmanager
def hang_guard(seconds: int = HANG_SECONDS) -> Iterator[list[bool]]:
    """Interrupt the block after ``seconds`` (a blocking open or read included)."""
    fired: list[bool] = []

    def alarm(signum: int, frame: FrameType | None) -> None:
        fired.append(True)
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def guarded_scan(ref: str, engines: Detectors) -> m.ScanReport:
    with hang_guard() as fired:
        report = scan(ref, ScanOptions(workers=1), detectors=engines)
    assert not fired, f"scan of {ref} hung (the alarm was swallowed)"
    return report


def _strings(obj: Any) -> Iterator[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _strings(v)


def check_no_leak(found: set[str], texts: list[str]) -> None:
    """A token that was found (its sha256 is a finding's) appears nowhere in clear; the
    canary is neither found nor shown."""
    assert _sha(CANARY) not in found, "the canary beside the image was read"
    assert not any(CANARY in s for s in texts), "the canary beside the image was read"
    for kind, token in TOKENS.items():
        if _sha(token) in found:
            shown = [s[:200] for s in texts if token in s]
            assert not shown, f"{kind} token found and still printed in clear: {shown}"


def check_report(report: m.ScanReport) -> None:
    data = report_dict(report)
    validate_report(data)
    json.dumps(data)  # the report must be writable as JSON
    if not report.images:
        assert report.errors, "no image and no error saying why"
    for problem in (*report.errors, *(p for i in report.images for p in i.errors)):
        assert isinstance(problem.message, str) and problem.message.strip()
        assert "Traceback" not in problem.message
    for image in report.images:
        assert [layer.index for layer in image.layers] == list(range(len(image.layers)))
        for f in image.findings:
            if isinstance(f.location, m.FileLocation):
                assert 0 <= f.location.layer_index < len(image.layers)
    found = {f.secret_sha256 for f in report.findings}
    check_no_leak(found, list(_strings(data)))


def test_base_images_scan_clean_and_find_the_tokens(engines: Detectors) -> None:
    """The starting points are valid: complete scans that find the tokens (so the leak check
    has teeth), and the canary is detectable when scanned on purpose."""
    every = {_sha(t) for t in TOKENS.values()}
    for name in BASE_NAMES:
        with tempfile.TemporaryDirectory() as tmp:
            ref = materialise(bases()[name], Mutation(), Path(tmp))
            report = guarded_scan(ref, engines)
            check_report(report)
            assert report.complete, (name, report.errors, [i.errors for i in report.images])
            found = {f.secret_sha256 for f in report.findings}
            assert len(found & every) >= 4, (name, [f.rule_id for f in report.findings])
    with tempfile.TemporaryDirectory() as tmp:
        layout = write_oci_layout(Path(tmp) / "canary", _canary_image())
        report = guarded_scan(f"oci:{layout}", engines)
        assert _sha(CANARY) in {f.secret_sha256 for f in report.findings}


def _canary_image() -> Image:
    layer = Layer()
    layer.file("canary.txt", f"token {CANARY}\n")
    return Image(layers=[layer])


@_settings(400)
@given(name=st.sampled_from(BASE_NAMES), mutation=mutations)
def test_damaged_image_never_crashes_hangs_escapes_or_leaks(
    engines: Detectors, name: str, mutation: Mutation
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ref = materialise(bases()[name], mutation, Path(tmp))
        check_report(guarded_scan(ref, engines))


@_settings(300)
@given(
    name=st.sampled_from(BASE_NAMES),
    changes=st.lists(
        st.builds(MemberChange, at=st.integers(0, 1 << 16), change=json_changes),
        min_size=1,
        max_size=3,
    ).map(tuple),
)
def test_damaged_json_behind_good_digests(
    engines: Detectors, name: str, changes: tuple[MemberChange, ...]
) -> None:
    """Structure-level JSON damage with every digest recomputed: the parsers are reached."""
    with tempfile.TemporaryDirectory() as tmp:
        ref = materialise(bases()[name], Mutation(changes=changes), Path(tmp))
        check_report(guarded_scan(ref, engines))


@cache
def layer_blobs() -> list[bytes]:
    seen: dict[str, bytes] = {}
    for base in bases().values():
        for e in base.entries:
            if e.kind == "file" and layer_tar(e.data) is not None:
                seen.setdefault(_sha(e.data), e.data)
    return [seen[k] for k in sorted(seen)]


@_settings(500)
@given(
    pick=st.integers(0, 1 << 16),
    change=layer_changes,
    then=st.one_of(st.just(()), byte_ops),
)
def test_damaged_layer_never_raises(
    engines: Detectors, pick: int, change: LayerChange, then: tuple[ByteOp, ...]
) -> None:
    """One layer through the whole layer pipeline (decompress, walk, archives, engines):
    damage is an error or a skip in the result, never an exception."""
    blobs = layer_blobs()
    original = blobs[pick % len(blobs)]
    changed = change_layer(original, change)
    assert changed is not None
    data = apply_bytes(changed[0], then)
    blob = m.LayerBlob(
        index=0,
        diff_id="sha256:" + _sha(changed[2]),
        digest="sha256:" + _sha(data),
        media_type=None,
        size=len(data),
        opener=lambda: io.BytesIO(data),
    )
    with hang_guard() as fired:
        result = scan_layer(blob, engines, ArchiveLimits())
    assert not fired
    for problem in (*result.errors, *result.skipped):
        assert isinstance(problem.message, str) and problem.message.strip()


@_settings(10)
@given(name=st.sampled_from(BASE_NAMES), mutation=mutations)
def test_cli_exit_status_and_stderr(name: str, mutation: Mutation) -> None:
    """The real command line: exit 0/1/2, one ``leakscan:`` line per problem, no traceback
    and no internal error, and the JSON report written and valid even when incomplete."""
    with tempfile.TemporaryDirectory() as tmp:
        ref = materialise(bases()[name], mutation, Path(tmp))
        env = dict(os.environ, PYTHONPATH=str(REPO))
        proc = subprocess.run(
            [sys.executable, "-m", "leakscan", ref, "--format", "json", "-j", "1"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp,
            env=env,
        )
    assert proc.returncode in (0, 1, 2), (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "internal error" not in proc.stderr, proc.stderr[-2000:]
    for line in proc.stderr.splitlines():
        assert line.startswith("leakscan:"), proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    validate_report(report)
    found = {f["secret_sha256"] for image in report["images"] for f in image["findings"]}
    check_no_leak(found, [proc.stdout, proc.stderr])
    if proc.returncode == 2:
        assert proc.stderr.strip(), "exit 2 without a word on stderr"


# --- replays of crashes found (here or by fuzz/) -----------------------------------------------


def _deep_index(root: Path) -> str:
    """index.json nested 100,000 arrays deep: json.loads raises RecursionError."""
    layout = root / "layout"
    layout.mkdir()
    (layout / "index.json").write_text("[" * 100_000 + "]" * 100_000)
    return f"oci:{layout}"


def _null_manifest(root: Path) -> str:
    """index.json names a manifest (by media type) whose blob is JSON ``null``:
    AttributeError in OciLayoutSource._image (manifest.get)."""
    return _layout_with_blob(root, b"null", "application/vnd.oci.image.manifest.v1+json")


def _list_as_index(root: Path) -> str:
    """index.json names an index (by media type) whose blob is a JSON array:
    AttributeError in OciLayoutSource._descend (doc.get)."""
    return _layout_with_blob(root, b"[]", "application/vnd.oci.image.index.v1+json")


def _layout_with_blob(root: Path, blob: bytes, media_type: str) -> str:
    layout = root / "layout"
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "blobs" / "sha256" / _sha(blob)).write_bytes(blob)
    descriptor = {"mediaType": media_type, "digest": "sha256:" + _sha(blob), "size": len(blob)}
    index = {"schemaVersion": 2, "manifests": [descriptor]}
    (layout / "index.json").write_text(json.dumps(index))
    return f"oci:{layout}"


def _descriptor_with(extra: dict[str, Any], tag: str = "") -> Callable[[Path], str]:
    """An OCI layout whose one descriptor (to a valid empty manifest) carries ``extra``."""

    def build(root: Path) -> str:
        manifest = json.dumps({"schemaVersion": 2, "config": {}, "layers": []}).encode()
        ref = _layout_with_blob(root, manifest, "application/vnd.oci.image.manifest.v1+json")
        index_path = root / "layout" / "index.json"
        index = json.loads(index_path.read_text())
        index["manifests"][0].update(extra)
        index_path.write_text(json.dumps(index))
        return f"{ref}:{tag}" if tag else ref

    return build


def _docker_save_with(entry: dict[str, Any], config: dict[str, Any], ref: str = "") -> Any:
    """An unpacked docker save: one manifest.json entry (``entry`` merged in), one config."""

    def build(root: Path) -> str:
        save = root / "save"
        save.mkdir()
        (save / "config.json").write_text(json.dumps(config))
        item = {"Config": "config.json", "RepoTags": ["app:latest"], "Layers": []}
        item.update(entry)
        (save / "manifest.json").write_text(json.dumps([item]))
        return f"docker-archive:{save}:{ref}" if ref else f"docker-archive:{save}"

    return build


_EMPTY_CONFIG: dict[str, Any] = {"os": "linux", "architecture": "amd64", "rootfs": {"diff_ids": []}}

CRASHERS: dict[str, Callable[[Path], str]] = {
    # json.loads RecursionError (store.parse_json); fixed in 585ec3b
    "deep-index-json": _deep_index,
    # AttributeError in OciLayoutSource._image / _descend; fixed in 585ec3b
    "null-manifest": _null_manifest,
    "list-as-index": _list_as_index,
    # TypeError: unhashable type: 'list' (oci._kind_of: media in INDEX_TYPES)
    "media-type-is-a-list": _descriptor_with({"mediaType": ["x"]}),
    # AttributeError: 'list' object has no attribute 'get' (oci.is_attestation)
    "descriptor-annotations-is-a-list": _descriptor_with({"annotations": [1]}),
    # AttributeError: 'str' object has no attribute 'get' (oci.is_attestation)
    "descriptor-platform-is-a-string": _descriptor_with({"platform": "linux/amd64"}),
    # AttributeError: 'list' object has no attribute 'get' (OciLayoutSource.images, tag filter)
    "tagged-annotations-is-a-list": _descriptor_with({"annotations": [1]}, tag="latest"),
    # TypeError: 'int' object is not iterable (DockerArchiveSource._entries, RepoTags)
    "docker-repotags-is-a-number": _docker_save_with({"RepoTags": 5}, _EMPTY_CONFIG, "app"),
    # UnicodeEncodeError: surrogates not allowed (scan._scan_image: text.text.encode())
    "lone-surrogate-in-config-env": _docker_save_with(
        {}, {**_EMPTY_CONFIG, "config": {"Env": ["A=\ud800"]}}
    ),
    "lone-surrogate-in-history": _docker_save_with(
        {}, {**_EMPTY_CONFIG, "history": [{"created_by": "/bin/sh -c echo \udcff"}]}
    ),
}


def _crasher_files() -> list[str]:
    if not CRASHERS_DIR.is_dir():
        return []
    return sorted(p.name for p in CRASHERS_DIR.iterdir() if p.name != "README.md")


def _crasher_ref(name: str) -> str:
    """``NAME.TRANSPORT.tar`` / ``NAME.oci`` (a directory) -> the reference to scan."""
    path = CRASHERS_DIR / name
    parts = name.split(".")
    transport = parts[-2] if path.is_file() and len(parts) >= 3 else parts[-1]
    if transport in ("docker-archive", "oci-archive", "oci"):
        return f"{transport}:{path}"
    return str(path)


@pytest.mark.parametrize("name", sorted(CRASHERS) + _crasher_files())
def test_crasher(engines: Detectors, name: str, tmp_path: Path) -> None:
    """Each input that once crashed or hung leakscan scans to a report now."""
    if name in CRASHERS:
        ref = CRASHERS[name](tmp_path)
    elif name.endswith(".layer"):
        data = (CRASHERS_DIR / name).read_bytes()
        blob = m.LayerBlob(0, None, None, None, len(data), lambda: io.BytesIO(data))
        with hang_guard(10) as fired:
            scan_layer(blob, engines, ArchiveLimits())
        assert not fired
        return
    else:
        ref = _crasher_ref(name)
    check_report(guarded_scan(ref, engines))
