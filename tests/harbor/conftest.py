"""Fixtures of the Harbor adapter's tests: a real ``docker-registry`` with TLS and htpasswd
(bcrypt) Basic auth standing in for Harbor's registry, images pushed to it with skopeo, and
``leakscan serve --harbor`` started as a real process (the machinery is in harborkit.py)."""

from __future__ import annotations

import os
import secrets
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# appended, not prepended: "conftest" must stay tests/conftest.py for the other tests
sys.path.append(str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parents[1] / "registry"))

import regkit  # noqa: E402
from harborkit import (  # noqa: E402
    REPO,
    START_TIMEOUT,
    Adapter,
    HarborWorld,
    Pushed,
    StartAdapter,
    _clean_image,
    _inspect_digest,
)
from imagebuilder import fake_token, write_oci_layout  # noqa: E402
from regkit import Secrets, leaky_image, make_tls, require, start_registry  # noqa: E402


@pytest.fixture(scope="session")
def harbor_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HarborWorld]:
    require("docker-registry", "skopeo", "htpasswd", "openssl")
    tmp = tmp_path_factory.mktemp("harbor")
    regkit.POLICY = tmp / "policy.json"
    regkit.POLICY.write_text('{"default": [{"type": "insecureAcceptAnything"}]}')
    s = Secrets(fake_token("npm"), fake_token("github"), fake_token("aws"), fake_token("github"))
    tls = make_tls(tmp / "tls")
    robot = ("robot$leakscan", "pw-" + secrets.token_hex(12))  # Harbor's robot account names
    registry = start_registry(tmp / "registry", "tls+basic", tls=tls, htpasswd=robot)
    try:
        pushed: dict[str, Pushed] = {}
        images = {"leaky": leaky_image(s), "clean": _clean_image(0)}
        for n in range(1, 6):
            images[f"many{n}"] = _clean_image(n)
        for name, image in images.items():
            layout = write_oci_layout(tmp / f"oci-{name}", image, tag="1")
            repo = f"library/{name}"
            registry.push(f"oci:{layout}:1", f"{repo}:1")
            digest, mime = _inspect_digest(registry, tls.cert_dir, f"{repo}:1")
            pushed[name] = Pushed(repo, "1", digest, mime)
        world = HarborWorld(
            tmp,
            registry,
            tls.ca,
            s,
            pushed["leaky"],
            pushed["clean"],
            [pushed[f"many{n}"] for n in range(1, 6)],
            tls,
        )
        assert registry.password is not None
        world.forbidden = [s.npm, s.github, s.aws, registry.password, world.authorization]
        world.forbidden.append(world.authorization.split(" ", 1)[1])
        yield world
    finally:
        registry.stop()


@pytest.fixture(scope="session")
def start_adapter(
    harbor_world: HarborWorld, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StartAdapter]:
    """Start adapters (all stopped at the end of the session)."""
    started: list[Adapter] = []
    cache = tmp_path_factory.mktemp("harbor-cache")

    def start(*extra: str, tls: tuple[Path, Path] | None = None, ready: bool = True) -> Adapter:
        work = tmp_path_factory.mktemp("adapter")
        token = "tok-" + secrets.token_hex(16)
        (work / "token").write_text(token + "\n")
        args = [
            sys.executable, "-m", "leakscan", "serve", "--harbor",
            "--listen", "127.0.0.1:0", "--address-file", str(work / "address"),
            "--auth-token-file", str(work / "token"), "--ca-file", str(harbor_world.ca),
            "--cache-dir", str(cache), *extra,
        ]  # fmt: skip
        context = None
        if tls is not None:
            args += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
            context = ssl.create_default_context(cafile=str(harbor_world.ca))
        env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_CONFIG", "DOCKER_HOST")}
        env["DOCKER_CONFIG"] = str(work / "docker")  # no credentials of the user's
        env["REGISTRY_AUTH_FILE"] = str(work / "auth.json")
        log_path = work / "adapter.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=REPO, env=env,
                start_new_session=True,
            )  # fmt: skip
        address = work / "address"
        deadline = time.monotonic() + START_TIMEOUT
        while not address.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"the adapter did not start:\n{log_path.read_text()}")
            time.sleep(0.05)
        host, port = address.read_text().strip().rsplit(":", 1)
        adapter = Adapter(proc, host, int(port), token, log_path, context)
        started.append(adapter)
        if ready:
            adapter.wait_for(
                "/probe/ready", lambda: adapter.request("GET", "/probe/ready").status == 200
            )
        return adapter

    yield start
    for adapter in started:
        if adapter.proc.poll() is None:
            adapter.stop()


@pytest.fixture(scope="module")
def adapter(start_adapter: StartAdapter) -> Adapter:
    """One adapter for the tests that need nothing special of it."""
    return start_adapter()


@pytest.fixture
def stalling_registry() -> Iterator[str]:
    """``host:port`` of a server that takes connections and never answers them."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            held.append(conn)  # read nothing, answer nothing

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        sock.close()
