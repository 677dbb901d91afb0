"""Fast refusals: bad input is refused in our words before the engines, the rule catalog,
the result store or the source load (the CLI run in process, those monkeypatched to fail)."""

from __future__ import annotations

import gzip
import io
import secrets
import sys
import tarfile
from pathlib import Path

import pytest

import leakscan.detectors
import leakscan.detectors.kingfisher
import leakscan.scan
import leakscan.sources
from leakscan import cli
from leakscan.errors import InputError
from leakscan.preflight import refuse_early


def _forbid(*_: object, **__: object) -> None:
    raise AssertionError("loaded for an input that should have been refused first")


@pytest.fixture()
def nothing_heavy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every costly step of a scan fails the test if reached."""
    monkeypatch.setattr(leakscan.detectors, "build_detectors", _forbid)
    monkeypatch.setattr(leakscan.detectors.kingfisher, "catalog", _forbid)
    monkeypatch.setattr(leakscan.detectors.kingfisher, "preload", _forbid)
    monkeypatch.setattr(leakscan.scan, "build_detectors", _forbid)
    monkeypatch.setattr(leakscan.scan, "open_store", _forbid)
    monkeypatch.setattr(leakscan.scan, "open_source", _forbid)
    monkeypatch.setattr(leakscan.sources, "open_source", _forbid)


def _run_cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["leakscan", *args])
    with pytest.raises(SystemExit) as ended:
        cli.main()
    code = ended.value.code
    assert isinstance(code, int)
    return code


def _bad_inputs(tmp_path: Path) -> dict[str, str]:
    """Input -> the message that refuses it."""
    random_file = tmp_path / "random.bin"
    random_file.write_bytes(secrets.token_bytes(4096))
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello\n" * 100)
    empty = tmp_path / "empty.tar"
    empty.write_bytes(b"")
    folder = tmp_path / "folder"
    folder.mkdir()
    missing = tmp_path / "missing.tar"
    nolayout = tmp_path / "nolayout"
    not_image = (
        "not an image: neither a tar archive (docker save, an OCI archive) nor an image folder"
    )
    return {
        str(missing): f"{missing}: no such file or directory",
        f"docker-archive:{missing}": f"docker-archive:{missing}: no such file or directory: "
        f"{missing}",
        f"oci:{nolayout}:v1": f"oci:{nolayout}:v1: no such file or directory: {nolayout}:v1",
        str(random_file): f"{random_file}: {not_image}",
        f"oci-archive:{text_file}": f"oci-archive:{text_file}: {not_image}",
        str(empty): f"{empty}: empty file, not an image",
        str(folder): f"{folder}: not an image folder: it has neither index.json nor "
        "manifest.json (an OCI layout, an unpacked docker save)",
    }


def test_refused_before_anything_loads(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    nothing_heavy: None,
) -> None:
    for image, message in _bad_inputs(tmp_path).items():
        for command in ([], ["baseline", "-o", str(tmp_path / "b.json")]):
            code = _run_cli(monkeypatch, *command, image)
            err = capsys.readouterr().err
            assert code == 2, (image, err)
            assert err == f"leakscan: error: {message}\n"
            assert "ReadError" not in err and "tarfile" not in err


def test_what_may_be_an_image_passes(tmp_path: Path) -> None:
    """Only what the first bytes prove is refused: tars and compressed streams go on."""
    plain = tmp_path / "image.tar"
    with tarfile.open(plain, "w") as tar:
        data = b"{}"
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    squeezed = tmp_path / "image.tar.gz"
    squeezed.write_bytes(gzip.compress(plain.read_bytes()))
    layout = tmp_path / "layout"
    layout.mkdir()
    (layout / "index.json").write_text("{}")
    names = ("myapp:latest", "docker://registry.example.internal/app", "docker-daemon:x")
    paths = (str(plain), str(squeezed), f"oci:{layout}:latest", f"docker-archive:{plain}")
    for image in paths + names:
        refuse_early(image)
    with pytest.raises(InputError, match="no image given"):
        refuse_early("")


def test_sniffed_path_message_has_no_tarfile_internals(tmp_path: Path) -> None:
    """The library's own refusal (for callers that skip the CLI) says it in our words too."""
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\x1f\x8b" + secrets.token_bytes(600))
    with pytest.raises(InputError) as refused:
        leakscan.sources.parse_target(str(bad))
    assert str(refused.value) == f"{bad}: not an image: not a tar archive or image directory"
