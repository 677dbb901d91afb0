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
