"""Shared fixtures: the detection engines (compiled once per session), CLI runs, tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from clirun import run_leakscan

from leakscan.detectors import Detectors, default_detectors

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def detectors() -> Detectors:
    return default_detectors()


@pytest.fixture(scope="session")
def leakscan() -> Any:
    return run_leakscan
