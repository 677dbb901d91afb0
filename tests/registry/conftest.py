"""Session fixtures for the registry tests: real registries, pushed images, a fault proxy
(the machinery is in regkit.py, importable by the tests as ``regkit``)."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

# appended, not prepended: "conftest" must stay tests/conftest.py for the other tests
sys.path.append(str(Path(__file__).resolve().parent))

import regkit  # noqa: E402
from imagebuilder import fake_token, write_oci_layout  # noqa: E402
from regkit import (  # noqa: E402
    TIMINGS,
    CliRun,
    FaultProxy,
    Registry,
    Secrets,
    Timer,
    TokenServer,
    World,
    leaky_image,
    make_tls,
    multi_index,
    require,
    run_cli,
    start_registry,
)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TIMINGS:
        terminalreporter.write_sep("-", "registry fixtures: timings")
        for what, secs in TIMINGS:
            terminalreporter.write_line(f"{secs:7.2f} s  {what}")


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    require("docker-registry", "skopeo", "htpasswd", "openssl")
    tmp = tmp_path_factory.mktemp("registry")
    regkit.POLICY = tmp / "policy.json"
    regkit.POLICY.write_text('{"default": [{"type": "insecureAcceptAnything"}]}')
    s = Secrets(fake_token("npm"), fake_token("github"), fake_token("aws"), fake_token("github"))
    with Timer("write OCI layouts"):
        single = write_oci_layout(tmp / "single", leaky_image(s), tag="1")
        multi = write_oci_layout(tmp / "multi", multi_index(s), tag="1")
        dlist = write_oci_layout(tmp / "dlist", multi_index(s, attestations=False), tag="1")
    started: list[Registry] = []
    token_server = None
    try:
        with Timer("TLS material (openssl)"):
            tls_material = make_tls(tmp / "tls")
        with Timer("start 3 registries + token server"):
            plain = start_registry(tmp / "plain", "plain")
            started.append(plain)
            tls = start_registry(
                tmp / "tls-basic",
                "tls+basic",
                tls=tls_material,
                htpasswd=("leaky", "pw-" + secrets.token_hex(12)),
            )
            started.append(tls)
            token_server = TokenServer(tmp, {"tokenuser": "tk-" + secrets.token_hex(12)})
            token_server.identity_tokens["idt-" + secrets.token_hex(16)] = "tokenuser"
            token = start_registry(tmp / "token", "token", token=token_server)
            started.append(token)
        world = World(tmp, s, single, multi, dlist, plain, tls, token, tls_material, started)
        with Timer("push fixtures"):
            for registry in (plain, tls, token):
                registry.push(f"oci:{single}:1", "leaky/app:1")
            token.push(f"oci:{single}:1", "public/app:1")
            plain.push(f"oci:{multi}:1", "multi/app:1", "--all")
            # skopeo converts the OCI index to a Docker manifest list, and each image to schema 2
            plain.push(f"oci:{dlist}:1", "dlist/app:1", "--all", "--format", "v2s2")
        yield world
        started.extend(r for r in world.started if r not in started)
    finally:
        for registry in started:
            registry.stop()
        if token_server is not None:
            token_server.close()


@pytest.fixture()
def proxy(world: World) -> Iterator[FaultProxy]:
    p = FaultProxy(world.plain)
    try:
        yield p
    finally:
        p.close()


@pytest.fixture()
def cli(tmp_path: Path) -> Callable[..., CliRun]:
    home = tmp_path / "home"
    home.mkdir()

    def go(args: Sequence[str], **kw: Any) -> CliRun:
        kw.setdefault("home", home)
        return run_cli(args, **kw)

    return go


@pytest.fixture(autouse=True)
def no_daemon(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain names scanned in-process must not find a docker daemon of the machine's."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/leakscan-test.sock")
