"""Installed versions read from .dist-info folders give importlib.metadata's answers."""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

import pytest

from leakscan import distinfo


def _dist(folder: Path, name: str, version: str, ext: str = ".dist-info") -> None:
    info = folder / f"{name}-{version}{ext}"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nbody\n"
    )


@pytest.mark.parametrize(
    "name",
    ["kingfisher-secret-scanner", "detect-secrets", "pytest", "Pygments", "typing_extensions"],
)
def test_same_version_as_importlib_metadata(name: str) -> None:
    assert distinfo.installed_version(name) == metadata.version(name)
    assert distinfo.dist_info_version(name) == metadata.version(name)


def test_not_installed_is_none() -> None:
    assert distinfo.installed_version("no-such-distribution-anywhere") is None


def test_the_first_path_entry_wins_and_eggs_are_left_to_importlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    _dist(first, "made_up.pkg", "2.0")
    _dist(second, "made-up-pkg", "1.0")
    distinfo._entries.cache_clear()
    monkeypatch.setattr(sys, "path", [str(tmp_path / "missing"), str(first), str(second)])
    try:
        assert distinfo.dist_info_version("Made-Up_Pkg") == "2.0"
        assert distinfo.installed_version("made-up-pkg") == metadata.version("made-up-pkg") == "2.0"
        _dist(first, "other", "3.0", ".egg-info")
        distinfo._entries.cache_clear()
        assert distinfo.dist_info_version("other") is None  # importlib reads eggs its own way
    finally:
        distinfo._entries.cache_clear()
