"""Write the seed corpora of the harnesses, deterministically, from tests/imagebuilder.py:

    fuzz/corpus/archive/   image tars: docker save (legacy, Docker 25, gzip blobs, skopeo),
                           OCI archives (multi-platform index with attestations, zstd)
    fuzz/corpus/layer/     layer blobs (none, gzip, zstd): whiteouts, links, devices, long and
                           non-UTF-8 names, nested archives, credential files, git object
                           stores (loose, packed with deltas, hostile packs)
    fuzz/corpus/manifest/  fuzz_manifest inputs: index | manifest | config | manifest.json |
                           layer | tag, with digest placeholders

    python fuzz/make_corpus.py          # rewrites the three directories

Seeds are kept small (the whole corpus well under 2 MB): the fuzzer grows its own corpus in
fuzz/work/ (not committed).
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import random
import shutil
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import zstandard

FUZZ_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(FUZZ_DIR.parent / "tests"))
sys.path.insert(0, str(FUZZ_DIR))

from common import join_parts  # noqa: E402
from imagebuilder import (  # noqa: E402
    CREATED,
    MT,
    Image,
    Index,
    Layer,
    fake_token,
    make_zip,
    write_docker_archive,
    write_oci_archive,
)

CORPUS = FUZZ_DIR / "corpus"
RNG = random.Random(5)
TOKENS = {k: fake_token(k, RNG) for k in ("npm", "github", "gitlab", "slack", "aws", "aws_secret")}


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def _tar(files: dict[str, bytes], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, errors="surrogateescape") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# --- images ------------------------------------------------------------------------------------


def small_image(arch: str = "amd64", compressions: list[str] | None = None) -> Image:
    """Two layers: a leak written, then whited out; history with a build argument."""
    t = TOKENS
    base = Layer(created_by="/bin/sh -c #(nop) ADD file:rootfs in / ")
    base.file("etc/passwd", "root:x:0:0::/root:/bin/sh\n").symlink("bin/sh", "busybox")
    base.file("app/.env", f"GITLAB_TOKEN={t['gitlab']}\n").hardlink("app/env2", "app/.env")
    base.file("root/.npmrc", f"//registry.npmjs.org/:_authToken={t['npm']}\n")
    top = Layer(created_by=f"|1 NPM_TOKEN={t['npm']} /bin/sh -c rm /root/.npmrc")
    top.whiteout("root/.npmrc").opaque("app").file("app/ok", "fine\n")
    history = [
        {"created": CREATED, "created_by": base.created_by},
        {"created": CREATED, "created_by": "/bin/sh -c #(nop) ENV A=b", "empty_layer": True},
        {"created": CREATED, "created_by": top.created_by},
    ]
    return Image(
        layers=[base, top],
        history=history,
        env=[f"GH={t['github']}"],
        labels={"k": "v"},
        architecture=arch,
        layer_compression=compressions,
    )


def archive_seeds() -> dict[str, bytes]:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        img = small_image()
        for name, layout, gz in (
            ("docker-legacy.tar", "legacy", False),
            ("docker25.tar", "docker25", False),
            ("docker25-gzip-blobs.tar", "docker25", True),
            ("docker-skopeo.tar", "skopeo", False),
        ):
            out[name] = write_docker_archive(t / name, img, layout, gzip_blobs=gz).read_bytes()
        index = Index(
            [small_image("amd64", ["gzip", "zstd"]), small_image("arm64", ["none", "gzip"])],
            attestations=True,
        )
        out["oci-index.tar"] = write_oci_archive(t / "i.tar", index, tag="latest").read_bytes()
        single = small_image("amd64", ["zstd", "zstd"])
        out["oci-zstd.tar"] = write_oci_archive(t / "z.tar", single, tag="v1").read_bytes()
    return out


# --- layers ------------------------------------------------------------------------------------


def _rich_layer() -> Layer:
    t = TOKENS
    layer = Layer()
    layer.file("etc/passwd", "root:x:0:0::/root:/bin/sh\n").dir("root", 0o700)
    layer.symlink("bin/sh", "busybox").symlink("etc/loop", "loop").hardlink("bin/ash", "etc/passwd")
    layer.fifo("run/fifo").chardev("dev/null", 1, 3).blockdev("dev/sda", 8, 0)
    layer.whiteout("var/gone").opaque("opt").file("opt/.wh.", b"")
    layer.file("root/.docker/config.json", json.dumps({"auths": {"r.io": {"auth": "dTpw"}}}))
    layer.file("root/.netrc", "machine example.com login u password hunter2hunter2\n")
    layer.file("root/.aws/credentials", f"[default]\naws_access_key_id={t['aws']}\n")
    layer.file("root/.kube/config", "users:\n- name: u\n  user:\n    token: abcdefabcdef1234\n")
    layer.file("app/lib.jar", _zip({"creds.properties": f"slack={t['slack']}\n".encode()}))
    layer.file("app/b.tar.gz", gzip.compress(_tar({".npmrc": b"_auth=dTpwYXNz\n"}), mtime=0))
    layer.file("app/l.gz", gzip.compress(b"token " + t["github"].encode(), mtime=0))
    layer.file("app/l.bz2", bz2.compress(b"x" * 100))
    layer.file("app/l.xz", lzma.compress(b"y" * 100))
    layer.file("app/l.zst", zstandard.ZstdCompressor().compress(b"z" * 100))
    layer.file("d/" * 60 + "long", "a long PAX name\n")
    return layer


def layer_seeds() -> dict[str, bytes]:
    rich = _rich_layer()
    out = {f"rich.{kind}": rich.blob(kind) for kind in ("none", "gzip", "zstd")}
    small = Layer().file("a", "b\n").whiteout("c")
    out["small.tar"] = small.tar_bytes()
    out["small-multi-member.gz"] = gzip.compress(small.tar_bytes()[:512], mtime=0) + gzip.compress(
        small.tar_bytes()[512:], mtime=0
    )
    out["gnu-non-utf8.tar.gz"] = gzip.compress(
        _tar({"app/\udcff\udcfe.env": b"x=1\n", "n" * 120: b"gnu long name\n"}, tarfile.GNU_FORMAT),
        mtime=0,
    )
    out["ustar.tar"] = _tar({"a/b": b"c\n", "k.yaml": b"kind: Secret\ndata:\n  p: aGVsbG8=\n"})
    out["empty.tar"] = bytes(1024)
    # zip members whose lengths come after them, in a data descriptor (stored ones can only
    # be ended by finding the descriptor)
    members = {"a.properties": f"token={TOKENS['github']}\n".encode(), "b.txt": b"plain\n" * 40}
    streamed = Layer()
    streamed.file(
        "app/streamed-deflate.jar", make_zip(members, zipfile.ZIP_DEFLATED, streamed=True)
    )
    streamed.file("app/streamed-stored.zip", make_zip(members, zipfile.ZIP_STORED, streamed=True))
    out["zip-descriptors.tar"] = streamed.tar_bytes()
    out.update(git_seeds())
    return out


def git_seeds() -> dict[str, bytes]:
    """Layers holding git object stores (issue 14): loose objects, and a pack with whole
    objects, OFS and REF deltas, a commit and trees naming the blobs; and a pack whose
    deltas loop and reach outside their base, for mutations to start from; each pack also
    with its .idx (the reader's other path: ids from the index, objects typed from their
    headers), the hostile one's index naming objects that are not what it says."""
    from gitrepos import PackWriter, copy_op, delta, insert_op, loose, oid, pack_index

    env = f"GITHUB_TOKEN={TOKENS['github']}\n".encode()
    later = env + b"LOG_LEVEL=info\n"
    tree = b"100644 .env\0" + oid("blob", env)
    top = b"40000 config\0" + oid("tree", tree)
    commit = (
        b"tree " + oid("tree", top).hex().encode() + b"\n"
        b"author Dev <dev@example.internal> 1700000000 +0100\n"
        b"committer Dev <dev@example.internal> 1700000000 +0100\n\nAdd config\n"
    )
    loose_layer = Layer().file("app/.git/HEAD", "ref: refs/heads/main\n")
    for kind, data in (("blob", env), ("tree", tree), ("tree", top), ("commit", commit)):
        name, raw = loose(kind, data)
        loose_layer.file(f"app/.git/objects/{name}", raw)
    out = {"git-loose.tar": loose_layer.tar_bytes()}
    w = PackWriter()
    w.whole("commit", commit)
    w.whole("tree", top)
    w.whole("tree", tree)
    at = w.whole("blob", env)
    w.ofs_delta(
        at, delta(len(env), len(later), copy_op(0, len(env)) + insert_op(later[len(env) :]))
    )
    w.ref_delta(oid("blob", later), delta(len(later), 4, copy_op(0, 4)))
    packed = Layer().file("srv/repo.git/HEAD", "ref: refs/heads/main\n")
    packed.file("srv/repo.git/objects/pack/pack-1.pack", w.pack())
    out["git-pack.tar"] = packed.tar_bytes()
    ids = [oid("commit", commit), oid("tree", top), oid("tree", tree), oid("blob", env)]
    ids += [oid("blob", later), oid("blob", later[:4])]
    indexed = Layer().file("srv/repo.git/HEAD", "ref: refs/heads/main\n")
    indexed.file("srv/repo.git/objects/pack/pack-1.pack", w.pack())
    indexed.file("srv/repo.git/objects/pack/pack-1.idx", pack_index(w.pack(), w.offsets, ids))
    out["git-pack-indexed.tar"] = indexed.tar_bytes()
    w = PackWriter()
    first = w.whole("blob", b"base\n")
    w.ref_delta(oid("blob", b"A"), delta(1, 1, insert_op(b"B")))
    w.ref_delta(oid("blob", b"B"), delta(1, 1, insert_op(b"A")))
    w.ofs_delta(first, delta(5, 64, copy_op(2, 64)))
    hostile = Layer().file("x/.git/objects/pack/p.pack", w.pack())
    out["git-hostile.tar"] = hostile.tar_bytes()
    lies = [oid("blob", b"A"), oid("blob", b"B"), oid("blob", b"base\n"), oid("blob", b"C")]
    hostile.file("x/.git/objects/pack/p.idx", pack_index(w.pack(), w.offsets, lies))
    out["git-hostile-indexed.tar"] = hostile.tar_bytes()
    return out


# --- manifests ---------------------------------------------------------------------------------


def _j(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def manifest_seeds() -> dict[str, bytes]:
    layer = Layer().file("root/.npmrc", f"//r/:_authToken={TOKENS['npm']}\n").tar_bytes()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": CREATED,
        "config": {
            "Env": [f"GH={TOKENS['github']}", "PATH=/bin"],
            "Labels": {"org.example.token": TOKENS["gitlab"]},
            "Cmd": ["/bin/sh", "-c", "run"],
            "Entrypoint": ["/init"],
        },
        "rootfs": {"type": "layers", "diff_ids": ["@D@"]},
        "history": [
            {"created_by": "/bin/sh -c #(nop) ARG NPM_TOKEN", "empty_layer": True},
            {"created_by": f"|1 NPM_TOKEN={TOKENS['npm']} /bin/sh -c npm ci"},
        ],
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT.OCI_MANIFEST,
        "config": {"mediaType": MT.OCI_CONFIG, "digest": "@C@", "size": 1},
        "layers": [{"mediaType": MT.OCI_LAYER, "digest": "@L@", "size": 1}],
        "annotations": {"org.opencontainers.image.title": "x"},
    }
    descriptor = {
        "mediaType": MT.OCI_MANIFEST,
        "digest": "@M@",
        "size": 1,
        "platform": {"os": "linux", "architecture": "amd64"},
        "annotations": {"org.opencontainers.image.ref.name": "latest"},
    }
    index = {"schemaVersion": 2, "mediaType": MT.OCI_INDEX, "manifests": [descriptor]}
    docker = [{"Config": "@CP@", "RepoTags": ["app:latest"], "Layers": ["@LP@"]}]
    base = {
        "index": _j(index),
        "manifest": _j(manifest),
        "config": _j(config),
        "docker": _j(docker),
        "layer": layer,
        "tag": b"latest",
    }
    out = {"oci-and-docker": join_parts(base)}

    docker_types = dict(manifest, mediaType=MT.DOCKER_MANIFEST)
    docker_types["config"] = dict(manifest["config"], mediaType=MT.DOCKER_CONFIG)
    foreign = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    docker_types["layers"] = [
        {"mediaType": MT.DOCKER_LAYER, "digest": "@L@", "size": 1},
        {"mediaType": foreign, "digest": "sha256:" + "0" * 64, "size": 9, "urls": ["http://x/"]},
    ]
    foreign_docker = [
        dict(
            docker[0],
            Layers=["@LP@", "missing.tar"],
            LayerSources={"sha256:" + "0" * 64: {"mediaType": foreign, "size": 9}},
        )
    ]
    two = dict(config, rootfs={"type": "layers", "diff_ids": ["@D@", "sha256:" + "0" * 64]})
    out["docker-types-foreign"] = join_parts(
        dict(base, manifest=_j(docker_types), docker=_j(foreign_docker), config=_j(two))
    )

    attestation = {
        "mediaType": MT.OCI_MANIFEST,
        "digest": "sha256:" + "1" * 64,
        "size": 1,
        "annotations": {"vnd.docker.reference.type": "attestation-manifest"},
        "platform": {"os": "unknown", "architecture": "unknown"},
    }
    multi = dict(index, manifests=[descriptor, attestation], annotations={"a": "b"})
    out["index-attestation"] = join_parts(dict(base, index=_j(multi)))

    # index.json -> an index (the manifest part) -> a manifest (the config part) -> a config
    # (the layer part): nested indexes
    nested_index = {
        "schemaVersion": 2,
        "mediaType": MT.OCI_INDEX,
        "manifests": [dict(descriptor, digest="@C@")],
    }
    inner_manifest = dict(manifest, layers=[])
    inner_manifest["config"] = dict(manifest["config"], digest="@L@")
    inner_config = dict(config, rootfs={"type": "layers", "diff_ids": []}, history=[])
    out["nested-index"] = join_parts(
        {
            "index": _j(dict(index, manifests=[dict(descriptor, mediaType=MT.OCI_INDEX)])),
            "manifest": _j(nested_index),
            "config": _j(inner_manifest),
            "layer": _j(inner_config),
        }
    )

    odd = dict(config, history=[{"created_by": "a"}] * 4, config={"Env": "A=B", "Labels": []})
    del odd["os"]
    out["odd-config"] = join_parts(dict(base, config=_j(odd), tag=b"app:latest"))
    out["legacy-names"] = join_parts(
        {
            "docker": _j([{"Config": "@CP@", "RepoTags": None, "Layers": ["@LP@", "@LP@"]}]),
            "config": _j(dict(config, rootfs={"diff_ids": ["@D@", "@D@"]})),
            "layer": layer,
            "tag": b"@0",
        }
    )
    return out


def main() -> None:
    for name, seeds in (
        ("archive", archive_seeds()),
        ("layer", layer_seeds()),
        ("manifest", manifest_seeds()),
    ):
        where = CORPUS / name
        shutil.rmtree(where, ignore_errors=True)
        where.mkdir(parents=True)
        for file, data in seeds.items():
            (where / file).write_bytes(data)
        total = sum(len(d) for d in seeds.values())
        print(f"{where.relative_to(FUZZ_DIR.parent)}: {len(seeds)} seeds, {total} bytes")


if __name__ == "__main__":
    main()
