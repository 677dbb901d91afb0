"""Whole reports kept by the store: written back exactly, never with a secret, and keyed
by everything a report is made from."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest
from helpers import write
from imagebuilder import Image, Layer, fake_token
from test_recall import leaky_image

from leakscan import model as m
from leakscan.scan import ScanOptions, report_settings, scan
from leakscan.sources import open_source
from leakscan.store import open_store
from leakscan.store.reports import (
    IMAGE,
    ReportCodecError,
    Settings,
    decode_report,
    encode_report,
    recall_report,
    report_key,
)

SETTINGS = Settings("medium", (), (), (), ())


def _images(ref: str) -> list[m.SourceImage]:
    source = open_source(ref)
    try:
        return list(source.images(()))
    finally:
        source.close()


def test_a_report_comes_back_equal(tmp_path: Path) -> None:
    ref = write("oci-dir", leaky_image(), tmp_path)
    report = scan(ref, ScanOptions(min_confidence="low"))
    assert report.findings and report.images[0].attestations == ()
    back = decode_report(encode_report(report, 3, 7))
    assert dataclasses.replace(back, cache=None) == report
    assert back.cache == m.CacheInfo(3, 0, 7, 0)


def test_a_report_with_secrets_is_never_kept() -> None:
    token = fake_token("github")
    loc = m.ConfigLocation("Env", "GITHUB_TOKEN")
    finding = m.Finding("r", "d", "0" * 64, "ghp_...", "f", loc, "high", ("x",), "rotate")
    image = m.ImageReport("r", "oci", None, None, "sha256:c", (), (), (finding,), (), ())
    encode_report(m.ScanReport("r", (image,)), 0, 0)  # masked: kept
    shown = dataclasses.replace(image, findings=(dataclasses.replace(finding, secret=token),))
    with pytest.raises(ReportCodecError):
        encode_report(m.ScanReport("r", (shown,)), 0, 0)


@pytest.mark.parametrize(
    "value", [b"", b"{", b'{"layers": 1, "texts": 1, "report": {"@": "os.system"}}', b"[1]"]
)
def test_a_damaged_entry_is_no_answer(value: bytes, tmp_path: Path) -> None:
    with pytest.raises(ReportCodecError):
        decode_report(value)
    with open_store(str(tmp_path / "s.sqlite3")) as store:
        store.put_many(IMAGE, [("k", value)])
        assert recall_report(store, "k") is None


def test_the_key_covers_what_a_report_is_made_from(tmp_path: Path) -> None:
    token = fake_token("github")
    one = write("oci-dir", Image(layers=[Layer().file("a", "x\n")], env=["A=1"]), tmp_path / "1")
    images = _images(one)
    base = report_key("f" * 64, one, images, SETTINGS)
    assert base == report_key("f" * 64, one, _images(one), SETTINGS)  # stable
    other_env = Image(layers=[Layer().file("a", "x\n")], env=[f"A={token}"])
    two = write("oci-dir", other_env, tmp_path / "2")
    assert len({
        base,
        report_key("e" * 64, one, images, SETTINGS),
        report_key("f" * 64, one + "x", images, SETTINGS),
        report_key("f" * 64, one, images, dataclasses.replace(SETTINGS, min_confidence="low")),
        report_key("f" * 64, one, images, dataclasses.replace(SETTINGS, rules=("r",))),
        report_key("f" * 64, one, images, dataclasses.replace(SETTINGS, paths=("/a",))),
        report_key("f" * 64, one, images, dataclasses.replace(SETTINGS, accepted=("x",))),
        report_key("f" * 64, one, images, dataclasses.replace(SETTINGS, platforms=("l/a",))),
        report_key("f" * 64, one, _images(two), SETTINGS),
    }) == 9  # fmt: skip
    # the config itself, not only its digest, is in the key
    doctored = [dataclasses.replace(images[0], config={**images[0].config, "x": 1})]
    assert report_key("f" * 64, one, doctored, SETTINGS) != base


def test_a_scan_keeps_its_whole_report_only_when_complete(tmp_path: Path) -> None:
    ref = write("docker25", leaky_image(), tmp_path)
    options = ScanOptions(cache=str(tmp_path / "s" / "results.sqlite3"))
    report = scan(ref, options)
    with sqlite3.connect(tmp_path / "s" / "results.sqlite3") as db:
        kept = dict(db.execute("SELECT key, value FROM entries WHERE kind = ?", (IMAGE,)))
    from leakscan.store.keys import DEFAULT_DETECTORS, DEFAULT_LIMITS, fingerprint_of

    key = report_key(
        fingerprint_of(DEFAULT_DETECTORS, DEFAULT_LIMITS, None),
        ref,
        _images(ref),
        report_settings(options),
    )
    assert list(kept) == [key]
    assert dataclasses.replace(decode_report(kept[key]), cache=None) == dataclasses.replace(
        report, cache=None
    )
    # shown secrets and an incomplete scan keep nothing
    for other in (
        ScanOptions(cache=str(tmp_path / "t" / "results.sqlite3"), show_secrets=True),
        ScanOptions(cache=str(tmp_path / "u" / "results.sqlite3"), platforms=("linux/s390x",)),
    ):
        scan(ref, other)
        assert other.cache is not None
        with sqlite3.connect(other.cache) as db:
            assert not list(db.execute("SELECT key FROM entries WHERE kind = ?", (IMAGE,)))
