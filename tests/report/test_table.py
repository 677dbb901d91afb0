"""The table: one group per secret, a fix per group, words wrapped and ids never broken."""

from __future__ import annotations

import re

import pytest
from reportkit import DIFF, GH_SHA, NPM_SHA, finding, leaky_image, leaky_report, npm_file

from leakscan import model as m
from leakscan.policy import Policy, judge
from leakscan.report.table import groups, render

IDS = [
    "/root/.npmrc:1",
    "detect-secrets.npm-tokens",
    "veles.secrets/npmjsaccesstoken",
    "deleted in layer 3",
    "registry.example.internal/team/app:3",
    "RUN --mount=type=secret,id=NPM_TOKEN,env=NPM_TOKEN",
    "5a65b035a01f",
]


def test_one_group_per_secret_every_place_listed() -> None:
    text = render(leaky_report())
    assert "2 secrets in 4 places" in text
    assert text.count("npm_********  in 2 places") == 1
    assert text.count("ghp_********  gh-pat  high  in 2 places") == 1
    assert "config Env GITHUB_TOKEN" in text and "history 7" in text
    # one fix per group, the history's (where the secret came from) for the npm token
    assert text.count("fix:") == 2
    assert "fix: Build argument NPM_TOKEN" in text


def test_groups_are_by_secret_in_reading_order() -> None:
    found = groups(leaky_image().findings)
    assert [[f.secret_sha256 for f in g] for g in found] == [[NPM_SHA] * 2, [GH_SHA] * 2]
    assert [f.location.kind for f in found[0]] == ["file", "history"]


@pytest.mark.parametrize("width", [40, 60, 80, 100, 120])
def test_lines_fit_and_ids_are_never_broken(width: int) -> None:
    text = render(leaky_report(), width=width)
    flat = " ".join(text.split())
    for ident in IDS:
        assert ident in flat, ident
    for line in text.splitlines():
        # a line is longer only when it holds one unit (an id, an option with its value)
        # that is longer than the room a line has
        assert len(line) <= width or len(line.split()) <= 2, line
    if width >= 80:
        assert max(map(len, text.splitlines())) <= width


def test_80_columns_history_instruction_at_most_two_lines() -> None:
    lines = render(leaky_report(), width=80).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("    history 3"))
    following = lines[start + 1 : start + 4]
    assert following[0].startswith("      RUN |1 NPM_TOKEN")
    assert following[1].startswith("        ") and following[1].rstrip().endswith("…")
    assert following[2].startswith("    fix:")
    assert all(len(line) <= 80 for line in lines)


def test_long_path_kept_whole_on_its_own_line() -> None:
    path = "/app/" + "very-long-directory-name/" * 5 + ".env"
    image = leaky_image(findings=(finding(m.FileLocation(1, DIFF, path, 2, "present", None)),))
    text = render(m.ScanReport("x", (image,)), width=60)
    assert f"{path}:2" in text.split()


def test_gate_verdict_and_let_through_marks() -> None:
    report = leaky_report()
    gate = judge(report, Policy(places=("history",), min_confidence="high"))
    text = render(report, width=80, gate=gate)
    assert "gate: FAILED: 1 finding of 1 secret (1 history)" in " ".join(text.split())
    assert text.count("(let through by the gate)") == 3
    passed = render(report, gate=judge(report, Policy(places=("present",))))
    assert "gate: passed: no finding matches --fail-on present" in passed
    # when every finding fails, nothing is marked
    assert "let through" not in render(report, gate=judge(report, Policy()))


def test_clean_and_colour() -> None:
    clean = leaky_report(findings=())
    assert "0 findings in 1 image" in render(clean)
    coloured = render(leaky_report(), color=True)
    assert "\x1b[" in coloured
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == render(leaky_report())


def test_present_file_status() -> None:
    image = leaky_image(findings=(finding(npm_file("present")),))
    text = render(m.ScanReport("x", (image,)))
    assert "/root/.npmrc:1  layer 1  present" in text
