"""The command line as users and CI meet it: exit status, formats, redaction, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clirun import run_leakscan
from helpers import write
from imagebuilder import Image, Layer, fake_token, write_oci_layout

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())


def _fixture_secrets() -> list[str]:
    out = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("value", "secret", "token") and isinstance(value, str):
                    out.append(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(EXPECTED)
    assert out, "expected.json lists no secrets"
    return out


SECRETS = _fixture_secrets()


def _no_secret_in(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            for line in secret.splitlines():
                if len(line) >= 8 and "-----" not in line:
                    assert line not in text


def test_clean_image_exits_0() -> None:
    run = run_leakscan([str(FIXTURES / "clean.tar")])
    assert run.code == 0, run.err
    assert "0 findings in 1 image" in run.out


@pytest.mark.parametrize("fmt", ["table", "json", "sarif"])
def test_leaky_image_exits_1_and_masks_secrets(fmt: str) -> None:
    run = run_leakscan([f"docker-archive:{FIXTURES / 'leaky-npm.tar'}", "--format", fmt])
    assert run.code == 1, run.err
    assert run.err == ""
    _no_secret_in(run.out, run.err)
    if fmt == "json":
        report = run.report
        (image,) = report["images"]
        rc = [f for f in image["findings"] if f["location"].get("path") == "/root/.npmrc"]
        assert rc and rc[0]["location"]["status"] == "deleted"
        assert rc[0]["location"]["removed_in_layer"] == 3
        assert all("secret" not in f for f in image["findings"])
    elif fmt == "sarif":
        sarif = json.loads(run.out)
        assert sarif["version"] == "2.1.0" and sarif["runs"][0]["results"]
    else:
        assert "/root/.npmrc:1" in run.out and "deleted in layer 3" in run.out
        assert "NPM_TOKEN=npm_********" in run.out


def test_show_secrets_shows_them() -> None:
    run = run_leakscan([str(FIXTURES / "leaky-npm.tar"), "-f", "json", "--show-secrets"])
    assert run.code == 1
    shown = {f["secret"] for f in run.report["images"][0]["findings"]}
    npm = [s for s in SECRETS if s.startswith("npm_")]
    assert npm and set(npm) <= shown
    assert npm[0] in run.out


def test_output_file(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    run = run_leakscan([str(FIXTURES / "multiarch-oci"), "-f", "json", "-o", str(out)])
    assert run.code == 1 and run.out == ""
    from schema import validate_report

    report = json.loads(out.read_text())
    validate_report(report)
    platforms = [i["platform"] for i in report["images"]]
    assert platforms == ["linux/amd64", "linux/arm64/v8"]
    arm = report["images"][1]["findings"]
    assert arm and arm[0]["location"]["path"] == "/root/.ssh/id_ed25519"
    _no_secret_in(out.read_text())


def test_platform_flag() -> None:
    # the key is in the arm64 image only: amd64 alone is scanned, and is clean
    ref = f"oci:{FIXTURES / 'multiarch-oci'}:latest"
    run = run_leakscan([ref, "--platform", "linux/amd64", "-f", "json"])
    assert run.code == 0, run.err
    assert [i["platform"] for i in run.report["images"]] == ["linux/amd64"]
    arm = run_leakscan([ref, "--platform", "linux/arm64", "-f", "json"])
    assert arm.code == 1, arm.err
    assert [i["platform"] for i in arm.report["images"]] == ["linux/arm64/v8"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["/nonexistent/image.tar"], "no such file or directory"),
        (["docker-archive:/nonexistent.tar"], "no such file or directory: /nonexistent.tar"),
        (["oci:/nonexistent"], "no such file or directory"),
    ],
)
def test_bad_input_one_line_exit_2(args: list[str], needle: str) -> None:
    run = run_leakscan(args)
    assert run.code == 2
    lines = run.err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], run.err
    assert "Traceback" not in run.err


def test_not_an_image(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"this is not a tar" * 100)
    run = run_leakscan([str(junk)])
    assert run.code == 2 and "junk.tar" in run.err and "Traceback" not in run.err
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    run = run_leakscan([str(empty_dir)])
    assert run.code == 2 and "neither index.json nor manifest.json" in run.err


def test_corrupt_layer_exit_2_rest_still_scanned(tmp_path: Path) -> None:
    token = fake_token("github")
    layers = [
        Layer().file("a/.env", f"GITHUB_TOKEN={token}\n"),
        Layer().file("b/big", b"x" * 200_000),
    ]
    path = write_oci_layout(tmp_path / "l", Image(layers=layers, compression="gzip"))
    manifest_blob = json.loads((path / "index.json").read_text())["manifests"][0]["digest"]
    manifest = json.loads((path / "blobs/sha256" / manifest_blob.split(":")[1]).read_text())
    broken = path / "blobs/sha256" / manifest["layers"][1]["digest"].split(":")[1]
    broken.write_bytes(broken.read_bytes()[:-40])
    out = tmp_path / "r.json"
    run = run_leakscan([f"oci:{path}", "-f", "json", "-o", str(out)])
    assert run.code == 2, run.err
    assert "layer 1" in run.err and "Traceback" not in run.err
    assert token not in run.err
    report = json.loads(out.read_text())
    (image,) = report["images"]
    assert [e["layer_index"] for e in image["errors"]] == [1]
    assert [f["location"]["path"] for f in image["findings"]] == ["/a/.env"]


def test_errors_win_over_findings(tmp_path: Path) -> None:
    token = fake_token("github")
    img = Image(layers=[Layer().file("a/.env", f"GITHUB_TOKEN={token}\n")], history=[])
    run = run_leakscan([write("oci-dir", img, tmp_path), "-f", "json"])
    assert run.code == 2
    assert run.report["images"][0]["findings"]
    assert "not paired" in run.err


@pytest.mark.parametrize("fmt", ["table", "json", "sarif"])
def test_secret_in_error_message_is_masked(fmt: str, tmp_path: Path) -> None:
    """A layer truncated inside a file whose name holds a token found in another layer: the
    error names that file, and the token in it is masked on stderr and in the report."""
    token = fake_token("github")
    layers = [
        Layer().file("a/.env", f"GITHUB_TOKEN={token}\n"),
        Layer().file(f"b/{token}.bin", b"x" * 200_000),
    ]
    path = write_oci_layout(tmp_path / "l", Image(layers=layers, compression="none"))
    manifest_blob = json.loads((path / "index.json").read_text())["manifests"][0]["digest"]
    manifest = json.loads((path / "blobs/sha256" / manifest_blob.split(":")[1]).read_text())
    broken = path / "blobs/sha256" / manifest["layers"][1]["digest"].split(":")[1]
    broken.write_bytes(broken.read_bytes()[:5000])  # the header is whole, the data is not
    run = run_leakscan([f"oci:{path}", "-f", fmt])
    assert run.code == 2, run.err
    assert token not in run.out and token not in run.err
    # the error does quote the file's name, with the token masked in it
    (line,) = run.err.splitlines()
    assert line.startswith("leakscan: error: layer 1: ") and "/b/ghp_" in line, line
    assert "/b/ghp_" in run.out
    if fmt == "json":
        (image,) = run.report["images"]
        (error,) = image["errors"]
        assert error["path"].startswith("/b/ghp_") and error["message"].endswith(error["path"])


def test_rules_command() -> None:
    run = run_leakscan(["rules"])
    assert run.code == 0
    lines = run.out.splitlines()
    assert len(lines) > 400
    assert any(line.startswith("betterleaks.github-pat\tkingfisher\t") for line in lines)


def test_version_and_help() -> None:
    version = run_leakscan(["--version"])
    assert version.code == 0 and version.out.startswith("leakscan ") and version.err == ""
    run = run_leakscan(["--help"])
    assert run.code == 0 and "Exit status" in run.out


def test_max_file_size_skips_and_lists(tmp_path: Path) -> None:
    token = fake_token("github")
    big = Layer().file("data/big.env", "x" * 5000 + f"\nGITHUB_TOKEN={token}\n")
    small = Layer().file("app/.env", f"GITHUB_TOKEN={fake_token('github')}\n")
    ref = write("oci-dir", Image(layers=[big, small]), tmp_path)
    run = run_leakscan([ref, "-f", "json", "--max-file-size", "4K"])
    assert run.code == 1
    (image,) = run.report["images"]
    assert [f["location"]["path"] for f in image["findings"]] == ["/app/.env"]
    (skip,) = image["skipped"]
    assert skip["path"] == "/data/big.env" and "--max-file-size" in skip["reason"]
    bad = run_leakscan([ref, "--max-file-size", "huge"])
    assert bad.code == 2 and "not a size" in bad.err
