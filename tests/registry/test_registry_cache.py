"""Through a real registry, a re-scan comes from the result store and says the same."""

from __future__ import annotations

from pathlib import Path

import pytest
from regkit import World
from test_recall import plain

from leakscan.scan import ScanOptions, scan


@pytest.mark.parametrize("repo", ["leaky/app:1", "multi/app:1", "dlist/app:1"])
def test_registry_rescan_from_the_store(world: World, tmp_path: Path, repo: str) -> None:
    ref = f"docker://{world.plain.host}/{repo}"
    store = ScanOptions(cache=str(tmp_path / "results.sqlite3"), min_confidence="low", workers=1)
    cold = plain(scan(ref, ScanOptions(min_confidence="low", workers=1)))
    first = scan(ref, store)
    warm = scan(ref, store)
    assert cold["images"] and not cold["errors"]
    assert any(image["findings"] for image in cold["images"])
    assert plain(first) == cold and plain(warm) == cold
    assert warm.cache is not None and warm.cache.layers_scanned == 0


def test_same_layers_under_another_name_come_from_the_store(world: World, tmp_path: Path) -> None:
    """An OCI layout scanned first, then the same image in a registry: its layers are
    known by their diff_ids, whatever the source."""
    store = ScanOptions(cache=str(tmp_path / "results.sqlite3"), min_confidence="low", workers=1)
    scan(f"oci:{world.single}:1", store)
    via_registry = scan(f"docker://{world.plain.host}/leaky/app:1", store)
    assert via_registry.cache is not None and via_registry.cache.layers_scanned == 0
