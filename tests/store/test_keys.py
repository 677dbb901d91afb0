"""The detection fingerprint changes with everything that changes a layer scan's result."""

from __future__ import annotations

from pathlib import Path

import pytest

from leakscan.detectors import DetectorConfig
from leakscan.layers.archives import ArchiveLimits
from leakscan.store import keys
from leakscan.store.keys import content_key, detection_fingerprint, layer_key


def fp(**kw: object) -> str:
    return detection_fingerprint(
        kw.get("detectors", DetectorConfig()),  # type: ignore[arg-type]
        kw.get("limits", ArchiveLimits()),  # type: ignore[arg-type]
        kw.get("max_file_size"),  # type: ignore[arg-type]
    )


def test_same_settings_same_fingerprint() -> None:
    assert fp() == fp()


def test_every_setting_changes_it(tmp_path: Path) -> None:
    plugin = tmp_path / "ours.py"
    plugin.write_text("# plugin one\n")
    seen = {
        fp(),
        fp(max_file_size=1 << 20),
        fp(limits=ArchiveLimits(max_depth=1)),
        fp(detectors=DetectorConfig(detect_secrets=False)),
        fp(detectors=DetectorConfig(detect_secrets_plugins=(str(plugin),))),
    }
    assert len(seen) == 5
    before = fp(detectors=DetectorConfig(detect_secrets_plugins=(str(plugin),)))
    plugin.write_text("# plugin two\n")  # same path, other content
    assert fp(detectors=DetectorConfig(detect_secrets_plugins=(str(plugin),))) != before


def test_engine_and_leakscan_versions_change_it(monkeypatch: pytest.MonkeyPatch) -> None:
    before = fp()
    monkeypatch.setattr(keys, "_version", lambda name: "9.9.9")
    assert fp() != before
    monkeypatch.undo()
    monkeypatch.setattr(keys, "_code_digest", lambda: "other code")
    assert fp() != before


def test_keys_name_the_bytes() -> None:
    f = fp()
    assert layer_key(f, "sha256:aa") != layer_key(f, "sha256:bb")
    assert layer_key(f, "sha256:aa") != layer_key(fp(max_file_size=1), "sha256:aa")
    assert content_key(f, "aa").endswith(":aa")


def test_the_quick_readers_defaults_are_the_classes() -> None:
    """leakscan.quick names the default settings without importing their classes: should
    a default change and these not, a re-scan would find no whole report under them."""
    import dataclasses

    assert dict(keys.DEFAULT_DETECTORS) == dataclasses.asdict(DetectorConfig())
    assert dict(keys.DEFAULT_LIMITS) == dataclasses.asdict(ArchiveLimits())
    assert keys.fingerprint_of(keys.DEFAULT_DETECTORS, keys.DEFAULT_LIMITS, None) == fp()
    assert keys.fingerprint_of(keys.DEFAULT_DETECTORS, keys.DEFAULT_LIMITS, 1) != fp()


def test_code_digest_covers_every_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A change to any .py file below the package, nested or not, changes the digest."""
    import leakscan

    pkg = tmp_path / "leakscan"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "deep.py").write_text("x = 1\n")
    monkeypatch.setattr(leakscan, "__file__", str(pkg / "__init__.py"))
    keys._code_digest.cache_clear()
    try:
        before = keys._code_digest()
        (pkg / "sub" / "deep.py").write_text("x = 2\n")
        keys._code_digest.cache_clear()
        assert keys._code_digest() != before
        (pkg / "sub" / "deep.py").write_text("x = 1\n")
        (pkg / "notes.txt").write_text("not code\n")
        keys._code_digest.cache_clear()
        assert keys._code_digest() == before
    finally:
        keys._code_digest.cache_clear()
