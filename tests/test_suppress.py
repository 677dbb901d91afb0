"""Baselines, ignored rules and paths (the settings file that can carry them: test_settings)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from clirun import run_leakscan

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
LEAKY = str(FIXTURES / "leaky-npm.tar")


def test_baseline_round_trip(tmp_path: Path) -> None:
    base = tmp_path / "baseline.json"
    made = run_leakscan(["baseline", LEAKY, "-o", str(base)])
    assert made.code == 0, made.err
    text = base.read_text()
    doc = json.loads(text)
    assert len(doc["findings"]) == 4
    assert "npm_" in text and "npm_********" in text
    # no secret in clear in the baseline
    secrets = json.loads((FIXTURES / "expected.json").read_text())["leaky-npm.tar"]["secrets"]
    assert all(s["value"] not in text for s in secrets)
    run = run_leakscan([LEAKY, "--baseline", str(base), "-f", "json"])
    assert run.code == 0, run.err
    (image,) = run.report["images"]
    assert image["findings"] == [] and image["suppressed"] == {"baseline": 4}
    table = run_leakscan([LEAKY, "--baseline", str(base)])
    assert "4 suppressed" in table.out


def test_baseline_keeps_new_findings(tmp_path: Path) -> None:
    base = tmp_path / "baseline.json"
    run_leakscan(["baseline", LEAKY, "-o", str(base)])
    doc = json.loads(base.read_text())
    doc["findings"] = [f for f in doc["findings"] if f["location"]["kind"] != "file"]
    base.write_text(json.dumps(doc))
    run = run_leakscan([LEAKY, "--baseline", str(base), "-f", "json"])
    assert run.code == 1
    (image,) = run.report["images"]
    assert [f["location"]["path"] for f in image["findings"]] == ["/root/.npmrc"]


def test_ignore_rule_and_path() -> None:
    run = run_leakscan([LEAKY, "-f", "json", "--ignore-rule", "veles.secrets/npm*"])
    (image,) = run.report["images"]
    assert {f["rule_id"] for f in image["findings"]} == {"betterleaks.github-pat"}
    assert image["suppressed"] == {"rule veles.secrets/npm*": 2}
    run = run_leakscan([LEAKY, "-f", "json", "--ignore-path", "/root/*"])
    (image,) = run.report["images"]
    assert all(f["location"]["kind"] != "file" for f in image["findings"])
    assert image["suppressed"] == {"path /root/*": 1}
    assert run.code == 1


def test_bad_baseline(tmp_path: Path) -> None:
    bad = tmp_path / "b.json"
    bad.write_text("{}")
    run = run_leakscan([LEAKY, "--baseline", str(bad)])
    assert run.code == 2 and "no findings list" in run.err
    run = run_leakscan([LEAKY, "--baseline", str(tmp_path / "missing.json")])
    assert run.code == 2 and "cannot read" in run.err


def test_unwritable_output(tmp_path: Path) -> None:
    shutil.rmtree(tmp_path)
    run = run_leakscan([LEAKY, "-o", str(tmp_path / "no" / "dir.txt")])
    assert run.code == 2 and "cannot write" in run.err and "Traceback" not in run.err
