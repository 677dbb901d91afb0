"""The gate: --fail-on chooses what fails apart from what is shown; the exit status follows
it (0 passed, 1 failed, 2 incomplete: errors win); the settings file says it too."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from clirun import run_leakscan

from leakscan import model as m
from leakscan.errors import InputError
from leakscan.policy import PLACES, Policy, judge, parse_fail_on, policy_for

sys.path.append(str(Path(__file__).resolve().parent / "report"))
from reportkit import leaky_report  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
LEAKY = str(FIXTURES / "leaky-npm.tar")


@pytest.mark.parametrize(
    ("values", "places", "level"),
    [
        ([], PLACES, None),
        (["present,history"], ("present", "history"), None),
        (["present", "history", "confidence=high"], ("present", "history"), "high"),
        (["file"], ("present", "deleted", "overwritten"), None),
        (["confidence=medium"], PLACES, "medium"),
        (["all"], PLACES, None),
        ([" Config , deleted "], ("deleted", "config"), None),
        (["none"], (), None),
    ],
)
def test_parse_fail_on(values: list[str], places: tuple[str, ...], level: str | None) -> None:
    policy = parse_fail_on(values)
    assert (policy.places, policy.min_confidence) == (places, level)
    # the description reads back to the same policy
    assert parse_fail_on([policy.describe()]) == policy


@pytest.mark.parametrize("bad", ["presnt", "confidence=very", "none,history", "history=1"])
def test_parse_fail_on_refuses(bad: str) -> None:
    with pytest.raises(InputError, match="--fail-on"):
        parse_fail_on([bad])


def test_judge_counts_what_failed_and_what_passed() -> None:
    report = leaky_report(suppressed=(("baseline", 2),), below_threshold=5)
    gate = judge(report, Policy(places=("history",), min_confidence="high"))
    # the fixture: a deleted file (high), a build argument (medium), ENV (high), Env (high)
    assert [f.location.kind for f in gate.failing] == ["history"]
    assert len(gate.passing) == 3
    assert (gate.status, gate.exit_status()) == ("failed", 1)
    data = gate.as_dict()
    assert data["failed"]["by_place"] == {"history": 1}
    assert data["let_through"]["by_place"] == {"deleted": 1, "history": 1, "config": 1}
    assert (data["accepted"], data["below_threshold"]) == (2, 5)
    assert "--fail-on history,confidence=high" in data["why"]
    assert judge(report, Policy()).exit_status() == 1
    assert judge(report, Policy(places=("present",))).exit_status() == 0
    assert judge(report, parse_fail_on(["none"])).exit_status() == 0


def test_errors_win_over_the_gate() -> None:
    report = leaky_report(errors=(m.Problem("layer 2 is truncated"),))
    gate = judge(report, Policy(places=()))
    assert (gate.status, gate.exit_status(), gate.as_dict()["passed"]) == ("incomplete", 2, False)
    assert "INCOMPLETE" in gate.why()
    clean = judge(leaky_report(findings=()), Policy())
    assert (clean.status, clean.exit_status()) == ("passed", 0)


def test_settings_file_and_flags(tmp_path: Path) -> None:
    config = tmp_path / ".leakscan.toml"
    config.write_text('fail-on = ["present", "confidence=high"]\n')
    assert policy_for(None, str(config)) == Policy(("present",), "high")
    assert policy_for(["history"], str(config)) == Policy(("history",), None)
    config.write_text('fail-on = "deleted,history"\n')
    assert policy_for(None, str(config)).places == ("deleted", "history")
    config.write_text('fail-on = ["presnt"]\n')
    with pytest.raises(InputError, match=r"\.leakscan\.toml: fail-on 'presnt'"):
        policy_for(None, str(config))


def test_cli_fail_on_exit_status_and_summary(tmp_path: Path) -> None:
    # the demo image: a deleted .npmrc, a build argument, ENV and Env: nothing present
    passed = run_leakscan([LEAKY, "--fail-on", "present", "-f", "json"])
    assert passed.code == 0, passed.err
    gate = passed.report["gate"]
    assert gate["status"] == "passed" and gate["let_through"]["findings"] == 4
    # shown all the same: the policy does not hide anything
    assert len(passed.report["images"][0]["findings"]) == 4
    failed = run_leakscan([LEAKY, "--fail-on", "deleted", "--fail-on", "confidence=high"])
    assert failed.code == 1
    assert "gate: FAILED: 1 finding of 1 secret (1 deleted)" in " ".join(failed.out.split())
    config = tmp_path / "gate.toml"
    config.write_text('fail-on = "config"\n')
    from_file = run_leakscan([LEAKY, "--config", str(config), "-f", "json"])
    assert from_file.code == 1 and from_file.report["gate"]["failed"]["by_place"] == {"config": 1}
    bad = run_leakscan([LEAKY, "--fail-on", "everything"])
    assert bad.code == 2 and "--fail-on 'everything'" in bad.err and bad.out == ""
