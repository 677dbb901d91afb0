"""Targets, repository selection, the repository list file."""

from __future__ import annotations

from pathlib import Path

import pytest

from leakscan.audit.catalog import parse_target, read_repos_file, select_repositories
from leakscan.errors import InputError
from leakscan.sources.auth import RegistryOptions

OPTS = RegistryOptions()


def test_targets() -> None:
    assert (
        parse_target("registry.example.internal:5000", OPTS).host
        == "registry.example.internal:5000"
    )
    plain = parse_target("http://127.0.0.1:5000", OPTS)
    assert plain.host == "127.0.0.1:5000" and plain.options.plain_http
    tls = parse_target("https://registry.example.internal/", OPTS)
    assert tls.host == "registry.example.internal" and not tls.options.plain_http
    daemon = parse_target("docker-daemon:", OPTS)
    assert daemon.daemon and daemon.name == "docker-daemon:"
    for bad in ("", "ftp://x", "https://host/path", "host with space", "a/b"):
        with pytest.raises(InputError):
            parse_target(bad, OPTS)


def test_selection_and_file(tmp_path: Path) -> None:
    listed = ["web", "api", "team/web", "tools"]
    assert select_repositories(listed, []) == sorted(listed)
    assert select_repositories(listed, ["*web"]) == ["team/web", "web"]
    assert select_repositories(listed, ["t*", "api"]) == ["api", "team/web", "tools"]
    f = tmp_path / "repos"
    f.write_text("web\n\n  # comment\napi # inline\n")
    assert read_repos_file(str(f)) == ["web", "api"]
    with pytest.raises(InputError):
        read_repos_file(str(tmp_path / "missing"))
