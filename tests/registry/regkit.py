"""Real registries for the registry source's tests (the session fixtures in conftest.py
start them once per session on 127.0.0.1).

* Debian's ``docker-registry`` (CNCF distribution 2.8) three ways: plain HTTP; TLS with a
  CA of the session's own (``subjectAltName=IP:127.0.0.1``) and htpasswd (bcrypt) Basic auth;
  and token auth (``auth: token:``) backed by :class:`TokenServer`, a threaded http.server of
  ours that signs ES256 JWTs with a key whose certificate is the registry's rootcertbundle.
  The registry validates those tokens itself: issuer, audience, expiry, signature, access.
* Images are written by ``tests/imagebuilder.py`` as OCI layouts and pushed with skopeo.
* :class:`FaultProxy` sits in front of a registry and misbehaves on purpose: 500s, truncated
  blobs, with or without Range support.

How distribution 2.8 finds a token's signing key (``VerifySigningKey`` in its token auth),
tried by ``test_token_signing_key_forms``: a JOSE header with an ``x5c`` chain that verifies
against the rootcertbundle, or a ``kid`` equal to the libtrust key id of a key in the bundle
(SHA-256 of the DER SubjectPublicKeyInfo, first 240 bits, base32 in 12 groups of 4 joined by
``:``). Both are accepted; a token with neither is refused. The server here uses ``kid``.

A missing tool skips these tests on a developer's machine and fails them when ``CI=true``.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from clirun import Run
from imagebuilder import Image, Index, Layer
from needs import missing

REPO = Path(__file__).resolve().parents[2]
SERVICE = "leakscan-test-registry"
ISSUER = "leakscan-test-token-issuer"
START_TIMEOUT = 15.0
TOOL_TIMEOUT = 120

TIMINGS: list[tuple[str, float]] = []


# --- availability ----------------------------------------------------------------------------


def unavailable(reason: str) -> None:
    """Skip on a developer's machine; fail in CI, where every tool must be there."""
    missing(reason)


def _tool_path() -> str:
    path = os.environ.get("PATH", "")
    for sbin in ("/usr/local/sbin", "/usr/sbin", "/sbin"):
        if sbin not in path.split(os.pathsep):
            path = f"{path}{os.pathsep}{sbin}"
    return path


def require(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t, path=_tool_path()) is None]
    if missing:
        unavailable(f"missing tools: {', '.join(missing)} (bash .ci/setup installs them)")
    try:
        import cryptography  # noqa: F401
    except ImportError:
        unavailable("the cryptography package is missing (pip install -e '.[test]')")


def run(cmd: Sequence[str], **kw: Any) -> str:
    env = dict(os.environ, PATH=_tool_path())
    proc = subprocess.run(
        list(cmd),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=TOOL_TIMEOUT,
        env=env,
        check=False,
        **kw,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Timer:
    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> Timer:
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        TIMINGS.append((self.what, time.monotonic() - self.t0))


# --- TLS material ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Tls:
    ca: Path  # the CA certificate to trust
    cert: Path  # the server certificate (IP:127.0.0.1), signed by the CA
    key: Path
    cert_dir: Path  # for skopeo --dest-cert-dir: holds ca.crt


def make_tls(root: Path) -> Tls:
    """A CA of our own and a server certificate for 127.0.0.1 signed by it, with openssl."""
    root.mkdir(parents=True, exist_ok=True)
    ca_key, ca = root / "ca.key", root / "ca.crt"
    key, csr, cert = root / "server.key", root / "server.csr", root / "server.crt"
    ext = root / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "2", "-subj", "/CN=leakscan test CA",
         "-keyout", str(ca_key), "-out", str(ca)])  # fmt: skip
    run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(csr)])  # fmt: skip
    run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
         "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert)])  # fmt: skip
    cert_dir = root / "certdir"
    cert_dir.mkdir(exist_ok=True)
    shutil.copy(ca, cert_dir / "ca.crt")
    return Tls(ca, cert, key, cert_dir)


# --- the token server ------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def libtrust_key_id(public_key: Any) -> str:
    """The key id distribution's token auth gives a key of its rootcertbundle."""
    from cryptography.hazmat.primitives import serialization

    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    text = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode("ascii").rstrip("=")
    return ":".join(text[i : i + 4] for i in range(0, len(text), 4))


class TokenServer:
    """Issues registry tokens: Basic credentials or an identity (refresh) token for full
    access, anonymous callers pull access to ``public/*`` only. ``key_form`` says how the
    JWT names its key: ``kid``, ``x5c`` or ``none``."""

    def __init__(self, root: Path, users: dict[str, str]) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.users = users
        self.identity_tokens: dict[str, str] = {}
        self.issued: list[str] = []
        self.requests: list[dict[str, Any]] = []
        self.key_form = "kid"
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = time.time()
        import datetime as dt

        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(dt.datetime.fromtimestamp(now - 3600, dt.UTC))
            .not_valid_after(dt.datetime.fromtimestamp(now + 2 * 86400, dt.UTC))
            .sign(self.key, hashes.SHA256())
        )
        self.bundle = root / "token-root.crt"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.kid = libtrust_key_id(self.key.public_key())
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def do_GET(self) -> None:  # noqa: N802
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                user = server.basic_user(self.headers.get("Authorization"))
                self.answer(query, user, self.headers.get("Authorization") is not None)

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                user = None
                if form.get("grant_type") == ["refresh_token"]:
                    user = server.identity_tokens.get((form.get("refresh_token") or [""])[0])
                    if user is None:
                        self.reply(401, {"error": "invalid refresh token"})
                        return
                self.answer(form, user, True, oauth=True)

            def answer(
                self,
                query: dict[str, list[str]],
                user: str | None,
                tried: bool,
                oauth: bool = False,
            ) -> None:
                server.requests.append({"user": user, "tried": tried, "scope": query.get("scope")})
                if tried and user is None:
                    self.reply(401, {"errors": [{"code": "UNAUTHORIZED"}]})
                    return
                if query.get("service") != [SERVICE]:
                    self.reply(400, {"error": "wrong service"})
                    return
                token = server.sign(user, query.get("scope") or [])
                key = "access_token" if oauth else "token"
                self.reply(200, {key: token, "expires_in": 300})

            def reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.realm = f"http://127.0.0.1:{self.port}/token"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def basic_user(self, header: str | None) -> str | None:
        if not header or not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return None
        return user if self.users.get(user) == password else None

    def access(self, user: str | None, scopes: list[str]) -> list[dict[str, Any]]:
        out = []
        for scope in " ".join(scopes).split():
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind != "repository" or not name:
                continue
            wanted = set(actions.split(","))
            allowed = (
                {"pull", "push"} if user else ({"pull"} if name.startswith("public/") else set())
            )
            granted = sorted(wanted & allowed)
            if granted:
                out.append({"type": "repository", "name": name, "actions": granted})
        return out

    def sign(self, user: str | None, scopes: list[str], form: str | None = None) -> str:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        form = form or self.key_form
        header: dict[str, Any] = {"typ": "JWT", "alg": "ES256"}
        if form == "kid":
            header["kid"] = self.kid
        elif form == "x5c":
            der = self.cert.public_bytes(serialization.Encoding.DER)
            header["x5c"] = [base64.b64encode(der).decode("ascii")]
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": user or "",
            "aud": SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": self.access(user, scopes),
        }
        signing_input = (
            f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        der_sig = self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der_sig)
        token = f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
        self.issued.append(token)
        return token

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# --- registries ------------------------------------------------------------------------------


@dataclass
class Registry:
    """One docker-registry process on 127.0.0.1."""

    name: str
    root: Path
    port: int
    proc: subprocess.Popen[bytes]
    scheme: str = "http"
    tls: Tls | None = None
    user: str | None = None
    password: str | None = None
    token_server: TokenServer | None = None
    secrets: list[str] = field(default_factory=list)
    # the client certificate and key of a registry that asks for one (mutual TLS)
    client: tuple[Path, Path] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        path = self.root / "registry.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def push(self, src: str, repo: str, *extra: str) -> str:
        """skopeo copy ``src`` to ``repo`` (``name:tag``) here; returns the docker:// ref."""
        dest = f"docker://{self.host}/{repo}"
        cmd = ["skopeo", "--policy", str(POLICY), "copy", "--quiet", *extra, src, dest]
        if self.tls is not None:
            cmd += ["--dest-cert-dir", str(self.tls.cert_dir)]
        else:
            cmd += ["--dest-tls-verify=false"]
        if self.user is not None:
            cmd += ["--dest-creds", f"{self.user}:{self.password}"]
        with Timer(f"skopeo push {repo} to {self.name}"):
            run(cmd)
        return dest

    def raw_request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """A request straight to a plain-HTTP registry (no auth)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def upload_blob(self, repo: str, data: bytes) -> None:
        """The two-step upload of the distribution API: POST for a session, PUT the bytes."""
        status, headers, _ = self.raw_request("POST", f"/v2/{repo}/blobs/uploads/")
        assert status == 202, status
        location = urlsplit(headers["Location"])
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        sep = "&" if location.query else "?"
        path = f"{location.path}?{location.query}{sep}digest={digest}".replace("?&", "?")
        octet = {"Content-Type": "application/octet-stream"}
        status, _, body = self.raw_request("PUT", path, data, octet)
        assert status == 201, (status, body)

    def put_manifest(self, repo: str, tag: str, manifest: dict[str, Any]) -> None:
        body = json.dumps(manifest).encode()
        headers = {"Content-Type": str(manifest["mediaType"])}
        status, _, answer = self.raw_request("PUT", f"/v2/{repo}/manifests/{tag}", body, headers)
        assert status == 201, (status, answer)

    def raw_get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """A GET straight to the registry (no auth; for the plain registries)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()


POLICY = Path("/nonexistent")  # set by the session fixture


def start_registry(
    root: Path,
    name: str,
    *,
    tls: Tls | None = None,
    htpasswd: tuple[str, str] | None = None,
    token: TokenServer | None = None,
    client_ca: Path | None = None,
    client: tuple[Path, Path] | None = None,
) -> Registry:
    """Start docker-registry with filesystem storage under ``root``; wait until it answers.
    ``client_ca``: TLS clients must show a certificate it signed (mutual TLS); ``client``
    is the (certificate, key) the start-up probe shows."""
    root.mkdir(parents=True, exist_ok=True)
    lines = [
        "version: 0.1",
        "log:",
        "  level: warn",
        "  accesslog:",
        "    disabled: true",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {root / 'storage'}",
        "  delete:",
        "    enabled: true",
        "  maintenance:",
        "    uploadpurging:",
        "      enabled: false",
        # manifests may name foreign layers (distribution refuses every URL by default)
        "validation:",
        "  manifests:",
        "    urls:",
        "      allow:",
        "        - ^https://blobs\\.example\\.internal/",
        "http:",
        "  addr: 127.0.0.1:{port}",
        f"  secret: {secrets.token_hex(16)}",
    ]
    if tls is not None:
        lines += ["  tls:", f"    certificate: {tls.cert}", f"    key: {tls.key}"]
        if client_ca is not None:
            lines += ["    clientcas:", f"      - {client_ca}"]
    if htpasswd is not None:
        entry = run(["htpasswd", "-Bbn", htpasswd[0], htpasswd[1]])
        (root / "htpasswd").write_text(entry)
        lines += [
            "auth:",
            "  htpasswd:",
            "    realm: leakscan-test",
            f"    path: {root / 'htpasswd'}",
        ]
    if token is not None:
        lines += [
            "auth:",
            "  token:",
            f"    realm: {token.realm}",
            f"    service: {SERVICE}",
            f"    issuer: {ISSUER}",
            f"    rootcertbundle: {token.bundle}",
        ]
    for _ in range(3):
        port = free_port()
        config = root / "config.yml"
        config.write_text("\n".join(lines).replace("{port}", str(port)) + "\n")
        log = open(root / "registry.log", "wb")  # noqa: SIM115 - handed to the process
        proc = subprocess.Popen(
            ["docker-registry", "serve", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(os.environ, PATH=_tool_path()),
        )
        log.close()
        registry = Registry(name, root, port, proc, "https" if tls else "http", tls)
        registry.client = client
        if htpasswd is not None:
            registry.user, registry.password = htpasswd
            registry.secrets.append(htpasswd[1])
        if token is not None:
            registry.token_server = token
            registry.user, registry.password = next(iter(token.users.items()))
            registry.secrets.append(registry.password)
        if _wait_up(registry):
            return registry
        registry.stop()
        if "address already in use" not in registry.log():
            break
    raise RuntimeError(f"docker-registry {name} did not start:\n{registry.log()}")


def _wait_up(registry: Registry) -> bool:
    context = None
    if registry.tls is not None:
        context = ssl.create_default_context(cafile=str(registry.tls.ca))
        if registry.client is not None:
            context.load_cert_chain(*registry.client)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if registry.proc.poll() is not None:
            return False
        try:
            if context is not None:
                conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                    "127.0.0.1", registry.port, timeout=2, context=context
                )
            else:
                conn = http.client.HTTPConnection("127.0.0.1", registry.port, timeout=2)
            conn.request("GET", "/v2/")
            status = conn.getresponse().status
            conn.close()
            if status in (200, 401):
                return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


# --- a proxy that misbehaves ----------------------------------------------------------------


@dataclass
class Faults:
    """What :class:`FaultProxy` does to requests whose path contains a key."""

    # path part -> how many more requests get a 500
    fail: dict[str, int] = field(default_factory=dict)
    # path part -> "once" (the first answer is cut in half) or "always"
    truncate: dict[str, str] = field(default_factory=dict)
    # drop the Range header: the registry then answers 200 with the whole blob
    refuse_range: bool = False


class FaultProxy:
    """A reverse proxy to a plain-HTTP registry that fails on purpose; it logs each request
    as (method, path, Range header, status it answered)."""

    def __init__(self, upstream: Registry) -> None:
        self.upstream = upstream
        self.faults = Faults()
        self.log: list[tuple[str, str, str | None, int]] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return None

            def do_GET(self) -> None:  # noqa: N802
                proxy.handle(self, "GET")

            def do_HEAD(self) -> None:  # noqa: N802
                proxy.handle(self, "HEAD")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def reset(self, faults: Faults) -> None:
        with self.lock:
            self.faults = faults
            self.log.clear()

    def _decide(self, path: str) -> tuple[bool, str | None]:
        with self.lock:
            for part, left in self.faults.fail.items():
                if part in path and left > 0:
                    self.faults.fail[part] = left - 1
                    return True, None
            for part, mode in self.faults.truncate.items():
                if part in path:
                    if mode == "once":
                        del self.faults.truncate[part]
                    return False, mode
        return False, None

    def handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        rng = h.headers.get("Range")
        fail, cut = self._decide(h.path)
        if fail:
            body = b'{"errors":[{"code":"UNAVAILABLE","message":"injected"}]}'
            h.send_response(500)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
            self.log.append((method, h.path, rng, 500))
            return
        headers = {k: v for k, v in h.headers.items() if k.lower() not in ("host", "connection")}
        if self.faults.refuse_range:
            headers.pop("Range", None)
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream.port, timeout=30)
        try:
            conn.request(method, h.path, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
        except OSError:
            h.send_response(502)
            h.send_header("Content-Length", "0")
            h.end_headers()
            self.log.append((method, h.path, rng, 502))
            return
        finally:
            conn.close()
        h.send_response(resp.status)
        for key, value in resp.getheaders():
            if key.lower() not in ("connection", "transfer-encoding", "content-length"):
                h.send_header(key, value)
        h.send_header("Content-Length", str(len(body)))
        if cut:
            h.send_header("Connection", "close")
        h.end_headers()
        self.log.append((method, h.path, rng, resp.status))
        if method == "HEAD":
            return
        if cut and len(body) > 1:
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            h.close_connection = True
            # a hard stop in the middle of the body, as a dropped connection looks
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        h.wfile.write(body)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# --- images ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Secrets:
    """The fake secrets baked into the test images."""

    npm: str
    github: str
    aws: str
    arm_github: str


def leaky_image(s: Secrets) -> Image:
    """Four layers: a base, an .npmrc with a token, its deletion, an app with a .env."""
    base = Layer(created_by="ADD rootfs.tar /").file("etc/os-release", "ID=leakscan-test\n")
    base.file("bin/sh", b"\x7fELF" + bytes(2000))
    npmrc = Layer(created_by="RUN |1 NPM_TOKEN=x /bin/sh -c echo ... > /root/.npmrc").file(
        "root/.npmrc", f"//npm.example.internal/:_authToken={s.npm}\n"
    )
    gone = Layer(created_by="RUN /bin/sh -c rm /root/.npmrc").whiteout("root/.npmrc")
    app = Layer(created_by="COPY . /app").file("app/.env", f"GITHUB_TOKEN={s.github}\n")
    app.file("app/main.py", "print('hello')\n" * 50)
    return Image(
        layers=[base, npmrc, gone, app],
        env=["PATH=/usr/bin:/bin", f"AWS_ACCESS_KEY_ID={s.aws}"],
    )


def multi_index(s: Secrets, attestations: bool = True) -> Index:
    def plat(arch: str, variant: str | None, token: str | None) -> Image:
        layer = Layer().file("etc/arch", arch)
        if token:
            layer.file("app/.env", f"GITHUB_TOKEN={token}\n")
        return Image(layers=[layer], architecture=arch, variant=variant)

    return Index(
        [plat("amd64", None, None), plat("arm64", "v8", s.arm_github)],
        attestations=attestations,
    )


@dataclass
class World:
    """Everything the session started, for the tests to use."""

    tmp: Path
    secrets: Secrets
    single: Path  # OCI layout of leaky_image, tag "1"
    multi: Path  # OCI layout of a two-platform index with attestations, tag "1"
    dlist: Path  # the same without attestations: pushed as a Docker manifest list
    plain: Registry
    tls: Registry
    token: Registry
    tls_material: Tls
    started: list[Registry] = field(default_factory=list)

    def fresh_registry(self, name: str) -> Registry:
        with Timer(f"start fresh registry {name}"):
            registry = start_registry(self.tmp / name, name)
        self.started.append(registry)
        return registry

    def all_secrets(self) -> list[str]:
        out = [r for reg in (self.plain, self.tls, self.token) for r in reg.secrets]
        ts = self.token.token_server
        assert ts is not None
        out += ts.issued + list(ts.identity_tokens)
        return out


# --- running the CLI -------------------------------------------------------------------------


# one leakscan run, as every CLI-level test sees it (validates its JSON report)
CliRun = Run


def run_cli(
    args: Sequence[str],
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    home: Path | None = None,
    timeout: float = 120,
) -> CliRun:
    """The real CLI in a subprocess, with a private HOME (no docker config of the user's)."""
    full_env = dict(os.environ)
    for var in ("DOCKER_CONFIG", "REGISTRY_AUTH_FILE", "DOCKER_HOST"):
        full_env.pop(var, None)
    if home is not None:
        # the engines cache their compiled rules under ~/.cache: keep using the real one
        full_env.setdefault("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache"))
        full_env["HOME"] = str(home)
    # a daemon must not answer for plain names: DOCKER_HOST points nowhere
    full_env["DOCKER_HOST"] = "unix:///nonexistent/leakscan-test.sock"
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "leakscan", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=timeout,
        cwd=REPO,
        env=full_env,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)
