"""Tests for tests/imagebuilder.py: structure, digests, determinism, and real tools."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import json
import os
import posixpath
import random
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent))

from imagebuilder import (  # noqa: E402
    MT,
    Image,
    Index,
    Layer,
    detect_compression,
    fake_token,
    sha256_digest,
    write_dir_layout,
    write_docker_archive,
    write_oci_archive,
    write_oci_layout,
)
from needs import tool  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
LAYOUTS = ["legacy", "docker25", "skopeo"]


# --------------------------------------------------------------------------- helpers


def run(*args: str | Path) -> str:
    """Run a command; fail the test with its stderr if it fails."""
    proc = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=120, check=False
    )
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
    return proc.stdout


def skopeo(*args: str | Path) -> str:
    return run(tool("skopeo"), *args)


def copy(src: str, dst: str, *extra: str) -> str:
    return skopeo("copy", "--insecure-policy", "-q", *extra, src, dst)


def decompress(data: bytes) -> bytes:
    kind = detect_compression(data)
    if kind == "gzip":
        return gzip.decompress(data)
    if kind == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return data


def members(path: Path) -> dict[str, tuple[tarfile.TarInfo, bytes | None]]:
    """All members of a tar archive, in order."""
    out: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}
    with tarfile.open(path) as tf:
        for m in tf.getmembers():
            f = tf.extractfile(m) if m.isfile() else None
            out[m.name] = (m, f.read() if f else None)
    return out


def resolve(mem: dict[str, tuple[tarfile.TarInfo, bytes | None]], name: str) -> bytes:
    """Content of member ``name``, following relative symlinks."""
    for _ in range(10):
        info, data = mem[name]
        if not info.issym():
            assert data is not None, name
            return data
        name = posixpath.normpath(posixpath.join(posixpath.dirname(name), info.linkname))
    raise AssertionError("symlink loop")


def layer_names(tar: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        return tf.getnames()


def check_oci_layout(root: Path) -> list[dict[str, Any]]:
    """Verify every blob reachable from index.json; return the image configs found."""
    assert json.loads((root / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((root / "index.json").read_text())
    assert index["schemaVersion"] == 2
    configs: list[dict[str, Any]] = []

    def blob(desc: dict[str, Any]) -> bytes:
        hexname = str(desc["digest"]).split(":")[1]
        data = (root / "blobs" / "sha256" / hexname).read_bytes()
        assert sha256_digest(data) == desc["digest"]
        assert len(data) == desc["size"]
        return data

    def walk(desc: dict[str, Any]) -> None:
        obj = json.loads(blob(desc))
        assert obj["mediaType"] == desc["mediaType"]
        if desc["mediaType"] in (MT.OCI_INDEX, MT.DOCKER_LIST):
            for child in obj["manifests"]:
                walk(child)
            return
        cfg = json.loads(blob(obj["config"]))
        if cfg["os"] == "unknown":  # attestation: in-toto JSON layers, not tars
            assert all(lay["mediaType"] == MT.IN_TOTO for lay in obj["layers"])
            return
        docker = desc["mediaType"] == MT.DOCKER_MANIFEST
        assert obj["config"]["mediaType"] == (MT.DOCKER_CONFIG if docker else MT.OCI_CONFIG)
        diff_ids = []
        for lay in obj["layers"]:
            data = blob(lay)
            suffix = {"none": "tar", "gzip": "gzip", "zstd": "zstd"}[detect_compression(data)]
            assert lay["mediaType"].endswith(suffix), (lay["mediaType"], suffix)
            diff_ids.append(sha256_digest(decompress(data)))
        assert cfg["rootfs"] == {"type": "layers", "diff_ids": diff_ids}
        if "platform" in desc:
            assert desc["platform"]["architecture"] == cfg["architecture"]
        configs.append(cfg)

    for desc in index["manifests"]:
        walk(desc)
    return configs


def check_docker_archive(path: Path, layout: str, gzip_blobs: bool) -> list[dict[str, Any]]:
    """Verify a docker-save archive; return its manifest.json."""
    mem = members(path)
    manifest: list[dict[str, Any]] = json.loads(resolve(mem, "manifest.json"))
    for item in manifest:
        cfg_bytes = resolve(mem, item["Config"])
        hexname = posixpath.basename(item["Config"]).removesuffix(".json")
        assert hashlib.sha256(cfg_bytes).hexdigest() == hexname
        cfg = json.loads(cfg_bytes)
        diff_ids = []
        for rel in item["Layers"]:
            data = resolve(mem, rel)
            assert detect_compression(data) == ("gzip" if gzip_blobs else "none")
            diff_ids.append(sha256_digest(decompress(data)))
            if layout == "docker25":
                assert rel == "blobs/sha256/" + hashlib.sha256(data).hexdigest()
            elif layout == "skopeo":
                assert rel == hashlib.sha256(data).hexdigest() + ".tar"
            else:
                assert re.fullmatch(r"[0-9a-f]{64}/layer\.tar", rel)
        assert cfg["rootfs"]["diff_ids"] == diff_ids
    if layout == "skopeo":
        links = [n for n, (i, _) in mem.items() if n.endswith("/layer.tar")]
        assert links and all(mem[n][0].issym() for n in links)
        assert all(mem[n][0].linkname.startswith("../") for n in links)
        assert not any(i.isdir() for i, _ in mem.values())
    if layout == "docker25":
        assert "oci-layout" in mem and "index.json" in mem
    if layout == "legacy":
        assert not any(n.startswith("blobs/") for n in mem)
    return manifest


def sample_image(**kw: Any) -> Image:
    """Three layers: base, a secret file, a whiteout and an opaque dir."""
    base = (
        Layer()
        .file("etc/passwd", "root:x:0:0::/root:/bin/sh\n")
        .file("etc/shadow", "root:*::0:::::\n", 0o600)
        .file("bin/busybox", b"\x7fELF", 0o755)
        .symlink("bin/sh", "busybox")
        .hardlink("bin/ls", "bin/busybox")
        .dir("var/cache/apt")
        .file("var/cache/apt/pkg.bin", b"\x00" * 10)
    )
    secret = Layer().file("/root/.npmrc", "//r/:_authToken=x\n").file("root/keep", "k")
    cleanup = Layer().whiteout("/root/.npmrc").opaque("/var/cache").file("var/cache/new", "n")
    kw = {"env": ["A=1"], "cmd": ["sh"], **kw}
    return Image([base, secret, cleanup], **kw)


# --------------------------------------------------------------------------- Layer


def test_layer_tar_is_deterministic_and_normalised() -> None:
    def build() -> bytes:
        return sample_image().layers[0].tar_bytes()

    assert build() == build()
    with tarfile.open(fileobj=io.BytesIO(build())) as tf:
        for m in tf.getmembers():
            assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "")
            assert not m.name.startswith("/")
        assert tf.getmember("etc/shadow").mode == 0o600
        assert tf.extractfile("etc/passwd").read() == b"root:x:0:0::/root:/bin/sh\n"  # type: ignore[union-attr]


def test_layer_entries_in_order_and_auto_dirs() -> None:
    layer = Layer().file("/a/b/c.txt", "x").file("a/b/d.txt", "y").dir("e").symlink("e/f", "/x")
    assert layer.names() == ["a", "a/b", "a/b/c.txt", "a/b/d.txt", "e", "e/f"]
    raw = layer_names(layer.tar_bytes())
    assert raw == ["a", "a/b", "a/b/c.txt", "a/b/d.txt", "e", "e/f"]
    with tarfile.open(fileobj=io.BytesIO(layer.tar_bytes())) as tf:
        assert tf.getmember("a").isdir()
    # the raw header carries the docker-style trailing slash on directories
    assert b"a/b/\x00" in layer.tar_bytes()
    bare = Layer(auto_dirs=False).file("a/b/c.txt", "x").whiteout("a/gone")
    assert bare.names() == ["a/b/c.txt", "a/.wh.gone"]


def test_whiteout_and_opaque_names() -> None:
    layer = Layer().whiteout("/root/.npmrc").whiteout("top").opaque("var/cache")
    assert layer.names() == [
        "root",
        "root/.wh..npmrc",
        ".wh.top",
        "var",
        "var/cache",
        "var/cache/.wh..wh..opq",
    ]
    with tarfile.open(fileobj=io.BytesIO(layer.tar_bytes())) as tf:
        wh = tf.getmember("root/.wh..npmrc")
        assert wh.isfile() and wh.size == 0


def test_special_entries_and_raw() -> None:
    ti = tarfile.TarInfo("/abs/../odd")
    ti.mtime = 12345
    ti.uname = "someone"
    layer = (
        Layer(auto_dirs=False)
        .file("bin/busybox", "x", 0o755)
        .hardlink("bin/ls", "/bin/busybox")
        .symlink("bin/sh", "../bin/busybox")
        .fifo("run/pipe")
        .chardev("dev/null", 1, 3)
        .blockdev("dev/sda", 8, 0)
        .raw(ti, b"payload")
    )
    with tarfile.open(fileobj=io.BytesIO(layer.tar_bytes())) as tf:
        assert tf.getmember("bin/ls").islnk() and tf.getmember("bin/ls").linkname == "bin/busybox"
        assert tf.getmember("bin/sh").linkname == "../bin/busybox"
        assert tf.getmember("run/pipe").isfifo()
        dev = tf.getmember("dev/null")
        assert dev.ischr() and (dev.devmajor, dev.devminor) == (1, 3)
        assert tf.getmember("dev/sda").isblk()
        odd = tf.getmember("/abs/../odd")
        assert (odd.mtime, odd.uname) == (12345, "someone")
        assert tf.extractfile(odd).read() == b"payload"  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", ["none", "gzip", "zstd"])
def test_layer_blob_compression(kind: str) -> None:
    layer = sample_image().layers[1]
    blob = layer.blob(kind)
    assert detect_compression(blob) == kind
    if kind == "zstd":
        assert blob[:4] == b"\x28\xb5\x2f\xfd"
    assert decompress(blob) == layer.tar_bytes()
    assert blob == layer.blob(kind)  # deterministic
    assert layer.diff_id() == sha256_digest(layer.tar_bytes())


# --------------------------------------------------------------------------- Image config


def test_config_fields() -> None:
    img = Image(
        [Layer().file("x", "1"), Layer().file("y", "2")],
        env=["A=1"],
        labels={"k": "v"},
        cmd=["run"],
        entrypoint=["/init"],
        architecture="arm64",
        variant="v8",
        config_extra={"User": "app"},
    )
    cfg = json.loads(img.config_bytes())
    assert cfg["architecture"] == "arm64" and cfg["variant"] == "v8" and cfg["os"] == "linux"
    assert cfg["config"] == {
        "Env": ["A=1"],
        "Cmd": ["run"],
        "Entrypoint": ["/init"],
        "Labels": {"k": "v"},
        "User": "app",
    }
    assert cfg["rootfs"] == {"type": "layers", "diff_ids": img.diff_ids()}
    assert len(cfg["history"]) == 2 and all("created_by" in h for h in cfg["history"])
    assert img.platform() == "linux/arm64/v8"
    assert Image().platform() == "linux/amd64"
    assert img.config_digest() == sha256_digest(img.config_bytes())


def test_explicit_history_is_verbatim() -> None:
    history: list[dict[str, Any]] = [
        {"created_by": "ENV A=1", "empty_layer": True},
        {"created_by": "RUN x"},
        {"created_by": "RUN y"},  # deliberately one more than there are layers
    ]
    img = Image([Layer(created_by="ignored").file("a", "b")], history=history)
    assert json.loads(img.config_bytes())["history"] == history
    auto = Image([Layer(created_by="RUN make").file("a", "b")])
    assert json.loads(auto.config_bytes())["history"][0]["created_by"] == "RUN make"


def test_layer_compression_override_validated() -> None:
    img = sample_image(layer_compression=["none", "gzip"])
    with pytest.raises(ValueError):
        img.manifest_dict()
    with pytest.raises(ValueError):
        sample_image(compression="zstd").manifest_dict(docker=True)


# --------------------------------------------------------------------------- OCI


@pytest.mark.parametrize(
    "kw",
    [
        {"compression": "none"},
        {"compression": "gzip"},
        {"compression": "zstd"},
        {"layer_compression": ["none", "gzip", "zstd"]},
        {"manifest_type": "docker"},
        {"annotations": {"org.opencontainers.image.source": "https://example.invalid/x"}},
    ],
)
def test_oci_layout_digests_recompute(tmp_path: Path, kw: dict[str, Any]) -> None:
    img = sample_image(**kw)
    out = write_oci_layout(tmp_path / "l", img, tag="v1", extra_tags=["latest"])
    configs = check_oci_layout(out)
    assert len(configs) == 2 and configs[0]["rootfs"]["diff_ids"] == img.diff_ids()
    index = json.loads((out / "index.json").read_text())
    refs = [d["annotations"]["org.opencontainers.image.ref.name"] for d in index["manifests"]]
    assert refs == ["v1", "latest"]
    digest = index["manifests"][0]["digest"]
    assert digest == img.manifest_digest()
    if "annotations" in kw:
        assert json.loads(img.manifest_bytes())["annotations"] == kw["annotations"]


def test_oci_layout_untagged(tmp_path: Path) -> None:
    out = write_oci_layout(tmp_path / "l", sample_image(), tag=None)
    index = json.loads((out / "index.json").read_text())
    assert len(index["manifests"]) == 1 and "annotations" not in index["manifests"][0]


def test_index_attestations_and_nesting(tmp_path: Path) -> None:
    amd = sample_image()
    arm = sample_image(architecture="arm64", variant="v8")
    inner = Index([Image([Layer().file("s390", "x")], architecture="s390x")])
    idx = Index([amd, arm, inner], attestations=True, annotations={"a": "b"})
    out = write_oci_layout(tmp_path / "l", idx, image_name="docker.io/x/y")
    configs = check_oci_layout(out)
    assert sorted(c["architecture"] for c in configs) == ["amd64", "arm64", "s390x"]
    top = json.loads((out / "index.json").read_text())["manifests"][0]
    assert top["mediaType"] == MT.OCI_INDEX
    assert top["annotations"]["io.containerd.image.name"] == "docker.io/x/y:latest"
    body = json.loads((out / "blobs/sha256" / top["digest"][7:]).read_text())
    assert body["annotations"] == {"a": "b"}
    plats = [d.get("platform", {}).get("architecture") for d in body["manifests"]]
    assert plats == ["amd64", "arm64", None, "unknown", "unknown"]
    assert body["manifests"][1]["platform"]["variant"] == "v8"
    assert body["manifests"][2]["mediaType"] == MT.OCI_INDEX
    for att, image in zip(body["manifests"][3:], body["manifests"][:2], strict=True):
        assert att["platform"] == {"architecture": "unknown", "os": "unknown"}
        assert att["annotations"] == {
            "vnd.docker.reference.digest": image["digest"],
            "vnd.docker.reference.type": "attestation-manifest",
        }
    assert image["digest"] == arm.manifest_digest()


def test_attestation_provenance_predicate(tmp_path: Path) -> None:
    token = fake_token("npm")
    prov = {"invocation": {"parameters": {"args": {"build-arg:NPM_TOKEN": token}}}}
    out = write_oci_layout(tmp_path / "l", Index([sample_image(provenance=prov)], True))
    found = [p for p in (out / "blobs/sha256").iterdir() if token.encode() in p.read_bytes()]
    assert len(found) == 1
    statement = json.loads(found[0].read_text())
    assert statement["predicate"] == prov
    assert statement["subject"][0]["digest"]["sha256"] == sample_image().manifest_digest()[7:]


def test_docker_list_uses_schema2(tmp_path: Path) -> None:
    idx = Index([sample_image(), sample_image(architecture="arm64")], docker_list=True)
    out = write_oci_layout(tmp_path / "l", idx)
    check_oci_layout(out)
    top = json.loads((out / "index.json").read_text())["manifests"][0]
    assert top["mediaType"] == MT.DOCKER_LIST
    body = json.loads((out / "blobs/sha256" / top["digest"][7:]).read_text())
    for d in body["manifests"]:
        assert d["mediaType"] == MT.DOCKER_MANIFEST
        m = json.loads((out / "blobs/sha256" / d["digest"][7:]).read_text())
        assert {lay["mediaType"] for lay in m["layers"]} == {MT.DOCKER_LAYER_GZIP}


def test_inline_index(tmp_path: Path) -> None:
    idx = Index([sample_image(), sample_image(architecture="arm64")], attestations=True)
    out = write_oci_layout(tmp_path / "l", idx, inline_index=True)
    index = json.loads((out / "index.json").read_text())
    assert len(index["manifests"]) == 4
    assert len(check_oci_layout(out)) == 2


def test_oci_archive_matches_layout(tmp_path: Path) -> None:
    img = sample_image()
    layout = write_oci_layout(tmp_path / "l", img)
    archive = write_oci_archive(tmp_path / "a.tar", img)
    mem = members(archive)
    assert "manifest.json" not in mem
    files = [n for n, (i, _) in mem.items() if i.isfile()]
    assert files[-2:] == ["oci-layout", "index.json"]
    for name in files:
        assert mem[name][1] == (layout / name).read_bytes()
    assert sorted(files) == sorted(
        str(p.relative_to(layout)) for p in layout.rglob("*") if p.is_file()
    )


def test_dir_layout(tmp_path: Path) -> None:
    idx = Index([sample_image(), sample_image(architecture="arm64")], docker_list=True)
    out = write_dir_layout(tmp_path / "d", idx)
    top = json.loads((out / "manifest.json").read_text())
    assert top["mediaType"] == MT.DOCKER_LIST
    for d in top["manifests"]:
        assert (out / f"{d['digest'][7:]}.manifest.json").is_file()


# --------------------------------------------------------------------------- docker save


@pytest.mark.parametrize("gzip_blobs", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_docker_archive_layouts(tmp_path: Path, layout: str, gzip_blobs: bool) -> None:
    one = sample_image()
    two = Image([one.layers[0], Layer().file("app/x", "y")], architecture="arm64")
    untagged = Image([Layer().file("z", "z")])
    images = [(one, ["foo:latest", "foo:v1"]), (two, ["reg.example:5000/a/b:2"]), (untagged, [])]
    path = write_docker_archive(tmp_path / "x.tar", images, layout=layout, gzip_blobs=gzip_blobs)
    manifest = check_docker_archive(path, layout, gzip_blobs)
    assert [m["RepoTags"] for m in manifest][2] is None
    tags = manifest[0]["RepoTags"]
    if layout == "skopeo":
        assert tags == ["docker.io/library/foo:latest", "docker.io/library/foo:v1"]
    else:
        assert tags == ["foo:latest", "foo:v1"]
    mem = members(path)
    repos = json.loads(resolve(mem, "repositories"))
    assert set(repos[tags[0].rsplit(":", 1)[0]]) == {"latest", "v1"}
    if layout == "docker25":
        check_oci_layout_from_tar(tmp_path, mem)
        index = json.loads(resolve(mem, "index.json"))
        names = [
            d.get("annotations", {}).get("io.containerd.image.name") for d in index["manifests"]
        ]
        assert names == [
            "docker.io/library/foo:latest",
            "docker.io/library/foo:v1",
            "reg.example:5000/a/b:2",
            None,
        ]
    else:
        top = repos[tags[0].rsplit(":", 1)[0]]["latest"]
        assert f"{top}/json" in mem


def check_oci_layout_from_tar(tmp_path: Path, mem: dict[str, Any]) -> None:
    out = tmp_path / "unpacked"
    for name, (info, data) in mem.items():
        if info.isfile():
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).write_bytes(data)
    assert len(check_oci_layout(out)) == 4


def test_bare_image_gets_default_tag(tmp_path: Path) -> None:
    path = write_docker_archive(tmp_path / "x.tar", sample_image())
    manifest = json.loads(resolve(members(path), "manifest.json"))
    assert manifest[0]["RepoTags"] == ["leakscan-fixture:latest"]
    with pytest.raises(ValueError):
        write_docker_archive(tmp_path / "y.tar", sample_image(), layout="nope")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_docker_archive_is_deterministic(tmp_path: Path, layout: str) -> None:
    a = write_docker_archive(tmp_path / "a.tar", sample_image(), layout=layout, gzip_blobs=True)
    b = write_docker_archive(tmp_path / "b.tar", sample_image(), layout=layout, gzip_blobs=True)
    assert a.read_bytes() == b.read_bytes()


# --------------------------------------------------------------------------- fake tokens


@pytest.mark.parametrize(
    ("kind", "pattern"),
    [
        ("npm", r"npm_[A-Za-z0-9]{36}"),
        ("github", r"ghp_[A-Za-z0-9]{36}"),
        ("github_fine", r"github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}"),
        ("gitlab", r"glpat-[A-Za-z0-9_-]{20}"),
        ("slack", r"xoxb-\d{11}-\d{12}-[A-Za-z0-9]{24}"),
        ("aws", r"AKIA[A-Z2-7]{16}"),
        ("aws_secret", r"[A-Za-z0-9/+]{40}"),
        ("private_key", r"-----BEGIN OPENSSH PRIVATE KEY-----\n[A-Za-z0-9+/\n]+\n-----END .*\n"),
    ],
)
def test_fake_token_formats(kind: str, pattern: str) -> None:
    tokens = {fake_token(kind) for _ in range(5)}
    assert len(tokens) == 5  # random, never a constant
    assert all(re.fullmatch(pattern, t) for t in tokens)
    assert fake_token(kind, random.Random(7)) == fake_token(kind, random.Random(7))


def test_fake_token_unknown_kind() -> None:
    with pytest.raises(ValueError):
        fake_token("nope")


# --------------------------------------------------------------------------- fixtures


def _load_make_fixtures() -> Any:
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_fixtures_are_reproducible(tmp_path: Path) -> None:
    expected = _load_make_fixtures().generate(tmp_path)
    for name in ("leaky-npm.tar", "clean.tar", "expected.json"):
        assert (tmp_path / name).read_bytes() == (FIXTURES / name).read_bytes(), name
    fresh = check_oci_layout(tmp_path / "multiarch-oci")
    committed = check_oci_layout(FIXTURES / "multiarch-oci")
    assert [c["rootfs"] for c in fresh] == [c["rootfs"] for c in committed]
    total = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    assert total < 1_000_000

    npm = next(s for s in expected["leaky-npm.tar"]["secrets"] if s["where"] == "layer")
    assert re.fullmatch(r"npm_[A-Za-z0-9]{36}", npm["value"])
    mem = members(FIXTURES / "leaky-npm.tar")
    manifest = json.loads(resolve(mem, "manifest.json"))[0]
    layers = [resolve(mem, rel) for rel in manifest["Layers"]]
    with tarfile.open(fileobj=io.BytesIO(layers[npm["layer"]])) as tf:
        assert npm["value"] in tf.extractfile("root/.npmrc").read().decode()  # type: ignore[union-attr]
    assert "root/.wh..npmrc" in layer_names(layers[npm["deleted_in_layer"]])
    cfg = json.loads(resolve(mem, manifest["Config"]))
    assert npm["value"] in cfg["history"][3]["created_by"]
    assert sum(1 for h in cfg["history"] if not h.get("empty_layer")) == len(layers)


# --------------------------------------------------------------------------- real tools


def test_skopeo_reads_oci_layout_and_archive(tmp_path: Path) -> None:
    img = sample_image()
    layout = write_oci_layout(tmp_path / "l", img)
    assert skopeo("inspect", "--raw", f"oci:{layout}:latest").encode() == img.manifest_bytes()
    cfg = skopeo("inspect", "--config", "--raw", f"oci:{layout}:latest")
    assert cfg.encode() == img.config_bytes()
    archive = write_oci_archive(tmp_path / "a.tar", img)
    assert skopeo("inspect", "--raw", f"oci-archive:{archive}:latest").encode() == (
        img.manifest_bytes()
    )
    copy(f"oci-archive:{archive}:latest", f"oci:{tmp_path / 'copy'}:t")
    assert check_oci_layout(tmp_path / "copy")[0]["rootfs"]["diff_ids"] == img.diff_ids()


@pytest.mark.parametrize("gzip_blobs", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_skopeo_reads_docker_archive(tmp_path: Path, layout: str, gzip_blobs: bool) -> None:
    one = sample_image()
    two = Image([Layer().file("app/x", "y")], cmd=["x"])
    path = write_docker_archive(
        tmp_path / "x.tar", [(one, ["foo:latest"]), (two, ["bar:1"])], layout, gzip_blobs
    )
    for ref, img in ((f"{path}:foo:latest", one), (f"{path}:@1", two)):
        raw = skopeo("inspect", "--config", "--raw", f"docker-archive:{ref}")
        assert raw.encode() == img.config_bytes()
    dest = tmp_path / "oci"
    copy(f"docker-archive:{path}:foo:latest", f"oci:{dest}:t")
    assert check_oci_layout(dest)[0]["rootfs"]["diff_ids"] == one.diff_ids()


def test_skopeo_decompresses_zstd(tmp_path: Path) -> None:
    img = sample_image(layer_compression=["zstd", "gzip", "zstd"])
    layout = write_oci_layout(tmp_path / "l", img)
    copy(f"oci:{layout}:latest", f"dir:{tmp_path / 'd'}", "--dest-decompress")
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert [lay["digest"] for lay in manifest["layers"]] == img.diff_ids()


def test_skopeo_multiarch_index(tmp_path: Path) -> None:
    amd = sample_image()
    arm = sample_image(architecture="arm64", variant="v8", env=["ARM=1"])
    layout = write_oci_layout(tmp_path / "l", Index([amd, arm], attestations=True))
    raw = json.loads(skopeo("inspect", "--raw", f"oci:{layout}:latest"))
    assert raw["mediaType"] == MT.OCI_INDEX and len(raw["manifests"]) == 4
    cfg = json.loads(
        skopeo(
            "--override-arch", "arm64", "--override-variant", "v8",
            "inspect", "--config", f"oci:{layout}:latest",
        )
    )  # fmt: skip
    assert cfg["config"]["Env"] == ["ARM=1"]
    copy(f"oci:{layout}:latest", f"oci:{tmp_path / 'all'}:t", "--all")
    assert len(check_oci_layout(tmp_path / "all")) == 2


def test_skopeo_reads_docker_manifest_list(tmp_path: Path) -> None:
    # skopeo's oci: transport ignores non-OCI descriptors in index.json, so use dir:
    amd = sample_image(env=["AMD=1"])
    idx = Index([amd, sample_image(architecture="arm64")], docker_list=True)
    d = write_dir_layout(tmp_path / "d", idx)
    raw = json.loads(skopeo("inspect", "--raw", f"dir:{d}"))
    assert raw["mediaType"] == MT.DOCKER_LIST
    copy(f"dir:{d}", f"oci:{tmp_path / 'all'}:t", "--all")
    copy(f"dir:{d}", f"docker-archive:{tmp_path / 'x.tar'}:x:y")
    cfg = json.loads(skopeo("inspect", "--config", f"docker-archive:{tmp_path / 'x.tar'}"))
    assert cfg["config"]["Env"] == ["AMD=1"]


def test_umoci_applies_whiteouts(tmp_path: Path) -> None:
    layout = write_oci_layout(tmp_path / "l", sample_image())
    bundle = tmp_path / "bundle"
    run(tool("umoci"), "unpack", "--image", f"{layout}:latest", bundle)
    rootfs = bundle / "rootfs"
    got = sorted(str(p.relative_to(rootfs)) for p in rootfs.rglob("*"))
    assert got == [
        "bin",
        "bin/busybox",
        "bin/ls",
        "bin/sh",
        "etc",
        "etc/passwd",
        "etc/shadow",
        "root",
        "root/keep",
        "var",
        "var/cache",
        "var/cache/new",
    ]
    assert (rootfs / "bin/sh").is_symlink() and os.readlink(rootfs / "bin/sh") == "busybox"
    assert (rootfs / "bin/ls").stat().st_ino == (rootfs / "bin/busybox").stat().st_ino


def test_skopeo_reads_committed_fixtures() -> None:
    for name in ("leaky-npm.tar", "clean.tar"):
        cfg = json.loads(skopeo("inspect", "--config", f"docker-archive:{FIXTURES / name}"))
        assert cfg["os"] == "linux"
    raw = json.loads(skopeo("inspect", "--raw", f"oci:{FIXTURES / 'multiarch-oci'}:latest"))
    assert {m["platform"]["architecture"] for m in raw["manifests"]} == {
        "amd64",
        "arm64",
        "unknown",
    }
