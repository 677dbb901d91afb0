"""Shared fixtures: the detection engines (compiled once per session), CLI runs, tokens."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from schema import validate_report

from leakscan.detectors import Detectors, default_detectors

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def detectors() -> Detectors:
    return default_detectors()


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


@pytest.fixture(scope="session")
def leakscan() -> Any:
    return run_leakscan
