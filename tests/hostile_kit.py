"""Running leakscan on hostile input: bounded in time and memory, one line per error.

Shared by tests/hostile/ (a module of its own: test files cannot import a conftest)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from schema import validate_report

REPO = Path(__file__).resolve().parents[1]
TIME_LIMIT = 120.0  # a hang guard: generous, since a loaded machine is slow
MEMORY_LIMIT_MB = 512
# secrets planted by the corpus: none may appear in any output (no --show-secrets here)
KNOWN_SECRETS: set[str] = set()


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str
    seconds: float
    peak_mb: float
    report: dict[str, Any] | None


def scan_hostile(args: list[str], tmp_path: Path) -> Outcome:
    """Run the CLI on hostile input with a JSON report, and check what must always hold:
    it ends in time, within memory, with 0/1/2, no traceback, one line per error, a valid
    report whatever happened."""
    out_file = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "leakscan", *args, "-f", "json", "-o", str(out_file)]
    # a fresh TMPDIR and working folder, both empty afterwards: nothing is written outside
    # leakscan's private temp dir, and that is removed
    private_tmp, workdir = tmp_path / "tmp", tmp_path / "cwd"
    private_tmp.mkdir()
    workdir.mkdir()
    env = {**os.environ, "TMPDIR": str(private_tmp), "PYTHONPATH": str(REPO)}
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=workdir, env=env
    )
    chunks: dict[str, bytes] = {}

    def drain(name: str, pipe: Any) -> None:
        chunks[name] = pipe.read()

    readers = [
        threading.Thread(target=drain, args=("out", proc.stdout)),
        threading.Thread(target=drain, args=("err", proc.stderr)),
    ]
    for reader in readers:
        reader.start()
    # the peak RSS is polled from /proc: ru_maxrss of a child starts at its parent's RSS at
    # fork (Linux keeps the high-water mark across exec), and pytest's is large
    status, peak_kb = 0, 0.0
    while True:
        peak_kb = max(peak_kb, _vm_hwm_kb(proc.pid))
        pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - started > TIME_LIMIT:
            proc.kill()
            os.wait4(proc.pid, 0)
            pytest.fail(f"leakscan {' '.join(args)} did not finish in {TIME_LIMIT} s")
        time.sleep(0.02)
    proc.returncode = os.waitstatus_to_exitcode(status)
    for reader in readers:
        reader.join()
    seconds = time.monotonic() - started
    out, err = chunks["out"].decode(), chunks["err"].decode()
    assert proc.returncode in (0, 1, 2), (proc.returncode, err)
    assert "Traceback" not in err, err
    for line in err.splitlines():
        assert line.startswith("leakscan: "), err
    report = None
    if out_file.exists():
        report = json.loads(out_file.read_text())
        validate_report(report)
    assert seconds < TIME_LIMIT
    assert peak_kb > 0, "the peak RSS was never read"
    assert list(private_tmp.iterdir()) == [], "leakscan left files in TMPDIR"
    assert list(workdir.iterdir()) == [], "leakscan wrote to its working folder"
    shown = out + err + (out_file.read_text() if out_file.exists() else "")
    for secret in KNOWN_SECRETS:
        assert secret not in shown, "a planted secret was printed in clear"
    assert peak_kb / 1024 < MEMORY_LIMIT_MB, f"peak RSS {peak_kb / 1024:.0f} MB"
    return Outcome(proc.returncode, out, err, seconds, peak_kb / 1024, report)


def _vm_hwm_kb(pid: int) -> float:
    """The process's own resident high-water mark, or 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1])
    except OSError:
        pass
    return 0.0


@pytest.fixture
def hostile(tmp_path: Path) -> Any:
    def run(*args: str) -> Outcome:
        return scan_hostile(list(args), tmp_path)

    return run


def env_without_ci() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "CI"}
