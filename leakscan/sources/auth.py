"""Registry credentials and connection settings.

Credentials come, in this order, from ``--creds`` (or ``--username`` with
``--password-stdin``), the ``REGISTRY_AUTH_FILE`` (containers-auth.json), podman's and
skopeo's default auth files (``${XDG_RUNTIME_DIR}/containers/auth.json``, else
``/run/containers/UID/auth.json``; then ``~/.config/containers/auth.json``), and the docker
config (``DOCKER_CONFIG`` or ``~/.docker/config.json``: ``auths`` entries, identity tokens,
``credsStore`` and ``credHelpers``). They are looked up only when a registry asks for them.

CAs, as docker and podman find them: ``--ca-file`` alone when given; else the ``*.crt``
files of the registry's folder under ``/etc/containers/certs.d``,
``~/.config/containers/certs.d`` and ``/etc/docker/certs.d`` (``HOST:PORT/``), added to
the default trust (``SSL_CERT_FILE``, ``REQUESTS_CA_BUNDLE``, else certifi's). A client
certificate for mutual TLS comes from the same folders, as docker and podman pair them: a
``NAME.cert`` and its ``NAME.key`` (the first pair, roots in that order, names sorted). The
roots are ``LEAKSCAN_CERTS_DIRS`` (folders separated by ``:``) when that is set.

Nothing here ever prints or logs a secret: the classes that hold one have a ``repr`` that
leaves it out, and error messages name where credentials came from, never what they are.
"""

from __future__ import annotations

# subprocess, tempfile and hashlib are imported where used: the quick re-audit imports this
# module before its walk of the registry starts, and needs none of them unless asked to log in
import functools
import json
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leakscan.errors import InputError, SourceError

HELPER_TIMEOUT = 30.0
# what credential helpers answer in Username for an identity (refresh) token
TOKEN_USERNAME = "<token>"


@dataclass(frozen=True, repr=False)
class Credentials:
    """A user name and password, or an identity token; ``origin`` says where they came from."""

    username: str = ""
    password: str = ""
    identity_token: str | None = None
    origin: str = "--creds"
    # a registry token to send as it is, never exchanged (Harbor hands its scanners one)
    registry_token: str | None = None

    def __repr__(self) -> str:
        # the user name is left out too: with identity tokens it can be the token's owner id
        return f"Credentials(origin={self.origin!r}, <redacted>)"

    __str__ = __repr__

    @property
    def has_password(self) -> bool:
        """Whether these can answer a Basic challenge."""
        return bool(self.username) and self.identity_token is None and self.registry_token is None


def parse_creds(text: str, origin: str = "--creds") -> Credentials:
    """``USER:PASS`` as skopeo takes it (the password may hold colons)."""
    user, colon, password = text.partition(":")
    if not colon or not user:
        # never quote the value: it is a password
        raise InputError(f"{origin} takes USER:PASSWORD")
    return Credentials(user, password, origin=origin)


@dataclass(frozen=True)
class RegistryOptions:
    """How to reach registries: credentials, TLS, retries. Picklable, secrets redacted."""

    creds: Credentials | None = field(default=None)
    ca_file: str | None = None
    tls_verify: bool = True
    # plain HTTP for every registry (loopback registries fall back to it by themselves)
    plain_http: bool = False
    # seconds to connect, and between two reads of a response
    timeout: float = 30.0
    # further attempts after a 429, a 5xx or a dropped connection
    retries: int = 4

    def verify(self, host: str | None = None) -> bool | str:
        """What ``requests`` takes as ``verify`` for ``host`` (``HOST[:PORT]``): a CA
        bundle path, True or False. The host's certs.d CAs are added to the default trust."""
        if not self.tls_verify:
            return False
        if self.ca_file:
            if not os.path.isfile(self.ca_file):
                raise InputError(f"--ca-file {self.ca_file}: no such file")
            return self.ca_file
        base = _default_bundle()
        extra = registry_cas(host) if host else ()
        if extra:
            return _bundle_with(base, extra)
        return base or True

    def client_cert(self, host: str | None) -> tuple[str, str] | None:
        """The (certificate, key) files ``host`` gets as a TLS client, from its certs.d
        folders; None when there are none (verification on or off, as docker does)."""
        return registry_client_cert(host) if host else None


def _default_bundle() -> str | None:
    """The CA bundle a variable names; as OpenSSL does, one that names no file is passed over."""
    for var in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        path = os.environ.get(var)
        if path and os.path.isfile(path):
            return path
    return None


def certs_roots() -> tuple[str, ...]:
    """The folders that hold one ``HOST:PORT`` folder of CAs per registry."""
    given = os.environ.get("LEAKSCAN_CERTS_DIRS")
    if given is not None:
        return tuple(p for p in given.split(os.pathsep) if p)
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(Path.home(), ".config")
    return (
        "/etc/containers/certs.d",
        os.path.join(config, "containers", "certs.d"),
        "/etc/docker/certs.d",
    )


def registry_cas(host: str) -> tuple[str, ...]:
    """The ``*.crt`` files of ``host``'s folder under every certs.d root (docker reads
    ``.crt`` as CAs; ``.cert``/``.key`` are client certificates, not trust)."""
    found: list[str] = []
    for root in certs_roots():
        folder = os.path.join(root, host)
        # a host name cannot climb out of the root: refuse what would
        if os.path.basename(host) != host or host in (".", ".."):
            continue
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        found.extend(os.path.join(folder, n) for n in names if n.endswith(".crt"))
    return tuple(found)


def _host_folders(host: str) -> Iterator[str]:
    """``host``'s folder under every certs.d root that has one."""
    # a host name cannot climb out of the root: refuse what would
    if os.path.basename(host) != host or host in (".", ".."):
        return
    for root in certs_roots():
        folder = os.path.join(root, host)
        if os.path.isdir(folder):
            yield folder


def registry_client_cert(host: str) -> tuple[str, str] | None:
    """The client certificate in ``host``'s certs.d folders: a ``NAME.cert`` and the
    ``NAME.key`` beside it, the first pair of the first folder that has one. As docker and
    podman do, a ``.cert`` without its ``.key`` or a ``.key`` without its ``.cert`` is an
    error, not a certificate passed over in silence."""
    for folder in _host_folders(host):
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        pairs = []
        for name in names:
            stem, dot, ext = name.rpartition(".")
            if not dot or not stem:
                continue
            if ext == "cert" and f"{stem}.key" not in names:
                raise InputError(f"certs.d {folder}: client certificate {name} has no {stem}.key")
            if ext == "key" and f"{stem}.cert" not in names:
                raise InputError(
                    f"certs.d {folder}: key {name} has no client certificate {stem}.cert"
                )
            if ext == "cert":
                pairs.append((os.path.join(folder, name), os.path.join(folder, f"{stem}.key")))
        if pairs:
            return pairs[0]
    return None


@functools.cache
def _bundle_dir() -> str:
    import atexit
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="leakscan-ca-")
    atexit.register(shutil.rmtree, folder, True)
    return folder


def _bundle_with(base: str | None, extra: tuple[str, ...]) -> str:
    """A CA bundle file: the default trust plus ``extra`` (written once per content, in a
    private folder removed at exit; requests takes files, not lists of certificates)."""
    if base is None:
        import certifi

        base = certifi.where()
    parts = []
    for path in (base, *extra):
        try:
            parts.append(Path(path).read_bytes().strip() + b"\n")
        except OSError as exc:
            raise InputError(f"cannot read CA file {path}: {exc.strerror}") from None
    data = b"\n".join(parts)
    import hashlib

    target = os.path.join(_bundle_dir(), hashlib.sha256(data).hexdigest()[:16] + ".pem")
    if not os.path.exists(target):
        with open(target + ".part", "wb") as fh:
            fh.write(data)
        os.replace(target + ".part", target)
    return target


# --- WWW-Authenticate ------------------------------------------------------------------------

_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*(?:,|$)')
_SCHEME = re.compile(r"\s*([A-Za-z0-9_.-]+)(?:\s+|$)")


@dataclass(frozen=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header: its scheme (lower-case) and params."""

    scheme: str
    params: tuple[tuple[str, str], ...] = ()

    def get(self, key: str) -> str | None:
        """A parameter, by case-insensitive name."""
        for name, value in self.params:
            if name == key.lower():
                return value
        return None


def parse_challenges(header: str) -> list[Challenge]:
    """``Bearer realm="...",service="...",scope="..."``, possibly several challenges in one
    header (``Basic realm="x", Bearer realm="y"``)."""
    out: list[Challenge] = []
    pos = 0
    while pos < len(header):
        if header[pos] in ", \t":
            pos += 1
            continue
        scheme = _SCHEME.match(header, pos)
        if scheme is None:
            break
        pos = scheme.end()
        params: list[tuple[str, str]] = []
        while pos < len(header):
            param = _PARAM.match(header, pos)
            if param is None:
                break
            value = param.group(2)
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            params.append((param.group(1).lower(), value))
            pos = param.end()
        out.append(Challenge(scheme.group(1).lower(), tuple(params)))
    return out


# --- credential lookup ---------------------------------------------------------------------


def lookup_credentials(domain: str, repository: str) -> Credentials | None:
    """Stored credentials for ``domain`` (``docker.io`` for the Hub), most specific source
    first: ``REGISTRY_AUTH_FILE``, then the docker config."""
    auth_file = os.environ.get("REGISTRY_AUTH_FILE")
    if auth_file and os.path.isfile(auth_file):
        data = _read_json(auth_file, "REGISTRY_AUTH_FILE")
        found = _from_config(data, domain, repository, f"REGISTRY_AUTH_FILE {auth_file}")
        if found is not None:
            return found
    for path in containers_auth_files():
        if os.path.isfile(path):
            data = _read_json(path, "containers auth file")
            found = _from_config(data, domain, repository, f"containers auth file {path}")
            if found is not None:
                return found
    from docker.utils.config import find_config_file

    config_file = find_config_file()
    if config_file:
        parsed: dict[str, Any] | None
        try:
            parsed = _read_json(config_file, "docker config")
        except SourceError:
            # a pre-1.7 ~/.dockercfg is not JSON; docker's loader reads that format
            parsed = None
        origin = f"docker config {config_file}"
        return _from_config(parsed, domain, repository, origin, config_file)
    return None


def containers_auth_files() -> tuple[str, ...]:
    """podman's and skopeo's default auth files, in their order (containers-auth.json(5)):
    the runtime one that ``podman login`` writes, then the persistent one."""
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/containers/{os.getuid()}"
    runtime_file = (
        os.path.join(runtime, "containers", "auth.json")
        if os.environ.get("XDG_RUNTIME_DIR")
        else os.path.join(runtime, "auth.json")
    )
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(Path.home(), ".config")
    return (runtime_file, os.path.join(config, "containers", "auth.json"))


def _read_json(path: str, what: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror}") from None
    except ValueError:
        raise SourceError(f"{what} {path} is not valid JSON") from None
    if not isinstance(data, dict):
        raise SourceError(f"{what} {path} is not a JSON object")
    return data


def _from_config(
    data: dict[str, Any] | None,
    domain: str,
    repository: str,
    origin: str,
    path: str | None = None,
) -> Credentials | None:
    """Credentials for ``domain`` in one auth file, read with the docker package's parser."""
    from docker import auth, errors

    if data is not None and not data:
        return None  # docker's loader would read the user's docker config for an empty dict
    try:
        config = auth.load_config(config_path=path, config_dict=data)
        helper = config.get_credential_store(domain)
        auths = dict(config.auths)
    except (errors.DockerException, ValueError, TypeError, AttributeError, UnicodeError):
        # docker's message could quote an entry: say where, not what
        raise SourceError(f"{origin}: invalid auth entry") from None
    if helper:
        server = auth.INDEX_URL if domain == auth.INDEX_NAME else domain
        found = _ask_helper(str(helper), server, domain)
        if found is not None:
            return found
    entry = _auth_entry(auths, domain, repository)
    if not entry:
        return None
    token = entry.get("IdentityToken")
    if token:
        return Credentials(identity_token=str(token), origin=origin)
    user = entry.get("username") or entry.get("Username")
    password = entry.get("password") or entry.get("Password")
    if user and password is not None:
        return Credentials(str(user), str(password), origin=origin)
    return None


def _auth_entry(auths: dict[str, Any], domain: str, repository: str) -> dict[str, Any] | None:
    """The entry for ``domain/repository``: containers-auth.json allows ``host/namespace``
    keys (the longest match wins); docker's keys may be URLs (``https://host/v1/``)."""
    from docker import auth

    parts = repository.split("/")
    for i in range(len(parts), 0, -1):
        entry = auths.get(f"{domain}/{'/'.join(parts[:i])}")
        if isinstance(entry, dict):
            return entry
    for key, entry in auths.items():
        if not isinstance(entry, dict):
            continue
        # a bare "host/namespace" key belongs to that namespace only
        if "://" not in key and "/" in key.rstrip("/"):
            continue
        if auth.resolve_index_name(key) == domain:
            return entry
    return None


def _ask_helper(name: str, server: str, domain: str) -> Credentials | None:
    """Ask ``docker-credential-NAME get`` for ``server``; None when it has nothing."""
    from docker.credentials import errors

    store = _quiet_store()(name)
    try:
        data = store.get(server)
    except errors.CredentialsNotFound:
        return None
    except errors.StoreError as exc:
        raise SourceError(f"credential helper {store.program} failed for {domain}: {exc}") from None
    except (ValueError, KeyError, TypeError):
        data = None
    user = data.get("Username") if isinstance(data, dict) else None
    secret = data.get("Secret") if isinstance(data, dict) else None
    if not isinstance(user, str) or not isinstance(secret, str):
        raise SourceError(f"credential helper {store.program} gave an unreadable answer")
    origin = f"credential helper {store.program}"
    if user == TOKEN_USERNAME:
        return Credentials(identity_token=secret, origin=origin)
    return Credentials(user, secret, origin=origin)


@functools.cache
def _quiet_store() -> type[Any]:
    """docker's helper client (``docker.credentials.Store``), with a timeout, and with the
    helper's output kept off the user's terminal (a helper's error could quote its input).
    Made on first use: importing docker costs a quarter of a second."""
    import subprocess

    from docker.credentials import Store, errors
    from docker.credentials.utils import create_environment_dict

    class QuietStore(Store):  # type: ignore[misc]
        def __init__(self, name: str) -> None:
            with warnings.catch_warnings():
                # docker warns on stderr when the helper is missing; _execute says so instead
                warnings.simplefilter("ignore")
                super().__init__(name)

        def _execute(self, subcmd: str, data_input: bytes | None) -> bytes:
            if self.exe is None:
                raise errors.StoreError("it is not on PATH")
            try:
                proc = subprocess.run(
                    [self.exe, subcmd],
                    input=data_input,
                    capture_output=True,
                    timeout=HELPER_TIMEOUT,
                    env=create_environment_dict(self.environment),
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise errors.StoreError(f"no answer within {HELPER_TIMEOUT:.0f} s") from None
            except OSError as exc:
                raise errors.StoreError(f"cannot run it: {exc.strerror}") from None
            if proc.returncode != 0:
                if b"credentials not found" in (proc.stdout + proc.stderr).lower():
                    raise errors.CredentialsNotFound(self.program)
                raise errors.StoreError(f"exit status {proc.returncode}")
            return proc.stdout

    return QuietStore
