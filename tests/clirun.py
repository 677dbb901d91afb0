"""Running the real CLI in a subprocess, as users and CI do (shared by every test folder;
a test module cannot import a conftest)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schema import validate_report

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Run:
    """One leakscan run: exit code, stdout, stderr, and the parsed JSON report if any."""

    code: int
    out: str
    err: str

    @property
    def report(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.out)
        validate_report(data)
        return data


def run_leakscan(args: Sequence[str], timeout: float = 120, cwd: Path | None = None) -> Run:
    """Run the real CLI in a subprocess, as a user or CI would."""
    proc = subprocess.run(
        [sys.executable, "-m", "leakscan", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or REPO,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)
