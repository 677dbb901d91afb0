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
