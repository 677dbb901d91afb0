"""End to end through the library: every layout, every whiteout case, history and config."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from helpers import LAYOUTS, file_findings, meta_findings, only_image, scan_ref, summary, write
from imagebuilder import Image, Layer, fake_token

from leakscan.detectors import Detectors


def classic_leak(token: str, compression: str = "gzip") -> Image:
    """ARG NPM_TOKEN; RUN echo ... > /root/.npmrc; RUN rm /root/.npmrc (as docker records it)."""
    base = Layer(created_by="/bin/sh -c #(nop) ADD file:busybox in / ")
    base.file("bin/busybox", b"\x7fELF not really busybox").file(
        "etc/passwd", "root:x:0:0::/root:/bin/sh\n"
    )
    base.dir("root", 0o700)
    write_rc = Layer(
        created_by=f'|1 NPM_TOKEN={token} /bin/sh -c echo "//npm.example.internal/:_authToken='
        '$NPM_TOKEN" > /root/.npmrc'
    ).file("root/.npmrc", f"//npm.example.internal/:_authToken={token}\n")
    remove = Layer(created_by=f"|1 NPM_TOKEN={token} /bin/sh -c rm /root/.npmrc").whiteout(
        "root/.npmrc"
    )
    history = [
        {"created_by": base.created_by},
        {"created_by": '/bin/sh -c #(nop)  CMD ["/bin/sh"]', "empty_layer": True},
        {"created_by": "/bin/sh -c #(nop)  ARG NPM_TOKEN", "empty_layer": True},
        {"created_by": write_rc.created_by},
        {"created_by": remove.created_by},
    ]
    return Image(
        layers=[base, write_rc, remove], history=history, cmd=["/bin/sh"], compression=compression
    )


@pytest.mark.parametrize("layout", LAYOUTS)
def test_classic_leak_in_every_layout(layout: str, tmp_path: Path, detectors: Detectors) -> None:
    token = fake_token("npm")
    image = only_image(scan_ref(write(layout, classic_leak(token), tmp_path), detectors))
    sha = hashlib.sha256(token.encode()).hexdigest()
    (rc,) = file_findings(image, "/root/.npmrc")
    assert rc.secret_sha256 == sha
    assert (rc.location.layer_index, rc.location.status, rc.location.removed_in_layer) == (
        1,
        "deleted",
        2,
    )
    assert rc.location.line == 1
    assert "npm_" in (image.layers[1].created_by or "") and token not in str(image)
    history = meta_findings(image, "history")
    assert {(f.location.history_index, f.location.layer_index) for f in history} == {(3, 1), (4, 2)}
    assert all(f.secret_sha256 == sha for f in history)
    assert [layer.history_index for layer in image.layers] == [0, 3, 4]
    assert [h.layer_index for h in image.history] == [0, None, None, 1, 2]
    assert image.errors == ()


def test_every_layout_reports_the_same(tmp_path: Path, detectors: Detectors) -> None:
    token = fake_token("npm")
    leak = classic_leak(token)
    results = {}
    for layout in LAYOUTS:
        (tmp_path / layout).mkdir()
        results[layout] = summary(
            only_image(scan_ref(write(layout, leak, tmp_path / layout), detectors))
        )
    first = results["docker-legacy"]
    assert first
    for layout, got in results.items():
        assert got == first, layout


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_layer_compressions(compression: str, tmp_path: Path, detectors: Detectors) -> None:
    token = fake_token("npm")
    leak = classic_leak(token, compression)
    ref = write("oci-dir", leak, tmp_path)
    image = only_image(scan_ref(ref, detectors))
    assert image.layers[1].media_type is not None
    assert image.layers[1].media_type.endswith(
        {"none": "tar", "gzip": "gzip", "zstd": "zstd"}[compression]
    )
    assert [f.location.status for f in file_findings(image)] == ["deleted"]


def test_compression_is_sniffed_not_trusted(tmp_path: Path, detectors: Detectors) -> None:
    # layers of three compressions in one image, listed with the wrong media types
    token = fake_token("github")
    layers = [Layer().file(f"app/{c}.env", f"GITHUB_TOKEN={token}\n") for c in ("a", "b", "c")]
    img = Image(layers=layers, layer_compression=["zstd", "none", "gzip"])
    ref = write("oci-dir", img, tmp_path)
    # lie about every media type: the bytes decide
    import json

    layout = Path(ref.split(":")[1])
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"].split(":")[1]
    manifest_path = layout / "blobs" / "sha256" / digest
    manifest = json.loads(manifest_path.read_text())
    for desc in manifest["layers"]:
        desc["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip"
    data = json.dumps(manifest).encode()
    new = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / new).write_bytes(data)
    index["manifests"][0]["digest"] = "sha256:" + new
    index["manifests"][0]["size"] = len(data)
    (layout / "index.json").write_text(json.dumps(index))
    image = only_image(scan_ref(ref, detectors))
    assert sorted(f.location.path for f in file_findings(image)) == [
        "/app/a.env",
        "/app/b.env",
        "/app/c.env",
    ]


def _statuses(img: Image, tmp_path: Path, detectors: Detectors) -> dict[tuple[str, int], tuple]:
    image = only_image(scan_ref(write("oci-dir", img, tmp_path), detectors))
    return {
        (f.location.path, f.location.layer_index): (f.location.status, f.location.removed_in_layer)
        for f in file_findings(image)
    }


def test_whiteouts_and_overwrites(tmp_path: Path, detectors: Detectors) -> None:
    t = [fake_token("github") for _ in range(8)]
    bottom = (
        Layer()
        .file("etc/kept.env", f"TOKEN={t[0]}\n")
        .file("etc/gone.env", f"TOKEN={t[1]}\n")
        .file("srv/app/conf/deep/.env", f"TOKEN={t[2]}\n")
        .file("opt/data/lower.env", f"TOKEN={t[3]}\n")
        .file("var/over.env", f"TOKEN={t[4]}\n")
        .file("var/same.env", f"TOKEN={t[5]}\n")
    )
    top = (
        Layer()
        .whiteout("etc/gone.env")
        .whiteout("srv/app")
        .opaque("opt/data")
        .file("opt/data/upper.env", f"TOKEN={t[6]}\n")
        .file("var/over.env", "TOKEN=nothing here\n")
        .file("var/same.env", f"TOKEN={t[5]}\n")
    )
    got = _statuses(Image(layers=[bottom, top]), tmp_path, detectors)
    assert got == {
        ("/etc/kept.env", 0): ("present", None),
        ("/etc/gone.env", 0): ("deleted", 1),
        ("/srv/app/conf/deep/.env", 0): ("deleted", 1),
        ("/opt/data/lower.env", 0): ("deleted", 1),
        ("/opt/data/upper.env", 1): ("present", None),
        ("/var/over.env", 0): ("overwritten", 1),
        ("/var/same.env", 0): ("present", None),
        ("/var/same.env", 1): ("present", None),
    }


def test_hardlink_scanned_once_at_target(tmp_path: Path, detectors: Detectors) -> None:
    token = fake_token("github")
    layer = (
        Layer().file("app/real.env", f"TOKEN={token}\n").hardlink("app/link.env", "app/real.env")
    )
    later = Layer().whiteout("app/link.env")
    image = only_image(
        scan_ref(write("oci-dir", Image(layers=[layer, later]), tmp_path), detectors)
    )
    found = file_findings(image)
    assert [(f.location.path, f.location.status) for f in found] == [("/app/real.env", "present")]


def test_symlinks_are_not_followed(tmp_path: Path, detectors: Detectors) -> None:
    token = fake_token("github")
    layer = (
        Layer()
        .file("app/real.env", f"TOKEN={token}\n")
        .symlink("app/alias.env", "/app/real.env")
        .symlink("app/host", "/etc/shadow")
    )
    image = only_image(scan_ref(write("oci-dir", Image(layers=[layer]), tmp_path), detectors))
    assert [f.location.path for f in file_findings(image)] == ["/app/real.env"]


def test_replacing_file_with_symlink_is_overwritten(tmp_path: Path, detectors: Detectors) -> None:
    token = fake_token("github")
    layers = [
        Layer().file("app/.env", f"TOKEN={token}\n"),
        Layer().symlink("app/.env", "/dev/null"),
    ]
    got = _statuses(Image(layers=layers), tmp_path, detectors)
    assert got == {("/app/.env", 0): ("overwritten", 1)}


def test_empty_layers_in_history_map_in_order(tmp_path: Path, detectors: Detectors) -> None:
    token = fake_token("github")
    layers = [
        Layer().file("a", "a"),
        Layer().file("b.env", f"TOKEN={token}\n"),
        Layer().file("c", "c"),
    ]
    history = [
        {"created_by": "ADD a"},
        {"created_by": "ENV X=1", "empty_layer": True},
        {"created_by": "WORKDIR /", "empty_layer": True},
        {"created_by": "COPY b.env /"},
        {"created_by": "LABEL y=2", "empty_layer": True},
        {"created_by": "COPY c /"},
    ]
    image = only_image(
        scan_ref(write("oci-dir", Image(layers=layers, history=history), tmp_path), detectors)
    )
    assert [(layer.history_index, layer.created_by) for layer in image.layers] == [
        (0, "ADD a"),
        (3, "COPY b.env /"),
        (5, "COPY c /"),
    ]
    assert image.errors == ()


@pytest.mark.parametrize("extra", [1, -1])
def test_history_count_mismatch_is_reported_not_guessed(
    extra: int, tmp_path: Path, detectors: Detectors
) -> None:
    token = fake_token("github")
    layers = [Layer().file("a", "a"), Layer().file("b.env", f"TOKEN={token}\n")]
    history = [{"created_by": f"STEP {i}"} for i in range(len(layers) + extra)]
    report = scan_ref(write("oci-dir", Image(layers=layers, history=history), tmp_path), detectors)
    image = only_image(report)
    assert not report.complete
    assert any("not paired" in e.message for e in image.errors)
    assert all(layer.history_index is None and layer.created_by is None for layer in image.layers)
    assert all(h.layer_index is None for h in image.history)
    # the file finding is still reported
    assert [f.location.path for f in file_findings(image)] == ["/b.env"]


def test_no_history_at_all(tmp_path: Path, detectors: Detectors) -> None:
    img = Image(layers=[Layer().file("a", "a")], history=[])
    img.extra["history"] = None
    report = scan_ref(write("oci-dir", img, tmp_path), detectors)
    image = only_image(report)
    assert image.history == () and report.complete


def test_secrets_in_history_and_config(tmp_path: Path, detectors: Detectors) -> None:
    tok = {
        k: fake_token("github")
        for k in (
            "arg",
            "env_inst",
            "label_inst",
            "env",
            "label",
            "cmd",
            "entrypoint",
            "annotation",
        )
    }
    history = [
        {"created_by": f"|2 A=1 GH={tok['arg']} /bin/sh -c make"},
        {
            "created_by": f"/bin/sh -c #(nop)  ENV GITHUB_TOKEN={tok['env_inst']}",
            "empty_layer": True,
        },
        {"created_by": f'LABEL ci.token="{tok["label_inst"]}"', "empty_layer": True},
    ]
    img = Image(
        layers=[Layer().file("a", "a")],
        history=history,
        env=["PATH=/bin", f"GITHUB_TOKEN={tok['env']}"],
        labels={"maintainer": "x", "ci.token": tok["label"]},
        cmd=["/app", "--token", tok["cmd"]],
        entrypoint=["/bin/sh", "-c", f"GH={tok['entrypoint']} exec app"],
        annotations={"org.example.token": tok["annotation"]},
    )
    image = only_image(scan_ref(write("oci-dir", img, tmp_path), detectors))
    by_sha = {f.secret_sha256: f.location for f in image.findings}

    def where(key: str):  # noqa: ANN202
        return by_sha[hashlib.sha256(tok[key].encode()).hexdigest()]

    assert (where("arg").kind, where("arg").history_index, where("arg").layer_index) == (
        "history",
        0,
        0,
    )
    assert (where("env_inst").kind, where("env_inst").history_index) == ("history", 1)
    assert (where("label_inst").kind, where("label_inst").history_index) == ("history", 2)
    assert (where("env").field, where("env").key) == ("Env", "GITHUB_TOKEN")
    assert (where("label").field, where("label").key) == ("Labels", "ci.token")
    assert where("cmd").field == "Cmd"
    assert where("entrypoint").field == "Entrypoint"
    assert (where("annotation").field, where("annotation").key) == (
        "annotations",
        "org.example.token",
    )
    # nothing printable carries a token in clear
    text = repr(image)
    assert not any(t in text for t in tok.values())


def _oci_manifest(layout: Path) -> tuple[dict, Path]:
    import json

    index = json.loads((layout / "index.json").read_text())
    path = layout / "blobs/sha256" / index["manifests"][0]["digest"].split(":")[1]
    return json.loads(path.read_text()), path


def test_blob_and_diff_id_mismatch_are_errors(tmp_path: Path, detectors: Detectors) -> None:
    token = fake_token("github")
    img = Image(layers=[Layer().file("a", "a"), Layer().file("b.env", f"T={token}\n")])
    ref = write("oci-dir", img, tmp_path)
    layout = Path(ref.split(":")[1])
    manifest, _ = _oci_manifest(layout)
    # swap layer 0's bytes for another valid layer: it still reads, but is not what was named
    blob = layout / "blobs/sha256" / manifest["layers"][0]["digest"].split(":")[1]
    blob.write_bytes(Layer().file("a", "changed").blob("gzip"))
    report = scan_ref(ref, detectors)
    image = only_image(report)
    messages = [e.message for e in image.errors]
    assert any("does not match its diff_id" in msg for msg in messages)
    assert any("does not match its digest" in msg for msg in messages)
    assert all(e.layer_index == 0 for e in image.errors)
    assert [f.location.path for f in file_findings(image)] == ["/b.env"]


def test_missing_layer_blob_names_it(tmp_path: Path, detectors: Detectors) -> None:
    ref = write("oci-dir", Image(layers=[Layer().file("a", "a")]), tmp_path)
    layout = Path(ref.split(":")[1])
    manifest, _ = _oci_manifest(layout)
    digest = manifest["layers"][0]["digest"]
    (layout / "blobs/sha256" / digest.split(":")[1]).unlink()
    report = scan_ref(ref, detectors)
    assert not report.complete
    assert f"blobs/sha256/{digest.split(':')[1]} is missing" in report.errors[0].message


def test_fingerprints_are_stable_and_secret_hash_exact(
    tmp_path: Path, detectors: Detectors
) -> None:
    token = fake_token("npm")
    ref = write("docker-legacy", classic_leak(token), tmp_path)
    first = only_image(scan_ref(ref, detectors))
    second = only_image(scan_ref(ref, detectors))
    assert [f.fingerprint for f in first.findings] == [f.fingerprint for f in second.findings]
    assert len({f.fingerprint for f in first.findings}) == len(first.findings)
    sha = hashlib.sha256(token.encode()).hexdigest()
    assert {f.secret_sha256 for f in first.findings} == {sha}
    # the same leak in another layout has the same fingerprints
    (tmp_path / "o").mkdir()
    other = only_image(
        scan_ref(write("oci-archive", classic_leak(token), tmp_path / "o"), detectors)
    )
    assert {f.fingerprint for f in other.findings} == {f.fingerprint for f in first.findings}


def test_show_secrets_keeps_them(tmp_path: Path, detectors: Detectors) -> None:
    token = fake_token("npm")
    ref = write("oci-dir", classic_leak(token), tmp_path)
    image = only_image(scan_ref(ref, detectors, show_secrets=True))
    assert {f.secret for f in image.findings} == {token}
    assert token in (image.layers[1].created_by or "")


class _LowEngine:
    """A stand-in engine that reports every 'maybe-secret' word at low confidence."""

    name = "test-low"

    def wants(self, subject: object) -> bool:
        return True

    def scan(self, data: bytes, subject: object) -> list:
        from leakscan.detectors import Match

        at = data.find(b"maybe-secret-value")
        if at < 0:
            return []
        return [
            Match("test.low", "a low one", "maybe-secret-value", at, at + 18, 1, "low", self.name)
        ]

    def rules(self) -> list:
        return []


def test_min_confidence_filters_and_counts(tmp_path: Path, detectors: Detectors) -> None:
    from leakscan.detectors import Detectors as Engines

    engines = Engines([*detectors.engines, _LowEngine()])
    token = fake_token("github")
    layer = Layer().file("a.env", f"GITHUB_TOKEN={token}\nX=maybe-secret-value\n")
    ref = write("oci-dir", Image(layers=[layer]), tmp_path)
    default = only_image(scan_ref(ref, engines))
    assert [f.rule_id for f in default.findings] == ["betterleaks.github-pat"]
    assert default.below_threshold == 1
    low = only_image(scan_ref(ref, engines, min_confidence="low"))
    assert sorted(f.rule_id for f in low.findings) == ["betterleaks.github-pat", "test.low"]
    assert low.below_threshold == 0
    high = only_image(scan_ref(ref, engines, min_confidence="high"))
    assert [f.confidence for f in high.findings] == ["high"]
