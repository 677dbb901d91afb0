"""Archives inside layers, end to end: members reported as OUTER!/INNER with the outer
file's layer and status; budgets skip what they stop and the rest is still scanned."""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
import zlib
from pathlib import Path

from clirun import run_leakscan
from helpers import file_findings, only_image, scan_ref, write
from imagebuilder import Image, Layer, fake_token

from leakscan.detectors import Detectors
from leakscan.layers.archives import ArchiveLimits


def _jar(entries: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in entries.items():
            z.writestr(name, text)
    return buf.getvalue()


def _targz(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_members_of_archives_in_layers(tmp_path: Path, detectors: Detectors) -> None:
    t1, t2, t3 = (fake_token("github") for _ in range(3))
    jar = _jar({"BOOT-INF/classes/application.properties": f"github.token={t1}\n"})
    bundle = _targz({"lib/inner.jar": _jar({"META-INF/creds.properties": f"token={t2}\n"})})
    logs = gzip.compress(f"started with GITHUB_TOKEN={t3}\n".encode())
    base = Layer().file("app/lib/app.jar", jar).file("srv/bundle.tar.gz", bundle)
    base.file("var/log/app.log.gz", logs)
    later = Layer().whiteout("srv/bundle.tar.gz")
    image = only_image(scan_ref(write("oci-dir", Image(layers=[base, later]), tmp_path), detectors))
    got = {
        (f.location.path, f.location.status, f.location.layer_index) for f in file_findings(image)
    }
    assert got == {
        ("/app/lib/app.jar!/BOOT-INF/classes/application.properties", "present", 0),
        ("/srv/bundle.tar.gz!/lib/inner.jar!/META-INF/creds.properties", "deleted", 0),
        ("/var/log/app.log.gz!/app.log", "present", 0),
    }
    assert image.skipped == ()


def test_depth_limit_is_a_skip_not_an_error(tmp_path: Path, detectors: Detectors) -> None:
    token = fake_token("github")
    deep = _jar({"a.properties": f"token={token}\n"})
    for level in range(3):
        deep = _nest(deep, level)
    layer = Layer().file("app/deep.jar", deep)
    ref = write("oci-dir", Image(layers=[layer]), tmp_path)
    shallow = only_image(scan_ref(ref, detectors, archives=ArchiveLimits(max_depth=2)))
    assert file_findings(shallow) == []
    assert any("depth" in s.message for s in shallow.skipped)
    full = only_image(scan_ref(ref, detectors, archives=ArchiveLimits(max_depth=5)))
    assert len(file_findings(full)) == 1 and full.skipped == ()


def _nest(inner: bytes, level: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"level{level}.jar", inner)
    return buf.getvalue()


def _gzip_bomb(expanded: int) -> bytes:
    # deflate of zeros, built incrementally so the expanded bytes are never held
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"\0" * (1 << 20)
    parts = [comp.compress(block) for _ in range(expanded >> 20)]
    parts.append(comp.flush())
    return b"".join(parts)


def test_bomb_is_skipped_and_the_rest_scanned(tmp_path: Path) -> None:
    token = fake_token("github")
    layer = (
        Layer()
        .file("data/bomb.gz", _gzip_bomb(512 << 20))
        .file("app/.env", f"GITHUB_TOKEN={token}\n")
    )
    ref = write("oci-dir", Image(layers=[layer], compression="none"), tmp_path)
    run = run_leakscan([ref, "-f", "json"])
    assert run.code == 1, run.err  # a skip does not make the scan incomplete
    (image,) = run.report["images"]
    assert [f["location"]["path"] for f in image["findings"]] == ["/app/.env"]
    (skip,) = image["skipped"]
    assert skip["path"].startswith("/data/bomb.gz") and "ratio" in skip["reason"]
    assert skip["layer_index"] == 0


def test_expanded_bytes_flag(tmp_path: Path) -> None:
    token = fake_token("github")
    padding = bytes(range(256)) * 8192  # 2 MiB that compresses poorly enough
    jar = _jar({"big.bin": padding.decode("latin-1"), "z.properties": f"token={token}\n"})
    ref = write("oci-dir", Image(layers=[Layer().file("app/a.jar", jar)]), tmp_path)
    small = run_leakscan([ref, "-f", "json", "--max-expanded-bytes", "1M"])
    (image,) = small.report["images"]
    assert image["findings"] == [] and "budget" in image["skipped"][0]["reason"]
    assert small.code == 0
    assert run_leakscan([ref, "-f", "json"]).code == 1
