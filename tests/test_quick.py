"""The re-scan the result store answers whole, before the CLI loads (leakscan.quick): the
same reports, statuses and exit codes as the full command, and the full command whenever
the store does not know everything or an argument is not one it reads."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from clirun import REPO, run_leakscan
from helpers import LAYOUTS, write
from imagebuilder import Image, Index, Layer, fake_token
from schema import validate_report
from test_recall import leaky_image

from leakscan import quick
from leakscan.store import store_info


def _leakscan(args: list[str], cwd: Path) -> tuple[int, str, list[str]]:
    """A whole process, with the modules it imported."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "leakscan", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line]
    said = [line for line in proc.stderr.splitlines() if not line.startswith("import time:")]
    return proc.returncode, "\n".join(said), imported


def _plain(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    validate_report(data)
    data.pop("cache", None)
    return data


def _timeless(text: str) -> str:
    """A report without the times it was made at."""
    return re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z?", "TIME", text)


def _counters(folder: Path) -> list[tuple[str, int, int]]:
    info = store_info(str(folder / "results.sqlite3"))
    return sorted((k, info.hits.get(k, 0), info.misses.get(k, 0)) for k in info.hits | info.misses)


def test_arguments_it_reads_and_those_it_leaves_to_the_cli() -> None:
    args = quick.parse(
        ["oci:/x:1", "-f", "json", "--format=sarif=out.sarif", "-o", "r.json", "--fail-on",
         "present", "--min-confidence=low", "-j", "2", "--cache-dir", "/c", "--debug"]
    )  # fmt: skip
    assert args is not None and args.image == "oci:/x:1"
    assert args.formats == ["json", "sarif=out.sarif"] and args.output == "r.json"
    assert args.level == "low" and args.workers == "2" and args.fail_on == ["present"]
    for argv in (
        ["oci:/x:1", "--show-secrets"],  # the store holds no secret
        ["oci:/x:1", "--baseline", "b.json"],
        ["oci:/x:1", "--creds", "u:p"],
        ["oci:/x:1", "--no-cache"],
        ["oci:/x:1", "-h"],
        ["oci:/x:1", "-fjson"],
        ["oci:/x:1", "--min-confidence", "LOW"],
        ["oci:/x:1", "-j", "-1"],
        ["oci:/x:1", "--format"],
        ["oci:/x:1", "oci:/y:1"],
        ["audit"],  # a subcommand, never an image
        ["serve"],
        [],
    ):
        assert quick.parse(argv) is None, argv


@pytest.mark.parametrize(
    "extra",
    [
        ["-f", "json"],
        ["-f", "json", "--min-confidence", "low", "--fail-on", "deleted"],
        ["-f", "json", "--ignore-path", "/app/*", "--fail-on", "none"],
    ],
)
def test_a_known_image_is_answered_without_the_cli(extra: list[str], tmp_path: Path) -> None:
    ref = write("docker25", leaky_image(), tmp_path)
    folder = tmp_path / "store"
    common = [ref, *extra, "--cache-dir", str(folder)]
    cold_code, _, cold_imports = _leakscan([*common, "-o", str(tmp_path / "cold.json")], tmp_path)
    assert "typer" in cold_imports  # an empty store: the CLI scans
    assert "kingfisher_sdk._native" in cold_imports  # and loads the engine
    code, said, imports = _leakscan([*common, "-o", str(tmp_path / "warm.json")], tmp_path)
    assert "typer" not in imports and "pydantic" not in imports
    # the report names the catalog from its stamp: the engine's native module is not loaded
    assert not [m for m in imports if m.startswith("kingfisher_sdk")]
    assert "leakscan.detectors.kingfisher" not in imports
    # the whole report comes from the store: nothing that scans, builds findings from layer
    # records or reads registries' settings is imported (the cold run imports each)
    for name in _NOT_WARM:
        assert name in cold_imports, name
        assert name not in imports, name
    assert code == cold_code and said == ""
    assert _plain(tmp_path / "warm.json") == _plain(tmp_path / "cold.json")
    warm = json.loads((tmp_path / "warm.json").read_text())
    assert warm["cache"]["layers_scanned"] == 0 and warm["cache"]["texts_scanned"] == 0


# what a re-scan answered by a whole stored report does not import
_NOT_WARM = (
    "leakscan.scan",
    "leakscan.findings",
    "leakscan.layerscan",
    "leakscan.recall",
    "leakscan.detectors",
    "leakscan.layers",
    "leakscan.sources.auth",
    "leakscan.redact",
    "importlib.metadata",
)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_whole_report_kept_equals_the_cold_one_in_every_layout(
    layout: str, tmp_path: Path
) -> None:
    """A scan with the store keeps its whole report; the re-scan reads it back (an image
    entry's hit counted) and writes the same report as a scan without the store."""
    ref = write(layout, leaky_image(), tmp_path)
    folder = tmp_path / "store"
    cold = run_leakscan([ref, "-f", "json", "-o", str(tmp_path / "cold.json"), "--no-cache"])
    first = run_leakscan([ref, "-f", "json", "--cache-dir", str(folder)])
    assert first.code == cold.code == 1
    argv = [ref, "-f", "json", "-o", str(tmp_path / "warm.json"), "--cache-dir", str(folder)]
    assert quick.answer(argv) == 1
    assert ("image", 1, 1) in _counters(folder)  # kept by the first, read by the second
    assert _plain(tmp_path / "warm.json") == _plain(tmp_path / "cold.json")
    warm = json.loads((tmp_path / "warm.json").read_text())
    assert warm["cache"]["layers_cached"] == 3 and warm["cache"]["texts_cached"] > 0
    assert warm["cache"]["layers_scanned"] == warm["cache"]["texts_scanned"] == 0


def test_an_index_with_attestations_is_answered_whole_as_scanned(tmp_path: Path) -> None:
    """Two platforms and their attestations (statements scanned as strings): the report
    read back equals a scan without the store, whole and for one platform."""
    token = fake_token("github")
    amd = Image(layers=[Layer().file("app/.env", f"GITHUB_TOKEN={token}\n")], env=["A=1"])
    arm = Image(layers=[Layer().file("app/x", "x\n")], architecture="arm64")
    ref = write("oci-archive", Index([amd, arm], attestations=True), tmp_path)
    folder = tmp_path / "store"
    for n, extra in enumerate(([], ["--platform", "linux/arm64"])):
        cold = tmp_path / f"cold{n}.json"
        code = run_leakscan([ref, *extra, "-f", "json", "-o", str(cold), "--no-cache"]).code
        assert run_leakscan([ref, *extra, "-f", "json", "--cache-dir", str(folder)]).code == code
        warm = tmp_path / f"warm{n}.json"
        argv = [ref, *extra, "-f", "json", "-o", str(warm), "--cache-dir", str(folder)]
        assert quick.answer(argv) == code
        assert _plain(warm) == _plain(cold)
    assert json.loads((tmp_path / "cold0.json").read_text())["images"][0]["attestations"]
    assert ("image", 2, 2) in _counters(folder)


def test_a_whole_report_read_back_writes_nothing_to_the_database(tmp_path: Path) -> None:
    """The re-scan counts its hit beside the database and does not mark an entry used an
    hour ago: no write transaction, whose syncs cost more than the rest of the lookup."""
    ref = write("oci-dir", leaky_image(), tmp_path)
    folder = tmp_path / "store"
    assert run_leakscan([ref, "-f", "json", "--cache-dir", str(folder)]).code == 1
    db = folder / "results.sqlite3"
    before = db.stat()
    argv = [ref, "-f", "json", "-o", str(tmp_path / "w.json"), "--cache-dir", str(folder)]
    assert quick.answer(argv) == 1
    after = db.stat()
    assert (after.st_mtime_ns, after.st_size) == (before.st_mtime_ns, before.st_size)
    assert ("image", 1, 1) in _counters(folder)


def test_other_settings_are_not_answered_by_a_report_kept_for_others(tmp_path: Path) -> None:
    """A threshold, an ignored path or a platform other than the kept report's: built from
    the layers' entries as before, equal to a scan without the store, and kept in turn."""
    ref = write("docker25", leaky_image(), tmp_path)
    folder = tmp_path / "store"
    assert run_leakscan([ref, "-f", "json", "--cache-dir", str(folder)]).code == 1
    extra = ["--min-confidence", "low", "--ignore-path", "/etc/*", "--platform", "linux/amd64"]
    cold = run_leakscan([ref, *extra, "-f", "json", "-o", str(tmp_path / "c.json"), "--no-cache"])
    for n in (1, 2):
        argv = [ref, *extra, "-f", "json", "-o", str(tmp_path / f"w{n}.json")]
        assert quick.answer([*argv, "--cache-dir", str(folder)]) == cold.code
        assert _plain(tmp_path / f"w{n}.json") == _plain(tmp_path / "c.json")
    # the first of those two was built from layer entries, the second read the whole report
    assert ("image", 1, 2) in _counters(folder)


def test_a_damaged_or_missing_whole_report_is_built_again(tmp_path: Path) -> None:
    ref = write("oci-dir", leaky_image(), tmp_path)
    folder = tmp_path / "store"
    cold = run_leakscan([ref, "-f", "json", "-o", str(tmp_path / "cold.json"), "--no-cache"])
    assert run_leakscan([ref, "-f", "json", "--cache-dir", str(folder)]).code == cold.code
    with sqlite3.connect(folder / "results.sqlite3") as db:
        db.execute("UPDATE entries SET value = ? WHERE kind = 'image'", (b'{"report": 1}',))
    argv = [ref, "-f", "json", "-o", str(tmp_path / "w1.json"), "--cache-dir", str(folder)]
    assert quick.answer(argv) == cold.code
    assert _plain(tmp_path / "w1.json") == _plain(tmp_path / "cold.json")
    with sqlite3.connect(folder / "results.sqlite3") as db:
        # the layered answer wrote a good one over it
        (value,) = db.execute("SELECT value FROM entries WHERE kind = 'image'").fetchone()
        assert json.loads(value)["layers"] == 3
        db.execute("DELETE FROM entries WHERE kind = 'image'")
    argv = [ref, "-f", "json", "-o", str(tmp_path / "w2.json"), "--cache-dir", str(folder)]
    assert quick.answer(argv) == cold.code
    assert _plain(tmp_path / "w2.json") == _plain(tmp_path / "cold.json")


def test_every_format_matches_the_cli(tmp_path: Path) -> None:
    ref = write("oci-dir", leaky_image(), tmp_path)
    folder = str(tmp_path / "store")
    formats = ["--format", "sarif=cold.sarif", "--format", "gitlab=cold.gl.json", "-f", "table"]
    cold = run_leakscan([ref, *formats, "--cache-dir", folder], cwd=tmp_path)
    assert cold.code == 1
    warm_formats = [f.replace("cold", "warm") for f in formats]
    code, said, imports = _leakscan([ref, *warm_formats, "--cache-dir", folder], tmp_path)
    assert "typer" not in imports
    assert code == 1 and said == ""
    for name in ("sarif", "gl.json"):
        warm, cold_text = ((tmp_path / f"{run}.{name}").read_text() for run in ("warm", "cold"))
        assert _timeless(warm) == _timeless(cold_text)


def test_the_table_on_stdout_matches_the_cli(tmp_path: Path) -> None:
    ref = write("oci-dir", leaky_image(), tmp_path)
    folder = str(tmp_path / "store")
    cold = run_leakscan([ref, "--cache-dir", folder], cwd=tmp_path)
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "leakscan", ref, "--cache-dir", folder],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert "typer" not in proc.stderr
    assert proc.returncode == cold.code == 1 and proc.stdout == cold.out


def test_an_unknown_layer_is_scanned_by_the_cli_and_counted_once(tmp_path: Path) -> None:
    token = fake_token("github")
    first = Image(layers=[Layer().file("app/.env", f"GITHUB_TOKEN={token}\n")])
    ref = write("oci-dir", first, tmp_path / "a")
    folder = tmp_path / "store"
    assert run_leakscan([ref, "-f", "json", "--cache-dir", str(folder)]).code == 1
    before = _counters(folder)
    second = Image(
        layers=[
            Layer().file("app/.env", f"GITHUB_TOKEN={token}\n"),
            Layer().file("app/new.txt", "new\n"),
        ]
    )
    ref2 = write("oci-dir", second, tmp_path / "b")
    args = quick.parse([ref2, "-f", "json", "--cache-dir", str(folder)])
    assert args is not None
    missed: list[bool] = []
    argv = [ref2, "-f", "json", "--cache-dir", str(folder)]
    assert quick.answer(argv, on_miss=lambda: missed.append(True)) is None
    assert missed == [True]  # the caller starts loading the rules: something will be scanned
    assert _counters(folder) == before  # the lookups of the attempt are not counted
    code, _, imports = _leakscan([ref2, "-f", "json", "--cache-dir", str(folder)], tmp_path)
    assert code == 1 and "typer" in imports


def test_refused_and_unreadable_inputs_are_left_to_the_cli(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    ref = write("oci-dir", leaky_image(), tmp_path)
    assert run_leakscan([ref, "-f", "json", "--cache-dir", str(folder)]).code == 1
    missing = f"oci:{tmp_path / 'nothing'}:1"
    missed: list[bool] = []
    for argv in (
        [missing, "-f", "json", "--cache-dir", str(folder)],
        [ref, "-f", "yaml", "--cache-dir", str(folder)],
        [ref, "--fail-on", "sometimes", "--cache-dir", str(folder)],
    ):
        assert quick.answer(argv, on_miss=lambda: missed.append(True)) is None
    assert not missed  # nothing to scan was found: no rules loaded for nothing
    # the same arguments through the whole command: its own one-line usage errors
    bad = run_leakscan([ref, "-f", "yaml", "--cache-dir", str(folder)])
    assert bad.code == 2 and "Traceback" not in bad.err


def test_a_shared_or_absent_store_is_left_to_the_cli(tmp_path: Path) -> None:
    ref = write("oci-dir", leaky_image(), tmp_path)
    assert quick.answer([ref, "--cache", "redis://127.0.0.1:1/0"]) is None
    assert quick.answer([ref, "--cache-dir", str(tmp_path / "none")]) is None
    assert not (tmp_path / "none").exists()


def test_importing_it_loads_nothing_of_the_cli() -> None:
    code = (
        "import sys, leakscan.quick, leakscan.command, leakscan.scan\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('typer', 'pydantic', 'rich')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    ).stdout
    assert out.strip() == "[]"
