"""The settings file: ``.leakscan.toml``, ``[tool.leakscan]`` in ``pyproject.toml``, or
``--config FILE``; read directly and through the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from clirun import run_leakscan

from leakscan.errors import InputError
from leakscan.settings import FileConfig, load_config

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
LEAKY = str(FIXTURES / "leaky-npm.tar")


def test_no_file_no_settings(tmp_path: Path) -> None:
    assert load_config(start=str(tmp_path)) == FileConfig()


def test_pyproject_without_the_table_is_not_a_settings_file(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert load_config(start=str(tmp_path)) == FileConfig()


def test_leakscan_toml_first_and_paths_relative_to_it(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.leakscan]\nignore-rules = ['from-pyproject']\n")
    (tmp_path / ".leakscan.toml").write_text(
        "ignore-rules = ['a.*']\nignore-paths = ['/usr/share/doc/*']\n"
        "baseline = 'ci/base.json'\nmin-confidence = 'low'\n"
        "detect-secrets-plugins = ['ci/ours.py']\n"
    )
    config = load_config(start=str(tmp_path))
    assert config == FileConfig(
        source=str(tmp_path / ".leakscan.toml"),
        ignore_rules=("a.*",),
        ignore_paths=("/usr/share/doc/*",),
        baseline=str(tmp_path / "ci" / "base.json"),
        min_confidence="low",
        detect_secrets_plugins=(str(tmp_path / "ci" / "ours.py"),),
    )


@pytest.mark.parametrize(
    "body", ["ignore-rules = ['x']\n", "[tool.leakscan]\nignore-rules = ['x']\n"]
)
def test_explicit_file_plain_or_with_the_table(body: str, tmp_path: Path) -> None:
    path = tmp_path / "elsewhere" / "my.toml"
    path.parent.mkdir()
    path.write_text(body)
    config = load_config(str(path), start=str(tmp_path))
    assert config.ignore_rules == ("x",) and config.source == str(path)


def test_explicit_file_missing(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        load_config(str(tmp_path / "missing.toml"))


@pytest.mark.parametrize("style", ["leakscan.toml", "pyproject", "explicit"])
def test_config_file(style: str, tmp_path: Path) -> None:
    body = 'ignore-rules = ["betterleaks.github-pat"]\nignore-paths = ["/root/.npmrc"]\n'
    args = [LEAKY, "-f", "json"]
    if style == "leakscan.toml":
        (tmp_path / ".leakscan.toml").write_text(body)
    elif style == "pyproject":
        (tmp_path / "pyproject.toml").write_text("[project]\nname='x'\n\n[tool.leakscan]\n" + body)
    else:
        (tmp_path / "custom.toml").write_text(body)
        args += ["--config", "custom.toml"]
    run = run_leakscan(args, cwd=tmp_path)
    (image,) = run.report["images"]
    assert [f["location"]["kind"] for f in image["findings"]] == ["history"]
    assert sum(image["suppressed"].values()) == 3


def test_config_baseline_relative_to_config(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    run_leakscan(["baseline", LEAKY, "-o", str(tmp_path / "sub" / "b.json")])
    (tmp_path / ".leakscan.toml").write_text('baseline = "sub/b.json"\nmin-confidence = "high"\n')
    run = run_leakscan([LEAKY, "-f", "json"], cwd=tmp_path)
    assert run.code == 0
    (image,) = run.report["images"]
    assert image["findings"] == []


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("ignore-rules = 'x'", "ignore-rules must be a list of strings"),
        ("colour = 1", "unknown setting 'colour'"),
        ("min-confidence = 'huge'", "min-confidence must be high, medium or low"),
        ("not toml at all [", ".leakscan.toml"),
    ],
)
def test_bad_config_one_line(body: str, needle: str, tmp_path: Path) -> None:
    (tmp_path / ".leakscan.toml").write_text(body)
    run = run_leakscan([LEAKY], cwd=tmp_path)
    assert run.code == 2
    lines = run.err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in run.err
