"""``leakscan serve``'s usage errors: one line on stderr, exit 2, before anything starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ([], "give --harbor"),
        (["--harbor", "--listen", "nope"], "--listen 'nope': expected HOST:PORT"),
        (["--harbor", "--severity", "deleted.high=Severe"], "PLACE.CONFIDENCE=SEVERITY"),
        (["--harbor", "--tls-cert", "x.crt"], "--tls-cert and --tls-key go together"),
        (["--harbor", "--auth-token-file", "EMPTY"], "the file is empty"),
        (["--harbor", "--scan-timeout", "soon"], "not a duration"),
    ],
)
def test_usage_errors(args: list[str], says: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    args = [str(empty) if a == "EMPTY" else a for a in args]
    proc = subprocess.run(
        [sys.executable, "-m", "leakscan", "serve", *args, "--listen", "127.0.0.1:0"]
        if "--listen" not in args
        else [sys.executable, "-m", "leakscan", "serve", *args],
        capture_output=True, text=True, timeout=120, cwd=REPO, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert says in proc.stderr
    assert "Traceback" not in proc.stderr
