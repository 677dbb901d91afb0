"""The hostile corpus of issue 5: broken and crafted images. Each ends with 0/1/2 in time
and memory, one line per error naming what and where, and a valid JSON report."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest
import zstandard
from hostile_kit import KNOWN_SECRETS
from imagebuilder import Image, Layer, fake_token, write_docker_archive, write_oci_layout

# --- building blocks -------------------------------------------------------------------------


def _oci(tmp: Path, layers: list[Layer], **kw: Any) -> Path:
    return write_oci_layout(tmp / "layout", Image(layers=layers, **kw), tag="latest")


def _manifest(layout: Path) -> tuple[dict[str, Any], Path]:
    index = json.loads((layout / "index.json").read_text())
    path = layout / "blobs/sha256" / index["manifests"][0]["digest"].split(":")[1]
    return json.loads(path.read_text()), path


def _blob(layout: Path, digest: str) -> Path:
    return layout / "blobs/sha256" / digest.split(":")[1]


def _rewrite_manifest(layout: Path, manifest: dict[str, Any]) -> None:
    """Store a changed manifest under its new digest and point index.json at it."""
    data = json.dumps(manifest).encode()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    _blob(layout, digest).write_bytes(data)
    index = json.loads((layout / "index.json").read_text())
    index["manifests"][0].update(digest=digest, size=len(data))
    (layout / "index.json").write_text(json.dumps(index))


def _replace_layer(
    layout: Path, blob: bytes, index: int = 0, fix_digest: bool = True, tar: bytes | None = None
) -> None:
    """Put ``blob`` in as layer ``index``. With ``fix_digest`` the manifest follows (and the
    config's diff_id too, when the uncompressed ``tar`` is given)."""
    manifest, _ = _manifest(layout)
    desc = manifest["layers"][index]
    if not fix_digest:
        _blob(layout, desc["digest"]).write_bytes(blob)
        return
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    _blob(layout, digest).write_bytes(blob)
    desc.update(digest=digest, size=len(blob))
    if tar is not None:
        config = json.loads(_blob(layout, manifest["config"]["digest"]).read_text())
        config["rootfs"]["diff_ids"][index] = "sha256:" + hashlib.sha256(tar).hexdigest()
        data = json.dumps(config).encode()
        config_digest = "sha256:" + hashlib.sha256(data).hexdigest()
        _blob(layout, config_digest).write_bytes(data)
        manifest["config"].update(digest=config_digest, size=len(data))
    _rewrite_manifest(layout, manifest)


def _tar(
    members: list[tuple[tarfile.TarInfo, bytes | None]], fmt: int = tarfile.PAX_FORMAT
) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


TOKEN = fake_token("github")
KNOWN_SECRETS.add(TOKEN)
LEAK = Layer().file("app/.env", f"GITHUB_TOKEN={TOKEN}\n")


def _error_lines(outcome: Any) -> list[str]:
    return [line for line in outcome.err.splitlines() if line.startswith("leakscan: error:")]


# --- broken streams --------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_truncated_layer_stream(compression: str, tmp_path: Path, hostile: Any) -> None:
    big = Layer().file("data/blob.bin", os.urandom(300_000))
    layout = _oci(tmp_path, [LEAK, big], compression=compression)
    manifest, _ = _manifest(layout)
    path = _blob(layout, manifest["layers"][1]["digest"])
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    result = hostile(f"oci:{layout}")
    assert result.code == 2
    assert any("layer 1" in line for line in _error_lines(result))
    # the intact layer is still scanned
    (image,) = result.report["images"]
    assert [f["location"]["path"] for f in image["findings"]] == ["/app/.env"]
    assert TOKEN not in result.err + result.out


def test_corrupt_tar_header_checksum(tmp_path: Path, hostile: Any) -> None:
    data = bytearray(_tar([_file("a.txt", b"x" * 100), _file("b.txt", b"y" * 100)]))
    # the second header: break its checksum field
    second = 512 + 512 if data[512:1024].strip(b"\0") else 1024
    data[second + 148 : second + 156] = b"9999999\0"
    layout = _oci(tmp_path, [LEAK, Layer().file("c", "c")], compression="none")
    _replace_layer(layout, bytes(data), index=1)
    result = hostile(f"oci:{layout}")
    assert result.code == 2 and any("layer 1" in line for line in _error_lines(result))


def test_layer_that_is_not_a_tar(tmp_path: Path, hostile: Any) -> None:
    layout = _oci(tmp_path, [LEAK, Layer().file("c", "c")], compression="none")
    _replace_layer(layout, os.urandom(5000), index=1)
    result = hostile(f"oci:{layout}")
    assert result.code == 2 and any("layer 1" in line for line in _error_lines(result))


# --- broken JSON -----------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["index", "manifest", "config"])
@pytest.mark.parametrize("junk", [b"{not json", b"[]", b'{"manifests": 5}', b"\xff\xfe\x00"])
def test_bad_json(which: str, junk: bytes, tmp_path: Path, hostile: Any) -> None:
    layout = _oci(tmp_path, [LEAK])
    manifest, manifest_path = _manifest(layout)
    if which == "index":
        (layout / "index.json").write_bytes(junk)
    elif which == "manifest":
        manifest_path.write_bytes(junk)
    else:
        _blob(layout, manifest["config"]["digest"]).write_bytes(junk)
    result = hostile(f"oci:{layout}")
    assert result.code == 2
    (line,) = _error_lines(result)
    assert str(layout) in line


def test_bad_json_in_docker_archive(tmp_path: Path, hostile: Any) -> None:
    path = write_docker_archive(tmp_path / "a.tar", Image(layers=[LEAK]))
    with tarfile.open(path) as t:
        members = [(m, t.extractfile(m).read() if m.isfile() else None) for m in t.getmembers()]
    out = tmp_path / "bad.tar"
    with tarfile.open(out, "w") as t:
        for info, data in members:
            if info.name == "manifest.json":
                data = b'[{"Config": 5, "Layers": "x"}]'
                info.size = len(data)
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    result = hostile(f"docker-archive:{out}")
    assert result.code == 2 and "manifest.json" in _error_lines(result)[0]


def test_missing_blob(tmp_path: Path, hostile: Any) -> None:
    layout = _oci(tmp_path, [LEAK])
    manifest, _ = _manifest(layout)
    _blob(layout, manifest["config"]["digest"]).unlink()
    result = hostile(f"oci:{layout}")
    assert result.code == 2 and "is missing" in _error_lines(result)[0]


def test_config_digest_mismatch(tmp_path: Path, hostile: Any) -> None:
    layout = _oci(tmp_path, [LEAK])
    manifest, _ = _manifest(layout)
    config = _blob(layout, manifest["config"]["digest"])
    config.write_bytes(config.read_bytes().replace(b"amd64", b"arm64"))
    result = hostile(f"oci:{layout}")
    assert result.code == 2 and "does not match its digest" in _error_lines(result)[0]


def test_layer_digest_mismatch(tmp_path: Path, hostile: Any) -> None:
    layout = _oci(tmp_path, [LEAK, Layer().file("b", "b")])
    _replace_layer(layout, Layer().file("b", "other").blob("gzip"), index=1, fix_digest=False)
    result = hostile(f"oci:{layout}")
    assert result.code == 2
    assert any("layer 1" in line and "digest" in line for line in _error_lines(result))


# --- escapes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../../etc/passwd", "/etc/passwd", "blobs/../../x"])
def test_blob_names_outside_the_image(name: str, tmp_path: Path, hostile: Any) -> None:
    path = write_docker_archive(tmp_path / "a.tar", Image(layers=[LEAK]))
    with tarfile.open(path) as t:
        members = [(m, t.extractfile(m).read() if m.isfile() else None) for m in t.getmembers()]
    out = tmp_path / "escape.tar"
    with tarfile.open(out, "w") as t:
        for info, data in members:
            if info.name == "manifest.json":
                doc = json.loads(data or b"")
                doc[0]["Layers"][0] = name
                data = json.dumps(doc).encode()
                info.size = len(data)
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    result = hostile(f"docker-archive:{out}")
    assert result.code == 2
    line = _error_lines(result)[0]
    assert "outside" in line or "absolute" in line or "missing" in line


@pytest.mark.parametrize("target", ["/etc/passwd", "../../../../etc/passwd", "loop"])
def test_in_archive_symlinks_outside_or_looping(target: str, tmp_path: Path, hostile: Any) -> None:
    path = write_docker_archive(tmp_path / "a.tar", Image(layers=[LEAK]), layout="skopeo")
    with tarfile.open(path) as t:
        members = [(m, t.extractfile(m).read() if m.isfile() else None) for m in t.getmembers()]
        manifest = json.loads(t.extractfile("manifest.json").read())
    layer_name = manifest[0]["Layers"][0]
    out = tmp_path / "links.tar"
    with tarfile.open(out, "w") as t:
        for info, data in members:
            if info.name == layer_name:
                info = tarfile.TarInfo(layer_name)
                info.type = tarfile.SYMTYPE
                info.linkname = layer_name if target == "loop" else target
                data = None
            elif info.name == "manifest.json":
                pass
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    result = hostile(f"docker-archive:{out}")
    assert result.code == 2
    line = _error_lines(result)[0]
    assert "outside" in line or "absolute" in line or "loop" in line


def test_oci_blob_symlinked_outside(tmp_path: Path, hostile: Any) -> None:
    secret_file = tmp_path / "host-secret.txt"
    secret_file.write_text(f"GITHUB_TOKEN={TOKEN}\n")
    layout = _oci(tmp_path, [LEAK])
    manifest, _ = _manifest(layout)
    blob = _blob(layout, manifest["layers"][0]["digest"])
    blob.unlink()
    blob.symlink_to(secret_file)
    result = hostile(f"oci:{layout}")
    assert result.code == 2 and "outside" in _error_lines(result)[0]
    assert result.report["images"] == [] or all(not i["findings"] for i in result.report["images"])


# --- bombs -----------------------------------------------------------------------------------


def _deflate_zeros(n: int) -> bytes:
    comp = zlib_compressobj()
    block = b"\0" * (1 << 20)
    parts = [comp.compress(block) for _ in range(n >> 20)]
    parts.append(comp.flush())
    return b"".join(parts)


def zlib_compressobj() -> Any:
    import zlib

    return zlib.compressobj(9, zlib.DEFLATED, 31)


def test_layer_gzip_bomb_after_the_tar(tmp_path: Path, hostile: Any) -> None:
    # a small tar, then 4 GiB of zeros: gzip members concatenate, so one 1 MiB member
    # repeated makes the bomb without compressing 4 GiB here
    zeros = gzip.compress(b"\0" * (1 << 20), 9)
    blob = gzip.compress(LEAK.tar_bytes()) + zeros * 4096
    layout = _oci(tmp_path, [Layer().file("x", "x")])
    _replace_layer(layout, blob)
    result = hostile(f"oci:{layout}")
    assert result.code == 2
    assert any("after the end of its tar" in line for line in _error_lines(result))
    (image,) = result.report["images"]
    assert [f["location"]["path"] for f in image["findings"]] == ["/app/.env"]


def test_layer_zstd_bomb_inside_a_file(tmp_path: Path, hostile: Any) -> None:
    # a tar whose one file claims 8 GiB, all zeros: zstd frames concatenate likewise
    header = tarfile.TarInfo("data/zeros.img")
    header.size = 8 << 30
    head = header.tobuf(tarfile.GNU_FORMAT)
    cctx = zstandard.ZstdCompressor(level=3)
    frame = cctx.compress(b"\0" * (64 << 20))
    members = LEAK.tar_bytes()
    while members.endswith(b"\0" * 512):  # drop the end-of-archive blocks and padding
        members = members[:-512]
    blob = cctx.compress(members + head) + frame * 128
    layout = _oci(tmp_path, [Layer().file("x", "x")], compression="zstd")
    _replace_layer(layout, blob)
    result = hostile(f"oci:{layout}")
    assert result.code == 2
    assert any("decompression bomb" in line for line in _error_lines(result))
    (image,) = result.report["images"]
    assert [f["location"]["path"] for f in image["findings"]] == ["/app/.env"]


def test_file_that_is_a_gzip_bomb(tmp_path: Path, hostile: Any) -> None:
    layer = (
        Layer()
        .file("data/bomb.gz", _deflate_zeros(1 << 30))
        .file("app/.env", f"GITHUB_TOKEN={TOKEN}\n")
    )
    layout = _oci(tmp_path, [layer], compression="none")
    result = hostile(f"oci:{layout}")
    assert result.code == 1
    (image,) = result.report["images"]
    assert any("ratio" in s["reason"] for s in image["skipped"])


def test_nested_gzip_of_gzip(tmp_path: Path, hostile: Any) -> None:
    data = b"\0" * (64 << 20)
    for _ in range(3):
        data = gzip.compress(data, 9)
    layout = _oci(tmp_path, [Layer().file("data/nested.gz", data), LEAK], compression="none")
    result = hostile(f"oci:{layout}")
    assert result.code == 1


# --- odd tar content -------------------------------------------------------------------------


def test_huge_declared_size(tmp_path: Path, hostile: Any) -> None:
    info = tarfile.TarInfo("big.bin")
    data = bytearray(_tar([(info, b"x" * 1024)], fmt=tarfile.GNU_FORMAT))
    # claim 1 PB in the GNU base-256 size field
    data[124:136] = b"\x80" + (10**15).to_bytes(11, "big")
    import tarfile as tf

    chksum = tf.calc_chksums(bytes(data[:512]))[0]
    data[148:156] = b"%06o\0 " % chksum
    layout = _oci(tmp_path, [LEAK, Layer().file("c", "c")], compression="none")
    _replace_layer(layout, bytes(data), index=1)
    result = hostile(f"oci:{layout}")
    assert result.code == 2


def test_many_entries(tmp_path: Path, hostile: Any) -> None:
    members = [_file(f"d{i // 1000}/f{i}", b"") for i in range(200_000)]
    layout = _oci(tmp_path, [LEAK, Layer().file("c", "c")], compression="gzip")
    tar = _tar(members, tarfile.GNU_FORMAT)
    _replace_layer(layout, gzip.compress(tar, 1), index=1, tar=tar)
    result = hostile(f"oci:{layout}")
    assert result.code == 1


def test_long_pax_names_and_non_utf8(tmp_path: Path, hostile: Any) -> None:
    long_name = "d/" + "n" * 65536 + ".env"
    odd = tarfile.TarInfo("caf\udce9/.env")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        info = tarfile.TarInfo(long_name)
        data = f"GITHUB_TOKEN={TOKEN}\n".encode()
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    gnu = io.BytesIO()
    with tarfile.open(fileobj=gnu, mode="w", format=tarfile.GNU_FORMAT, encoding="utf-8",
                      errors="surrogateescape") as t:  # fmt: skip
        odd.size = len(data)
        t.addfile(odd, io.BytesIO(data))
    layout = _oci(tmp_path, [Layer().file("a", "a"), Layer().file("b", "b")], compression="none")
    _replace_layer(layout, buf.getvalue(), index=0, tar=buf.getvalue())
    _replace_layer(layout, gnu.getvalue(), index=1, tar=gnu.getvalue())
    result = hostile(f"oci:{layout}")
    assert result.code == 1
    paths = {f["location"]["path"] for f in result.report["images"][0]["findings"]}
    assert "/" + long_name in paths and "/caf\\xe9/.env" in paths


def test_devices_fifos_sockets_sparse(tmp_path: Path, hostile: Any) -> None:
    layer = Layer().fifo("run/fifo").chardev("dev/null", 1, 3).blockdev("dev/sda", 8, 0)
    sock = tarfile.TarInfo("run/sock")
    sock.type = b"s"  # not a tar type tarfile knows: read as a regular file or refused
    layer.raw(sock, None)
    sparse = tarfile.TarInfo("var/sparse.img")
    sparse.type = tarfile.GNUTYPE_SPARSE
    layer.raw(sparse, b"")
    layout = _oci(tmp_path, [LEAK, layer], compression="none")
    result = hostile(f"oci:{layout}")
    assert result.code in (1, 2)
    (image,) = result.report["images"]
    assert any(f["location"]["path"] == "/app/.env" for f in image["findings"])


def test_same_path_twice_and_whiteout_edges(tmp_path: Path, hostile: Any) -> None:
    other = fake_token("github")
    KNOWN_SECRETS.add(other)
    twice = Layer().file("app/x.env", f"T={other}\n").file("app/x.env", "T=none\n")
    edges = Layer(auto_dirs=False)
    for name in (".wh.", "app/.wh.", ".wh..wh..opq", "never/existed/.wh.ghost"):
        edges.raw(tarfile.TarInfo(name), b"")
    layout = _oci(tmp_path, [LEAK, twice, edges])
    result = hostile(f"oci:{layout}")
    assert result.code == 1
    statuses = {
        f["location"]["path"]: (f["location"]["status"], f["location"]["removed_in_layer"])
        for f in result.report["images"][0]["findings"]
        if f["location"]["kind"] == "file"
    }
    # the opaque marker at the root hides everything below it
    assert statuses == {"/app/.env": ("deleted", 2), "/app/x.env": ("overwritten", 1)}


# --- odd image structure ---------------------------------------------------------------------


@pytest.mark.parametrize("delta", [-1, 2])
def test_history_longer_or_shorter(delta: int, tmp_path: Path, hostile: Any) -> None:
    history = [{"created_by": f"STEP {i}"} for i in range(2 + delta)]
    layout = _oci(tmp_path, [LEAK, Layer().file("b", "b")], history=history)
    result = hostile(f"oci:{layout}")
    assert result.code == 2 and "not paired" in _error_lines(result)[0]


def test_no_history_and_no_layers(tmp_path: Path, hostile: Any) -> None:
    img = Image(layers=[], history=[])
    img.extra["history"] = None
    layout = write_oci_layout(tmp_path / "empty", img)
    result = hostile(f"oci:{layout}")
    assert result.code == 0
    (image,) = result.report["images"]
    assert image["layers"] == [] and image["history"] == []


def test_same_layer_twice(tmp_path: Path, hostile: Any) -> None:
    layout = _oci(tmp_path, [LEAK, Layer().file("b", "b")])
    manifest, _ = _manifest(layout)
    manifest["layers"][1] = manifest["layers"][0]
    config_path = _blob(layout, manifest["config"]["digest"])
    config = json.loads(config_path.read_text())
    config["rootfs"]["diff_ids"][1] = config["rootfs"]["diff_ids"][0]
    data = json.dumps(config).encode()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    _blob(layout, digest).write_bytes(data)
    manifest["config"].update(digest=digest, size=len(data))
    _rewrite_manifest(layout, manifest)
    result = hostile(f"oci:{layout}")
    assert result.code == 1
    locations = [f["location"] for f in result.report["images"][0]["findings"]]
    found = [(loc["layer_index"], loc["status"]) for loc in locations if loc["kind"] == "file"]
    assert sorted(found) == [(0, "present"), (1, "present")]


def test_256_layers(tmp_path: Path, hostile: Any) -> None:
    layers = [Layer().file(f"l{i}/f", f"{i}") for i in range(255)] + [LEAK]
    layout = _oci(tmp_path, layers, compression="none")
    result = hostile(f"oci:{layout}")
    assert result.code == 1
    assert len(result.report["images"][0]["layers"]) == 256
