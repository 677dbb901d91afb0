"""Scans with the result store: a report from the store equals the cold report (only the
`cache` statistics differ), on every layout, with deletions and overwrites that span cached
and fresh layers; the store holds no secret in clear; a damaged entry is scanned again."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest
from clirun import run_leakscan
from helpers import LAYOUTS, write
from imagebuilder import Image, Layer, fake_token, make_zip
from schema import validate_report

from leakscan import scan as scan_module
from leakscan.detectors import Detectors
from leakscan.report.json import report_dict
from leakscan.scan import ScanOptions, scan


def leaky(token: str, gh: str, aws: str) -> Image:
    """A secret written, deleted, overwritten, in an archive, in history and config."""
    base = Layer(created_by="/bin/sh -c #(nop) ADD file:base in / ").file(
        "etc/os-release", "ID=test\n"
    )
    write = (
        Layer(created_by=f"|1 NPM_TOKEN={token} /bin/sh -c echo > /root/.npmrc")
        .file("root/.npmrc", f"//npm.example.internal/:_authToken={token}\n")
        .file("app/.env", f"GITHUB_TOKEN={gh}\n")
        .file("app/lib.zip", make_zip({"conf/aws.env": f"AWS_ACCESS_KEY_ID={aws}\n".encode()}))
    )
    later = (
        Layer(created_by="/bin/sh -c rm /root/.npmrc && echo > /app/.env")
        .whiteout("root/.npmrc")
        .file("app/.env", "GITHUB_TOKEN=\n")
    )
    return Image(layers=[base, write, later], env=[f"GITHUB_TOKEN={gh}"])


def leaky_image() -> Image:
    """:func:`leaky` with fresh tokens."""
    return leaky(fake_token("npm"), fake_token("github"), fake_token("aws"))


def plain(report: Any) -> dict[str, Any]:
    data = report_dict(report)
    validate_report(data)
    data.pop("cache", None)
    return data


def _opts(tmp: Path, **kw: Any) -> ScanOptions:
    return ScanOptions(cache=str(tmp / "store" / "results.sqlite3"), min_confidence="low", **kw)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_warm_equals_cold_in_every_layout(layout: str, tmp_path: Path) -> None:
    ref = write(layout, leaky(fake_token("npm"), fake_token("github"), fake_token("aws")), tmp_path)
    cold = plain(scan(ref, ScanOptions(min_confidence="low")))
    first = scan(ref, _opts(tmp_path))
    second = scan(ref, _opts(tmp_path))
    assert plain(first) == cold and plain(second) == cold
    assert cold["images"][0]["findings"], "the image leaks"
    assert second.cache is not None and second.cache.layers_scanned == 0
    assert second.cache.layers_cached == 3 and second.cache.texts_scanned == 0


def test_status_spans_cached_and_fresh_layers(tmp_path: Path) -> None:
    """The layer that wrote the secret comes from the store, the one that deletes it is new
    (and the other way round): statuses are judged over both as in a cold scan."""
    token = fake_token("npm")
    base = Layer().file("etc/os-release", "ID=test\n")
    wrote = Layer().file("root/.npmrc", f"//npm.example.internal/:_authToken={token}\n")
    first = write("oci-dir", Image(layers=[base, wrote]), tmp_path / "a")
    scan(first, _opts(tmp_path))
    deleted = Layer().whiteout("root/.npmrc")
    rewrote = Layer().file("root/.npmrc", "registry=https://npm.example.internal/\n")
    for name, last in (("deleted", deleted), ("overwritten", rewrote)):
        ref = write("oci-dir", Image(layers=[base, wrote, last]), tmp_path / name)
        warm = scan(ref, _opts(tmp_path))
        assert warm.cache is not None and (warm.cache.layers_cached, warm.cache.layers_scanned) == (
            2,
            1,
        )
        assert plain(warm) == plain(scan(ref, ScanOptions(min_confidence="low")))
        (f,) = [f for f in warm.images[0].findings if f.location.kind == "file"]
        assert (f.location.status, f.location.removed_in_layer) == (name, 2)  # type: ignore[union-attr]
    # a cached layer deletes what a fresh one wrote
    gone = Layer().whiteout("srv/x.env")
    scan(write("oci-dir", Image(layers=[base, gone]), tmp_path / "w"), _opts(tmp_path))
    writes = Layer().file("srv/x.env", f"GITHUB_TOKEN={fake_token('github')}\n")
    late = write("oci-dir", Image(layers=[base, writes, gone]), tmp_path / "x")
    warm = scan(late, _opts(tmp_path))
    assert warm.cache is not None and warm.cache.layers_scanned == 1
    assert plain(warm) == plain(scan(late, ScanOptions(min_confidence="low")))
    (f,) = warm.images[0].findings
    assert (f.location.status, f.location.removed_in_layer) == ("deleted", 2)  # type: ignore[union-attr]


def _values(path: Path) -> list[bytes]:
    db = sqlite3.connect(path)
    rows = [bytes(v) for (v,) in db.execute("SELECT value FROM entries")]
    db.close()
    out = []
    for value in rows:
        out.append(value)
        # a layer value is a header and two zlib streams: read them as stored
        for start in range(len(value)):
            if value[start : start + 1] == b"\x78":
                try:
                    out.append(zlib.decompressobj().decompress(value[start:]))
                except zlib.error:
                    continue
    return out


def test_the_store_holds_no_secret_in_clear(tmp_path: Path) -> None:
    secrets = [fake_token("npm"), fake_token("github"), fake_token("aws")]
    image = leaky(*secrets)
    # a file named after a secret: its path is stored masked
    image.layers[1].file(f"app/{secrets[1]}.txt", "named after a token\n")
    ref = write("oci-dir", image, tmp_path)
    scan(ref, _opts(tmp_path))
    values = _values(tmp_path / "store" / "results.sqlite3")
    assert len(values) > 3
    for value in values:
        for s in secrets:
            assert s.encode() not in value


def test_show_secrets_reads_layers_with_secrets_again(tmp_path: Path) -> None:
    token = fake_token("npm")
    ref = write("oci-dir", leaky(token, fake_token("github"), fake_token("aws")), tmp_path)
    scan(ref, _opts(tmp_path))
    shown = scan(ref, _opts(tmp_path, show_secrets=True))
    assert token in {f.secret for f in shown.images[0].findings}
    assert shown.cache is not None and shown.cache.layers_scanned == 1  # only the leaking one


def test_fully_cached_image_loads_no_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not for the layers, not for history and config strings, not for the skip messages
    (a skipped file whose name holds a secret found elsewhere stays masked)."""
    image = leaky_image()
    hidden = fake_token("github")
    image.env.append(f"OTHER_TOKEN={hidden}")
    image.layers[1].file(f"data/{hidden}/big.bin", b"\0" * 8192)
    ref = write("oci-dir", image, tmp_path)
    opts = _opts(tmp_path, max_file_size=4096)
    cold = plain(scan(ref, opts))
    assert any(hidden[:4] in (p["path"] or "") for p in cold["images"][0]["skipped"])
    assert hidden not in json.dumps(cold)

    def refuse(*args: object) -> Detectors:
        raise AssertionError("engines built for an image the store answers")

    monkeypatch.setattr(scan_module, "default_detectors", refuse)
    monkeypatch.setattr(scan_module, "build_detectors", refuse)
    monkeypatch.setattr("leakscan.workers.LayerPool", refuse)  # imported when workers start
    warm = plain(scan(ref, opts))
    assert warm == cold and hidden not in json.dumps(warm)
    # and the scan from the store alone gives the same report
    stored = scan_module.scan_from_store(ref, opts)
    assert stored is not None and plain(stored) == cold


def test_damaged_entry_is_one_warning_and_scanned_again(tmp_path: Path) -> None:
    ref = write("oci-dir", leaky_image(), tmp_path)
    cold = plain(scan(ref, _opts(tmp_path)))
    path = tmp_path / "store" / "results.sqlite3"
    db = sqlite3.connect(path)
    with db:
        db.execute("UPDATE entries SET value = X'0100000004DEADBEEF' WHERE kind = 'layer'")
    db.close()
    warnings: list[str] = []
    again = scan(ref, _opts(tmp_path), warn=warnings.append)
    assert plain(again) == cold
    assert len(warnings) == 1 and "scanning that again" in warnings[0]
    assert again.cache is not None and again.cache.layers_scanned == 3


def test_incomplete_layer_is_never_stored(tmp_path: Path) -> None:
    ref = write("oci-dir", leaky_image(), tmp_path)
    layout = Path(ref.split(":", 1)[1].rsplit(":", 1)[0])
    index = json.loads((layout / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((layout / "blobs" / "sha256" / manifest_digest).read_bytes())
    last = manifest["layers"][-1]["digest"].split(":")[1]
    blob = layout / "blobs" / "sha256" / last
    blob.write_bytes(blob.read_bytes()[:-40])  # truncated: its digest no longer matches
    first = scan(ref, _opts(tmp_path))
    assert first.images[0].errors
    second = scan(ref, _opts(tmp_path))
    assert second.cache is not None and second.cache.layers_scanned == 1  # read again
    assert plain(second) == plain(first)


def test_unusable_store_is_one_warning_and_same_report(tmp_path: Path) -> None:
    ref = write("oci-dir", leaky_image(), tmp_path)
    theirs = tmp_path / "theirs.db"
    db = sqlite3.connect(theirs)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    warnings: list[str] = []
    report = scan(ref, ScanOptions(cache=str(theirs), min_confidence="low"), warn=warnings.append)
    assert report.cache is None and len(warnings) == 1
    assert plain(report) == plain(scan(ref, ScanOptions(min_confidence="low")))


def test_cli_cache_flags_and_commands(tmp_path: Path) -> None:
    ref = write("oci-dir", leaky_image(), tmp_path)
    folder = tmp_path / "c"
    first = run_leakscan([ref, "-f", "json", "--cache-dir", str(folder)])
    second = run_leakscan([ref, "-f", "json", "--cache-dir", str(folder)])
    assert first.code == second.code == 1
    assert second.report["cache"]["layers_scanned"] == 0
    first_report, second_report = first.report, second.report
    first_report.pop("cache"), second_report.pop("cache")
    assert first_report == second_report
    info = run_leakscan(["cache", "info", "--cache-dir", str(folder)])
    assert info.code == 0 and "layer" in info.out and "hit rate" in info.out
    none = run_leakscan([ref, "-f", "json", "--no-cache", "--cache-dir", str(tmp_path / "n")])
    assert "cache" not in none.report and not (tmp_path / "n").exists()
    pruned = run_leakscan(["cache", "prune", "--older-than", "30d", "--cache-dir", str(folder)])
    assert pruned.code == 0 and "removed 0" in pruned.out
    bad = run_leakscan(["cache", "prune", "--older-than", "soon", "--cache-dir", str(folder)])
    assert bad.code == 2 and "Traceback" not in bad.err
    cleared = run_leakscan(["cache", "clear", "--cache-dir", str(folder)])
    assert cleared.code == 0 and "removed" in cleared.out
    again = run_leakscan([ref, "-f", "json", "--cache-dir", str(folder)])
    assert again.report["cache"]["layers_cached"] == 0


def test_cli_unusable_store_warns_once(tmp_path: Path) -> None:
    ref = write("oci-dir", leaky_image(), tmp_path)
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"not a database at all" * 200)
    run = run_leakscan([ref, "-f", "json", "--cache", str(garbage)])
    assert run.code == 1
    lines = [line for line in run.err.splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("leakscan: warning: result store")
    assert "Traceback" not in run.err


def _relayered(tokens: list[str], order: int, filler: bytes) -> Image:
    """The same files (each over MEMO_MIN, so looked up by content) in other layers: no
    diff_id in common with another order."""
    files = {
        f"srv/app{n}/settings.env": (f"GITHUB_TOKEN={t}\n" + "# padding line\n" * 2000)
        for n, t in enumerate(tokens)
    }
    files["srv/data/readme.txt"] = "nothing to see\n" * 3000
    files["srv/app0/bundle.zip"] = make_zip(
        # random filler: the archive stays over MEMO_MIN once compressed
        {"conf/.env": f"GITLAB_TOKEN={tokens[0]}\n".encode(), "filler.bin": filler}
    )
    names = sorted(files)
    layers = []
    for start in range(order):
        layer = Layer()
        for name in names[start::order]:
            layer.file(name, files[name])
        layers.append(layer)
    layers.append(Layer().whiteout("srv/app1/settings.env"))
    return Image(layers=layers)


def test_relayered_files_come_from_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebuilt image: new layer digests, the same file contents. Each file seen before is
    not handed to the engines again, and the report is the cold one."""
    tokens = [fake_token("github"), fake_token("github"), fake_token("github")]
    filler = os.urandom(20000)
    first = write("oci-dir", _relayered(tokens, 1, filler), tmp_path / "a")
    scan(first, _opts(tmp_path))
    second = write("oci-dir", _relayered(tokens, 2, filler), tmp_path / "b")
    cold = plain(scan(second, ScanOptions(min_confidence="low")))
    scanned: list[int] = []
    from leakscan.detectors import Detectors as Engines

    real = Engines.scanner

    def counting(self: Engines, subject: Any) -> Any:
        if subject.path and subject.path.startswith("/srv/app"):
            scanned.append(1)
        return real(self, subject)

    monkeypatch.setattr(Engines, "scanner", counting)
    warm = scan(second, _opts(tmp_path))
    assert warm.cache is not None and warm.cache.layers_cached == 1  # only the whiteout layer
    assert plain(warm) == cold
    assert scanned == [], "a file seen before went to the engines"
    statuses = {
        f.location.path: f.location.status  # type: ignore[union-attr]
        for f in warm.images[0].findings
    }
    assert statuses["/srv/app1/settings.env"] == "deleted"
    assert "/srv/app0/bundle.zip!/conf/.env" in statuses


def test_same_content_elsewhere_is_judged_for_its_path(tmp_path: Path) -> None:
    """The same bytes as a docker config.json and as a plain text file are not scanned
    alike (the credential-file reader keeps to its formats): the store keeps them apart."""
    auth = base64.b64encode(b"ci:" + fake_token("npm").encode()).decode()
    body = json.dumps({"auths": {"registry.example.internal": {"auth": auth}}}) + " " * 20000
    a = write("oci-dir", Image(layers=[Layer().file("srv/notes.txt", body)]), tmp_path / "a")
    as_config = Image(layers=[Layer().file("root/.docker/config.json", body)])
    b = write("oci-dir", as_config, tmp_path / "b")
    for ref in (a, b):
        cold = plain(scan(ref, ScanOptions(min_confidence="low")))
        assert plain(scan(ref, _opts(tmp_path))) == cold
    rules = {f["rule_id"] for f in cold["images"][0]["findings"]}
    assert any(rule.startswith("leakscan.docker-config") for rule in rules), rules


def _named_after(gh: str, npm: str, filler: str) -> Image:
    """A folder named after the token it holds, deleted by the next layer; a zip member
    named after its token; ``filler`` changes the first layer's digest."""
    member = {f"keys/{npm}.txt": f"//npm.example.internal/:_authToken={npm}\n".encode()}
    wrote = (
        Layer()
        .file("etc/filler", filler)
        .file(f"srv/{gh}/app.env", f"GITHUB_TOKEN={gh}\n")
        .file("srv/keys.zip", make_zip(member))
    )
    return Image(layers=[wrote, Layer().whiteout(f"srv/{gh}/app.env")])


def test_a_secret_in_a_path_is_judged_as_in_a_cold_scan(tmp_path: Path) -> None:
    """A path that holds a secret cannot be stored in clear, and masked it would no longer
    be the path a cold scan judges (its fingerprint, the whiteout that deletes it): such a
    result is not stored, and a re-scan, warm or re-layered, reports what a cold one does."""
    gh, npm = fake_token("github"), fake_token("npm")
    ref = write("oci-dir", _named_after(gh, npm, "one\n"), tmp_path / "a")
    cold = plain(scan(ref, ScanOptions(min_confidence="low")))
    found = {f["rule_id"]: f for f in cold["images"][0]["findings"]}
    assert any("github" in rule for rule in found) and any("npm" in rule for rule in found)
    statuses = {f["location"]["status"] for rule, f in found.items() if "github" in rule}
    assert statuses == {"deleted"}
    assert plain(scan(ref, _opts(tmp_path))) == cold
    assert plain(scan(ref, _opts(tmp_path))) == cold
    # the same files in a new layer: the zip is looked up by its content
    moved = write("oci-dir", _named_after(gh, npm, "two\n"), tmp_path / "b")
    again = plain(scan(moved, ScanOptions(min_confidence="low")))
    assert plain(scan(moved, _opts(tmp_path))) == again
    assert {f["fingerprint"] for f in again["images"][0]["findings"]} == {
        f["fingerprint"] for f in cold["images"][0]["findings"]
    }
    for value in _values(tmp_path / "store" / "results.sqlite3"):
        assert gh.encode() not in value and npm.encode() not in value


# run in a fresh interpreter: whether workers can be forked depends on every thread of the
# process, and other tests' fixtures leave threads in this one
_IN_WORKERS = """
import json, sys
from leakscan import scan as scan_module
from leakscan.scan import ScanOptions, scan

here = []
real = scan_module.scan_layer

def counted(blob, *args, **kwargs):
    here.append(blob.index)
    return real(blob, *args, **kwargs)

scan_module.scan_layer = counted
report = scan(sys.argv[1], ScanOptions(cache=sys.argv[2], min_confidence="low", workers=2))
print(json.dumps({"here": here, "scanned": report.cache.layers_scanned}))
"""


def test_worker_processes_use_the_store_too(tmp_path: Path) -> None:
    """Layers shared out to worker processes look file contents up in the same store."""
    from leakscan import workers
    from leakscan.store import CONTENT, store_info

    tokens = [fake_token("github") for _ in range(2)]
    # files over MEMO_MIN in both layers, and enough bytes for workers to be worth it
    big = [os.urandom(workers.MIN_FORKED_BYTES // 64 + 1024) for _ in range(64)]

    def image(salt: str) -> Image:
        a, b = Layer().file(f"salt/{salt}", salt), Layer().file(f"salt/{salt}", salt)
        for n, chunk in enumerate(big):
            (a if n % 2 else b).file(f"data/{n}.bin", chunk)
        a.file("app/a.env", f"GITHUB_TOKEN={tokens[0]}\n" + "#" * 20000)
        b.file("app/b.env", f"GITHUB_TOKEN={tokens[1]}\n" + "#" * 20000)
        return Image(layers=[a, b], compression="none")

    spec = str(tmp_path / "store" / "results.sqlite3")
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
    refs = [write("docker-skopeo", image(n), tmp_path / n) for n in ("one", "two")]

    def in_workers(ref: str) -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, "-c", _IN_WORKERS, ref, spec],
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    in_workers(refs[0])
    before = store_info(spec).hits.get(CONTENT, 0)
    warm = in_workers(refs[1])
    assert len(warm["here"]) == 1, "one layer went to a worker process"
    assert warm["scanned"] == 2  # new layer digests
    # every file of both layers over MEMO_MIN came from the store, in whichever process
    assert store_info(spec).hits.get(CONTENT, 0) - before >= len(big) + 2
    opts = ScanOptions(cache=spec, min_confidence="low", workers=1)
    assert plain(scan(refs[1], opts)) == plain(scan(refs[1], ScanOptions(min_confidence="low")))



def _large(files: dict[str, bytes], order: int, salt: str) -> Image:
    """``files`` over two layers (``order`` picks which file goes where), each layer with
    a ``salt`` file of its own, so that no two images share a layer digest."""
    layers = [Layer().file("salt", f"{salt}0"), Layer().file("salt", f"{salt}1")]
    for n, name in enumerate(sorted(files)):
        layers[(n + order) % 2].file(name, files[name])
    return Image(layers=layers, compression="none")


def test_large_files_are_looked_up_by_their_head(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file over MEMO_WHOLE is looked up by its size and first bytes before it is read
    whole: with an empty store it is streamed to the engines (never read whole), and a
    re-layered image takes its result from the store (never handed to the engines again).
    A head is only a hint: a file with the head of one seen before and another tail is
    scanned, and its own secret found."""
    import hashlib

    from leakscan import layerscan
    from leakscan.detectors import Detectors as Engines
    from leakscan.layers.walker import FileEntry
    from leakscan.store import CONTENT, HEAD, store_info

    big = layerscan.MEMO_WHOLE + 4096
    pad = ("# padding line\n" * (big // 15 + 1)).encode()[: big - 60]

    def settings(token: str) -> bytes:
        return pad + f"\nGITHUB_TOKEN={token}\n".encode().rjust(60, b"#")

    files = {
        "srv/app/settings.env": settings(fake_token("github")),
        "srv/app/blob.bin": os.urandom(big + 12345),
        "srv/app/small.env": f"GITHUB_TOKEN={fake_token('github')}\n".encode(),
    }
    large = {"/srv/app/settings.env", "/srv/app/blob.bin"}
    read_whole: list[str] = []
    scanned: list[str] = []
    real_parts, real_scanner = FileEntry.parts, Engines.scanner

    def parts(self: FileEntry) -> list[bytes | memoryview]:
        read_whole.append(self.path)
        return real_parts(self)

    def scanner(self: Engines, subject: Any) -> Any:
        scanned.append(subject.path)
        return real_scanner(self, subject)

    monkeypatch.setattr(FileEntry, "parts", parts)
    monkeypatch.setattr(Engines, "scanner", scanner)
    spec = str(tmp_path / "store" / "results.sqlite3")
    opts = _opts(tmp_path, workers=1)
    cold_opts = ScanOptions(min_confidence="low", workers=1)

    first = write("oci-dir", _large(files, 0, "a"), tmp_path / "a")
    assert plain(scan(first, opts)) == plain(scan(first, cold_opts))
    assert "/srv/app/small.env" in read_whole
    assert not large & set(read_whole), "a large file was read whole for an empty store"
    assert store_info(spec).entries[HEAD] == 2

    second = write("oci-dir", _large(files, 1, "b"), tmp_path / "b")
    cold = plain(scan(second, cold_opts))
    read_whole.clear()
    scanned.clear()
    before = store_info(spec).hits
    warm = scan(second, opts)
    assert warm.cache is not None and warm.cache.layers_scanned == 2
    assert plain(warm) == cold
    assert large <= set(read_whole)  # its head known: read whole, looked up by content
    assert not set(scanned) & {*large, "/srv/app/small.env"}, "a file seen before was scanned"
    after = store_info(spec).hits
    assert after[HEAD] - before.get(HEAD, 0) == 2
    assert after[CONTENT] - before.get(CONTENT, 0) == 3

    # the path, size and first bytes of settings.env, another token at its end
    token = fake_token("github")
    files["srv/app/settings.env"] = settings(token)
    third = write("oci-dir", _large(files, 1, "c"), tmp_path / "c")
    cold = plain(scan(third, cold_opts))
    scanned.clear()
    assert plain(scan(third, opts)) == cold
    assert "/srv/app/settings.env" in scanned
    found = {f["secret_sha256"] for f in cold["images"][0]["findings"]}
    assert hashlib.sha256(token.encode()).hexdigest() in found
