"""Credentials and CAs where people's tools keep them: ``podman login``'s auth file and a
certs.d folder, against the session's real TLS + htpasswd registry, with no --creds and no
--ca-file."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from regkit import World, require


def _certs_d(root: Path, world: World) -> Path:
    """A certs.d root holding the registry's CA the way docker wants it: HOST:PORT/ca.crt."""
    folder = root / world.tls.host
    folder.mkdir(parents=True)
    shutil.copy(world.tls_material.ca, folder / "ca.crt")
    return root


def _podman_login(world: World, runtime: Path, certs: Path) -> None:
    require("podman")
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime))
    env.pop("REGISTRY_AUTH_FILE", None)
    proc = subprocess.run(
        ["podman", "login", "--cert-dir", str(certs / world.tls.host), "--username",
         world.tls.user, "--password-stdin", world.tls.host],
        input=world.tls.password + "\n", capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # podman wrote where containers-auth.json(5) says: the runtime folder
    assert (runtime / "containers" / "auth.json").is_file()


def test_podman_login_and_certs_d(world: World, cli: Any, tmp_path: Path) -> None:
    certs = _certs_d(tmp_path / "certs.d", world)
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    _podman_login(world, runtime, certs)
    image = f"docker://{world.tls.host}/leaky/app:1"
    env = {"XDG_RUNTIME_DIR": str(runtime), "LEAKSCAN_CERTS_DIRS": str(certs)}
    run = cli([image, "--format", "json", "--no-cache"], env=env)
    assert run.code == 1, run.err
    found = {f["secret_sha256"] for i in run.report["images"] for f in i["findings"]}
    assert found, run.out
    assert world.tls.password not in run.out + run.err
    # without the certs.d folder the certificate is not trusted; without the login, no access
    run = cli([image, "--no-cache"], env={"XDG_RUNTIME_DIR": str(runtime)})
    assert run.code == 2 and "not trusted" in run.err, run.err
    run = cli([image, "--no-cache"], env={"LEAKSCAN_CERTS_DIRS": str(certs)})
    assert run.code == 2 and "authentication required" in run.err, run.err


def test_persistent_auth_file(world: World, cli: Any, tmp_path: Path) -> None:
    """~/.config/containers/auth.json (skopeo login --authfile's usual target) is read when
    the runtime one has nothing for the registry."""
    import base64
    import json

    certs = _certs_d(tmp_path / "certs.d", world)
    config = tmp_path / "config" / "containers"
    config.mkdir(parents=True)
    pair = base64.b64encode(f"{world.tls.user}:{world.tls.password}".encode()).decode()
    (config / "auth.json").write_text(json.dumps({"auths": {world.tls.host: {"auth": pair}}}))
    runtime = tmp_path / "run"
    (runtime / "containers").mkdir(parents=True)
    other = {"auths": {"other.example.internal": {"auth": pair}}}
    (runtime / "containers" / "auth.json").write_text(json.dumps(other))
    env = {
        "XDG_RUNTIME_DIR": str(runtime),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "LEAKSCAN_CERTS_DIRS": str(certs),
    }
    run = cli([f"docker://{world.tls.host}/leaky/app:1", "--no-cache"], env=env)
    assert run.code == 1, run.err


@pytest.mark.parametrize("broken", ["not json", "[]"])
def test_broken_auth_file_is_named(world: World, cli: Any, tmp_path: Path, broken: str) -> None:
    runtime = tmp_path / "run"
    (runtime / "containers").mkdir(parents=True)
    (runtime / "containers" / "auth.json").write_text(broken)
    certs = _certs_d(tmp_path / "certs.d", world)
    env = {"XDG_RUNTIME_DIR": str(runtime), "LEAKSCAN_CERTS_DIRS": str(certs)}
    run = cli([f"docker://{world.tls.host}/leaky/app:1", "--no-cache"], env=env)
    assert run.code == 2
    assert f"containers auth file {runtime / 'containers' / 'auth.json'}" in run.err
