"""The first scan on a fresh machine: where the compiled rule catalog lives, that it is
compiled once (``leakscan warm-up``, or one process of many), and that ``--version`` and the
report say which catalog it is."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import kingfisher_sdk
import pytest
from kingfisher_sdk import Rules

from leakscan.__main__ import _rules_beside
from leakscan.detectors import kingfisher

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "leaky-npm.tar"


def _env(home: Path, **extra: str) -> dict[str, str]:
    """A fresh machine's environment: its own HOME and cache folder, no catalog setting."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("KF_RULE_CACHE_DIR", "LEAKSCAN_CACHE_DIR")
    }
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), **extra)
    return env


def _leakscan(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "leakscan", *args], capture_output=True, text=True, env=env
    )


@pytest.fixture(scope="module")
def warm_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HOME where ``leakscan warm-up`` ran once (one compile for the module)."""
    home = tmp_path_factory.mktemp("warm")
    run = _leakscan("warm-up", env=_env(home))
    assert run.returncode == 0, run.stderr
    return home


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("KF_RULE_CACHE_DIR", raising=False)
    monkeypatch.delenv("LEAKSCAN_CACHE_DIR", raising=False)
    yield


@pytest.mark.usefixtures("clean_env")
def test_rules_dir_beside_the_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LEAKSCAN_CACHE_DIR", str(tmp_path / "store"))
    assert kingfisher.rules_dir() == tmp_path / "store" / "rules"
    monkeypatch.setenv("KF_RULE_CACHE_DIR", str(tmp_path / "kf"))  # kingfisher's own wins
    assert kingfisher.rules_dir() == tmp_path / "kf"


@pytest.mark.usefixtures("clean_env")
def test_cache_dir_flag_puts_the_catalog_there(tmp_path: Path) -> None:
    _rules_beside(["app.tar", "--cache-dir", str(tmp_path)])
    try:
        assert os.environ["KF_RULE_CACHE_DIR"] == str(tmp_path / "rules")
        assert kingfisher.rules_dir() == tmp_path / "rules"
    finally:
        del os.environ["KF_RULE_CACHE_DIR"]


def test_warm_up_compiles_beside_the_store(warm_home: Path) -> None:
    folder = warm_home / ".cache" / "leakscan" / "rules"
    stamp = json.loads((folder / f"kingfisher-{kingfisher_sdk.__version__}-low.json").read_text())
    assert stamp["engine"] == "kingfisher" and stamp["rules"] > 400
    assert stamp["digest"].startswith("sha256:")
    # what kingfisher stored there is what a scan then loads: no compile
    assert Rules(confidence="low", cache_dir=folder).cache_status == "loaded"
    # private: kingfisher refuses a cache folder others can write to
    assert folder.stat().st_mode & 0o077 == 0


def test_version_names_the_catalog_without_compiling(warm_home: Path, tmp_path: Path) -> None:
    run = _leakscan("--version", env=_env(warm_home))
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("leakscan ")
    assert lines[1].startswith("rules: kingfisher ") and " rules, sha256:" in lines[1]
    fresh = _leakscan("--version", env=_env(tmp_path))
    assert "not compiled yet" in fresh.stdout
    assert not (tmp_path / ".cache" / "leakscan" / "rules").exists()


def test_report_names_the_catalog(warm_home: Path) -> None:
    run = _leakscan(
        str(FIXTURE), "-f", "json", "--fail-on", "none", "--no-cache", env=_env(warm_home)
    )
    assert run.returncode == 0, run.stderr
    tool = json.loads(run.stdout)["tool"]
    version = _leakscan("--version", env=_env(warm_home)).stdout.splitlines()[1]
    rules = tool["rules"]
    assert (
        version
        == f"rules: kingfisher {rules['version']}, {rules['rules']} rules, {rules['digest']}"
    )


def test_parallel_processes_compile_once(tmp_path: Path) -> None:
    """A second process that finds the compile lock taken waits, then loads what the first
    stored: it does not compile the catalog a second time."""
    folder = tmp_path / "rules"
    folder.mkdir(mode=0o700)
    code = (
        "import sys; from leakscan.detectors import kingfisher as k; "
        "print('ready', flush=True); sys.stdin.readline(); "
        "print(k.catalog().cache_status, flush=True)"
    )
    env = {**os.environ, "KF_RULE_CACHE_DIR": str(folder)}
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline() == "ready\n"
        fd = os.open(folder / ".compile.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # this test is the process compiling
            child.stdin.write("go\n")
            child.stdin.flush()
            ours = Rules(confidence="low", cache_dir=folder)
        finally:
            os.close(fd)
        assert ours.cache_status == "stored"
        assert child.stdout.readline() == "loaded\n"  # waited, then loaded ours
    finally:
        child.stdin.close()
        assert child.wait(timeout=600) == 0


@pytest.mark.parametrize("args", [["--bogus"], ["--cache-dir"], ["--cache-dir", "d", "extra"]])
def test_warm_up_refuses_other_arguments(args: list[str], tmp_path: Path) -> None:
    run = _leakscan("warm-up", *args, env=_env(tmp_path))
    assert run.returncode == 2 and "Usage: leakscan warm-up" in run.stderr
    assert not (tmp_path / ".cache").exists() and not (tmp_path / "d").exists()


def test_warm_up_into_the_cache_dir(tmp_path: Path) -> None:
    run = _leakscan("warm-up", f"--cache-dir={tmp_path / 'ci'}", env=_env(tmp_path))
    assert run.returncode == 0, run.stderr
    assert f"(compiled in {tmp_path / 'ci' / 'rules'})" in run.stdout
    assert Rules(confidence="low", cache_dir=tmp_path / "ci" / "rules").cache_status == "loaded"


@pytest.mark.usefixtures("clean_env")
def test_no_cache_leaves_the_cache_dir_alone(tmp_path: Path) -> None:
    _rules_beside(["app.tar", "--no-cache", "--cache-dir", str(tmp_path / "n")])
    assert "KF_RULE_CACHE_DIR" not in os.environ
