"""GitLab's Secret Detection report: valid against GitLab's schema (vendored in gitlab/, with
its notice), one vulnerability per finding identified by leakscan's fingerprint, secrets
masked even under --show-secrets, accepted findings left out and counted, stable ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clirun import run_leakscan
from gitlabschema import gitlab_problems
from reportkit import finding, leaky_report, npm_file

from leakscan import model as m
from leakscan.policy import Policy, judge
from leakscan.report.gitlab import SCHEMA_VERSION, render, report_dict

LEAKY = str(Path(__file__).resolve().parents[2] / "fixtures" / "leaky-npm.tar")


def test_the_demo_image_is_accepted(tmp_path: Path) -> None:
    run = run_leakscan([LEAKY, "-f", "gitlab", "-f", f"json={tmp_path / 'r.json'}"])
    assert run.code == 1, run.err
    doc = json.loads(run.out)
    assert gitlab_problems(doc) == []
    assert doc["scan"]["type"] == "secret_detection" and doc["scan"]["status"] == "success"
    findings = [f for image in json.loads((tmp_path / "r.json").read_text())["images"]
                for f in image["findings"]]  # fmt: skip
    vulns = doc["vulnerabilities"]
    assert len(vulns) == len(findings) == 4
    # the primary identifier is the finding's fingerprint, as the JSON report and baselines
    assert [v["identifiers"][0]["value"] for v in vulns] == [f["fingerprint"] for f in findings]
    assert [v["identifiers"][1]["value"] for v in vulns] == [f["rule_id"] for f in findings]
    assert [v["solution"] for v in vulns] == [f["remediation"] for f in findings]
    kinds = [v["location"]["file"] for v in vulns]
    assert kinds == [
        "root/.npmrc",
        "image-history",
        "image-history",
        "image-config/Env/GITHUB_TOKEN",
    ]
    assert vulns[0]["location"]["start_line"] == 1
    assert "start_line" not in vulns[1]["location"]  # a history index moves on a rebuild
    again = json.loads(run_leakscan([LEAKY, "-f", "gitlab"]).out)
    assert [v["id"] for v in again["vulnerabilities"]] == [v["id"] for v in vulns]


def test_secrets_stay_masked_even_when_shown(tmp_path: Path) -> None:
    shown = run_leakscan(
        [LEAKY, "--show-secrets", "-f", "json", "-f", f"gitlab={tmp_path / 'gl.json'}"]
    )
    secrets = {f["secret"] for i in json.loads(shown.out)["images"] for f in i["findings"]}
    assert secrets and all(len(s) >= 20 for s in secrets)
    text = (tmp_path / "gl.json").read_text()
    assert not [s for s in secrets if s in text]
    assert "npm_********" in text
    assert gitlab_problems(json.loads(text)) == []


def test_accepted_findings_are_left_out_and_counted(tmp_path: Path) -> None:
    base = tmp_path / "baseline.json"
    assert run_leakscan(["baseline", LEAKY, "-o", str(base)]).code == 0
    run = run_leakscan([LEAKY, "--baseline", str(base), "-f", "gitlab"])
    assert run.code == 0, run.err
    doc = json.loads(run.out)
    assert gitlab_problems(doc) == [] and doc["vulnerabilities"] == []
    said = [x["value"] for x in doc["scan"]["messages"]]
    assert any("4 accepted findings left out (baseline)" in x for x in said), said
    assert any(x.startswith("gate: passed") for x in said), said


def test_a_refused_input_is_a_failed_scan(tmp_path: Path) -> None:
    out = tmp_path / "gl-secret-detection-report.json"
    run = run_leakscan([str(tmp_path / "missing.tar"), "-f", f"gitlab={out}"])
    assert run.code == 2
    doc = json.loads(out.read_text())
    assert gitlab_problems(doc) == []
    assert doc["scan"]["status"] == "failure"
    assert doc["scan"]["messages"][0]["level"] == "fatal"


def test_places_severity_and_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    report = leaky_report()
    monkeypatch.delenv("CI_COMMIT_SHA", raising=False)
    doc = report_dict(report, judge(report, Policy(places=("deleted",))))
    assert gitlab_problems(doc) == []
    vulns = doc["vulnerabilities"]
    # the image's config digest stands for the commit outside a pipeline
    assert {v["location"]["commit"]["sha"] for v in vulns} == {report.images[0].config_digest[7:]}
    assert [v["severity"] for v in vulns] == ["Critical", "High", "Critical", "Critical"]
    assert vulns[0]["details"]["status"]["value"] == "deleted"
    assert "deleted in layer 3 (still shipped in layer 1)" in vulns[0]["description"]
    assert "entry 3 (layer 1)" in vulns[1]["description"]
    assert any(x["value"].startswith("gate: failed") for x in doc["scan"]["messages"])
    monkeypatch.setenv("CI_COMMIT_SHA", "0f1e2d3c4b5a69788796a5b4c3d2e1f0a1b2c3d4")
    piped = json.loads(render(report))
    assert {v["location"]["commit"]["sha"] for v in piped["vulnerabilities"]} == {
        "0f1e2d3c4b5a69788796a5b4c3d2e1f0a1b2c3d4"
    }
    assert piped["version"] == SCHEMA_VERSION


def test_one_finding_in_two_platforms_is_two_vulnerabilities() -> None:
    one = leaky_report().images[0]
    arm = m.ImageReport(**{**one.__dict__, "platform": "linux/arm64"})
    doc = report_dict(m.ScanReport(one.reference, (one, arm)))
    assert gitlab_problems(doc) == []
    assert len(doc["vulnerabilities"]) == 8


def test_long_texts_are_cut_to_the_schema() -> None:
    long = finding(npm_file("present"), fix="Rotate it. " * 2000)
    long = m.Finding(**{**long.__dict__, "description": "x" * 600})
    report = leaky_report(findings=(long,), errors=(m.Problem("layer 2 truncated", 2),))
    doc = report_dict(report)
    assert gitlab_problems(doc) == []
    (vuln,) = doc["vulnerabilities"]
    assert len(vuln["name"]) == 255 and len(vuln["solution"]) == 7000
    assert doc["scan"]["status"] == "success"  # a partial read is a warning beside findings
    assert doc["scan"]["messages"][0] == {
        "level": "warn",
        "value": "registry.example.internal/team/app:3 (linux/amd64) (layer 2): layer 2 truncated",
    }
