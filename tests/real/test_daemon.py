"""The docker daemon source against a REAL dockerd (the session daemon of conftest.py) and, when
podman is installed, a real podman API socket.

The image is the ``ARG NPM_TOKEN`` leak that conftest.py builds in the session dockerd and
``docker save``-s. A scan through the daemon must report exactly what a docker-archive scan of
that save reports: same layers, history and findings; only ``reference`` and ``source`` differ.

leakscan runs as a subprocess with ``DOCKER_HOST`` pointing at the private daemon and its own
``TMPDIR``, which must hold no spool directory once it has exited. Until the lead routes
``docker-daemon:`` and plain names to ``leakscan.sources.daemon`` in ``open_source``, the CLI
is started through a small shim that does that routing; once the real routing exists the shim
steps aside by itself and the tests run ``python -m leakscan`` unchanged.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple

import pytest
from imagebuilder import fake_token
from needs import missing, podman_private, tool
from schema import validate_report

from leakscan.detectors import DetectorConfig
from leakscan.errors import InputError, SourceError
from leakscan.sources.archive import DockerArchiveSource
from leakscan.sources.daemon import SPOOL_PREFIX, DaemonSource, open_daemon, try_daemon
from leakscan.workers import LayerPool

pytestmark = pytest.mark.real

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 300
NPMRC_PATH = "/root/.npmrc"
IMAGE_TAG = "leaky/app:latest"
BIG_TAG = "leaky/big:latest"
BIG_LAYER_MIB = 60


def _command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "leakscan", *args]


class Run(NamedTuple):
    code: int
    out: str
    err: str
    seconds: float

    @property
    def report(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.out)
        validate_report(data)
        return data


def _env(host: str, tmpdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["DOCKER_HOST"] = host
    env["TMPDIR"] = str(tmpdir)
    return env


def _spools(tmpdir: Path) -> list[str]:
    return sorted(p.name for p in tmpdir.glob(SPOOL_PREFIX + "*"))


def run_cli(args: list[str], host: str, timeout: float = RUN_TIMEOUT) -> Run:
    """leakscan in a subprocess against ``host``, in a TMPDIR of its own that must be free
    of spool directories when it has exited."""
    tmpdir = Path(tempfile.mkdtemp(prefix="lsdt-"))
    try:
        start = time.monotonic()
        proc = subprocess.run(
            _command(args),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
            env=_env(host, tmpdir),
            check=False,
        )
        seconds = time.monotonic() - start
        left = _spools(tmpdir)
        assert not left, f"spool left behind by leakscan {' '.join(args)}: {left}"
        return Run(proc.returncode, proc.stdout, proc.stderr, seconds)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _explain(run: Run, token: str) -> str:
    text = f"exit {run.code}\nstderr:\n{run.err[-3000:]}\nstdout:\n{run.out[:3000]}"
    return text.replace(token, "<TOKEN>")


def _only_image(report: dict[str, Any]) -> dict[str, Any]:
    images = report["images"]
    assert len(images) == 1, f"one image expected, got {len(images)}"
    image: dict[str, Any] = images[0]
    return image


def _same_as_archive(daemon: dict[str, Any], archive: dict[str, Any], typed: str) -> None:
    """The daemon's image report is the archive's, but for reference and source."""
    assert daemon["source"] == "daemon"
    assert daemon["reference"] == typed
    assert archive["source"] == "docker-archive"
    keys = (set(daemon) | set(archive)) - {"reference", "source"}
    differ = [key for key in sorted(keys) if daemon.get(key) != archive.get(key)]
    assert not differ, {key: (daemon.get(key), archive.get(key)) for key in differ}


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _assert_npm_leak(image: dict[str, Any], token: str, info: dict[str, Any]) -> None:
    """The .npmrc token deleted by the rm layer, and the build arg in the history."""
    deleted = [
        f
        for f in image["findings"]
        if f["location"]["kind"] == "file"
        and f["location"]["path"] == NPMRC_PATH
        and f["location"]["status"] == "deleted"
        and f["location"]["layer_index"] == info["npmrc_layer"]
        and f["location"]["removed_in_layer"] == info["whiteout_layer"]
        and f["secret_sha256"] == _sha256(token)
    ]
    assert deleted, [f["location"] for f in image["findings"]]
    assert deleted[0]["location"]["diff_id"] == info["diff_ids"][info["npmrc_layer"]]
    history = [
        f
        for f in image["findings"]
        if f["location"]["kind"] == "history"
        and f"NPM_TOKEN={token}" in info["history_created_by"][f["location"]["history_index"]]
        and f["secret_sha256"] == _sha256(token)
    ]
    assert history, [f["location"] for f in image["findings"]]
    assert all("secret" not in f for f in image["findings"])


# ---------------------------------------------------------------------------------------------
# fixtures


class Built(NamedTuple):
    """An image in the session dockerd, and the docker-archive scan of its `docker save`."""

    image_id: str
    save: Path
    token: str
    info: dict[str, Any]
    archive: dict[str, Any]  # the JSON image report of the docker-archive scan


def _client(host: str) -> Any:
    import docker

    return docker.DockerClient(base_url=host, version="auto", timeout=RUN_TIMEOUT)


def _archive_image(save: Path, *options: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "leakscan", f"docker-archive:{save}", "-f", "json", *options],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    return _only_image(Run(done.returncode, done.stdout, done.stderr, 0).report)


@pytest.fixture(scope="session")
def leaky(dockerd: str, docker_layouts: dict[str, Any]) -> Built:
    """The npm-leak image conftest.py built in the session dockerd, and its docker-save scan."""
    real = docker_layouts["docker-save"]
    client = _client(dockerd)
    try:
        image_id = client.images.get(IMAGE_TAG).id
    finally:
        client.close()
    save = Path(real.transport.split(":", 1)[1])
    return Built(image_id, save, real.token, real.info, _archive_image(save))


@pytest.fixture(scope="session")
def big(dockerd: str, docker_layouts: dict[str, Any], real_workdir: Path) -> Built:
    """Two random 60 MiB layers (enough for worker processes) and a fake GitHub token in a
    file next to the second one, built by the session dockerd and `docker save`-d."""
    token = fake_token("github")
    out = real_workdir / "daemon-big"
    out.mkdir()
    context = out / "context.tar"
    dockerfile = (
        "FROM lsbase:1\n"
        f"RUN dd if=/dev/urandom of=/data-1.bin bs=1M count={BIG_LAYER_MIB} 2>/dev/null\n"
        "COPY payload/ /srv/\n"
    )
    with tarfile.open(context, "w") as tar:
        for name, data in (
            ("Dockerfile", dockerfile.encode()),
            ("payload/app.env", f"GITHUB_TOKEN={token}\n".encode()),
            ("payload/data-2.bin", os.urandom(BIG_LAYER_MIB << 20)),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    client = _client(dockerd)
    save = out / "big-save.tar"
    try:
        with open(context, "rb") as fh:
            image, _ = client.images.build(
                fileobj=fh,
                custom_context=True,
                tag=BIG_TAG,
                network_mode="none",
                pull=False,
                rm=True,
                forcerm=True,
            )
        with open(save, "wb") as fh:
            for chunk in image.save(named=True):
                fh.write(chunk)
        image_id = image.id
    finally:
        client.close()
        context.unlink()
    archive = _archive_image(save, "--workers", "2")
    return Built(image_id, save, token, {}, archive)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def pushed_digest(dockerd: str, leaky: Built) -> Iterator[str]:
    """`127.0.0.1:P/leaky/app@sha256:...`: the leak pushed to a throw-away registry, which
    gives the image a RepoDigest in the daemon."""
    registry = tool("docker-registry")
    work = Path(tempfile.mkdtemp(prefix="lsdr-"))
    port = _free_port()
    config = work / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {work / 'storage'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    with open(work / "registry.log", "wb") as log:
        proc = subprocess.Popen(
            [registry, "serve", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    client = _client(dockerd)
    try:
        deadline = time.monotonic() + 120  # a hang guard: the loop waits for the port
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((work / "registry.log").read_text()[-2000:])
            time.sleep(0.05)
        repo = f"127.0.0.1:{port}/leaky/app"
        client.images.get(IMAGE_TAG).tag(repo, "latest")
        for line in client.images.push(repo, tag="latest", stream=True, decode=True):
            if "error" in line:
                raise RuntimeError(f"docker push {repo}: {line['error']}")
        digests = client.images.get(IMAGE_TAG).attrs["RepoDigests"]
        (digest,) = [d for d in digests if d.startswith(repo + "@")]
        yield str(digest)
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=20)
        shutil.rmtree(work, ignore_errors=True)


def _accepts(path: Path) -> bool:
    """Whether a unix socket at ``path`` accepts a connection."""
    with socket.socket(socket.AF_UNIX) as s:
        return s.connect_ex(str(path)) == 0


class Podman(NamedTuple):
    host: str
    repo_digest: str


@pytest.fixture(scope="module")
def podman(leaky: Built) -> Iterator[Podman]:
    """`podman system service` on a short socket path, private storage, the leak loaded in
    (through the docker API, from the dockerd's `docker save`)."""
    podman = tool("podman")
    work = Path(tempfile.mkdtemp(prefix="lsp-", dir="/tmp"))
    sock = work / "podman.sock"
    conf = work / "storage.conf"
    conf.write_text(
        f'[storage]\ndriver = "vfs"\ngraphroot = "{work / "root"}"\nrunroot = "{work / "run"}"\n'
    )
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    env["CONTAINERS_STORAGE_CONF"] = str(conf)
    env.update(podman_private(work / "engine"))
    cmd = [
        podman,
        "--root",
        str(work / "root"),
        "--runroot",
        str(work / "run"),
        "--tmpdir",
        str(work / "tmp"),
        "--storage-driver",
        "vfs",
        "system",
        "service",
        "--time",
        "0",
        f"unix://{sock}",
    ]
    with open(work / "podman.log", "wb") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        # the service answers once its socket accepts a connection; the deadline is only a
        # hang guard (vfs storage under load can take long to initialise)
        deadline = time.monotonic() + 120
        while not _accepts(sock):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (work / "podman.log").read_text(errors="replace")[-1500:]
                missing(f"podman system service did not start here: {tail}")
            time.sleep(0.05)
        client = _client(f"unix://{sock}")
        try:
            client.images.load(leaky.save.read_bytes())
            digests = client.images.get(IMAGE_TAG).attrs.get("RepoDigests") or []
        finally:
            client.close()
        yield Podman(f"unix://{sock}", str(digests[0]) if digests else "")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# the daemon scan is the docker-archive scan


@pytest.mark.parametrize(
    "typed",
    [
        "docker-daemon:leaky/app:latest",
        "docker-daemon:leaky/app",
        "docker-daemon:docker.io/leaky/app:latest",
        "docker-daemon:{id}",
        "docker-daemon:{short_id}",
        "leaky/app:latest",
        "leaky/app",
    ],
)
def test_daemon_scan_equals_docker_archive_scan(typed: str, dockerd: str, leaky: Built) -> None:
    typed = typed.format(id=leaky.image_id, short_id=leaky.image_id[7:19])
    run = run_cli([typed, "-f", "json"], dockerd)
    assert run.code == 1, _explain(run, leaky.token)
    assert leaky.token not in run.out + run.err
    image = _only_image(run.report)
    assert image["errors"] == [], image["errors"]
    _same_as_archive(image, leaky.archive, typed)
    _assert_npm_leak(image, leaky.token, leaky.info)


def test_table_masks_the_token_and_show_secrets_reveals_it(dockerd: str, leaky: Built) -> None:
    table = run_cli(["docker-daemon:leaky/app:latest"], dockerd)
    assert table.code == 1, _explain(table, leaky.token)
    assert leaky.token not in table.out + table.err
    assert "source daemon" in table.out
    assert ".npmrc" in table.out and "deleted in layer" in table.out
    shown = run_cli(["docker-daemon:leaky/app:latest", "-f", "json", "--show-secrets"], dockerd)
    assert shown.code == 1, _explain(shown, leaky.token)
    secrets = {f.get("secret") for f in _only_image(shown.report)["findings"]}
    assert leaky.token in secrets


def test_digest_reference(dockerd: str, leaky: Built, pushed_digest: str) -> None:
    typed = f"docker-daemon:{pushed_digest}"
    run = run_cli([typed, "-f", "json"], dockerd)
    assert run.code == 1, _explain(run, leaky.token)
    image = _only_image(run.report)
    assert image["manifest_digest"] == pushed_digest.split("@", 1)[1]
    image["manifest_digest"] = None  # a docker-archive has no manifest digest
    _same_as_archive(image, leaky.archive, typed)
    _assert_npm_leak(image, leaky.token, leaky.info)


def test_library_source_equals_archive_source(
    dockerd: str, leaky: Built, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The SourceImage itself: same config, layers and diff_ids; the layer openers travel to
    another process (pickle) and read the spooled save; the spool is private and goes away."""
    monkeypatch.setenv("DOCKER_HOST", dockerd)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() re-reads TMPDIR
    archive = DockerArchiveSource.from_path(str(leaky.save), "x", None, False)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    source = open_daemon("docker-daemon:leaky/app:latest")
    try:
        assert isinstance(source, DaemonSource)
        assert list(source.images(("linux/arm64",))) == []
        (image,) = list(source.images(("linux/amd64",)))
        (expected,) = list(archive.images(()))
        assert source.spool_dir is not None
        spool = Path(source.spool_dir)
        assert spool.parent == tmp_path
        assert stat.S_IMODE(spool.stat().st_mode) == 0o700
        assert stat.S_IMODE((spool / "save.tar").stat().st_mode) == 0o600
        assert (image.reference, image.source) == ("docker-daemon:leaky/app:latest", "daemon")
        assert image.platform == expected.platform == "linux/amd64"
        assert image.config_digest == expected.config_digest == leaky.image_id
        assert image.config == expected.config
        assert image.layers == expected.layers  # index, diff_id, digest, media type, size
        assert [b.diff_id for b in image.layers] == leaky.info["diff_ids"]
        for blob in image.layers:
            opener = pickle.loads(pickle.dumps(blob.opener))
            with opener() as fh:
                assert "sha256:" + hashlib.sha256(fh.read()).hexdigest() == blob.diff_id
    finally:
        source.close()
        archive.close()
    assert not spool.exists()
    # SIGTERM removes the spool only while there is one
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    source.close()  # twice is fine


def test_full_tmpdir_is_refused_before_the_save(
    dockerd: str, leaky: Built, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", dockerd)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.setattr(shutil, "disk_usage", lambda _: SimpleNamespace(total=1, used=1, free=0))
    source = open_daemon("leaky/app:latest")
    try:
        with pytest.raises(SourceError, match=r"needs about \d+ MiB in .* but 0 MiB is free"):
            list(source.images(()))
    finally:
        source.close()
    assert _spools(tmp_path) == []


def test_spooled_layers_are_scanned_by_worker_processes(
    dockerd: str, big: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An image big enough for the worker pool: the workers open the spooled save themselves."""
    monkeypatch.setenv("DOCKER_HOST", dockerd)
    source = open_daemon(f"docker-daemon:{BIG_TAG}")
    try:
        (image,) = list(source.images(()))
        assert LayerPool(DetectorConfig(), 2).worth_it(image.layers)
    finally:
        source.close()
    run = run_cli([f"docker-daemon:{BIG_TAG}", "-f", "json", "--workers", "2"], dockerd)
    assert run.code == 1, _explain(run, big.token)
    daemon = _only_image(run.report)
    _same_as_archive(daemon, big.archive, f"docker-daemon:{BIG_TAG}")
    assert any(
        f["location"].get("path") == "/srv/app.env" and f["secret_sha256"] == _sha256(big.token)
        for f in daemon["findings"]
    ), [f["location"] for f in daemon["findings"]]


# ---------------------------------------------------------------------------------------------
# errors


def test_unknown_image_is_one_line_and_exit_2(
    dockerd: str, leaky: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = run_cli(["docker-daemon:leakscan-test/absent:1"], dockerd)
    assert run.code == 2, run
    assert run.err.splitlines() == [
        "leakscan: error: image not found in the docker daemon: leakscan-test/absent:1"
    ]
    as_json = run_cli(["docker-daemon:leakscan-test/absent:1", "-f", "json"], dockerd)
    assert as_json.code == 2
    assert [e["message"] for e in as_json.report["errors"]] == [
        "image not found in the docker daemon: leakscan-test/absent:1"
    ]
    monkeypatch.setenv("DOCKER_HOST", dockerd)
    with pytest.raises(InputError, match=r"^image not found in the docker daemon: nope/x$"):
        open_daemon("docker-daemon:nope/x")


def test_malformed_reference_never_reaches_the_api(dockerd: str) -> None:
    run = run_cli(["docker-daemon:../../containers/json"], dockerd)
    assert run.code == 2
    assert len(run.err.splitlines()) == 1
    assert "not a valid image reference" in run.err


def test_no_daemon_at_docker_host(tmp_path: Path) -> None:
    host = f"unix://{tmp_path}/none.sock"
    run = run_cli(["docker-daemon:leaky/app:latest"], host)
    assert run.code == 2
    assert run.err.splitlines() == [
        f"leakscan: error: cannot reach the docker daemon at DOCKER_HOST={host}: "
        "No such file or directory"
    ]


# docker's own timeout is 60 s: a probe that waited for it, or retried, would take that long.
# The bound is far above the probe's 0.5 s so that a loaded machine cannot fail it; that the
# probe's timeout is the one used is checked exactly, with a spy.
SLOW_PROBE = 10.0


def _timed_try(
    monkeypatch: pytest.MonkeyPatch, host: str, reference: str
) -> tuple[DaemonSource | None, float]:
    import docker  # noqa: F401 - imported beforehand: the time measured is the probe's own

    from leakscan.sources import daemon

    timeouts: list[float] = []
    real_connect = daemon._connect

    def spy(timeout: float) -> Any:
        timeouts.append(timeout)
        return real_connect(timeout)

    monkeypatch.setenv("DOCKER_HOST", host)
    monkeypatch.setattr(daemon, "_connect", spy)
    start = time.monotonic()
    found = try_daemon(reference)
    seconds = time.monotonic() - start
    monkeypatch.setattr(daemon, "_connect", real_connect)
    assert timeouts in ([], [daemon.PROBE_TIMEOUT]), timeouts  # one try, with the probe's
    return found, seconds


def test_try_daemon_none_fast_without_daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    found, seconds = _timed_try(monkeypatch, f"unix://{tmp_path}/none.sock", "leaky/app:latest")
    assert found is None
    assert seconds < SLOW_PROBE, seconds
    refused = _free_port()
    found, seconds = _timed_try(monkeypatch, f"tcp://127.0.0.1:{refused}", "leaky/app:latest")
    assert found is None
    assert seconds < SLOW_PROBE, seconds
    # a daemon that accepts the connection but never answers: the probe's timeout
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        found, seconds = _timed_try(monkeypatch, f"tcp://127.0.0.1:{port}", "leaky/app:latest")
    assert found is None
    assert seconds < SLOW_PROBE, seconds


def test_try_daemon_none_when_the_daemon_lacks_the_image(
    dockerd: str, leaky: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    for reference in ("leakscan-test/absent:1", "Not/A/Valid/Name", "../x"):
        found, seconds = _timed_try(monkeypatch, dockerd, reference)
        assert found is None, reference
        assert seconds < SLOW_PROBE, (reference, seconds)
    found, _ = _timed_try(monkeypatch, dockerd, "leaky/app:latest")
    assert found is not None
    found.close()


def test_open_daemon_unreachable_names_docker_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/none.sock")
    with pytest.raises(SourceError, match=r"DOCKER_HOST=unix://.*none\.sock"):
        open_daemon("docker-daemon:leaky/app:latest")
    monkeypatch.delenv("DOCKER_HOST")
    if not os.path.exists("/var/run/docker.sock"):
        with pytest.raises(SourceError, match=r"DOCKER_HOST is not set"):
            open_daemon("docker-daemon:leaky/app:latest")


# ---------------------------------------------------------------------------------------------
# the spool goes away: at exit, on Ctrl-C and on SIGTERM


AT_EXIT = """
import os, sys
from leakscan.sources.daemon import open_daemon
source = open_daemon(sys.argv[1])
list(source.images(()))
print(source.spool_dir, os.path.isfile(os.path.join(source.spool_dir, "save.tar")))
"""


def test_spool_removed_at_exit_without_close(dockerd: str, leaky: Built, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", AT_EXIT, "docker-daemon:leaky/app:latest"],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        cwd=REPO,
        env=_env(dockerd, tmp_path),
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    spool, existed = done.stdout.split()
    assert existed == "True" and Path(spool).parent == tmp_path
    assert not Path(spool).exists()


def _wait_for(
    what: str, check: Any, proc: subprocess.Popen[bytes], timeout: float = RUN_TIMEOUT
) -> Any:
    """Poll ``check`` until it holds; the timeout is a hang guard only."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if proc.poll() is not None:
            raise AssertionError(f"leakscan exited ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def _session(pid: int) -> list[int]:
    """Processes of the session that ``pid`` leads (leakscan, its forkserver and workers)."""
    found = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, ValueError, IndexError):
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == pid and fields[0] != "Z":  # fields[3] is the session id
                found.append(int(stat_file.parent.name))
    return found


def _wait_gone(pid: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while _session(pid):
        assert time.monotonic() < deadline, f"processes left running: {_session(pid)}"
        time.sleep(0.1)


class _Gate:
    """A unix-socket proxy in front of dockerd that forwards the first ``hold_after`` bytes
    of every answer, then holds the rest until released: a ``docker save`` through it stops
    part-way, and leakscan waits inside the save for as long as the test likes."""

    def __init__(self, upstream: str, hold_after: int) -> None:
        self.upstream = upstream.removeprefix("unix://")
        self.dir = Path(tempfile.mkdtemp(prefix="lsg-", dir="/tmp"))  # unix paths are short
        self.hold_after = hold_after
        self.released = threading.Event()
        self.sockets: list[socket.socket] = []
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(str(self.dir / "gate.sock"))
        self.server.listen(16)
        self.host = f"unix://{self.dir / 'gate.sock'}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:  # closed
                return
            daemon = socket.socket(socket.AF_UNIX)
            daemon.connect(self.upstream)
            self.sockets += [client, daemon]
            threading.Thread(target=self._pump, args=(client, daemon, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(daemon, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, hold: bool) -> None:
        sent = 0
        try:
            while data := src.recv(1 << 16):
                if hold and sent + len(data) > self.hold_after:
                    self.released.wait()
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            for end in (src, dst):
                with suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.released.set()
        self.server.close()
        for sock in self.sockets:
            sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _size(path: Path) -> int:
    with suppress(OSError):
        return path.stat().st_size
    return -1


def _state(pid: int) -> str:
    """The one-letter state of a process (``T``: stopped), ``?`` once it is gone."""
    with suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return "?"


@contextmanager
def _stopped(proc: subprocess.Popen[bytes]) -> Iterator[None]:
    """Leakscan's whole process group stopped (SIGSTOP), so that what the test sees is what a
    signal sent now finds; continued afterwards, when the signal is delivered."""
    os.killpg(proc.pid, signal.SIGSTOP)
    try:
        _wait_for(
            "leakscan to stop",
            lambda: all(_state(pid) in "Tt?" for pid in _session(proc.pid)),
            proc,
        )
        yield
    finally:
        os.killpg(proc.pid, signal.SIGCONT)


@pytest.fixture
def ctrl_c_heard() -> Iterator[None]:
    """Children started here hear Ctrl-C as a terminal's do. A shell that starts a job in
    the background (``cmd &`` without job control) starts it with SIGINT ignored, and an
    ignored signal stays ignored across exec: leakscan would then rightly scan on. A Python
    handler here is reset to the default in the child, where Python makes it
    KeyboardInterrupt again."""
    before = signal.getsignal(signal.SIGINT)
    if before == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if before == signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.usefixtures("ctrl_c_heard")
@pytest.mark.parametrize(
    ("signum", "when"),
    [
        (signal.SIGINT, "save"),
        (signal.SIGINT, "scan"),
        (signal.SIGTERM, "save"),
        (signal.SIGTERM, "scan"),
    ],
    ids=["SIGINT-during-save", "SIGINT-during-scan", "SIGTERM-during-save", "SIGTERM-during-scan"],
)
def test_spool_removed_on_signal(
    signum: int, when: str, dockerd: str, big: Built, tmp_path: Path
) -> None:
    """Ctrl-C (SIGINT to the process group, workers included) or SIGTERM (to leakscan alone)
    while the save is spooled or while the workers scan it: nothing is left in TMPDIR.

    The test waits for the phase it means, never for a length of time (under load either
    phase may take any time): during the save, a proxy holds ``docker save`` part-way and the
    signal goes once the spool file holds what came through; during the scan, the signal
    goes once the save is complete and the worker processes run, checked with leakscan
    stopped (SIGSTOP) so that the scan cannot end between the look and the signal."""
    gate = _Gate(dockerd, hold_after=8 << 20) if when == "save" else None
    proc = subprocess.Popen(
        _command([f"docker-daemon:{BIG_TAG}", "-f", "json", "--no-cache", "--workers", "2"]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=REPO,
        env=_env(gate.host if gate else dockerd, tmp_path),
        start_new_session=True,
    )
    full = big.save.stat().st_size
    try:
        spools: list[str] = _wait_for("the spool directory", lambda: _spools(tmp_path), proc)
        saved = tmp_path / spools[0] / "save.tar"
        if gate is not None:
            _wait_for("the save's first MiBs", lambda: _size(saved) >= 4 << 20, proc)
            assert _size(saved) < full  # held part-way
            send = os.killpg if signum == signal.SIGINT else os.kill
            send(proc.pid, signum)
            gate.released.set()
        else:
            _wait_for("the complete save", lambda: _size(saved) >= full * 0.99, proc)
            _wait_for("the worker processes", lambda: len(_session(proc.pid)) > 1, proc)
            with _stopped(proc):
                assert proc.poll() is None, "leakscan finished before the signal"
                assert len(_session(proc.pid)) > 1, "the scan ended before the signal"
                send = os.killpg if signum == signal.SIGINT else os.kill
                send(proc.pid, signum)
        _, err = proc.communicate(timeout=RUN_TIMEOUT)
        # worker processes do not outlive leakscan by more than a moment
        _wait_gone(proc.pid)
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=RUN_TIMEOUT)
        if gate is not None:
            gate.close()
    assert proc.returncode in (130, -signum), (proc.returncode, err[-2000:])
    assert _spools(tmp_path) == []
    assert big.token.encode() not in err


def test_spool_registered_before_it_exists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A signal the moment the spool directory appears (what a test that signals on seeing it
    does under load) finds it registered: it is registered before the mkdir, not after."""
    from leakscan.sources import daemon

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() re-reads TMPDIR
    spools = daemon._Spools()
    real_mkdir = os.mkdir

    def mkdir_then_interrupted(path: str, mode: int = 0o777) -> None:
        real_mkdir(path, mode)
        raise KeyboardInterrupt  # as Python's SIGINT handler does, right after the mkdir

    monkeypatch.setattr(daemon.os, "mkdir", mkdir_then_interrupted)
    try:
        with pytest.raises(KeyboardInterrupt):
            spools.create()
    finally:
        monkeypatch.setattr(daemon.os, "mkdir", real_mkdir)
        spools._restore()  # the handlers create() installed
    (made,) = _spools(tmp_path)
    assert list(spools.dirs) == [str(tmp_path / made)]
    spools.remove_all()  # what atexit and the SIGTERM handler run
    assert _spools(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# podman's docker-compatible socket


def test_podman_socket(podman: Podman, leaky: Built) -> None:
    for typed in ("docker-daemon:leaky/app:latest", "leaky/app:latest"):
        run = run_cli([typed, "-f", "json"], podman.host)
        assert run.code == 1, _explain(run, leaky.token)
        image = _only_image(run.report)
        _same_as_archive(image, leaky.archive, typed)
        _assert_npm_leak(image, leaky.token, leaky.info)
    assert podman.repo_digest, "podman gave the loaded image no RepoDigest"
    typed = f"docker-daemon:{podman.repo_digest}"
    run = run_cli([typed, "-f", "json"], podman.host)
    assert run.code == 1, _explain(run, leaky.token)
    image = _only_image(run.report)
    image["manifest_digest"] = None
    _same_as_archive(image, leaky.archive, typed)
    missing = run_cli(["docker-daemon:leakscan-test/absent:1"], podman.host)
    assert missing.code == 2
    assert missing.err.splitlines() == [
        "leakscan: error: image not found in the docker daemon: leakscan-test/absent:1"
    ]


def test_docker_pushed_image_through_the_registry(
    dockerd: str, leaky: Built, pushed_digest: str
) -> None:
    """The leak built by dockerd from its Dockerfile and pushed with `docker push`: the
    registry source reports what the docker-archive scan of `docker save` reports."""
    repo, digest = pushed_digest.split("@", 1)
    for typed in (f"docker://{repo}:latest", f"docker://{pushed_digest}"):
        run = run_cli([typed, "-f", "json"], dockerd)
        assert run.code == 1, _explain(run, leaky.token)
        image = _only_image(run.report)
        assert image["source"] == "registry" and image["manifest_digest"] == digest
        _assert_npm_leak(image, leaky.token, leaky.info)
        # docker push compressed the layers: the stored digests differ, the content does not
        assert [layer["diff_id"] for layer in image["layers"]] == leaky.info["diff_ids"]
        for key in ("findings", "history", "errors", "skipped"):
            assert image[key] == leaky.archive[key], key
        assert [layer["created_by"] for layer in image["layers"]] == [
            layer["created_by"] for layer in leaky.archive["layers"]
        ]
