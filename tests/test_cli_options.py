"""The command line's option checks: sizes are numbers of bytes, anything else is a usage error
(exit 2, one line on stderr, no traceback) before any work is done."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from clirun import run_leakscan

from leakscan import cli

SIZE_OPTIONS = ("--max-file-size", "--max-expanded-bytes")
# what a slip of the keyboard or a script's arithmetic hands over
BAD_SIZES = ("inf", "-inf", "Infinity", "nan", "-1", "-1K", "0", "0K", "0.4", "1e3", "", "2 X")
MISSING_IMAGE = "/nonexistent/leakscan-test/image.tar"


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512", 512),
        ("10B", 10),
        ("64K", 64 << 10),
        ("64kb", 64 << 10),
        ("1.5M", 3 << 19),
        ("2G", 2 << 30),
        ("2GiB", 2 << 30),
        ("2Gi", 2 << 30),
        (" 3 T ", 3 << 40),
        (".5K", 512),
        ("1.1K", 1126),  # rounded down to whole bytes
        ("1048576T", 1 << 60),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert cli.parse_size(text) == size


@pytest.mark.parametrize(
    "text", ["inf", "nan", "-1", "+1", "1e3", "1_000", "0x10", "K", "", "1 KK", "9" * 30 + "T"]
)
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="size|large"):
        cli.parse_size(text)


def _main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run the console entry point in this process; its exit status and stderr."""
    sys.argv = ["leakscan", *args]
    with pytest.raises(SystemExit) as exited:
        cli.main()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), capsys.readouterr().err


@pytest.mark.parametrize("command", ["scan", "baseline"])
@pytest.mark.parametrize("option", SIZE_OPTIONS)
@pytest.mark.parametrize("value", BAD_SIZES)
def test_bad_size_is_a_usage_error(
    command: str,
    option: str,
    value: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    args = [MISSING_IMAGE, f"{option}={value}"]
    if command == "baseline":
        args = ["baseline", *args, "-o", str(tmp_path / "b.json")]
    code, err = _main(args, capsys)
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"leakscan: error: {option} {value!r}: "), lines[0]
    # the image was never looked at, and nothing was written
    assert "no such file" not in err
    assert list(tmp_path.iterdir()) == []


def test_sizes_are_checked_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # each of these would be an error of its own later on: the size is reported, alone
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # no password on stdin
    (tmp_path / ".leakscan.toml").write_text("not toml [")  # a broken settings file
    monkeypatch.chdir(tmp_path)
    args = [MISSING_IMAGE, "--username", "u", "--password-stdin", "--max-file-size", "inf"]
    code, err = _main(args, capsys)
    assert code == 2 and err.startswith("leakscan: error: --max-file-size 'inf': "), err
    assert len(err.splitlines()) == 1


def test_zero_says_what_was_meant(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    _, err = _main([MISSING_IMAGE, "--max-file-size", "0"], capsys)
    assert "leave the option out for no limit" in err
    _, err = _main([MISSING_IMAGE, "--max-expanded-bytes", "0"], capsys)
    assert "--max-archive-depth 0" in err
    _, err = _main([MISSING_IMAGE, "--max-file-size", "-5M"], capsys)
    assert "cannot be negative" in err


@pytest.mark.parametrize("option", SIZE_OPTIONS)
def test_infinite_size_from_a_real_process(option: str) -> None:
    # the reported failure: `inf` reached int() and surfaced as an internal error
    run = run_leakscan([MISSING_IMAGE, option, "inf"])
    assert run.code == 2 and run.out == ""
    assert run.err.splitlines() == [
        f"leakscan: error: {option} 'inf': not a size "
        "(a number of bytes, or with K, M, G or T: 512M, 2G)"
    ]


def test_option_groups_keep_their_place_and_arrive_whole(tmp_path: Path) -> None:
    """A command's StoreFlags and RegistryFlags parameters are, to typer, the group's own
    options in that parameter's place; the command gets each group back as one value."""
    import re

    import typer
    from typer.testing import CliRunner

    seen: list[tuple[object, ...]] = []
    no_store, no_registry = cli.StoreFlags(), cli.RegistryFlags()

    def command(
        first: str = typer.Option("a", "--first"),
        store: cli.StoreFlags = no_store,
        registry: cli.RegistryFlags = no_registry,
        last: bool = typer.Option(False, "--last"),
    ) -> None:
        seen.append((first, store, registry, last))

    app = cli._app(command)  # which groups the command
    args = ["--cache-dir", str(tmp_path), "--no-tls-verify", "--ca-file", "ca.pem", "--last"]
    assert CliRunner().invoke(app, args).exit_code == 0
    expected_registry = cli.RegistryFlags(ca_file="ca.pem", tls_verify=False)
    assert seen == [("a", cli.StoreFlags(cache_dir=tmp_path), expected_registry, True)]
    assert seen[0][1].spec() == str(tmp_path / "results.sqlite3")  # type: ignore[attr-defined]
    helptext = CliRunner().invoke(app, ["--help"]).output
    listed = re.findall(r"^  (?:-\w, )?(--[\w-]+)", helptext, re.MULTILINE)
    assert listed == [
        "--first",
        "--cache",
        "--cache-dir",
        "--no-cache",
        "--creds",
        "--username",
        "--password-stdin",
        "--ca-file",
        "--tls-verify",
        "--plain-http",
        "--last",
        "--help",
    ]
