"""Several reports from one scan (--format table --format sarif=FILE --format json=FILE),
--format X --output FILE as before, and the table's width from COLUMNS off a terminal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clirun import run_leakscan
from schema import validate_report

from leakscan.errors import LeakscanError
from leakscan.report import Output, parse_outputs, table_width

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
LEAKY = str(FIXTURES / "leaky-npm.tar")


def test_parse_outputs() -> None:
    assert parse_outputs([]) == (Output("table", None),)
    assert parse_outputs(["json"], Path("r.json")) == (Output("json", Path("r.json")),)
    assert parse_outputs(["table", "sarif=a.sarif", "JSON=r.json"]) == (
        Output("table", None),
        Output("sarif", Path("a.sarif")),
        Output("json", Path("r.json")),
    )
    # --output names the file of the one format without =FILE
    assert parse_outputs(["table", "sarif=a.sarif"], Path("t.txt"))[0] == Output(
        "table", Path("t.txt")
    )


@pytest.mark.parametrize(
    ("formats", "output", "message"),
    [
        (["xml"], None, "one of table, json, sarif"),
        (["json="], None, "no file after"),
        (["table", "json"], None, "only one report can go to standard output"),
        (["table", "json"], Path("x"), "--output FILE names the file of the one"),
        (["json=a", "sarif=a"], None, "same file"),
    ],
)
def test_parse_outputs_refuses(formats: list[str], output: Path | None, message: str) -> None:
    with pytest.raises(LeakscanError, match=message):
        parse_outputs(formats, output)


def test_table_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    assert table_width(False) == 80 and table_width(True) == 80
    monkeypatch.setenv("COLUMNS", "wide")
    assert table_width(False) is None
    monkeypatch.delenv("COLUMNS")
    assert table_width(False) is None


def test_three_reports_from_one_scan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    sarif, report = tmp_path / "leakscan.sarif", tmp_path / "report.json"
    run = run_leakscan(
        [LEAKY, "--format", "table", "--format", f"sarif={sarif}", "--format", f"json={report}"]
    )
    assert run.code == 1, run.err
    # the table on stdout, at the width COLUMNS gives though stdout is not a terminal
    assert "2 secrets in 4 places" in run.out
    assert max(len(line) for line in run.out.splitlines()) <= 80
    data = json.loads(report.read_text())
    validate_report(data)
    assert data["gate"]["status"] == "failed"
    log = json.loads(sarif.read_text())
    prints = {r["partialFingerprints"]["leakscan/v2"] for r in log["runs"][0]["results"]}
    assert prints == {f["fingerprint"] for f in data["images"][0]["findings"]}


def test_format_with_output_still_works(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    run = run_leakscan([LEAKY, "--format", "json", "--output", str(out)])
    assert run.code == 1 and run.out == ""
    validate_report(json.loads(out.read_text()))
    bad = run_leakscan([LEAKY, "--format", "table", "--format", "json"])
    assert bad.code == 2 and "standard output" in bad.err
