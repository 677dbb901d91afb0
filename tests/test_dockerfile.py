"""leakscan dockerfile: the pre-build check, on Dockerfiles and contexts written per test."""

from __future__ import annotations

import json
import secrets
import string
from pathlib import Path

import pytest
from clirun import run_leakscan

from leakscan.dockerfile import (
    SUGGESTED_IGNORES,
    DockerIgnore,
    check,
    check_text,
    parse_dockerfile,
    secret_name,
    to_json,
    to_table,
)
from leakscan.errors import InputError


def _token(prefix: str = "ghp_", length: int = 36) -> str:
    alphabet = string.ascii_letters + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))


def _project(tmp_path: Path, dockerfile: str, **files: str) -> Path:
    (tmp_path / "Dockerfile").write_text(dockerfile)
    for name, text in files.items():
        path = tmp_path / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    "name",
    ["NPM_TOKEN", "DB_PASSWORD", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "GITHUB_PAT",
     "api_key", "CLIENT_SECRET", "STRIPE_API_KEY", "NPM_AUTH", "PYPI_PASSWORD"],
)  # fmt: skip
def test_secret_names(name: str) -> None:
    assert secret_name(name)


@pytest.mark.parametrize(
    "name",
    ["NODE_ENV", "GPG_KEY", "TOKEN_FILE", "PASSWORD_FILE", "AUTH_URL", "VERSION", "PATH",
     "KEY", "SECRET_NAME", "PWD", "PYTHON_GET_PIP_SHA256"],
)  # fmt: skip
def test_names_that_are_no_secret(name: str) -> None:
    assert not secret_name(name)


def test_build_arg_gets_the_secret_mount_of_the_run_that_uses_it(tmp_path: Path) -> None:
    text = (
        "FROM node:20\nARG VERSION=1\nARG NPM_TOKEN\nRUN echo hello\n"
        'RUN echo "//npm.example.internal/:_authToken=${NPM_TOKEN}" > .npmrc && \\\n'
        "    npm ci && rm .npmrc\n"
    )
    (found,) = check_text(text, tmp_path)
    assert (found.rule, found.line, found.confidence) == ("secret-build-arg", 3, "high")
    assert "line 5" in found.message
    assert (
        "RUN --mount=type=secret,id=npm_token,env=NPM_TOKEN echo "
        '"//npm.example.internal/:_authToken=${NPM_TOKEN}" > .npmrc && npm ci && rm .npmrc'
        in found.remediation
    )
    assert "docker build --secret id=npm_token,env=NPM_TOKEN" in found.remediation
    assert "rotate" in found.remediation


def test_env_with_a_token_is_masked_everywhere(tmp_path: Path) -> None:
    token = _token()
    text = f"FROM alpine\nENV GITHUB_TOKEN={token} APP=web\nENV BUILD_NOTE {_token('npm_')}\n"
    (tmp_path / "Dockerfile").write_text(text)
    result = check(str(tmp_path))
    rules = [(f.rule, f.line) for f in result.findings]
    assert rules == [("secret-env", 2), ("secret-value", 3)]
    assert result.findings[0].confidence == "high"
    assert "docker run -e GITHUB_TOKEN" in result.findings[0].remediation
    for text_out in (to_json(result), to_table(result, 80)):
        assert token not in text_out
        assert token[:4] + "********" in text_out


def test_placeholders_and_references(tmp_path: Path) -> None:
    text = (
        "FROM alpine\nENV EXAMPLE=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"
        "ARG DB_PASSWORD\nENV DB_PASSWORD=$DB_PASSWORD\n"
        "ENV GPG_KEY=A035C8C19219BA821ECEA86B64E628F8D684696D\n"
    )
    found = check_text(text, tmp_path)
    # the placeholder token and the GPG fingerprint are nothing; the ARG has no RUN after it
    assert [(f.rule, f.line, f.confidence) for f in found] == [
        ("secret-build-arg", 3, "medium"),
        ("secret-env", 4, "medium"),
    ]
    assert "the value of $DB_PASSWORD" in found[1].message


def test_whole_context_without_dockerignore(tmp_path: Path) -> None:
    _project(
        tmp_path,
        "FROM python:3.12\nWORKDIR /srv\nCOPY . .\n",
        app__main_py="print('hi')\n",
        **{".env": "X=1\n", "config__.npmrc": "registry=x\n", ".env.example": "X=\n"},
    )
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("[core]\n")
    result = check(str(tmp_path))
    got = [(f.rule, f.path) for f in result.findings]
    assert got == [
        ("credentials-copy", ".env"),
        ("credentials-copy", ".git"),
        ("credentials-copy", "config/.npmrc"),
        ("context-copy", None),
    ]
    env = result.findings[0]
    assert "RUN --mount=type=secret,id=env,target=/srv/.env" in env.remediation
    assert "Add .env to .dockerignore" in env.remediation
    assert "--build-arg GIT_COMMIT" in result.findings[1].remediation
    assert ".git .env .env.*" in result.findings[3].remediation
    assert result.exit_status() == 1


def test_a_dockerignore_that_excludes_them(tmp_path: Path) -> None:
    ignore = ".git\n.env\n.env.*\n!.env.public\n**/.npmrc\n.pypirc\n.netrc\n**/*.pem\n"
    ignore += "**/*.key\n.aws\n.ssh\n.docker\n"
    _project(
        tmp_path,
        "FROM python:3.12\nCOPY . /app\n",
        **{".dockerignore": ignore, ".env": "X=1\n", "a__b__.npmrc": "x\n", "k__tls.pem": "x"},
    )
    assert check(str(tmp_path)).findings == ()
    # a re-included file is sent again
    (tmp_path / ".env.public").write_text("X=1\n")
    (found,) = check(str(tmp_path)).findings
    assert (found.rule, found.path) == ("credentials-copy", ".env.public")


def test_named_copies_and_stages(tmp_path: Path) -> None:
    text = (
        "FROM golang AS build\nCOPY --chown=1000 .npmrc /root/\n"
        'COPY ["secrets.json", "/etc/app/"]\n'
        "FROM alpine\nCOPY --from=build /root/.npmrc /tmp/\nCOPY src/ /app/src/\n"
        "ADD https://example.invalid/.env /tmp/\n"
    )
    found = check_text(text, tmp_path)
    assert [(f.rule, f.line, f.path) for f in found] == [
        ("credentials-copy", 2, ".npmrc"),
        ("credentials-copy", 3, "secrets.json"),
    ]
    assert "target=/root/.npmrc" in found[0].remediation
    # excluded: the build would fail to find it, nothing leaks
    assert check_text(text, tmp_path, ".npmrc\nsecrets.json\n") == ()


def test_dockerfile_specific_ignore_file_wins(tmp_path: Path) -> None:
    _project(tmp_path, "FROM alpine\nCOPY . .\n", **{".env": "X=1\n", ".dockerignore": ""})
    own = "\n".join(SUGGESTED_IGNORES)
    (tmp_path / "Dockerfile.dockerignore").write_text(own)
    result = check(str(tmp_path / "Dockerfile"))
    assert result.dockerignore is not None and result.dockerignore.endswith(
        "Dockerfile.dockerignore"
    )
    assert result.findings == ()


@pytest.mark.parametrize(
    ("pattern", "path", "excluded"),
    [
        ("*.pem", "a.pem", True),
        ("*.pem", "d/a.pem", False),
        ("**/*.pem", "d/e/a.pem", True),
        ("/secrets", "secrets/x", True),
        ("sec?ets", "secrets", True),
        ("conf/[a-c]*.key", "conf/b1.key", True),
        ("conf/[^a-c]*.key", "conf/b1.key", False),
        ("./.env", ".env", True),
    ],
)
def test_dockerignore_patterns(pattern: str, path: str, excluded: bool) -> None:
    assert DockerIgnore(pattern).excludes(path) is excluded


def test_parser_continuations_heredocs_escape() -> None:
    text = (
        "# escape=`\nFROM alpine\nRUN echo a `\n  # a comment\n  && echo b\n"
        "RUN <<EOF\nENV NOT_AN=instruction\nEOF\nENV A=1\n"
    )
    insts = parse_dockerfile(text)
    assert [(i.keyword, i.line) for i in insts] == [("FROM", 2), ("RUN", 3), ("RUN", 6), ("ENV", 9)]
    assert insts[1].body == "echo a && echo b"


def test_refusals(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        check(str(tmp_path / "missing"))
    with pytest.raises(InputError, match="no Dockerfile or Containerfile"):
        check(str(tmp_path))
    (tmp_path / "Dockerfile").write_bytes(secrets.token_bytes(2048) + b"\0")
    with pytest.raises(InputError, match="not a Dockerfile"):
        check(str(tmp_path))
    (tmp_path / "Dockerfile").write_text("hello world\n")
    with pytest.raises(InputError, match="no FROM"):
        check(str(tmp_path))


def test_cli_exit_status_and_formats(tmp_path: Path) -> None:
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "Containerfile").write_text("FROM alpine\nCOPY app.py /app/\nENV MODE=prod\n")
    run = run_leakscan(["dockerfile", str(clean)])
    assert run.code == 0, run.err
    assert "nothing this Dockerfile would leak" in run.out
    leaky = tmp_path / "leaky"
    leaky.mkdir()
    _project(leaky, "FROM node\nARG NPM_TOKEN\nRUN npm ci\n")
    run = run_leakscan(["dockerfile", str(leaky / "Dockerfile"), "--format", "json"])
    assert run.code == 1, run.err
    data = json.loads(run.out)
    assert [f["rule"] for f in data["findings"]] == ["secret-build-arg"]
    assert (
        "RUN --mount=type=secret,id=npm_token,env=NPM_TOKEN npm ci"
        in data["findings"][0]["remediation"]
    )
    run = run_leakscan(["dockerfile", str(tmp_path / "nothing-here")])
    assert run.code == 2
    assert (
        run.err.strip()
        == f"leakscan: error: {tmp_path / 'nothing-here'}: no such file or directory"
    )
