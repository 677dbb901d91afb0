"""The ``leakscan`` command's entry point (leakscan.__main__): what it does at exit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from schema import validate_report

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "fixtures" / "leaky-npm.tar"

# an atexit callback registered before main() runs after main()'s own: it sees the end state
_PROBE = """
import atexit, gc, sys
atexit.register(lambda: print("frozen", gc.get_freeze_count() > 0, flush=True))
sys.argv = ["leakscan", *sys.argv[1:]]
from leakscan.__main__ import main
main()
"""


def test_objects_are_frozen_at_exit_after_everything_else(tmp_path: Path) -> None:
    """After a scan that ends in findings (exit 1), the objects left are frozen for the
    teardown, after every other atexit callback; the report written is whole."""
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, f"docker-archive:{FIXTURE}", "--no-cache",
         "--format", "json", "--output", str(out)],
        capture_output=True, text=True, check=False, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "frozen True"
    report = json.loads(out.read_text())
    validate_report(report)
    assert report["images"][0]["findings"]


# main() with the catalog's preloading replaced by a word on stdout
_PRELOAD_PROBE = """
import sys
import leakscan.detectors.kingfisher as kingfisher
kingfisher.preload = lambda: print("preloaded", flush=True)
sys.argv = ["leakscan", *sys.argv[1:]]
from leakscan.__main__ import main
main()
"""


def _preloads(tmp_path: Path, *args: str) -> bool:
    proc = subprocess.run(
        [sys.executable, "-c", _PRELOAD_PROBE, *args, "--db", str(tmp_path / "a.db"),
         "--cache-dir", str(tmp_path / "cache")],
        capture_output=True, text=True, check=False, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    return "preloaded" in proc.stdout


def test_an_audit_on_a_dask_cluster_loads_no_catalog_here(tmp_path: Path) -> None:
    """The workers scan the layers and the strings: the client does not start loading the
    catalog as an audit that scans here does (each is refused here, for its target, after
    that choice)."""
    target = "not a registry"
    assert _preloads(tmp_path, "audit", target)
    assert not _preloads(tmp_path, "audit", target, "--dask", "tcp://127.0.0.1:1")
    assert not _preloads(tmp_path, "audit", target, "--dask=tcp://127.0.0.1:1")
