"""Build container image fixtures in every on-disk layout, deterministically.

Pure Python: layers are built as tar bytes in memory, then written as an OCI
layout directory, an OCI archive (``buildx -o type=oci``), or a ``docker save``
archive in the legacy, Docker 25+ or skopeo shapes. Same input, same bytes.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import posixpath
import random
import secrets
import string
import tarfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard

__all__ = [
    "CREATED",
    "DEFAULT_TAG",
    "Image",
    "Index",
    "Layer",
    "MT",
    "BlobStore",
    "compress",
    "detect_compression",
    "fake_token",
    "sha256_digest",
    "write_dir_layout",
    "write_docker_archive",
    "write_oci_archive",
    "write_oci_layout",
]

CREATED = "2024-01-01T00:00:00Z"
"""Fixed timestamp used for config/history ``created`` fields."""

DEFAULT_TAG = "leakscan-fixture:latest"
"""RepoTag given to a bare :class:`Image` passed to :func:`write_docker_archive`."""

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

ANNOT_REF_NAME = "org.opencontainers.image.ref.name"
ANNOT_IMAGE_NAME = "io.containerd.image.name"


class MT:
    """Media type constants."""

    OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
    OCI_INDEX = "application/vnd.oci.image.index.v1+json"
    OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
    OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
    OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
    OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
    DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
    DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
    DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
    DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
    DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    IN_TOTO = "application/vnd.in-toto+json"


OCI_LAYER_TYPES = {"none": MT.OCI_LAYER, "gzip": MT.OCI_LAYER_GZIP, "zstd": MT.OCI_LAYER_ZSTD}
DOCKER_LAYER_TYPES = {"none": MT.DOCKER_LAYER, "gzip": MT.DOCKER_LAYER_GZIP}


# --------------------------------------------------------------------------- helpers


def sha256_digest(data: bytes) -> str:
    """Return ``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _hex(digest: str) -> str:
    return digest.split(":", 1)[1]


def _json(obj: Any) -> bytes:
    """Compact, deterministic JSON (key order as inserted), like Go's json.Marshal."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def compress(data: bytes, kind: str) -> bytes:
    """Compress ``data`` deterministically with ``kind`` in none/gzip/zstd."""
    if kind == "none":
        return data
    if kind == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    if kind == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(data)
    raise ValueError(f"unknown compression {kind!r}")


def detect_compression(data: bytes) -> str:
    """Guess compression from magic bytes: 'gzip', 'zstd' or 'none'."""
    if data[:2] == GZIP_MAGIC:
        return "gzip"
    if data[:4] == ZSTD_MAGIC:
        return "zstd"
    return "none"


def _norm(path: str) -> str:
    """Drop leading ``/`` and ``./`` and trailing ``/``, the way docker names entries."""
    p = path.strip()
    while p.startswith("/") or p.startswith("./"):
        p = p[1:] if p.startswith("/") else p[2:]
    p = p.rstrip("/")
    if not p:
        raise ValueError(f"empty path: {path!r}")
    return p


def _split_ref(ref: str) -> tuple[str, str]:
    """Split ``name:tag`` (the tag is after the last ``:`` past the last ``/``)."""
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1 :]
    return ref, "latest"


def _full_ref(ref: str) -> str:
    """Normalise ``name:tag`` the way containerd stores it (``docker.io/library/...``)."""
    name, tag = _split_ref(ref)
    first = name.split("/", 1)[0]
    if "/" not in name:
        name = "docker.io/library/" + name
    elif "." not in first and ":" not in first and first != "localhost":
        name = "docker.io/" + name
    return f"{name}:{tag}"


# --------------------------------------------------------------------------- Layer


class Layer:
    """Fluent builder of one layer tar; entries are written in the order added."""

    def __init__(self, auto_dirs: bool = True, created_by: str | None = None) -> None:
        self.auto_dirs = auto_dirs
        self.created_by = created_by
        self.entries: list[tuple[tarfile.TarInfo, bytes | None]] = []
        self._dirs: set[str] = set()
        self._cache: bytes | None = None

    # -- internals
    def _info(self, path: str, kind: bytes, mode: int) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(path)
        ti.type = kind
        ti.mode = mode
        ti.mtime = 0
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = ""
        return ti

    def _parents(self, path: str) -> None:
        if not self.auto_dirs:
            return
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self._dirs:
                self._add(self._info(d, tarfile.DIRTYPE, 0o755), None)

    def _add(self, ti: tarfile.TarInfo, data: bytes | None) -> Layer:
        if ti.type == tarfile.DIRTYPE:
            self._dirs.add(ti.name.rstrip("/"))
        self.entries.append((ti, data))
        self._cache = None
        return self

    # -- public builder API
    def file(self, path: str, data: bytes | str, mode: int = 0o644) -> Layer:
        """Add a regular file."""
        p = _norm(path)
        raw = data.encode() if isinstance(data, str) else bytes(data)
        self._parents(p)
        ti = self._info(p, tarfile.REGTYPE, mode)
        ti.size = len(raw)
        return self._add(ti, raw)

    def dir(self, path: str, mode: int = 0o755) -> Layer:
        """Add a directory entry (written with a trailing slash)."""
        p = _norm(path)
        self._parents(p)
        return self._add(self._info(p, tarfile.DIRTYPE, mode), None)

    def symlink(self, path: str, target: str) -> Layer:
        """Add a symlink; ``target`` is stored verbatim."""
        p = _norm(path)
        self._parents(p)
        ti = self._info(p, tarfile.SYMTYPE, 0o777)
        ti.linkname = target
        return self._add(ti, None)

    def hardlink(self, path: str, target: str) -> Layer:
        """Add a hardlink to an earlier entry (``target`` is archive-relative)."""
        p = _norm(path)
        self._parents(p)
        ti = self._info(p, tarfile.LNKTYPE, 0o644)
        ti.linkname = _norm(target)
        return self._add(ti, None)

    def whiteout(self, path: str) -> Layer:
        """Delete ``path`` from lower layers by writing ``DIR/.wh.NAME``."""
        p = _norm(path)
        head, name = posixpath.split(p)
        wh = posixpath.join(head, ".wh." + name) if head else ".wh." + name
        self._parents(wh)
        return self._add(self._info(wh, tarfile.REGTYPE, 0o644), b"")

    def opaque(self, dirpath: str) -> Layer:
        """Hide all lower children of ``dirpath`` (``DIR/.wh..wh..opq``)."""
        p = _norm(dirpath)
        if self.auto_dirs and p not in self._dirs:
            self.dir(p)
        marker = p + "/.wh..wh..opq"
        self._parents(marker)
        return self._add(self._info(marker, tarfile.REGTYPE, 0o644), b"")

    def fifo(self, path: str) -> Layer:
        """Add a named pipe."""
        p = _norm(path)
        self._parents(p)
        return self._add(self._info(p, tarfile.FIFOTYPE, 0o644), None)

    def chardev(self, path: str, major: int, minor: int) -> Layer:
        """Add a character device node."""
        p = _norm(path)
        self._parents(p)
        ti = self._info(p, tarfile.CHRTYPE, 0o666)
        ti.devmajor, ti.devminor = major, minor
        return self._add(ti, None)

    def blockdev(self, path: str, major: int, minor: int) -> Layer:
        """Add a block device node."""
        p = _norm(path)
        self._parents(p)
        ti = self._info(p, tarfile.BLKTYPE, 0o660)
        ti.devmajor, ti.devminor = major, minor
        return self._add(ti, None)

    def raw(self, tarinfo: tarfile.TarInfo, data: bytes | None) -> Layer:
        """Add ``tarinfo`` untouched (no path or metadata normalisation, no auto dirs).

        If ``data`` is given, ``tarinfo.size`` is set to its length.
        """
        ti = copy.copy(tarinfo)
        if data is not None:
            ti.size = len(data)
        return self._add(ti, data)

    # -- output
    def tar_bytes(self) -> bytes:
        """Return the uncompressed layer tar (PAX format, deterministic)."""
        if self._cache is None:
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
                for ti, data in self.entries:
                    tf.addfile(ti, io.BytesIO(data) if data is not None else None)
            self._cache = buf.getvalue()
        return self._cache

    def diff_id(self) -> str:
        """``sha256:`` digest of the uncompressed tar."""
        return sha256_digest(self.tar_bytes())

    def blob(self, compression: str = "gzip") -> bytes:
        """Layer tar compressed with ``compression`` (none/gzip/zstd)."""
        return compress(self.tar_bytes(), compression)

    def names(self) -> list[str]:
        """Entry names in order (as written, dirs without the trailing slash)."""
        return [ti.name for ti, _ in self.entries]


# --------------------------------------------------------------------------- Image


@dataclass
class Image:
    """One single-platform image: layers plus the config fields that matter to scanners."""

    layers: list[Layer] = field(default_factory=list)
    history: list[dict[str, Any]] | None = None
    env: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    cmd: list[str] | None = None
    entrypoint: list[str] | None = None
    os: str = "linux"
    architecture: str = "amd64"
    variant: str | None = None
    compression: str = "gzip"
    layer_compression: list[str] | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    created: str = CREATED
    config_extra: dict[str, Any] = field(default_factory=dict)
    """Merged into the config's ``config`` object (User, WorkingDir, ExposedPorts...)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Merged into the top level of the config JSON (author, os.version...)."""
    manifest_type: str = "oci"
    """``oci`` or ``docker`` (schema2 media types) when written into an OCI layout."""
    provenance: dict[str, Any] | None = None
    """Predicate of the attestation manifest, when an :class:`Index` adds one (buildx
    ``mode=max`` records build args there, e.g. ``invocation.parameters.args``)."""
    provenance_type: str = "https://slsa.dev/provenance/v0.2"
    """The statement's predicateType (``https://slsa.dev/provenance/v1`` for SLSA v1)."""

    # -- config
    def auto_history(self) -> list[dict[str, Any]]:
        """One history entry per layer, using ``Layer.created_by`` when set."""
        out = []
        for i, layer in enumerate(self.layers):
            created_by = layer.created_by or f"RUN /bin/sh -c true # layer {i}"
            out.append({"created": self.created, "created_by": created_by})
        return out

    def config_dict(self) -> dict[str, Any]:
        """The image config as a dict (see :meth:`config_bytes`)."""
        inner: dict[str, Any] = {}
        if self.env:
            inner["Env"] = list(self.env)
        if self.cmd is not None:
            inner["Cmd"] = list(self.cmd)
        if self.entrypoint is not None:
            inner["Entrypoint"] = list(self.entrypoint)
        if self.labels:
            inner["Labels"] = dict(self.labels)
        inner.update(self.config_extra)
        cfg: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            cfg["variant"] = self.variant
        cfg["created"] = self.created
        cfg["config"] = inner
        cfg["rootfs"] = {"type": "layers", "diff_ids": self.diff_ids()}
        cfg["history"] = self.history if self.history is not None else self.auto_history()
        cfg.update(self.extra)
        return cfg

    def config_bytes(self) -> bytes:
        """Config JSON bytes (compact, deterministic)."""
        return _json(self.config_dict())

    def config_digest(self) -> str:
        """``sha256:`` digest of :meth:`config_bytes` (the docker image ID)."""
        return sha256_digest(self.config_bytes())

    def diff_ids(self) -> list[str]:
        """diff_ids of the layers (sha256 of the uncompressed tars)."""
        return [layer.diff_id() for layer in self.layers]

    def platform(self) -> str:
        """``os/arch[/variant]``."""
        base = f"{self.os}/{self.architecture}"
        return f"{base}/{self.variant}" if self.variant else base

    def platform_dict(self) -> dict[str, str]:
        """OCI descriptor ``platform`` object."""
        p = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            p["variant"] = self.variant
        return p

    # -- blobs and manifest
    def compressions(self) -> list[str]:
        """Compression of each layer blob in OCI/registry form."""
        if self.layer_compression is not None:
            if len(self.layer_compression) != len(self.layers):
                raise ValueError("layer_compression must have one entry per layer")
            return list(self.layer_compression)
        return [self.compression] * len(self.layers)

    def manifest_dict(
        self, store: BlobStore | None = None, docker: bool | None = None
    ) -> dict[str, Any]:
        """Image manifest; when ``store`` is given its config and layer blobs are added."""
        docker = self.manifest_type == "docker" if docker is None else docker
        cfg = self.config_bytes()
        cfg_digest = store.add(cfg) if store is not None else sha256_digest(cfg)
        table = DOCKER_LAYER_TYPES if docker else OCI_LAYER_TYPES
        layers = []
        for layer, comp in zip(self.layers, self.compressions(), strict=True):
            if comp not in table:
                raise ValueError(f"compression {comp!r} not allowed for this manifest type")
            blob = layer.blob(comp)
            digest = store.add(blob) if store is not None else sha256_digest(blob)
            layers.append({"mediaType": table[comp], "digest": digest, "size": len(blob)})
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": MT.DOCKER_MANIFEST if docker else MT.OCI_MANIFEST,
            "config": {
                "mediaType": MT.DOCKER_CONFIG if docker else MT.OCI_CONFIG,
                "digest": cfg_digest,
                "size": len(cfg),
            },
            "layers": layers,
        }
        if self.annotations and not docker:
            manifest["annotations"] = dict(self.annotations)
        return manifest

    def manifest_bytes(self, docker: bool | None = None) -> bytes:
        """Manifest JSON bytes."""
        return _json(self.manifest_dict(docker=docker))

    def manifest_digest(self, docker: bool | None = None) -> str:
        """``sha256:`` digest of :meth:`manifest_bytes`."""
        return sha256_digest(self.manifest_bytes(docker=docker))


# --------------------------------------------------------------------------- Index


@dataclass
class Index:
    """A multi-platform image index (or Docker manifest list); may nest.

    ``attestations`` appends one buildx-style attestation manifest per direct
    child image (after all images, as buildx does). ``docker_list`` writes a
    Docker manifest list whose images use schema2 media types; a Docker list
    has no annotations field, so ``annotations`` is then ignored.
    """

    manifests: list[Image | Index] = field(default_factory=list)
    attestations: bool = False
    docker_list: bool = False
    annotations: dict[str, str] = field(default_factory=dict)

    def images(self) -> list[Image]:
        """All images reachable from this index, depth first."""
        out: list[Image] = []
        for m in self.manifests:
            out.extend(m.images() if isinstance(m, Index) else [m])
        return out


class BlobStore:
    """Content-addressed blobs keyed by ``sha256:<hex>``."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def add(self, data: bytes) -> str:
        """Store ``data``; return its digest."""
        digest = sha256_digest(data)
        self.blobs.setdefault(digest, data)
        return digest

    def add_json(self, obj: Any) -> tuple[str, int]:
        """Store compact JSON; return (digest, size)."""
        data = _json(obj)
        return self.add(data), len(data)

    def put_image(self, img: Image, docker: bool | None = None) -> dict[str, Any]:
        """Store an image (config, layers, manifest); return its descriptor."""
        manifest = img.manifest_dict(self, docker=docker)
        digest, size = self.add_json(manifest)
        return {
            "mediaType": manifest["mediaType"],
            "digest": digest,
            "size": size,
            "platform": img.platform_dict(),
        }

    def put_attestation(self, img: Image, subject: dict[str, Any]) -> dict[str, Any]:
        """Store a buildx-style attestation manifest for ``subject``; return its descriptor."""
        statement = {
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": img.provenance_type,
            "subject": [
                {
                    "name": f"pkg:docker/leakscan-fixture@latest?platform={img.platform()}",
                    "digest": {"sha256": _hex(subject["digest"])},
                }
            ],
            "predicate": img.provenance
            if img.provenance is not None
            else {"buildType": "https://mobyproject.org/buildkit@v1", "builder": {"id": ""}},
        }
        layer = _json(statement)
        layer_digest = self.add(layer)
        config = {
            "architecture": "unknown",
            "os": "unknown",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }
        cfg_digest, cfg_size = self.add_json(config)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MT.OCI_MANIFEST,
            "config": {"mediaType": MT.OCI_CONFIG, "digest": cfg_digest, "size": cfg_size},
            "layers": [
                {
                    "mediaType": MT.IN_TOTO,
                    "digest": layer_digest,
                    "size": len(layer),
                    "annotations": {"in-toto.io/predicate-type": statement["predicateType"]},
                }
            ],
        }
        digest, size = self.add_json(manifest)
        return {
            "mediaType": MT.OCI_MANIFEST,
            "digest": digest,
            "size": size,
            "annotations": {
                "vnd.docker.reference.digest": subject["digest"],
                "vnd.docker.reference.type": "attestation-manifest",
            },
            "platform": {"architecture": "unknown", "os": "unknown"},
        }

    def index_dict(self, idx: Index) -> dict[str, Any]:
        """Store everything under ``idx``; return the index JSON object."""
        descs: list[dict[str, Any]] = []
        atts: list[dict[str, Any]] = []
        for m in idx.manifests:
            if isinstance(m, Index):
                descs.append(self.put_index(m))
                continue
            desc = self.put_image(m, docker=True if idx.docker_list else None)
            descs.append(desc)
            if idx.attestations:
                atts.append(self.put_attestation(m, desc))
        out: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": MT.DOCKER_LIST if idx.docker_list else MT.OCI_INDEX,
            "manifests": descs + atts,
        }
        if idx.annotations and not idx.docker_list:
            out["annotations"] = dict(idx.annotations)
        return out

    def put_index(self, idx: Index) -> dict[str, Any]:
        """Store an index and its children; return its descriptor."""
        obj = self.index_dict(idx)
        digest, size = self.add_json(obj)
        return {"mediaType": obj["mediaType"], "digest": digest, "size": size}

    def put(self, root: Image | Index) -> dict[str, Any]:
        """Store an image or index; return its descriptor."""
        return self.put_index(root) if isinstance(root, Index) else self.put_image(root)


# --------------------------------------------------------------------------- tar output


class _TarOut:
    """Collects members of an outer archive and writes them deterministically."""

    def __init__(self, dir_entries: bool = True) -> None:
        self.dir_entries = dir_entries
        self.members: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}

    def _info(self, name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode, ti.mtime = kind, mode, 0
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = ""
        return ti

    def _dirs_for(self, name: str) -> None:
        if not self.dir_entries:
            return
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self.members:
                self.members[d] = (self._info(d, tarfile.DIRTYPE, 0o755), None)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._dirs_for(name)
        ti = self._info(name, tarfile.REGTYPE, mode)
        ti.size = len(data)
        self.members.setdefault(name, (ti, data))

    def symlink(self, name: str, target: str, mode: int = 0o777) -> None:
        self._dirs_for(name)
        ti = self._info(name, tarfile.SYMTYPE, mode)
        ti.linkname = target
        self.members.setdefault(name, (ti, None))

    def write(self, path: Path, order: Sequence[str] | None = None, sort: bool = True) -> None:
        """Write members: those in ``order`` first, then the rest sorted (or as added)."""
        first = list(order or [])
        seen = set(first)
        rest = [n for n in self.members if n not in seen]
        names = first + (sorted(rest) if sort else rest)
        with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
            for n in names:
                ti, data = self.members[n]
                tf.addfile(ti, io.BytesIO(data) if data is not None else None)


def _layout_files(
    root: Image | Index,
    tag: str | None,
    extra_tags: Iterable[str],
    image_name: str | None,
    inline_index: bool,
) -> dict[str, bytes]:
    """Files of an OCI image layout (relative path -> bytes)."""
    store = BlobStore()
    if inline_index and isinstance(root, Index):
        index = store.index_dict(root)
    else:
        desc = store.put(root)
        descs = []
        tags: list[str | None] = [tag] if tag is not None else []
        tags += list(extra_tags)
        for t in tags or [None]:
            d = dict(desc)
            if t is not None:
                ann: dict[str, str] = {}
                if image_name is not None:
                    ann[ANNOT_IMAGE_NAME] = f"{image_name}:{t}"
                ann[ANNOT_REF_NAME] = t
                d["annotations"] = ann
            descs.append(d)
        index = {"schemaVersion": 2, "mediaType": MT.OCI_INDEX, "manifests": descs}
    files = {f"blobs/sha256/{_hex(d)}": b for d, b in store.blobs.items()}
    files["oci-layout"] = _json({"imageLayoutVersion": "1.0.0"})
    files["index.json"] = _json(index)
    return files


def write_oci_layout(
    dirpath: str | Path,
    root: Image | Index,
    tag: str | None = "latest",
    extra_tags: Iterable[str] = (),
    *,
    image_name: str | None = None,
    inline_index: bool = False,
) -> Path:
    """Write an OCI image layout directory; return its path.

    ``index.json`` holds one descriptor of ``root`` per tag (annotated with
    ``org.opencontainers.image.ref.name``; ``image_name`` adds
    ``io.containerd.image.name`` like buildx). ``inline_index=True`` with an
    :class:`Index` root makes ``index.json`` itself list the platform manifests.
    """
    out = Path(dirpath)
    for rel, data in _layout_files(root, tag, extra_tags, image_name, inline_index).items():
        p = out / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return out


def write_oci_archive(
    path: str | Path,
    root: Image | Index,
    tag: str | None = "latest",
    extra_tags: Iterable[str] = (),
    *,
    image_name: str | None = None,
    inline_index: bool = False,
) -> Path:
    """Write the OCI layout as a tar (like ``buildx -o type=oci``; no manifest.json).

    Blobs come first and ``oci-layout``/``index.json`` last, so readers cannot
    rely on seeing the index before the blobs.
    """
    out = Path(path)
    tar = _TarOut()
    for rel, data in _layout_files(root, tag, extra_tags, image_name, inline_index).items():
        tar.file(rel, data, 0o444 if rel.startswith("blobs/") else 0o644)
    blobs = sorted(n for n in tar.members if n.startswith("blobs"))
    tar.write(out, order=blobs + ["oci-layout", "index.json"])
    return out


def write_dir_layout(dirpath: str | Path, root: Image | Index) -> Path:
    """Write skopeo's ``dir:`` transport layout; return its path.

    ``manifest.json`` is the root manifest or index, each child manifest is also
    ``<hex>.manifest.json``, other blobs are ``<hex>``. Unlike an OCI layout,
    skopeo reads Docker manifest lists from here.
    """
    out = Path(dirpath)
    out.mkdir(parents=True, exist_ok=True)
    store = BlobStore()
    desc = store.put(root)
    top = store.blobs[desc["digest"]]
    (out / "version").write_text("Directory Transport Version: 1.1\n")
    (out / "manifest.json").write_bytes(top)
    if isinstance(root, Index):
        for child in json.loads(top)["manifests"]:
            data = store.blobs[child["digest"]]
            (out / f"{_hex(child['digest'])}.manifest.json").write_bytes(data)
    for digest, data in store.blobs.items():
        (out / _hex(digest)).write_bytes(data)
    return out


# --------------------------------------------------------------------------- docker save


def _v1_ids(img: Image, style: str = "docker") -> list[tuple[str, dict[str, Any]]]:
    """Legacy v1 layer IDs and their ``json`` objects, chained by parent.

    ``style`` ``docker`` mimics ``docker save`` (every layer has created and
    container_config); ``skopeo`` mimics skopeo (lower layers hold only id/parent).
    """
    out: list[tuple[str, dict[str, Any]]] = []
    parent = ""
    chain = ""
    cfg = img.config_dict()
    for i, diff_id in enumerate(img.diff_ids()):
        chain = diff_id if not chain else sha256_digest(f"{chain} {diff_id}".encode())
        top = i == len(img.layers) - 1
        v1: dict[str, Any] = {}
        if top:
            v1 = {
                "architecture": cfg["architecture"],
                "config": cfg["config"],
                "created": cfg["created"],
                "os": cfg["os"],
            }
        elif style == "docker":
            v1 = {"created": "1970-01-01T00:00:00Z", "container_config": {"Cmd": None}}
            v1["os"] = img.os
        layer_id = hashlib.sha256(_json(v1) + chain.encode() + parent.encode()).hexdigest()
        full: dict[str, Any] = {"id": layer_id}
        if parent:
            full["parent"] = parent
        full.update(v1)
        out.append((layer_id, full))
        parent = layer_id
    return out


def _normalise_images(
    images: list[tuple[Image, list[str]]] | Image,
) -> list[tuple[Image, list[str]]]:
    if isinstance(images, Image):
        return [(images, [DEFAULT_TAG])]
    return [(img, list(tags)) for img, tags in images]


def write_docker_archive(
    path: str | Path,
    images: list[tuple[Image, list[str]]] | Image,
    layout: str = "legacy",
    gzip_blobs: bool = False,
) -> Path:
    """Write a ``docker save`` tar holding one or more tagged images; return its path.

    ``layout``:

    * ``legacy`` (before Docker 25): ``<id>/layer.tar``, ``<id>/VERSION``,
      ``<id>/json``, ``<config-hex>.json``; sorted, with directory entries.
    * ``docker25``: an OCI layout (``index.json``, ``blobs/sha256``) plus
      ``manifest.json`` pointing into ``blobs/sha256/``.
    * ``skopeo``: ``<blob-hex>.tar`` at top level (what ``manifest.json`` lists),
      ``<id>/layer.tar`` symlinks to ``../<blob-hex>.tar``; in skopeo's order.

    ``gzip_blobs`` stores layer blobs gzipped (Docker 29 containerd store).
    A bare :class:`Image` is tagged :data:`DEFAULT_TAG`; an empty tag list writes
    ``"RepoTags": null``.
    """
    items = _normalise_images(images)
    if layout == "legacy":
        tar = _legacy_archive(items, gzip_blobs)
    elif layout == "docker25":
        tar = _docker25_archive(items, gzip_blobs)
    elif layout == "skopeo":
        tar = _skopeo_archive(items, gzip_blobs)
    else:
        raise ValueError(f"unknown layout {layout!r}")
    out = Path(path)
    tar.write(out, sort=layout != "skopeo")
    return out


def _repositories(repos: dict[str, dict[str, str]], tags: list[str], top: str) -> None:
    for t in tags:
        name, tg = _split_ref(t)
        repos.setdefault(name, {})[tg] = top


def _finish(
    tar: _TarOut, manifest: list[dict[str, Any]], repos: dict[str, Any], mode: int = 0o644
) -> _TarOut:
    tar.file("manifest.json", _json(manifest) + b"\n", mode)
    if repos:
        tar.file("repositories", _json(repos) + b"\n", mode)
    return tar


def _legacy_archive(items: list[tuple[Image, list[str]]], gzip_blobs: bool) -> _TarOut:
    tar = _TarOut()
    manifest: list[dict[str, Any]] = []
    repos: dict[str, dict[str, str]] = {}
    comp = "gzip" if gzip_blobs else "none"
    for img, tags in items:
        v1 = _v1_ids(img)
        for layer, (layer_id, v1json) in zip(img.layers, v1, strict=True):
            tar.file(f"{layer_id}/VERSION", b"1.0")
            tar.file(f"{layer_id}/json", _json(v1json))
            tar.file(f"{layer_id}/layer.tar", layer.blob(comp))
        cfg_name = f"{_hex(img.config_digest())}.json"
        tar.file(cfg_name, img.config_bytes())
        layers = [f"{layer_id}/layer.tar" for layer_id, _ in v1]
        manifest.append({"Config": cfg_name, "RepoTags": tags or None, "Layers": layers})
        _repositories(repos, tags, v1[-1][0] if v1 else "")
    return _finish(tar, manifest, repos)


def _docker25_archive(items: list[tuple[Image, list[str]]], gzip_blobs: bool) -> _TarOut:
    tar = _TarOut()
    manifest: list[dict[str, Any]] = []
    repos: dict[str, dict[str, str]] = {}
    comp = "gzip" if gzip_blobs else "none"
    store = BlobStore()
    index_descs: list[dict[str, Any]] = []
    for img, tags in items:
        v1 = _v1_ids(img)
        for _, v1json in v1:
            store.add(_json(v1json))  # docker 25 also stores each v1 layer json as a blob
        desc = store.put_image(_with_compression(img, comp))
        layers = [f"blobs/sha256/{_hex(sha256_digest(layer.blob(comp)))}" for layer in img.layers]
        for t in tags:
            ann = {ANNOT_IMAGE_NAME: _full_ref(t), ANNOT_REF_NAME: _split_ref(t)[1]}
            index_descs.append({**desc, "annotations": ann})
        if not tags:
            index_descs.append(desc)
        cfg_rel = f"blobs/sha256/{_hex(img.config_digest())}"
        manifest.append({"Config": cfg_rel, "RepoTags": tags or None, "Layers": layers})
        _repositories(repos, tags, _hex(img.diff_ids()[-1]) if img.layers else "")
    for digest, data in store.blobs.items():
        tar.file(f"blobs/sha256/{_hex(digest)}", data)
    tar.file("oci-layout", _json({"imageLayoutVersion": "1.0.0"}))
    tar.file(
        "index.json",
        _json({"schemaVersion": 2, "mediaType": MT.OCI_INDEX, "manifests": index_descs}),
    )
    return _finish(tar, manifest, repos)


def _skopeo_archive(items: list[tuple[Image, list[str]]], gzip_blobs: bool) -> _TarOut:
    tar = _TarOut(dir_entries=False)
    manifest: list[dict[str, Any]] = []
    repos: dict[str, dict[str, str]] = {}
    comp = "gzip" if gzip_blobs else "none"
    for img, tags in items:
        tags = [_full_ref(t) for t in tags]
        layers = []
        for layer in img.layers:
            blob = layer.blob(comp)
            name = f"{_hex(sha256_digest(blob))}.tar"
            tar.file(name, blob, 0o444)
            layers.append(name)
        cfg_name = f"{_hex(img.config_digest())}.json"
        tar.file(cfg_name, img.config_bytes(), 0o444)
        v1 = _v1_ids(img, style="skopeo")
        for name, (layer_id, v1json) in zip(layers, v1, strict=True):
            tar.symlink(f"{layer_id}/layer.tar", f"../{name}", 0)
            tar.file(f"{layer_id}/VERSION", b"1.0", 0o444)
            tar.file(f"{layer_id}/json", _json(v1json), 0o444)
        manifest.append({"Config": cfg_name, "RepoTags": tags or None, "Layers": layers})
        _repositories(repos, tags, v1[-1][0] if v1 else "")
    return _finish(tar, manifest, repos, 0o444)


def _with_compression(img: Image, comp: str) -> Image:
    """Shallow copy of ``img`` whose layers all use ``comp`` and OCI media types."""
    clone = copy.copy(img)
    clone.compression = comp
    clone.layer_compression = None
    clone.manifest_type = "oci"
    return clone


# --------------------------------------------------------------------------- fake tokens

_ALNUM = string.ascii_letters + string.digits
_B64 = _ALNUM + "+/"


class _Pipe(io.RawIOBase):
    """A write-only target without seek or tell: zipfile then writes a data descriptor
    (sizes and CRC after the data, flag bit 3) after every member, as a zip made in a pipe."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.data += bytes(b)
        return len(b)


def make_zip(
    files: dict[str, bytes],
    method: int = zipfile.ZIP_DEFLATED,
    *,
    streamed: bool = False,
    zip64: bool = False,
) -> bytes:
    """A zip of ``files``, every member stored with ``method``; ``streamed`` writes it as to a
    pipe (data descriptors), ``zip64`` forces zip64 records. Same input, same bytes."""
    pipe, seekable = _Pipe(), io.BytesIO()
    with zipfile.ZipFile(pipe if streamed else seekable, "w", method) as zf:  # type: ignore[arg-type]
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = method
            with zf.open(info, "w", force_zip64=zip64) as fh:
                fh.write(data)
    return bytes(pipe.data) if streamed else seekable.getvalue()


def fake_token(kind: str = "npm", rng: random.Random | None = None) -> str:
    """Random, format-valid, never-issued token of ``kind``.

    Kinds: npm, github, github_fine, gitlab, slack, aws (access key id),
    aws_secret, private_key (a PEM block with a random body). Pass a seeded
    ``random.Random`` for reproducible fixtures; the default uses ``secrets``.
    """
    r: random.Random = rng if rng is not None else secrets.SystemRandom()

    def pick(n: int, alphabet: str = _ALNUM) -> str:
        return "".join(r.choice(alphabet) for _ in range(n))

    if kind == "npm":
        return "npm_" + pick(36)
    if kind == "github":
        return "ghp_" + pick(36)
    if kind == "github_fine":
        return "github_pat_" + pick(22) + "_" + pick(59)
    if kind == "gitlab":
        return "glpat-" + pick(20, _ALNUM + "_-")
    if kind == "slack":
        return f"xoxb-{pick(11, string.digits)}-{pick(12, string.digits)}-{pick(24)}"
    if kind == "aws":
        return "AKIA" + pick(16, string.ascii_uppercase + "234567")
    if kind == "aws_secret":
        return pick(40, _B64)
    if kind == "private_key":
        body = "\n".join(pick(70, _B64) for _ in range(6))
        return f"-----BEGIN OPENSSH PRIVATE KEY-----\n{body}\n-----END OPENSSH PRIVATE KEY-----\n"
    raise ValueError(f"unknown token kind {kind!r}")
