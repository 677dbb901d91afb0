"""Images in a docker daemon (``docker-daemon:REF``, and plain names when a daemon has them),
through the Docker Engine API with the ``docker`` package: ``DOCKER_HOST`` (unix socket,
tcp, TLS through ``DOCKER_TLS_VERIFY``/``DOCKER_CERT_PATH``), the default socket, or a
podman socket (``podman system service``).

The daemon resolves the reference (name, ``name@sha256:...``, image id or short id) and its
inspect data gives the image id and layers. The image itself comes from ``image.save()``,
the docker-save stream, which is spooled to a private temp dir and read by
:class:`DockerArchiveSource`, so a daemon scan is exactly a docker-archive scan of
``docker save`` of that image. Why spool rather than scan the stream in one pass:

* the stream is not in layer order: a daemon writes the save from a directory walk
  (docker 20.10: ``<v1 id>/layer.tar`` in lexical order of ids that are not diff_ids), and
  which member is which layer is only said by ``manifest.json``, at the end of the stream;
* the scan opens layers by index, and large images are shared out over worker processes
  that each open their own layer: that needs random access to a file;
* docker 20.10 writes the whole save into its own temp dir before the first byte is sent,
  so a one-pass scan would not start any sooner there.

The spool never lives in memory; its directory (mode 0700, in ``TMPDIR``) is removed on
:meth:`DaemonSource.close`, at interpreter exit, and on SIGTERM/SIGHUP (and SIGINT when it
has no Python handler; with Python's own, Ctrl-C unwinds through ``close``). Only an end
that runs no code (SIGKILL, a crash) can leave a ``leakscan-daemon-*`` directory behind.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import os
import re
import secrets
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from types import FrameType
from typing import Any

from leakscan.errors import InputError, LeakscanError, SourceError
from leakscan.model import SourceImage
from leakscan.sources.archive import DockerArchiveSource
from leakscan.sources.base import platform_wanted
from leakscan.sources.store import TarStore

PREFIX = "docker-daemon:"
SPOOL_PREFIX = "leakscan-daemon-"
# try_daemon() must give up quickly so that a plain name falls back to the registry
PROBE_TIMEOUT = 0.5
# docker-daemon: was asked for explicitly: a busy daemon gets more time to answer
CONNECT_TIMEOUT = 15.0
# until the save's first byte: docker 20.10 writes the whole save to its own temp dir before
# it answers (docker-py lifts the timeout once the stream has started)
SAVE_TIMEOUT = 1800.0
CHUNK = 1 << 20
# headers and padding of the save tar on top of the image's own size
SPOOL_MARGIN = 16 << 20
DEFAULT_HOST = "unix:///var/run/docker.sock"

# the distribution reference grammar (docker/distribution reference/regexp.go); a short or
# full image id (hex, or sha256:hex) matches it too. Checked before the reference goes into
# an API path: "../x" would otherwise address another endpoint.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = (
    r"(?:(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*"
    r"[a-zA-Z0-9])?))*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
)
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::{_TAG})?(?:@(?P<digest>{_DIGEST}))?"
)
_IMAGE_ID = re.compile(r"sha256:[0-9a-f]{64}")
MAX_REFERENCE = 512


def check_reference(name: str) -> str | None:
    """The digest ``name`` pins (``repo@sha256:...``), or None; InputError if malformed."""
    if len(name) <= MAX_REFERENCE:
        if _IMAGE_ID.fullmatch(name):
            return None
        match = _REFERENCE.fullmatch(name)
        if match:
            return match.group("digest")
    raise InputError(f"not a valid image reference for the docker daemon: {name!r}")


def daemon_host() -> str:
    """Which daemon ``docker.from_env()`` talks to, for error messages."""
    value = os.environ.get("DOCKER_HOST")
    if value:
        return f"DOCKER_HOST={value}"
    return f"{DEFAULT_HOST} (DOCKER_HOST is not set)"


# --- the spool directories of this process --------------------------------------------


class _Spools:
    """Spool directories alive in this process: removed on close, at exit and on a fatal
    signal. No locks: a signal handler runs between bytecodes of the main thread, and a
    lock held there would deadlock it."""

    SIGNALS = ("SIGTERM", "SIGHUP", "SIGINT")

    def __init__(self) -> None:
        self.dirs: dict[str, None] = {}
        self.installed: list[int] = []
        self.at_exit = False

    def create(self) -> str:
        """A new private directory (mode 0700), registered before it exists."""
        if not self.at_exit:
            atexit.register(self.remove_all)
            self.at_exit = True
        if not self.dirs:
            self._install()
        while True:
            # registered BEFORE it exists, unlike mkdtemp's: a signal between the mkdir and
            # the registration would leave the directory behind (it happened under load)
            path = os.path.join(tempfile.gettempdir(), SPOOL_PREFIX + secrets.token_hex(8))
            self.dirs[path] = None
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:  # someone else's: never remove it
                self.dirs.pop(path, None)
                continue
            return path

    def remove(self, path: str) -> None:
        shutil.rmtree(path, ignore_errors=True)
        self.dirs.pop(path, None)
        if not self.dirs:
            self._restore()

    def remove_all(self) -> None:
        for path in list(self.dirs):
            shutil.rmtree(path, ignore_errors=True)
            self.dirs.pop(path, None)

    def _install(self) -> None:
        """Catch the signals that would kill the process without running any cleanup.

        Only where the default action is in force: an ignored signal kills nobody, Python's
        SIGINT handler raises KeyboardInterrupt (which unwinds through close() and stops the
        workers cleanly), and a handler of the embedding program is its own business.
        Handlers can only be set from the main thread; elsewhere close() and atexit remain.
        """
        if threading.current_thread() is not threading.main_thread():
            return
        for name in self.SIGNALS:
            signum = getattr(signal, name, None)
            if signum is not None and signal.getsignal(signum) == signal.SIG_DFL:
                signal.signal(signum, self._on_signal)
                self.installed.append(signum)

    def _restore(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        while self.installed:
            signum = self.installed.pop()
            if signal.getsignal(signum) == self._on_signal:
                signal.signal(signum, signal.SIG_DFL)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # stop our worker processes first: they would go on reading a spool that is gone
        for child in multiprocessing.active_children():
            child.terminate()
        self.remove_all()
        # then die of the signal, as without us: the exit status says what happened
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


_SPOOLS = _Spools()


# --- talking to the daemon ------------------------------------------------------------


def _reason(exc: BaseException) -> str:
    """One short line saying why a call to the daemon failed (the OS error if there is one)."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo and len(seen) < 20:
        item = todo.pop(0)
        if item in seen:
            continue
        seen.append(item)
        todo.extend(a for a in item.args if isinstance(a, BaseException))
        todo.extend(e for e in (item.__cause__, item.__context__) if e is not None)
    for item in seen:
        if isinstance(item, OSError) and item.strerror:
            return item.strerror
    for item in seen:
        if isinstance(item, TimeoutError) or "timeout" in type(item).__name__.lower():
            return "no answer in time"
    explanation = getattr(exc, "explanation", None)
    text = explanation if isinstance(explanation, str) and explanation else str(exc)
    return " ".join(text.split())[:300] or type(exc).__name__


def _connect(timeout: float) -> Any:
    """A docker client from the environment, at the API version the daemon announces."""
    # imported here, not at the top: it takes ~0.1 s, which a scan of a file need not pay
    import docker  # type: ignore[import-untyped,unused-ignore]

    try:
        # /_ping rather than docker-py's version="auto" (/version): podman takes a third of
        # a second to answer /version, /_ping is immediate everywhere and names the version
        probe = docker.from_env(
            version=docker.constants.MINIMUM_DOCKER_API_VERSION, timeout=timeout
        )
        try:
            answer = probe.api.get(probe.api.base_url + "/_ping", timeout=timeout)
        finally:
            _close_quietly(probe)
        if answer.status_code != 200:
            raise SourceError(
                f"the docker daemon at {daemon_host()} answers /_ping with HTTP "
                f"{answer.status_code}: is it a docker or podman API socket?"
            )
        version = answer.headers.get("Api-Version")
        if not isinstance(version, str) or not re.fullmatch(r"\d+\.\d+", version):
            version = "auto"
        return docker.from_env(version=version, timeout=timeout)
    except LeakscanError:
        raise
    except Exception as exc:  # noqa: BLE001 - docker-py raises many kinds; all mean "no daemon"
        raise SourceError(
            f"cannot reach the docker daemon at {daemon_host()}: {_reason(exc)}"
        ) from None


def _inspect(client: Any, name: str) -> dict[str, Any]:
    """The daemon's inspect data for ``name``; InputError when it has no such image."""
    import docker.errors  # type: ignore[import-untyped,unused-ignore]

    try:
        attrs = client.api.inspect_image(name)
    except docker.errors.ImageNotFound:
        raise InputError(f"image not found in the docker daemon: {name}") from None
    except docker.errors.APIError as exc:
        if exc.status_code == 404:
            raise InputError(f"image not found in the docker daemon: {name}") from None
        raise SourceError(f"docker daemon at {daemon_host()}: {name}: {_reason(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - connection errors of requests and docker-py
        raise SourceError(f"docker daemon at {daemon_host()}: {name}: {_reason(exc)}") from None
    if not isinstance(attrs, dict) or not isinstance(attrs.get("Id"), str):
        raise SourceError(f"docker daemon at {daemon_host()}: {name}: inspect has no image Id")
    return attrs


def _close_quietly(client: Any) -> None:
    # closing a connection that already broke may fail: nothing left to do then
    with contextlib.suppress(Exception):
        client.close()


# --- the source -----------------------------------------------------------------------


class DaemonSource:
    """One image of a docker (or podman) daemon, read through ``docker save``."""

    def __init__(self, client: Any, name: str, attrs: Mapping[str, Any], reference: str) -> None:
        self.client = client
        self.name = name
        self.attrs = attrs
        self.reference = reference
        self.image_id: str = str(attrs["Id"])
        self.manifest_digest = check_reference(name)
        self.spool_dir: str | None = None
        self._archive: DockerArchiveSource | None = None
        self._closed = False

    def images(self, platforms: Sequence[str]) -> Iterator[SourceImage]:
        """The image (one per platform a save holds), as a docker-archive scan sees it."""
        archive = self._spooled()
        try:
            found = list(archive.images(()))
        except LeakscanError as exc:
            raise type(exc)(self._unspooled(str(exc))) from None
        # a classic store's image id is its config digest (verified against the save's
        # config name); a containerd store's id is the manifest or index digest instead
        chosen = [image for image in found if image.config_digest == self.image_id] or found
        if not chosen:
            raise SourceError(f"{self._where()}: the save holds no image")
        layers = (self.attrs.get("RootFS") or {}).get("Layers")
        for image in chosen:
            diff_ids = [blob.diff_id for blob in image.layers]
            same_id = image.config_digest == self.image_id
            if same_id and isinstance(layers, list) and diff_ids != layers:
                raise SourceError(
                    f"{self._where()}: the save's layers differ from the daemon's "
                    "inspect data for the same image id"
                )
            if platform_wanted(image.platform, platforms):
                yield replace(
                    image,
                    reference=self.reference,
                    source="daemon",
                    manifest_digest=self.manifest_digest,
                )

    def close(self) -> None:
        """Close the spooled archive, remove the spool directory, close the connection."""
        archive, self._archive = self._archive, None
        try:
            if archive is not None:
                archive.close()
        finally:
            if self.spool_dir is not None:
                _SPOOLS.remove(self.spool_dir)
                self.spool_dir = None
            if not self._closed:
                self._closed = True
                _close_quietly(self.client)

    def _where(self) -> str:
        return f"docker save of {self.name} ({daemon_host()})"

    def _unspooled(self, message: str) -> str:
        """An archive error names the spool file; name the image instead."""
        if self.spool_dir is None:
            return message
        return message.replace(os.path.join(self.spool_dir, "save.tar"), self._where())

    def _spooled(self) -> DockerArchiveSource:
        if self._archive is not None:
            return self._archive
        if self._closed:
            raise SourceError(f"{self._where()}: the source is closed")
        self.spool_dir = _SPOOLS.create()
        self._check_space(self.spool_dir)
        path = os.path.join(self.spool_dir, "save.tar")
        self._save_to(path)
        try:
            store = TarStore(path)
        except LeakscanError as exc:
            raise type(exc)(self._unspooled(str(exc))) from None
        self._archive = DockerArchiveSource(store, self.reference, None)
        return self._archive

    def _check_space(self, where: str) -> None:
        """Fail before the save when TMPDIR cannot hold it: a full disk helps nobody."""
        size = self.attrs.get("Size")
        if not isinstance(size, int) or size <= 0:
            return
        try:
            free = shutil.disk_usage(where).free
        except OSError:
            return
        if free < size + SPOOL_MARGIN:
            raise SourceError(
                f"{self._where()}: needs about {_mib(size + SPOOL_MARGIN)} in "
                f"{os.path.dirname(where)} but {_mib(free)} is free (set TMPDIR elsewhere)"
            )

    def _save_to(self, path: str) -> None:
        """Stream ``docker save`` of the image id (not the name: a tag may move meanwhile)."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, 0o600)
        with open(fd, "wb") as out:
            self.client.api.timeout = SAVE_TIMEOUT
            try:
                stream = self.client.api.get_image(self.image_id, chunk_size=CHUNK)
                try:
                    for chunk in stream:
                        _write(out, chunk, os.path.dirname(os.path.dirname(path)), self._where())
                finally:
                    stream.close()
            except LeakscanError:
                raise
            except Exception as exc:  # noqa: BLE001 - requests, urllib3 and docker-py errors
                raise SourceError(f"{self._where()} failed: {_reason(exc)}") from None


def _write(out: Any, chunk: bytes, tmpdir: str, where: str) -> None:
    """Write a chunk of the save; a full disk is the likely failure, and TMPDIR the cure."""
    try:
        out.write(chunk)
    except OSError as exc:
        raise SourceError(
            f"{where}: cannot spool to {tmpdir}: {exc.strerror} (set TMPDIR elsewhere)"
        ) from None


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.0f} MiB"


def _strip(reference: str) -> str:
    return reference[len(PREFIX) :] if reference.startswith(PREFIX) else reference


def open_daemon(reference: str) -> DaemonSource:
    """The image ``reference`` names in the daemon (``docker-daemon:REF`` or ``REF``).

    InputError for a malformed reference or an image the daemon does not have, SourceError
    when no daemon answers at DOCKER_HOST (or the default socket).
    """
    name = _strip(reference)
    check_reference(name)
    client = _connect(CONNECT_TIMEOUT)
    try:
        attrs = _inspect(client, name)
    except BaseException:
        _close_quietly(client)
        raise
    return DaemonSource(client, name, attrs, reference)


def try_daemon(reference: str, answered: list[bool] | None = None) -> DaemonSource | None:
    """The daemon's image for a plain name, or None (quickly) when no daemon answers or it
    does not have the image: the caller then asks the registry. ``answered`` gets True
    appended when a daemon answered (so that errors say "no docker daemon has it" only then)."""
    name = _strip(reference)
    try:
        check_reference(name)
        client = _connect(PROBE_TIMEOUT)
    except LeakscanError:
        return None
    if answered is not None:
        answered.append(True)
    try:
        attrs = _inspect(client, name)
    except LeakscanError:
        _close_quietly(client)
        return None
    except BaseException:
        _close_quietly(client)
        raise
    return DaemonSource(client, name, attrs, reference)


__all__: list[str] = ["DaemonSource", "check_reference", "open_daemon", "try_daemon"]
