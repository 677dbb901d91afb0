"""Shared fixtures: the detection engines (compiled once per session), CLI runs, tokens;
and under ``CI=true`` no test may skip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from clirun import run_leakscan
from needs import in_ci

from leakscan.detectors import Detectors, default_detectors

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def private_result_store(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI keeps a result store by default: every test (and every leakscan process it
    starts) gets an empty one of its own, never the user's nor another test's (a test of a
    broken blob must read the blob, not an earlier test's result for the same layer)."""
    monkeypatch.setenv("LEAKSCAN_CACHE_DIR", str(tmp_path_factory.mktemp("result-store")))


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
