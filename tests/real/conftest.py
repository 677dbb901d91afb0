"""Session fixtures that build REAL leaky images with real container tools, once per session.

One Dockerfile (``dockerfiles/npm-leak/Dockerfile``) is built from a busybox-static base by

* a private dockerd (legacy builder, via the docker SDK), then ``docker save``-d, and the saved
  tar copied by skopeo to an ``oci:`` layout and to skopeo's own ``docker-archive:`` output;
* buildah (``--layers``, chroot isolation, private storage), pushed to ``oci:``,
  ``oci-archive:`` and ``docker-archive:``.

The npm token is generated per session and passed as a build arg, so it ends up in the history
(``|1 NPM_TOKEN=...``) and in a file that a later ``RUN rm`` deletes with a whiteout.
Every output is checked here against what the tools themselves say (``skopeo copy`` to a
``dir:`` layout, read with ``tarfile``): the test suite then compares leakscan's report with that.

A missing tool (or not running as root) skips the tests, except when ``CI=true``: there it fails.
``LEAKSCAN_DOCKERD_DRIVER`` / ``LEAKSCAN_BUILDAH_DRIVER`` force a storage driver (default: try
overlay2 / overlay first, fall back to vfs).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import string
import subprocess
import tarfile
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from needs import missing

HERE = Path(__file__).resolve().parent
NPM_LEAK_CONTEXT = HERE / "dockerfiles" / "npm-leak"
IMAGE_TAG = "leaky/app:latest"
BASE_REPO, BASE_TAG = "lsbase", "1"
BASE_ENV_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NPMRC = "root/.npmrc"
NPMRC_WHITEOUT = "root/.wh..npmrc"
TOOL_TIMEOUT = 300

# layout name -> the session fixture that builds it
REAL_LAYOUTS: dict[str, str] = {
    "docker-save": "docker_layouts",
    "docker-save+skopeo-oci": "docker_layouts",
    "docker-save+skopeo-docker-archive": "docker_layouts",
    "buildah-oci": "buildah_layouts",
    "buildah-oci-archive": "buildah_layouts",
    "buildah-docker-archive": "buildah_layouts",
}

# (what, seconds), printed at the end of the session
TIMINGS: list[tuple[str, float]] = []


class RealImage(NamedTuple):
    """One built image in one on-disk layout."""

    transport: str  # what to hand to leakscan, e.g. "docker-archive:/tmp/x/docker-save.tar"
    token: str  # the npm token baked into it
    info: dict[str, Any]  # builder, driver, and the ground truth read back with skopeo


# ---------------------------------------------------------------------------------------------
# helpers


def _tool_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("PATH", "")
    for sbin in ("/usr/local/sbin", "/usr/sbin", "/sbin"):
        if sbin not in path.split(os.pathsep):
            path = f"{path}{os.pathsep}{sbin}" if path else sbin
    env["PATH"] = path
    # the tools must only see the state we give them
    for var in ("DOCKER_HOST", "STORAGE_DRIVER", "STORAGE_OPTS", "BUILDAH_LAYERS"):
        env.pop(var, None)
    env.update(extra)
    return env


def _which(name: str) -> str | None:
    return shutil.which(name, path=_tool_env()["PATH"])


def _require(*tools: str, root: bool = True) -> dict[str, str]:
    if root and os.geteuid() != 0:
        missing(f"real-image builds need root (uid {os.geteuid()})")
    found: dict[str, str] = {}
    absent = []
    for tool in tools:
        path = _which(tool)
        if path is None:
            absent.append(tool)
        else:
            found[tool] = path
    if absent:
        missing(f"missing tools: {', '.join(absent)} (see .ci/setup for the Debian packages)")
    return found


def _run(cmd: list[str], *, env: dict[str, str] | None = None, secret: str = "") -> str:
    """Run a tool; on failure raise with its stderr so the fixture error says what broke
    (with ``secret`` masked: build args are on the command line)."""
    proc = subprocess.run(
        cmd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env if env is not None else _tool_env(),
        timeout=TOOL_TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        message = (
            f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}{proc.stdout[-1000:]}"
        )
        raise RuntimeError(message.replace(secret, "<TOKEN>") if secret else message)
    return proc.stdout


@contextmanager
def _timed(what: str) -> Iterator[None]:
    start = time.monotonic()
    try:
        yield
    finally:
        TIMINGS.append((what, time.monotonic() - start))


def _unmount_under(root: Path) -> None:
    """Lazily unmount whatever a crashed daemon or builder left mounted below ``root``."""
    prefix = str(root).rstrip("/") + "/"
    mounts = []
    with open("/proc/self/mounts", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if len(fields) < 2:
                continue
            point = fields[1].encode().decode("unicode_escape")  # \040 -> space
            if point.startswith(prefix) or point == prefix.rstrip("/"):
                mounts.append(point)
    for point in sorted(set(mounts), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _remove_tree(root: Path) -> None:
    if not root.exists():
        return
    _unmount_under(root)
    shutil.rmtree(root, ignore_errors=True)
    if root.exists():
        warnings.warn(f"could not remove {root}", stacklevel=2)


def _shannon_entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def _read_layer(path: Path) -> bytes:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        return gzip.decompress(data)
    if data[:4] == b"\x28\xb5\x2f\xfd":
        raise AssertionError(f"{path}: zstd layer, not expected from these builds")
    return data


def _inspect_layout(transport: str, token: str, scratch: Path, policy: Path) -> dict[str, Any]:
    """Ground truth for one layout, read back with skopeo (not with leakscan).

    Checks the build really leaked: one layer holds /root/.npmrc with the token, a later one
    holds the ``.wh..npmrc`` whiteout, the history carries ``|1 NPM_TOKEN=<token>``, and the
    layer tars hash to the config's diff_ids.
    """
    skopeo = ["skopeo", "--policy", str(policy)]
    config = json.loads(_run([*skopeo, "inspect", "--config", "--raw", transport]))
    dest = scratch / "dir"
    _remove_tree(dest)
    _run([*skopeo, "copy", "-q", transport, f"dir:{dest}"])
    manifest = json.loads((dest / "manifest.json").read_text())
    members: list[set[str]] = []
    layer_diff_ids: list[str] = []
    npmrc_content: dict[int, bytes] = {}
    for index, layer in enumerate(manifest["layers"]):
        raw = _read_layer(dest / layer["digest"].split(":", 1)[1])
        layer_diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        names: set[str] = set()
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            for member in tar:
                name = member.name.removeprefix("./").lstrip("/")
                names.add(name)
                if name == NPMRC and member.isfile():
                    extracted = tar.extractfile(member)
                    assert extracted is not None
                    npmrc_content[index] = extracted.read()
        members.append(names)
    _remove_tree(dest)

    diff_ids = list(config["rootfs"]["diff_ids"])
    history = [
        {"created_by": h.get("created_by", ""), "empty_layer": bool(h.get("empty_layer", False))}
        for h in config.get("history", [])
    ]
    npmrc_layers = [i for i, names in enumerate(members) if NPMRC in names]
    whiteout_layers = [i for i, names in enumerate(members) if NPMRC_WHITEOUT in names]
    problems = []
    if layer_diff_ids != diff_ids:
        problems.append(f"layer tars hash to {layer_diff_ids}, config says {diff_ids}")
    if len(npmrc_layers) != 1 or token.encode() not in npmrc_content.get(npmrc_layers[0], b""):
        problems.append(f"/{NPMRC} with the token should be in exactly one layer: {npmrc_layers}")
    if len(whiteout_layers) != 1 or not npmrc_layers or whiteout_layers[0] <= npmrc_layers[0]:
        problems.append(f"one later layer should hold {NPMRC_WHITEOUT}: {whiteout_layers}")
    if not any(f"|1 NPM_TOKEN={token} " in h["created_by"] for h in history):
        problems.append("no history entry carries the build arg |1 NPM_TOKEN=...")
    if sum(not h["empty_layer"] for h in history) != len(diff_ids):
        problems.append(f"{len(diff_ids)} layers but history is {history}")
    if problems:
        detail = "\n".join(problems).replace(token, "<TOKEN>")
        raise AssertionError(f"{transport}: the build did not leak as designed:\n{detail}")
    return {
        "diff_ids": diff_ids,
        "history_created_by": [h["created_by"] for h in history],
        "npmrc_layer": npmrc_layers[0],
        "whiteout_layer": whiteout_layers[0],
        "layer_count": len(diff_ids),
    }


def _write_policy(path: Path) -> Path:
    """A containers signature policy of our own: no dependence on /etc/containers."""
    path.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    return path


# ---------------------------------------------------------------------------------------------
# base fixtures


@pytest.fixture(scope="session")
def real_token() -> str:
    """A fresh npm token per session: "npm_" + 36 random [A-Za-z0-9]."""
    alphabet = string.ascii_letters + string.digits
    while True:
        token = "npm_" + "".join(secrets.choice(alphabet) for _ in range(36))
        if _shannon_entropy(token) >= 4.0:  # detectors drop low-entropy matches
            return token


@pytest.fixture(scope="session")
def real_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the built layouts go (kept by pytest's tmp retention for debugging)."""
    return tmp_path_factory.mktemp("real-images")


@pytest.fixture(scope="session")
def containers_policy(real_workdir: Path) -> Path:
    return _write_policy(real_workdir / "policy.json")


def _is_static_elf(path: Path) -> bool:
    """True when the ELF file has no PT_INTERP program header (no dynamic loader)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF":
            return False
        is64 = head[4] == 2
        order = "little" if head[5] == 1 else "big"
        if is64:
            phoff = int.from_bytes(head[0x20:0x28], order)
            phentsize = int.from_bytes(head[0x36:0x38], order)
            phnum = int.from_bytes(head[0x38:0x3A], order)
        else:
            phoff = int.from_bytes(head[0x1C:0x20], order)
            phentsize = int.from_bytes(head[0x2A:0x2C], order)
            phnum = int.from_bytes(head[0x2C:0x2E], order)
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            if int.from_bytes(f.read(4), order) == 3:  # PT_INTERP
                return False
    return True


@pytest.fixture(scope="session")
def busybox_rootfs(real_workdir: Path) -> Path:
    """A minimal root filesystem: static busybox, relative applet links, passwd, root/, tmp/."""
    busybox = _require("busybox", root=False)["busybox"]
    if not _is_static_elf(Path(busybox)):
        missing(f"{busybox} is dynamically linked: install busybox-static")
    with _timed("busybox rootfs"):
        root = real_workdir / "rootfs"
        for sub in ("bin", "etc", "root", "tmp"):
            (root / sub).mkdir(parents=True)
        (root / "tmp").chmod(0o1777)
        (root / "root").chmod(0o700)
        shutil.copy2(busybox, root / "bin" / "busybox")
        applets = _run([busybox, "--list"], env=_tool_env()).split()
        for applet in applets:
            if applet != "busybox":
                # relative: `busybox --install -s` would point at the host's path
                (root / "bin" / applet).symlink_to("busybox")
        (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        (root / "etc" / "group").write_text("root:x:0:\n")
        if "sh" not in applets or "rm" not in applets:
            raise AssertionError(f"{busybox} lacks sh/rm applets")
    return root


# ---------------------------------------------------------------------------------------------
# dockerd


def _ping(sock: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(str(sock))
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
    except OSError:
        return False
    return data.startswith(b"HTTP/1.") and b" 200 " in data.split(b"\r\n", 1)[0]


class _Dockerd:
    """One private dockerd: own data/exec root, socket, pidfile, no network setup at all."""

    def __init__(self, driver: str) -> None:
        self.driver = driver
        # short on purpose: unix socket paths (containerd's live under exec-root) < 108 bytes
        self.dir = Path(tempfile.mkdtemp(prefix="lsd-", dir="/tmp"))
        self.sock = self.dir / "docker.sock"
        self.host = f"unix://{self.sock}"
        self.log = self.dir / "dockerd.log"
        # containerd wants letters and digits between separators: mkdtemp's "_" may not
        ns = "leakscan-" + re.sub(r"[^A-Za-z0-9]", "", self.dir.name)
        cmd = [
            "dockerd",
            f"--storage-driver={driver}",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-forward=false",
            "--ip-masq=false",
            "--bridge=none",
            f"--data-root={self.dir / 'data'}",
            f"--exec-root={self.dir / 'exec'}",
            f"--pidfile={self.dir / 'dockerd.pid'}",
            f"--host={self.host}",
            # if a system containerd is running dockerd 20.10 uses it: keep our names apart
            f"--containerd-namespace={ns}",
            f"--containerd-plugins-namespace={ns}-plugins",
        ]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_tool_env(),
                start_new_session=True,  # a Ctrl-C in pytest must not kill it before teardown
            )

    def wait_ready(self, timeout: float = 180.0) -> bool:
        """Wait for the socket to answer a ping; the timeout is a hang guard, generous
        because a loaded machine can take long to start dockerd and its containerd."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if self.sock.exists() and _ping(self.sock):
                return True
            time.sleep(0.05)
        return False

    def log_tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        # dockerd stops the containerd it spawned; make sure, by that containerd's own pid
        pidfile = self.dir / "exec" / "containerd" / "containerd.pid"
        try:
            pid = int(pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            pid, cmdline = 0, b""
        if pid and str(self.dir).encode() in cmdline:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
                for _ in range(50):
                    if not Path(f"/proc/{pid}").exists():
                        break
                    time.sleep(0.1)
                else:
                    os.kill(pid, signal.SIGKILL)
        _remove_tree(self.dir)


@pytest.fixture(scope="session")
def dockerd() -> Iterator[str]:
    """A private dockerd for this session; yields its DOCKER_HOST (unix://...)."""
    _require("dockerd", "containerd", "runc")
    forced = os.environ.get("LEAKSCAN_DOCKERD_DRIVER")
    drivers = [forced] if forced else ["overlay2", "vfs"]
    failures = []
    daemon = None
    for driver in drivers:
        start = time.monotonic()
        candidate = _Dockerd(driver)
        if candidate.wait_ready():
            TIMINGS.append((f"dockerd start ({driver})", time.monotonic() - start))
            daemon = candidate
            break
        failures.append(f"--storage-driver={driver}:\n{candidate.log_tail()}")
        candidate.stop()
    if daemon is None:
        raise RuntimeError("dockerd did not start:\n" + "\n".join(failures))
    try:
        yield daemon.host
    finally:
        with _timed("dockerd stop + cleanup (teardown)"):
            daemon.stop()


# ---------------------------------------------------------------------------------------------
# images built by dockerd


def _rootfs_tar(rootfs: Path) -> bytes:
    def owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for entry in sorted(rootfs.iterdir()):
            tar.add(entry, arcname=entry.name, filter=owned_by_root)
    return buf.getvalue()


@pytest.fixture(scope="session")
def docker_layouts(
    dockerd: str,
    busybox_rootfs: Path,
    real_token: str,
    real_workdir: Path,
    containers_policy: Path,
) -> dict[str, RealImage]:
    """dockerd legacy build -> docker save -> skopeo copies; each layout checked."""
    _require("skopeo")
    try:
        import docker
    except ImportError:
        missing("python package 'docker' missing: pip install -e '.[test]'")
    out = real_workdir / "docker"
    out.mkdir()
    saved = out / "docker-save.tar"
    skopeo = ["skopeo", "--policy", str(containers_policy)]
    client = docker.DockerClient(base_url=dockerd, version="auto", timeout=TOOL_TIMEOUT)
    try:
        with _timed("docker import busybox base"):
            client.api.import_image_from_data(
                _rootfs_tar(busybox_rootfs),
                repository=BASE_REPO,
                tag=BASE_TAG,
                changes=[f"ENV {BASE_ENV_PATH}", 'CMD ["/bin/sh"]'],
            )
        with _timed("docker build npm-leak (legacy builder)"):
            image, _log = client.images.build(
                path=str(NPM_LEAK_CONTEXT),
                tag=IMAGE_TAG,
                buildargs={"NPM_TOKEN": real_token},
                network_mode="none",
                pull=False,
                rm=True,
                forcerm=True,
            )
        with _timed("docker save"), open(saved, "wb") as f:
            for chunk in image.save(named=True):
                f.write(chunk)
    finally:
        client.close()

    skopeo_oci = out / "skopeo-oci"
    skopeo_archive = out / "skopeo-docker-archive.tar"
    with _timed("skopeo copy docker-save -> oci: + docker-archive:"):
        _run([*skopeo, "copy", "-q", f"docker-archive:{saved}", f"oci:{skopeo_oci}:latest"])
        _run(
            [
                *skopeo,
                "copy",
                "-q",
                f"docker-archive:{saved}",
                f"docker-archive:{skopeo_archive}:{IMAGE_TAG}",
            ]
        )

    transports = {
        "docker-save": f"docker-archive:{saved}",
        "docker-save+skopeo-oci": f"oci:{skopeo_oci}",  # no tag: the layout holds one image
        "docker-save+skopeo-docker-archive": f"docker-archive:{skopeo_archive}",
    }
    layouts = {}
    with _timed("check docker-built layouts (skopeo + tarfile)"):
        for name, transport in transports.items():
            truth = _inspect_layout(transport, real_token, out, containers_policy)
            info = {"builder": "dockerd", "layout": name, **truth}
            layouts[name] = RealImage(transport, real_token, info)
    return layouts


# ---------------------------------------------------------------------------------------------
# images built by buildah


class _Buildah:
    def __init__(self, store: Path, driver: str, policy: Path) -> None:
        self.store = store
        self.driver = driver
        self.policy = policy
        root, runroot, tmp = store / "root", store / "run", store / "tmp"
        for d in (root, runroot, tmp):
            d.mkdir(parents=True, exist_ok=True)
        conf = store / "storage.conf"
        conf.write_text(
            f'[storage]\ndriver = "{driver}"\ngraphroot = "{root}"\nrunroot = "{runroot}"\n'
        )
        self.env = _tool_env(CONTAINERS_STORAGE_CONF=str(conf), TMPDIR=str(tmp))
        self.base = [
            "buildah",
            "--root",
            str(root),
            "--runroot",
            str(runroot),
            "--storage-driver",
            driver,
        ]

    def __call__(self, *args: str, secret: str = "") -> str:
        return _run([*self.base, *args], env=self.env, secret=secret).strip()

    def import_rootfs(self, rootfs: Path, name: str) -> None:
        policy = f"--signature-policy={self.policy}"
        container = self("from", policy, "scratch")
        try:
            self("copy", container, f"{rootfs}/", "/")
            self("config", "--env", BASE_ENV_PATH, "--cmd", "/bin/sh", container)
            self("config", "--os", "linux", "--arch", "amd64", container)
            self("commit", policy, "-q", container, name)
        finally:
            self("rm", container)

    def cleanup(self) -> None:
        with suppress(RuntimeError, subprocess.TimeoutExpired):
            self("rm", "--all")
        _remove_tree(self.store)


@pytest.fixture(scope="session")
def buildah_layouts(
    busybox_rootfs: Path,
    real_token: str,
    real_workdir: Path,
    containers_policy: Path,
) -> dict[str, RealImage]:
    """buildah --layers build -> push to oci:, oci-archive:, docker-archive:; each checked."""
    _require("buildah", "skopeo")
    forced = os.environ.get("LEAKSCAN_BUILDAH_DRIVER")
    drivers = [forced] if forced else ["overlay", "vfs"]
    failures = []
    buildah = None
    for driver in drivers:
        candidate = _Buildah(
            Path(tempfile.mkdtemp(prefix="lsb-", dir="/tmp")), driver, containers_policy
        )
        try:
            with _timed(f"buildah import busybox base ({driver})"):
                candidate.import_rootfs(busybox_rootfs, f"localhost/{BASE_REPO}:{BASE_TAG}")
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            failures.append(f"--storage-driver {driver}: {exc}")
            candidate.cleanup()
            continue
        buildah = candidate
        break
    if buildah is None:
        raise RuntimeError("buildah could not import the base image:\n" + "\n".join(failures))

    try:
        out = real_workdir / "buildah"
        out.mkdir()
        policy = f"--signature-policy={containers_policy}"
        with _timed(f"buildah bud --layers npm-leak ({buildah.driver})"):
            buildah(
                "bud",
                policy,
                "--isolation",
                "chroot",
                "--layers",
                "--pull=never",
                "-q",
                "--build-arg",
                f"NPM_TOKEN={real_token}",
                "-t",
                IMAGE_TAG,
                "-f",
                str(NPM_LEAK_CONTEXT / "Dockerfile"),
                str(NPM_LEAK_CONTEXT),
                secret=real_token,
            )
        transports = {
            "buildah-oci": (f"oci:{out / 'oci'}:latest", f"oci:{out / 'oci'}:latest"),
            "buildah-oci-archive": (
                f"oci-archive:{out / 'oci.tar'}:latest",
                f"oci-archive:{out / 'oci.tar'}:latest",
            ),
            "buildah-docker-archive": (
                f"docker-archive:{out / 'docker.tar'}:{IMAGE_TAG}",
                f"docker-archive:{out / 'docker.tar'}",
            ),
        }
        with _timed("buildah push oci: + oci-archive: + docker-archive:"):
            for push_dest, _transport in transports.values():
                buildah("push", policy, "-q", IMAGE_TAG, push_dest)
    finally:
        with _timed("buildah storage cleanup"):
            buildah.cleanup()

    layouts = {}
    with _timed("check buildah-built layouts (skopeo + tarfile)"):
        for name, (_push_dest, transport) in transports.items():
            truth = _inspect_layout(transport, real_token, out, containers_policy)
            info = {"builder": "buildah", "storage_driver": buildah.driver, "layout": name}
            layouts[name] = RealImage(transport, real_token, {**info, **truth})
    return layouts


@pytest.fixture
def private_buildah(busybox_rootfs: Path, containers_policy: Path) -> Iterator[_Buildah]:
    """A buildah of the test's own (vfs, private root and runroot, chroot isolation for
    what it builds), with the busybox base imported as ``localhost/lsbase:1``; removed
    after the test."""
    _require("buildah", "skopeo")
    driver = os.environ.get("LEAKSCAN_BUILDAH_DRIVER") or "vfs"
    buildah = _Buildah(Path(tempfile.mkdtemp(prefix="lsb-", dir="/tmp")), driver, containers_policy)
    try:
        buildah.import_rootfs(busybox_rootfs, f"localhost/{BASE_REPO}:{BASE_TAG}")
        yield buildah
    finally:
        buildah.cleanup()


# ---------------------------------------------------------------------------------------------
# what the tests use


@pytest.fixture(scope="session")
def real_images(
    docker_layouts: dict[str, RealImage], buildah_layouts: dict[str, RealImage]
) -> dict[str, RealImage]:
    """Every layout: name -> RealImage(transport, token, info)."""
    images = {**docker_layouts, **buildah_layouts}
    assert set(images) == set(REAL_LAYOUTS)
    return images


@pytest.fixture(params=list(REAL_LAYOUTS), ids=list(REAL_LAYOUTS))
def real_image(request: pytest.FixtureRequest) -> RealImage:
    """One layout per test: only the builder it needs is set up (a missing buildah skips
    just the buildah layouts)."""
    name: str = request.param
    layouts: dict[str, RealImage] = request.getfixturevalue(REAL_LAYOUTS[name])
    return layouts[name]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TIMINGS:
        return
    terminalreporter.write_sep("-", "real-image fixture timings")
    for what, seconds in TIMINGS:
        terminalreporter.write_line(f"{what:<52} {seconds:7.2f} s")
    terminalreporter.write_line(
        f"{'total session-fixture time':<52} {sum(s for _, s in TIMINGS):7.2f} s"
    )
