"""Shared fixtures: the detection engines (compiled once per session), CLI runs, tokens;
and under ``CI=true`` no test may skip."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clirun import run_leakscan
from needs import in_ci

from leakscan.detectors import Detectors, default_detectors

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def private_result_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The CLI keeps a result store by default: every test run (and every leakscan process
    it starts) gets its own, never the user's."""
    saved = os.environ.get("LEAKSCAN_CACHE_DIR")
    os.environ["LEAKSCAN_CACHE_DIR"] = str(tmp_path_factory.mktemp("result-store"))
    yield
    if saved is None:
        os.environ.pop("LEAKSCAN_CACHE_DIR", None)
    else:
        os.environ["LEAKSCAN_CACHE_DIR"] = saved


@pytest.fixture(scope="session")
def detectors() -> Detectors:
    return default_detectors()


@pytest.fixture(scope="session")
def leakscan() -> Any:
    return run_leakscan


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Under ``CI=true`` a skip is a failure, whoever wrote it: .ci/setup installs every tool
    and fixture, so a skip there would hide a test that never ran (tests/needs.py says why
    in the message; this catches a plain ``pytest.skip`` too)."""
    report = yield
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where every test must run: {reason}"
    return report
