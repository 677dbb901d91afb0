"""leakscan's own container image (the repository's Dockerfile), built with buildah and run
with podman, as a CI job would run it.

The machine cannot pull ``python:3.11-slim``: the base is made from files instead, a busybox
root filesystem with this machine's interpreter copied into ``/usr/local`` (standard
library, the shared libraries it links, and the installed distributions leakscan needs,
pip and setuptools included), and handed to the Dockerfile with ``--build-arg
PYTHON_IMAGE``. ``PIP_OPTIONS=--no-index --no-build-isolation`` keeps pip offline: every
dependency is in the base already, so the Dockerfile's own steps run (install, user,
catalog compile, volume) and nothing else.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from needs import missing, podman_private, tool, tool_path
from packaging.requirements import Requirement  # pytest's own dependency

REPO = Path(__file__).resolve().parents[2]
PY_BASE = "localhost/leakscan-test-python:1"
LEAKSCAN_IMAGE = "localhost/leakscan:test"


def _elf_deps(path: Path) -> list[Path]:
    """The shared libraries ``path`` loads, as the host's loader resolves them."""
    proc = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=False)
    found = []
    for line in proc.stdout.splitlines():
        match = re.search(r"(/\S+) \(0x", line)
        if match:
            found.append(Path(match.group(1)))
    return found


def _runtime_dists() -> set[str]:
    """leakscan's dependencies (no extras) on this interpreter, theirs, pip and setuptools.
    leakscan's own are read from pyproject.toml: installed metadata of an editable install
    can be older than the checkout."""
    wanted = {"pip", "setuptools"}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    todo: list[str] = list(project["dependencies"])
    while todo:
        req = Requirement(todo.pop())
        name = req.name.lower()
        if name in wanted or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
            continue
        wanted.add(name)
        todo.extend(metadata.requires(name) or [])
    return wanted


def _python_rootfs(busybox: Path, root: Path) -> None:
    """``busybox`` plus this interpreter in /usr/local and the distributions leakscan needs."""
    shutil.copytree(busybox, root, symlinks=True)
    prefix = Path(sys.base_prefix)
    stdlib = Path(sysconfig.get_paths(vars={"base": str(prefix)})["stdlib"])
    local = root / "usr" / "local"
    (local / "bin").mkdir(parents=True)
    exe = Path(os.path.realpath(sys.executable))
    shutil.copy2(exe, local / "bin" / exe.name)
    for alias in ("python3", "python"):
        (local / "bin" / alias).symlink_to(exe.name)
    skip = shutil.ignore_patterns(
        "site-packages", "test", "idlelib", "tkinter", "turtledemo", "ensurepip", "__pycache__"
    )
    shutil.copytree(stdlib, local / "lib" / stdlib.name, ignore=skip, symlinks=True)
    target_site = local / "lib" / stdlib.name / "site-packages"
    target_site.mkdir()
    elves = [exe, *Path(stdlib / "lib-dynload").glob("*.so")]
    for name in _runtime_dists():
        dist = metadata.distribution(name)
        # each distribution's own site folder: in a venv that sees the system's packages
        # (as .ci/run makes), pip and the dependencies are not in the venv's purelib
        home = Path(str(dist.locate_file("")))
        for file in dist.files or []:
            source = Path(str(dist.locate_file(file)))
            rel = Path(os.path.relpath(source, home))
            if rel.parts[0] == ".." or "__pycache__" in rel.parts or not source.is_file():
                continue  # console scripts live in bin/: pip writes its own
            dest = target_site / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest)
            if ".so" in source.name:
                elves.append(source)
    libs: set[Path] = set()
    for elf in elves:
        libs.update(_elf_deps(elf))
    multiarch = root / "usr" / "lib" / "x86_64-linux-gnu"
    multiarch.mkdir(parents=True)
    for lib in libs:
        if lib.is_relative_to(prefix):
            # libpython sits beside the pyenv prefix (RUNPATH): the loader's default path here
            shutil.copy2(lib, multiarch / lib.name)
            continue
        dest = root / lib.relative_to("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lib, dest)  # follows links: the file under the name programs ask for


def _env(store: Path) -> dict[str, str]:
    """buildah and podman see the storage we give them and nothing of the host's."""
    env = {k: v for k, v in os.environ.items() if k not in ("STORAGE_DRIVER", "STORAGE_OPTS")}
    conf = store / "storage.conf"
    conf.write_text(
        f'[storage]\ndriver = "vfs"\ngraphroot = "{store / "g"}"\nrunroot = "{store / "r"}"\n'
    )
    env.update(PATH=tool_path(), CONTAINERS_STORAGE_CONF=str(conf), TMPDIR=str(store))
    env.update(podman_private(store / "engine"))
    return env


def _run(cmd: list[str], env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc.stdout


@dataclass(frozen=True)
class Podman:
    """podman on a private store, with leakscan's image loaded."""

    base: list[str]
    env: dict[str, str]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``podman run --rm`` (no network unless ``args`` give one)."""
        network = [] if "--network" in args else ["--network", "none"]
        cmd = [*self.base, "run", "--rm", "--pull=never", *network,
               "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=1000:1000", *args]  # fmt: skip
        return subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=600)


@pytest.fixture(scope="module")
def image_store() -> Iterator[Path]:
    if os.geteuid() != 0:
        missing("building images with buildah needs root here")
    store = Path(tempfile.mkdtemp(prefix="lsi-", dir="/tmp"))
    yield store
    shutil.rmtree(store, ignore_errors=True)


@pytest.fixture(scope="module")
def buildah_image(busybox_rootfs: Path, containers_policy: Path, image_store: Path) -> Path:
    """The repository's Dockerfile built by buildah on the local python base; the image
    saved as a ``docker-archive:``, whose path is returned."""
    buildah = tool("buildah")
    tool("ldd")
    store = image_store / "buildah"
    store.mkdir()
    env = _env(store)
    base = [buildah, "--root", str(store / "g"), "--runroot", str(store / "r"),
            "--storage-driver", "vfs"]  # fmt: skip
    policy = f"--signature-policy={containers_policy}"
    rootfs = image_store / "pyroot"
    _python_rootfs(busybox_rootfs, rootfs)
    ctr = _run([*base, "from", policy, "scratch"], env).strip()
    _run([*base, "copy", ctr, f"{rootfs}/", "/"], env)
    _run([*base, "config", "--env", "PATH=/usr/local/bin:/usr/bin:/bin", ctr], env)
    _run([*base, "commit", policy, "-q", ctr, PY_BASE], env)
    shutil.rmtree(rootfs)
    _run([*base, "bud", policy, "--isolation", "chroot", "--pull=never", "-q",
          "--build-arg", f"PYTHON_IMAGE={PY_BASE}",
          "--build-arg", "PIP_OPTIONS=--no-index --no-build-isolation",
          "-t", LEAKSCAN_IMAGE, "-f", str(REPO / "Dockerfile"), str(REPO)], env)  # fmt: skip
    (image_store / "config.json").write_text(
        _run([*base, "inspect", "--type", "image", LEAKSCAN_IMAGE], env)
    )
    archive = image_store / "leakscan.tar"
    # docker-archive: keeps the image's name for podman load
    _run([*base, "push", policy, LEAKSCAN_IMAGE, f"docker-archive:{archive}:{LEAKSCAN_IMAGE}"], env)
    _run([*base, "rm", "--all"], env)
    return archive


@pytest.fixture(scope="module")
def podman(buildah_image: Path, image_store: Path) -> Podman:
    store = image_store / "podman"
    store.mkdir()
    env = _env(store)
    base = [tool("podman"), "--root", str(store / "g"), "--runroot", str(store / "r"),
            "--storage-driver", "vfs"]  # fmt: skip
    _run([*base, "load", "-q", "-i", str(buildah_image)], env)
    return Podman(base, env)


def test_image_runs_as_non_root_with_the_store_on_a_volume(
    buildah_image: Path, image_store: Path
) -> None:
    config = json.loads((image_store / "config.json").read_text())["OCIv1"]["config"]
    assert config["User"] == "10001:10001"
    assert "/cache" in config["Volumes"]
    assert "LEAKSCAN_CACHE_DIR=/cache" in config["Env"]
    assert config["Entrypoint"] == ["leakscan"]


def test_catalog_compiled_at_build_time(podman: Podman) -> None:
    # "loaded": read from what the build compiled ("stored" would mean compiled in this run)
    run = podman.run("--entrypoint", "python", LEAKSCAN_IMAGE, "-c", (
        "from leakscan.detectors import kingfisher as k; r = k.catalog(); "
        "print(r.cache_status, k.rules_dir(), k.catalog_info())"
    ))  # fmt: skip
    assert run.returncode == 0, run.stderr
    status, folder, info = run.stdout.strip().split(" ", 2)
    assert (status, folder) == ("loaded", "/home/leakscan/rules")
    assert info.startswith("kingfisher ")
    version = podman.run(LEAKSCAN_IMAGE, "--version")
    assert version.returncode == 0, version.stderr
    assert f"rules: {info}" in version.stdout


def _rule_ids(report: dict[str, Any]) -> list[str]:
    return [f["rule_id"] for image in report["images"] for f in image["findings"]]


def test_scans_a_mounted_docker_save_tar(podman: Podman, image_store: Path) -> None:
    tar = REPO / "fixtures" / "leaky-npm.tar"
    cache = image_store / "volume"
    cache.mkdir()
    os.chown(cache, 10001, 10001)  # the image's user owns its volume, as a named volume
    args = ("-v", f"{tar}:/scan/app.tar:ro", "-v", f"{cache}:/cache", LEAKSCAN_IMAGE,
            "/scan/app.tar", "-f", "json", "--fail-on", "none")  # fmt: skip
    first = podman.run(*args)
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    host = subprocess.run(
        [sys.executable, "-m", "leakscan", str(tar), "-f", "json", "--fail-on", "none",
         "--no-cache"], capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert _rule_ids(report) == _rule_ids(json.loads(host.stdout)) != []
    assert report["tool"]["rules"]["engine"] == "kingfisher"
    assert (cache / "results.sqlite3").exists()  # the store is on the volume
    second = podman.run(*args)
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout)
    assert again["cache"]["layers_scanned"] == 0
    assert _rule_ids(again) == _rule_ids(report)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def registry(image_store: Path) -> Iterator[str]:
    """A private registry on 127.0.0.1 with the npm leak pushed as ``leaky/npm:1``."""
    server = tool("docker-registry")
    work = Path(tempfile.mkdtemp(prefix="lsir-", dir=image_store))
    port = _free_port()
    config = work / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {work / 'storage'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    with open(work / "registry.log", "wb") as log:
        proc = subprocess.Popen([server, "serve", str(config)], stdout=log, stderr=log)
    try:
        # skopeo retries the connection until the registry listens: no wait loop of ours
        tar = REPO / "fixtures" / "leaky-npm.tar"
        env = {**os.environ, "PATH": tool_path()}
        _run([tool("skopeo"), "copy", "--retry-times", "20", "--dest-tls-verify=false",
              f"docker-archive:{tar}", f"docker://127.0.0.1:{port}/leaky/npm:1"], env)  # fmt: skip
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_scans_an_image_in_a_registry(podman: Podman, registry: str) -> None:
    run = podman.run("--network", "host", LEAKSCAN_IMAGE, f"{registry}/leaky/npm:1",
                     "--plain-http", "-f", "json", "--fail-on", "none")  # fmt: skip
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    tar = REPO / "fixtures" / "leaky-npm.tar"
    host = subprocess.run(
        [sys.executable, "-m", "leakscan", str(tar), "-f", "json", "--fail-on", "none",
         "--no-cache"], capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert _rule_ids(report) == _rule_ids(json.loads(host.stdout)) != []


# --- the Harbor adapter's image (Dockerfile.harbor, on top of the one above) --------------------

HARBOR_IMAGE = "localhost/leakscan-harbor:test"


@pytest.fixture(scope="module")
def harbor_image(buildah_image: Path, podman: Podman, containers_policy: Path,
                 image_store: Path) -> dict[str, Any]:  # fmt: skip
    """Dockerfile.harbor built by buildah on leakscan's image, loaded into podman; returns
    the image's config."""
    store = image_store / "buildah"
    env = _env(store)
    base = [tool("buildah"), "--root", str(store / "g"), "--runroot", str(store / "r"),
            "--storage-driver", "vfs"]  # fmt: skip
    policy = f"--signature-policy={containers_policy}"
    _run([*base, "bud", policy, "--isolation", "chroot", "--pull=never", "-q",
          "--build-arg", f"LEAKSCAN_IMAGE={LEAKSCAN_IMAGE}",
          "-t", HARBOR_IMAGE, "-f", str(REPO / "Dockerfile.harbor"), str(REPO)], env)  # fmt: skip
    config = json.loads(_run([*base, "inspect", "--type", "image", HARBOR_IMAGE], env))
    archive = image_store / "leakscan-harbor.tar"
    _run([*base, "push", policy, HARBOR_IMAGE, f"docker-archive:{archive}:{HARBOR_IMAGE}"], env)
    _run([*podman.base, "load", "-q", "-i", str(archive)], podman.env)
    out: dict[str, Any] = config["OCIv1"]["config"]
    return out


def _get(port: int, path: str, token: str | None = None, body: Any = None) -> tuple[int, bytes]:
    """One request to the adapter in the container; (0, b"") while nothing listens."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request("POST" if body is not None else "GET", path, body=data, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except OSError:
        return 0, b""
    finally:
        conn.close()


def _until(what: str, test: Any, timeout: float = 300) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = test()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout} s for {what}")
        time.sleep(0.2)


def test_harbor_adapter_image_serves_a_scan(
    harbor_image: dict[str, Any], podman: Podman, registry: str, image_store: Path
) -> None:
    assert harbor_image["Entrypoint"] == ["leakscan", "serve", "--harbor"]
    assert harbor_image["Cmd"] == [
        "--listen", "0.0.0.0:8080", "--auth-token-file", "/run/secrets/harbor-token",
    ]  # fmt: skip
    assert harbor_image["User"] == "10001:10001"
    secrets_dir = Path(tempfile.mkdtemp(prefix="lsh-", dir=image_store))
    token = "tok-" + os.urandom(16).hex()
    (secrets_dir / "harbor-token").write_text(token + "\n")
    os.chmod(secrets_dir, 0o755)
    os.chmod(secrets_dir / "harbor-token", 0o644)
    port = _free_port()
    start = subprocess.run(
        [*podman.base, "run", "-d", "--rm", "--pull=never", "--network", "host",
         "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=1000:1000",
         "-v", f"{secrets_dir / 'harbor-token'}:/run/secrets/harbor-token:ro", HARBOR_IMAGE,
         "--listen", f"127.0.0.1:{port}", "--auth-token-file", "/run/secrets/harbor-token"],
        capture_output=True, text=True, env=podman.env, timeout=300,
    )  # fmt: skip
    assert start.returncode == 0, start.stderr
    container = start.stdout.strip()
    try:
        _until("/probe/ready", lambda: _get(port, "/probe/ready")[0] == 200)
        status, body = _get(port, "/api/v1/metadata", token)
        assert status == 200 and json.loads(body)["scanner"]["name"] == "leakscan"
        assert _get(port, "/api/v1/metadata", "wrong")[0] == 401
        skopeo = [tool("skopeo"), "inspect", "--raw", "--tls-verify=false"]
        raw = _run(
            [*skopeo, f"docker://{registry}/leaky/npm:1"], {**os.environ, "PATH": tool_path()}
        )
        request = {
            "registry": {"url": f"http://{registry}"},
            "artifact": {"repository": "leaky/npm", "tag": "1",
                         "digest": "sha256:" + hashlib.sha256(raw.encode()).hexdigest(),
                         "mime_type": json.loads(raw)["mediaType"]},
        }  # fmt: skip
        status, body = _get(port, "/api/v1/scan", token, request)
        assert status == 202, body
        scan_id = json.loads(body)["id"]
        path = f"/api/v1/scan/{scan_id}/report"

        def final() -> tuple[int, bytes] | None:
            answer = _get(port, path, token)
            return None if answer[0] == 302 else answer

        status, body = _until("the report", final)
        assert status == 200, body
        report = json.loads(body)
        assert any(v["package"] == "/root/.npmrc" for v in report["vulnerabilities"])
        logs = subprocess.run([*podman.base, "logs", container], capture_output=True,
                              text=True, env=podman.env, timeout=60)  # fmt: skip
        lines = [json.loads(x) for x in logs.stderr.splitlines() + logs.stdout.splitlines() if x]
        assert any(x["msg"] == "scan finished" and x["state"] == "done" for x in lines)
        assert token not in logs.stderr + logs.stdout
    finally:
        stop = subprocess.run(
            [*podman.base, "stop", "-t", "30", container],
            capture_output=True, text=True, env=podman.env, timeout=120,
        )  # fmt: skip
    assert stop.returncode == 0, stop.stderr
