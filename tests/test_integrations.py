"""The CI integrations, as far as they run offline: the GitHub Action (action.yml) and the
GitLab CI template parse, use every input, and the commands they run are real leakscan
invocations (run here against fixtures/leaky-npm.tar); the Docker CLI plugin is found and
run by the real docker CLI's plugin discovery."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from clirun import REPO
from gitlabschema import gitlab_problems
from needs import tool
from schema import validate_report

LEAKY = REPO / "fixtures" / "leaky-npm.tar"
PLUGIN = REPO / "integrations" / "docker-cli-plugin" / "docker-leakscan"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    # no daemon of the machine's answers for names; the result store is the test's own
    env["DOCKER_HOST"] = "unix:///nonexistent/leakscan-test.sock"
    env["XDG_CACHE_HOME"] = os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))
    env.update(extra)
    return env


def _bash(script: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-e", "-c", script], env=env, cwd=cwd, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


# --- GitHub Action ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def action() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "action.yml").read_text())
    return data


def test_action_shape(action: dict[str, Any]) -> None:
    assert action["runs"]["using"] == "composite"
    steps = action["runs"]["steps"]
    uses = [s.get("uses", "").split("@")[0] for s in steps]
    assert "actions/cache" in uses and "github/codeql-action/upload-sarif" in uses
    text = json.dumps(action["runs"])
    for name in action["inputs"]:
        assert f"inputs.{name}" in text, f"input {name} is never used"
    # inputs reach shells as variables only: an expression inside a script is an injection
    for step in steps:
        assert "${{" not in step.get("run", ""), step["name"]
    cache = next(s for s in steps if s.get("uses", "").startswith("actions/cache"))
    assert cache["with"]["path"] == "${{ inputs.cache-dir }}"
    assert "github.sha" in cache["with"]["key"] and cache["with"]["restore-keys"].strip()
    upload = next(s for s in steps if "upload-sarif" in s.get("uses", ""))
    assert "always()" in upload["if"]


def _step(action: dict[str, Any], name: str) -> dict[str, Any]:
    step: dict[str, Any] = next(s for s in action["runs"]["steps"] if s["name"] == name)
    return step


def _expand(value: str, inputs: dict[str, str]) -> str:
    return re.sub(r"\$\{\{\s*inputs\.([\w-]+)\s*\}\}", lambda m: inputs[m.group(1)], value)


@pytest.mark.parametrize(("fail_on", "status"), [("all", "1"), ("none", "0")])
def test_action_scan_step_runs(
    action: dict[str, Any], tmp_path: Path, fail_on: str, status: str
) -> None:
    inputs = {k: str(v.get("default", "")) for k, v in action["inputs"].items()}
    inputs.update({"image": str(LEAKY), "fail-on": fail_on})
    scan = _step(action, "Scan")
    output = tmp_path / "github_output"
    env = _env(tmp_path, GITHUB_OUTPUT=str(output))
    env.update({k: _expand(v, inputs) for k, v in scan["env"].items()})
    done = _bash(scan["run"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert output.read_text() == f"exit-code={status}\n", done.stderr
    sarif = json.loads((tmp_path / inputs["sarif-file"]).read_text())
    assert sarif["version"] == "2.1.0" and sarif["runs"][0]["results"]
    validate_report(json.loads((tmp_path / inputs["json-file"]).read_text()))
    assert (tmp_path / inputs["cache-dir"]).is_dir()
    assert "npm_********" in done.stdout  # the table went to the log
    gate = _step(action, "Gate")
    ended = _bash(gate["run"], _env(tmp_path, LEAKSCAN_EXIT=status), tmp_path)
    assert ended.returncode == int(status)


# --- GitLab CI ---------------------------------------------------------------------------------


def test_gitlab_template_runs(tmp_path: Path) -> None:
    template = yaml.safe_load((REPO / "integrations/gitlab/leakscan.gitlab-ci.yml").read_text())
    job = template["leakscan"]
    variables: dict[str, str] = template["variables"]
    text = json.dumps(job)
    for name in variables:
        assert f"${name}" in text, f"variable {name} is never used"
    assert job["artifacts"]["when"] == "always"
    assert job["cache"]["paths"] == ["$LEAKSCAN_CACHE/"]
    assert any("pip install" in line for line in job["before_script"])
    env = _env(tmp_path, CI_PROJECT_DIR=str(tmp_path), CI_COMMIT_SHA="9f" * 20, **variables)
    env["LEAKSCAN_IMAGE"] = str(LEAKY)
    done = _bash("\n".join(job["script"]), env, tmp_path)
    assert done.returncode == 1, done.stderr  # the job fails: findings
    for path in job["artifacts"]["paths"]:
        assert (tmp_path / path).is_file(), path
    validate_report(json.loads((tmp_path / "leakscan-report.json").read_text()))
    # GitLab's own report, which it ingests from artifacts: reports: secret_detection:
    gitlab = job["artifacts"]["reports"]["secret_detection"]
    assert gitlab == "gl-secret-detection-report.json"
    doc = json.loads((tmp_path / gitlab).read_text())
    assert gitlab_problems(doc) == []
    assert len(doc["vulnerabilities"]) == 4
    assert {v["location"]["commit"]["sha"] for v in doc["vulnerabilities"]} == {
        env["CI_COMMIT_SHA"]
    }
    env["LEAKSCAN_FAIL_ON"] = "none"
    assert _bash("\n".join(job["script"]), env, tmp_path).returncode == 0


# --- Docker CLI plugin -------------------------------------------------------------------------


def test_docker_cli_plugin(tmp_path: Path) -> None:
    docker = tool("docker")
    config = tmp_path / "docker-config"
    (config / "cli-plugins").mkdir(parents=True)
    shutil.copy(PLUGIN, config / "cli-plugins" / "docker-leakscan")
    env = _env(tmp_path, DOCKER_CONFIG=str(config))
    meta = subprocess.run([str(PLUGIN), "docker-cli-plugin-metadata"], capture_output=True,
                          text=True, env=env, check=True)  # fmt: skip
    data = json.loads(meta.stdout)
    assert data["SchemaVersion"] == "0.1.0" and data["Vendor"] == "leakscan"
    assert data["Version"] and data["ShortDescription"]
    # the real docker CLI discovers it...
    listed = subprocess.run([docker, "--help"], capture_output=True, text=True, env=env)
    assert re.search(r"leakscan\*\s+Find secrets leaked", listed.stdout), listed.stdout
    helped = subprocess.run([docker, "leakscan", "--help"], capture_output=True, text=True,
                            env=env)  # fmt: skip
    assert helped.returncode == 0 and "Usage: leakscan" in helped.stdout, helped.stderr
    # ...and runs it with the rest of the command line, exit status included
    ran = subprocess.run([docker, "leakscan", str(LEAKY), "--format", "json"],
                         capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert ran.returncode == 1, ran.stderr
    validate_report(json.loads(ran.stdout))
