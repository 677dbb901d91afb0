"""The first scan on a fresh machine: where the compiled rule catalog lives, that it is
compiled once (``leakscan warm-up``, or one process of many), that a built leakscan ships it
compiled (build_catalog.py) and a fresh machine's first scan loads that, that a shipped form
that does not suit the machine is compiled again, and that ``--version`` and the report say
which catalog it is."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kingfisher_sdk
import pytest
from kingfisher_sdk import Rules
from schema import validate_report

from leakscan.__main__ import _rules_beside
from leakscan.detectors import kingfisher

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "fixtures" / "leaky-npm.tar"


def _env(home: Path, **extra: str) -> dict[str, str]:
    """A fresh machine's environment: its own HOME and cache folder, no catalog setting."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("KF_RULE_CACHE_DIR", "LEAKSCAN_CACHE_DIR")
    }
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), **extra)
    return env


def _leakscan(
    *args: str, env: dict[str, str], site: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``leakscan ARGS``: this tree's, or with ``site`` the one installed there (run from
    ``site``, so that this tree is not on the path)."""
    if site is not None:
        env = {**env, "PYTHONPATH": str(site)}
    return subprocess.run(
        [sys.executable, "-m", "leakscan", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=site,
        timeout=600,
    )


def _stamp(rules: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (rules / f"kingfisher-{kingfisher_sdk.__version__}-low.json").read_text()
    )
    return data


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this tree, as a release builds it (offline here: the build step
    compiles the catalog with the kingfisher installed)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(REPO)],
        check=True, capture_output=True, timeout=900,
    )  # fmt: skip
    (built,) = out.glob("leakscan-*.whl")
    return built


@pytest.fixture(scope="module")
def site(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install`` of that wheel, into a folder of its own (the dependencies are this
    interpreter's)."""
    folder = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
         "--target", str(folder), str(wheel)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    return folder


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rules folder where kingfisher compiled the catalog itself (nothing shipped)."""
    folder = tmp_path_factory.mktemp("compiled") / "rules"
    folder.mkdir(mode=0o700)
    assert Rules(confidence="low", cache_dir=folder).cache_status == "stored"
    return folder


def _findings(report: dict[str, Any]) -> list[tuple[Any, ...]]:
    validate_report(report)
    return sorted(
        (f["rule_id"], f["secret_sha256"], json.dumps(f["location"], sort_keys=True))
        for image in report["images"]
        for f in image["findings"]
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


def test_version_names_the_catalog_without_compiling(warm_home: Path) -> None:
    run = _leakscan("--version", env=_env(warm_home))
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("leakscan ")
    assert lines[1].startswith("rules: kingfisher ") and " rules, sha256:" in lines[1]


def test_report_names_the_catalog(warm_home: Path) -> None:
    run = _leakscan(
        str(FIXTURE), "-f", "json", "--fail-on", "none", "--no-cache", env=_env(warm_home)
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    validate_report(report)
    tool = report["tool"]
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
    # no shipped catalog for the child: with one, a child that took no lock would copy it
    # and load it too, and the test could not tell
    code = (
        "import sys; from leakscan.detectors import kingfisher as k; "
        "k.SHIPPED = k.SHIPPED / 'none'; "
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
    assert run.stdout.rstrip().endswith(f" {tmp_path / 'ci' / 'rules'})")
    assert Rules(confidence="low", cache_dir=tmp_path / "ci" / "rules").cache_status == "loaded"


def test_warm_up_says_why_a_catalog_is_not_kept(tmp_path: Path) -> None:
    """kingfisher keeps no compiled catalog below a folder others may write to (a tree
    unpacked by root from git archive has them): warm-up says which one, else every scan
    compiles the catalog again with no word said."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o775)
    run = _leakscan("warm-up", f"--cache-dir={shared / 'ci'}", env=_env(tmp_path))
    assert run.returncode == 0, run.stderr
    assert "not kept" in run.stdout
    assert f"{shared} is writable by others" in run.stdout
    shared.chmod(0o755)
    run = _leakscan("warm-up", f"--cache-dir={shared / 'ci'}", env=_env(tmp_path))
    assert run.returncode == 0 and "not kept" not in run.stdout and "writable" not in run.stdout


def test_open_to_others_leaves_sticky_folders_alone(tmp_path: Path) -> None:
    from leakscan.catalog import open_to_others

    sticky = tmp_path / "tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)  # as /tmp: others write, but cannot replace what is not theirs
    assert open_to_others(sticky / "a" / "rules") is None
    (sticky / "a").mkdir()
    (sticky / "a").chmod(0o757)
    assert open_to_others(sticky / "a" / "rules") == sticky / "a"


@pytest.mark.usefixtures("clean_env")
def test_no_cache_leaves_the_cache_dir_alone(tmp_path: Path) -> None:
    _rules_beside(["app.tar", "--no-cache", "--cache-dir", str(tmp_path / "n")])
    assert "KF_RULE_CACHE_DIR" not in os.environ


# ---- the compiled catalog a built leakscan ships (build_catalog.py) ----------------------


def _shipped_dir(site: Path) -> Path:
    return site / "leakscan" / "detectors" / "compiled"


def test_wheel_ships_the_catalog_kingfisher_loads(wheel: Path, site: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if n.startswith("leakscan/detectors/compiled/")]
    ship = kingfisher.shipped(_shipped_dir(site))
    assert ship is not None
    assert sorted(names) == sorted(
        f"leakscan/detectors/compiled/{n}" for n in (kingfisher.MANIFEST, ship.file)
    )
    # the entry is the one kingfisher looks for (its key for this release and catalog), and
    # the manifest names the catalog as leakscan does once it is loaded
    folder = tmp_path / "rules"
    folder.mkdir(mode=0o700)
    shutil.copyfile(ship.folder / ship.file, folder / ship.file)
    (folder / ship.file).chmod(0o600)
    rules = Rules(confidence="low", cache_dir=folder)
    assert rules.cache_status == "loaded"
    assert kingfisher.CatalogInfo.of(rules) == ship.info


def test_first_scan_after_pip_install_loads_the_shipped_catalog(
    site: Path, compiled: Path, tmp_path: Path
) -> None:
    """A fresh machine (empty HOME and cache) scans with the catalog the wheel carries, and
    reports what a scan with a catalog kingfisher compiled itself reports."""
    scan = (str(FIXTURE), "-f", "json", "--fail-on", "none")
    home = tmp_path / "fresh"
    first = _leakscan(*scan, env=_env(home), site=site)
    assert first.returncode == 0, first.stderr
    rules = home / ".cache" / "leakscan" / "rules"
    assert _stamp(rules)["origin"] == "shipped"
    assert not list(rules.glob(".*.vscdb.*"))  # no copy left half-written
    reference = _leakscan(
        *scan, "--no-cache", env=_env(tmp_path / "ref", KF_RULE_CACHE_DIR=str(compiled))
    )
    assert reference.returncode == 0, reference.stderr
    report, expected = json.loads(first.stdout), json.loads(reference.stdout)
    assert _findings(report) == _findings(expected) != []
    assert report["tool"]["rules"] == expected["tool"]["rules"]
    # the second scan: the result store answers, the same findings
    second = _leakscan(*scan, env=_env(home), site=site)
    again = json.loads(second.stdout)
    assert again["cache"]["layers_scanned"] == 0
    assert _findings(again) == _findings(report)


def test_installed_leakscan_is_the_wheel(site: Path, tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-c", "import leakscan; print(leakscan.__file__)"],
        capture_output=True, text=True, cwd=site, env={**_env(tmp_path), "PYTHONPATH": str(site)},
    )  # fmt: skip
    assert Path(run.stdout.strip()).is_relative_to(site), run.stderr


def test_version_on_a_fresh_machine_names_the_shipped_catalog(site: Path, tmp_path: Path) -> None:
    ship = kingfisher.shipped(_shipped_dir(site))
    assert ship is not None
    run = _leakscan("--version", env=_env(tmp_path), site=site)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[1] == f"rules: {ship.info}"
    assert not (tmp_path / ".cache").exists()  # nothing compiled, nothing copied


def test_version_without_a_shipped_catalog(site: Path, tmp_path: Path) -> None:
    """A leakscan built without the catalog (no kingfisher at build time) says so."""
    bare = tmp_path / "site"
    shutil.copytree(site, bare, ignore=shutil.ignore_patterns("compiled"))
    run = _leakscan("--version", env=_env(tmp_path), site=bare)
    assert run.returncode == 0, run.stderr
    assert "not compiled yet" in run.stdout


def test_warm_up_copies_the_shipped_catalog(site: Path, tmp_path: Path) -> None:
    first = _leakscan("warm-up", env=_env(tmp_path), site=site)
    assert first.returncode == 0, first.stderr
    rules = tmp_path / ".cache" / "leakscan" / "rules"
    assert f"(the compiled form leakscan ships, copied into {rules})" in first.stdout
    assert _stamp(rules)["origin"] == "shipped"
    again = _leakscan("warm-up", env=_env(tmp_path), site=site)
    assert f"(compiled already in {rules})" in again.stdout


def _damage(entry: Path, how: str) -> None:
    data = bytearray(entry.read_bytes())
    if how == "damaged":
        data[len(data) // 2] ^= 0xFF  # one flipped byte in the compiled database
    else:
        # what another Vectorscan build made (its header says so): not loaded as such
        at = data.index(b"runtime=") + len(b"runtime=")
        data[at] = ord("9") if data[at] != ord("9") else ord("8")
    entry.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["damaged", "another vectorscan"])
def test_a_shipped_catalog_that_does_not_suit_is_compiled_again(
    how: str, site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped_dir = tmp_path / "compiled"
    shutil.copytree(_shipped_dir(site), shipped_dir)
    ship = kingfisher.shipped(shipped_dir)
    assert ship is not None
    _damage(shipped_dir / ship.file, how)
    monkeypatch.setattr(kingfisher, "SHIPPED", shipped_dir)
    monkeypatch.setattr(kingfisher, "_ORIGIN", None)
    folder = tmp_path / "rules"
    rules = kingfisher._load(folder)
    assert (rules.cache_status, kingfisher.catalog_origin()) == ("stored", "compiled")
    assert kingfisher.CatalogInfo.of(rules) == ship.info
    assert _stamp(folder)["origin"] == "compiled"
    # the bad copy was replaced by what this machine compiled
    assert Rules(confidence="low", cache_dir=folder).cache_status == "loaded"


def _manifest(folder: Path, **changes: Any) -> Path:
    ship = folder / "compiled"
    ship.mkdir()
    data = {"engine": "kingfisher", "version": kingfisher_sdk.__version__, "rules": 488,
            "digest": "sha256:0123456789abcdef", "confidence": "low",
            "file": "0123456789abcdef0123456789abcdef.vscdb", **changes}  # fmt: skip
    (ship / kingfisher.MANIFEST).write_text(json.dumps(data))
    (ship / "0123456789abcdef0123456789abcdef.vscdb").write_bytes(b"KFRULEDB")
    return ship


@pytest.mark.parametrize(
    "changes",
    [
        {"version": "0.0.1"},  # another kingfisher release: its entry is keyed otherwise
        {"confidence": "high"},  # another catalog than the one leakscan loads
        {"file": "../0123456789abcdef0123456789abcdef.vscdb"},  # out of the folder
        {"file": "x.vscdb"},  # not a name kingfisher writes
        {"rules": "many"},
    ],
)
def test_a_shipped_catalog_not_made_for_this_release_is_not_used(
    changes: dict[str, Any], tmp_path: Path
) -> None:
    assert kingfisher.shipped(_manifest(tmp_path, **changes)) is None


def test_shipped_manifest_read(tmp_path: Path) -> None:
    ship = kingfisher.shipped(_manifest(tmp_path))
    assert ship is not None and ship.file == "0123456789abcdef0123456789abcdef.vscdb"
    assert (
        str(ship.info)
        == f"kingfisher {kingfisher_sdk.__version__}, 488 rules, sha256:0123456789abcdef"
    )


def test_copy_keeps_an_entry_already_there(tmp_path: Path) -> None:
    """What a machine compiled (or copied) before is never overwritten by the copy."""
    ship = kingfisher.shipped(_manifest(tmp_path))
    assert ship is not None
    folder = tmp_path / "rules"
    folder.mkdir(mode=0o700)
    (folder / ship.file).write_bytes(b"ours")
    assert not kingfisher._install_shipped(ship, folder)
    assert (folder / ship.file).read_bytes() == b"ours"
    (folder / ship.file).unlink()
    assert kingfisher._install_shipped(ship, folder)
    assert (folder / ship.file).read_bytes() == b"KFRULEDB"
    assert (folder / ship.file).stat().st_mode & 0o077 == 0  # kingfisher reads only private ones


def _project_copy(dest: Path) -> Path:
    """What a source distribution holds, in a folder of its own."""
    for name in ("pyproject.toml", "README.md", "MANIFEST.in", "build_catalog.py"):
        shutil.copy2(REPO / name, dest / name)
    shutil.copytree(
        REPO / "leakscan", dest / "leakscan",
        ignore=shutil.ignore_patterns("__pycache__", "compiled"),
    )  # fmt: skip
    return dest


def _backend(project: Path, call: str, **env: str) -> None:
    subprocess.run(
        [sys.executable, "-c", f"from setuptools import build_meta; build_meta.{call}('out')"],
        cwd=project, check=True, capture_output=True, timeout=900,
        env={**os.environ, **env},
    )  # fmt: skip


def test_editable_install_compiles_the_catalog_in_the_source_tree(tmp_path: Path) -> None:
    """``pip install -e .`` imports from the source tree: the build step compiles there."""
    project = _project_copy(tmp_path)
    _backend(project, "build_editable")
    ship = kingfisher.shipped(project / "leakscan" / "detectors" / "compiled")
    assert ship is not None and ship.info.version == kingfisher_sdk.__version__


def test_a_wheel_can_be_built_without_the_catalog(tmp_path: Path) -> None:
    project = _project_copy(tmp_path)
    _backend(project, "build_wheel", LEAKSCAN_SHIP_CATALOG="0")
    (built,) = (project / "out").glob("leakscan-*.whl")
    with zipfile.ZipFile(built) as zf:
        assert not [n for n in zf.namelist() if "/compiled/" in n]
        assert "leakscan/detectors/kingfisher.py" in zf.namelist()


def test_source_distribution_carries_the_build_step_not_a_catalog(tmp_path: Path) -> None:
    project = _project_copy(tmp_path)
    _backend(project, "build_editable")  # a compiled catalog in the tree: left out
    _backend(project, "build_sdist")
    (sdist,) = (project / "out").glob("leakscan-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
    assert any(n.endswith("/build_catalog.py") for n in names)
    assert not [n for n in names if "/compiled/" in n or n.endswith(".vscdb")]
