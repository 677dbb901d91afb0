"""SARIF that code scanning accepts: valid against the official SARIF 2.1.0 schema (vendored
in sarif/, with its notice) and meeting GitHub's documented requirements for uploads
("SARIF support for code scanning": required properties, limits, security severity)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from clirun import run_leakscan
from jsonschema import Draft4Validator
from reportkit import finding, leaky_image, leaky_report, npm_file

from leakscan import model as m
from leakscan.policy import Policy, judge
from leakscan.report import sarif
from leakscan.report.sarif import FINGERPRINT_KEY, render

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parents[1] / "fixtures"
LEAKY = str(FIXTURES / "leaky-npm.tar")


@cache
def _validator() -> Draft4Validator:
    schema = json.loads((HERE / "sarif" / "sarif-schema-2.1.0.json").read_text())
    Draft4Validator.check_schema(schema)
    return Draft4Validator(schema)


def github_problems(log: dict[str, Any]) -> list[str]:
    """What GitHub code scanning would reject or not display, per its documentation."""
    out = [f"schema: {e.json_path}: {e.message}" for e in _validator().iter_errors(log)]
    if log.get("version") != "2.1.0" or not log.get("$schema"):
        out.append("version 2.1.0 and $schema are required")
    runs = log.get("runs", [])
    if not 1 <= len(runs) <= 20:
        out.append("1 to 20 runs")
    for run in runs:
        driver = run["tool"]["driver"]
        if not driver.get("name"):
            out.append("tool.driver.name is required")
        rules = driver.get("rules", [])
        ids = [r["id"] for r in rules]
        if len(set(ids)) != len(ids) or len(rules) > 25_000:
            out.append("rule ids unique, at most 25,000")
        for rule in rules:
            for key in ("shortDescription", "fullDescription", "help"):
                text = rule.get(key, {}).get("text", "")
                if not text or (key != "help" and len(text) > 1024):
                    out.append(f"{rule['id']}: {key}.text required, at most 1024")
            if len(rule.get("name", "")) > 255:
                out.append(f"{rule['id']}: name at most 255")
            props = rule.get("properties", {})
            tags = props.get("tags", [])
            if "security" not in tags or len(tags) > 20:
                out.append(f"{rule['id']}: security rules are tagged security, at most 20 tags")
            if not 0.0 < float(props.get("security-severity", "0")) <= 10.0:
                out.append(f"{rule['id']}: security-severity in (0, 10]")
            if props.get("precision") not in ("very-high", "high", "medium", "low"):
                out.append(f"{rule['id']}: precision")
        bases = run.get("originalUriBaseIds", {})
        results = run.get("results", [])
        if len(results) > 25_000:
            out.append("at most 25,000 results per run")
        for n, result in enumerate(results):
            where = f"result {n}"
            if not result.get("message", {}).get("text"):
                out.append(f"{where}: message.text required")
            rule_id, rule_index = result.get("ruleId"), result.get("ruleIndex", -1)
            if rule_id not in ids or not 0 <= rule_index < len(ids) or ids[rule_index] != rule_id:
                out.append(f"{where}: ruleId and ruleIndex name a rule")
            if not result.get("partialFingerprints", {}).get("primaryLocationLineHash"):
                out.append(f"{where}: partialFingerprints.primaryLocationLineHash")
            locations = result.get("locations", [])
            if not 1 <= len(locations) <= 1000:
                out.append(f"{where}: at least one location")
            for location in locations:
                physical = location.get("physicalLocation", {})
                artifact = physical.get("artifactLocation", {})
                if not artifact.get("uri"):
                    out.append(f"{where}: physicalLocation.artifactLocation.uri required")
                base = artifact.get("uriBaseId")
                if base is not None and not bases.get(base, {}).get("uri", "").endswith("/"):
                    out.append(f"{where}: uriBaseId {base} defined, ending in /")
                region = physical.get("region", {})
                for key in ("startLine", "startColumn", "endLine", "endColumn"):
                    if not isinstance(region.get(key), int) or region[key] < 1:
                        out.append(f"{where}: region.{key} required")
    return out


def _results(log: dict[str, Any]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = log["runs"][0]["results"]
    return results


def test_the_demo_image_is_accepted(tmp_path: Path) -> None:
    run = run_leakscan([LEAKY, "-f", "sarif"])
    assert run.code == 1, run.err
    log = json.loads(run.out)
    assert github_problems(log) == []
    results = _results(log)
    assert len(results) == 4
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in results}
    assert uris == {"root/.npmrc", "image-history", "image-config"}
    # per-result messages: the status and the remediation of that place
    (rc,) = [r for r in results if r["properties"]["status"] == "deleted"]
    assert "deleted in layer 3 but still shipped in layer 1" in rc["message"]["text"]
    assert "RUN --mount=type=secret,id=NPM_TOKEN" in rc["message"]["text"]
    assert rc["locations"][0]["physicalLocation"]["region"]["startLine"] == 1
    (env,) = [r for r in results if r["properties"]["status"] == "config"]
    assert "inject it at run time" in env["message"]["text"]
    # one help for a rule, never one finding's status
    for rule in log["runs"][0]["tool"]["driver"]["rules"]:
        assert "Overwriting the file" not in rule["help"]["text"]


def test_fingerprints_match_the_json_report() -> None:
    report = leaky_report()
    log = json.loads(render(report))
    prints = [r["partialFingerprints"] for r in _results(log)]
    assert all(p["primaryLocationLineHash"] == p[FINGERPRINT_KEY] for p in prints)
    assert {p[FINGERPRINT_KEY] for p in prints} == {f.fingerprint for f in report.findings}


def test_baselined_findings_are_suppressed_not_dropped(tmp_path: Path) -> None:
    base = tmp_path / "baseline.json"
    assert run_leakscan(["baseline", LEAKY, "-o", str(base)]).code == 0
    run = run_leakscan([LEAKY, "--baseline", str(base), "-f", "sarif"])
    assert run.code == 0, run.err
    log = json.loads(run.out)
    assert github_problems(log) == []
    results = _results(log)
    assert len(results) == 4
    for result in results:
        (suppression,) = result["suppressions"]
        assert suppression == {
            "kind": "external",
            "status": "accepted",
            "justification": "accepted: baseline",
        }


def test_rule_severity_is_its_most_confident_finding() -> None:
    image = leaky_image(
        findings=(
            finding(npm_file(), confidence="low", rule="r"),
            finding(npm_file("present"), confidence="high", rule="r", n=1),
        )
    )
    log = json.loads(render(m.ScanReport("x", (image,))))
    (rule,) = log["runs"][0]["tool"]["driver"]["rules"]
    assert rule["properties"]["security-severity"] == "9.5"
    assert rule["defaultConfiguration"]["level"] == "error"
    assert [r["level"] for r in _results(log)] == ["error", "note"]
    assert github_problems(log) == []


def test_one_result_for_a_finding_of_several_platforms() -> None:
    amd, arm = leaky_image(), leaky_image(platform="linux/arm64")
    log = json.loads(render(m.ScanReport("x", (amd, arm))))
    results = _results(log)
    assert len(results) == 4
    assert all(r["properties"]["platforms"] == ["linux/amd64", "linux/arm64"] for r in results)
    assert github_problems(log) == []


def test_gate_in_results_and_invocation() -> None:
    report = leaky_report()
    gate = judge(report, Policy(places=("deleted",)))
    log = json.loads(render(report, gate=gate))
    marks = {r["properties"]["status"]: r["properties"]["gate"] for r in _results(log)}
    assert marks == {"deleted": "fail", "history": "let through", "config": "let through"}
    (invocation,) = log["runs"][0]["invocations"]
    assert invocation["exitCode"] == 1
    assert invocation["properties"]["gate"]["status"] == "failed"
    assert github_problems(log) == []


def test_results_capped_at_the_upload_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sarif, "MAX_RESULTS", 2)
    log = json.loads(render(leaky_report()))
    assert len(_results(log)) == 2
    notes = log["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    assert "2 more results left out" in notes[-1]["message"]["text"]
    # the most confident first
    assert all(r["level"] == "error" for r in _results(log))


def test_odd_paths_and_references_are_valid_uris() -> None:
    path = "/app/my dir/ünï #1?.env"
    loc = m.FileLocation(0, "sha256:" + "0" * 64, path, None, "present", None)
    image = leaky_image(findings=(finding(loc),))
    log = json.loads(render(m.ScanReport("docker-archive:/tmp/a b.tar:app:1", (image,))))
    assert github_problems(log) == []
    (result,) = _results(log)
    uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert " " not in uri and "#" not in uri and "?" not in uri and uri.startswith("app/my%20dir/")
    bases = log["runs"][0]["originalUriBaseIds"]
    assert bases["IMAGE_ROOT"]["uri"].startswith("image://docker-archive%3A%2Ftmp%2Fa%20b.tar")

