"""A secret in a provenance attestation through the real CLI: the table, JSON (against the
packaged schema) and SARIF (against the SARIF schema and GitHub's rules) name the new place,
the gate knows it (``--fail-on attestation``), and the secret is masked everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clirun import run_leakscan
from imagebuilder import Image, Index, Layer, fake_token, write_oci_layout
from provenancekit import ARGS_PATH, V02, predicate
from test_sarif import github_problems


@pytest.fixture(scope="module")
def attested(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """An OCI layout of a clean image whose v0.2 provenance records NPM_TOKEN."""
    token = fake_token("npm")
    _, pred = predicate("v0.2", args={"NPM_TOKEN": token})
    image = Image(layers=[Layer().file("app/package.json", "{}\n")], provenance=pred)
    path = write_oci_layout(tmp_path_factory.mktemp("att") / "l", Index([image], attestations=True))
    return f"oci:{path}:latest", token


def test_json_and_sarif_and_table(attested: tuple[str, str], tmp_path: Path) -> None:
    ref, token = attested
    sarif, report = tmp_path / "r.sarif", tmp_path / "r.json"
    run = run_leakscan(
        [ref, "--no-cache", "--format", "table", "--format", f"sarif={sarif}",
         "--format", f"json={report}"]
    )  # fmt: skip
    assert run.code == 1, run.err
    for text in (run.out, run.err, sarif.read_text(), report.read_text()):
        assert token not in text
    assert "attestation" in run.out and "build-arg:NPM_TOKEN" in run.out
    data = json.loads(report.read_text())
    from schema import validate_report

    validate_report(data)
    (finding,) = data["images"][0]["findings"]
    loc = finding["location"]
    assert loc["kind"] == "attestation" and loc["predicate_type"] == V02
    assert loc["path"] == ARGS_PATH[V02].format("NPM_TOKEN")
    assert loc["subject"] == data["images"][0]["manifest_digest"]
    log = json.loads(sarif.read_text())
    assert github_problems(log) == []
    (result,) = log["runs"][0]["results"]
    where = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert where == "image-attestations" and "build-arg:NPM_TOKEN" in result["message"]["text"]


@pytest.mark.parametrize(
    ("fail_on", "code"),
    [
        ("attestation", 1),
        ("history,config,file", 0),
        ("all", 1),
        ("attestation,confidence=high", 0),
    ],
)
def test_gate(attested: tuple[str, str], fail_on: str, code: int) -> None:
    ref, _ = attested
    run = run_leakscan([ref, "--no-cache", "--format", "json", "--fail-on", fail_on])
    assert run.code == code, run.err
    gate = run.report["gate"]
    assert gate["status"] == ("failed" if code else "passed")
    if code:
        assert gate["failed"]["by_place"] == {"attestation": 1}
    else:
        assert gate["let_through"]["by_place"] == {"attestation": 1}
