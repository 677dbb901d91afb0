"""Images from a registry (Registry HTTP API v2 / OCI distribution spec): ``docker://REF``.

Manifests are negotiated as OCI index or manifest, Docker manifest list or schema 2; every
platform of an index is an image, attestation manifests are not. Layer blobs are not
downloaded here: each :class:`LayerBlob` carries a picklable :class:`BlobOpener` that streams
the blob when the scan reads it (in this process or a worker), retrying and resuming with
``Range`` when the connection drops. The scan verifies each blob against its digest.

TLS is verified unless ``tls_verify`` is off. As docker does for loopback registries, a
``localhost`` or ``127.0.0.0/8`` registry that does not speak TLS is reached over plain
HTTP; any other host only with ``plain_http``. A loopback registry with a certificate that
does not verify is an error, not a fallback.
"""

from __future__ import annotations

import base64
import http.client
import io
import ipaddress
import socket
import ssl
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import requests
import urllib3

from leakscan import __version__
from leakscan.errors import InputError, SourceError
from leakscan.model import Annotation, LayerBlob, SourceImage
from leakscan.sources.auth import (
    Challenge,
    Credentials,
    RegistryOptions,
    lookup_credentials,
    parse_challenges,
)
from leakscan.sources.base import (
    check_digest,
    digest_of,
    platform_wanted,
)
from leakscan.sources.oci import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    MAX_INDEX_DEPTH,
    LayerDescriptor,
    build_image,
    excluded_by_platform,
    is_attestation,
    is_foreign,
)
from leakscan.sources.reference import ImageReference, parse_reference
from leakscan.sources.store import MAX_JSON_BYTES, parse_json

__all__ = ["BlobOpener", "RegistryClient", "RegistryOptions", "RegistrySource"]

ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
SCHEMA1_TYPES = {
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
}
USER_AGENT = f"leakscan/{__version__}"
# first pause before a retry; it doubles with every further attempt
BACKOFF = 0.2
MAX_BACKOFF = 8.0
# a registry's Retry-After is honoured up to this many seconds
MAX_RETRY_AFTER = 30.0
READ_CHUNK = 1 << 20


def _retryable(status: int) -> bool:
    # 501 and 505 say the request can never work; every other 5xx may be a passing state
    return status in (408, 429) or (500 <= status < 600 and status not in (501, 505))


def _netloc(url: str) -> str:
    return urlsplit(url).netloc


def is_loopback(host: str) -> bool:
    """``localhost``, ``127.0.0.0/8`` or ``[::1]``, with or without a port."""
    if host.startswith("["):
        name = host[1:].split("]", 1)[0]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


# --- what went wrong on the wire ---------------------------------------------------------------


class _Transient(Exception):
    """A failure worth another attempt (a dropped or refused connection, a timeout)."""

    def __init__(self, reason: str, refused: bool = False, final: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.refused = refused
        # not worth another attempt at all (a name that does not resolve)
        self.final = final


class _NotTls(Exception):
    """The TLS handshake failed for another reason than the certificate: maybe plain HTTP."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it wraps (causes, contexts, urllib3 reasons, args)."""
    todo = [exc]
    seen: set[int] = set()
    while todo:
        one = todo.pop()
        if id(one) in seen:
            continue
        seen.add(id(one))
        yield one
        more = [one.__cause__, one.__context__, getattr(one, "reason", None), *one.args]
        todo.extend(x for x in more if isinstance(x, BaseException))


def _describe(exc: BaseException) -> _Transient:
    """A short, secret-free reason for a connection failure."""
    found = list(_chain(exc))

    def has(*kinds: type[BaseException]) -> bool:
        # urllib3's NewConnectionError is a ConnectTimeoutError too: never count it as one
        return any(
            isinstance(x, kinds) and not isinstance(x, urllib3.exceptions.NewConnectionError)
            for x in found
        )

    if has(ConnectionRefusedError):
        return _Transient("connection refused", refused=True)
    if has(socket.gaierror):
        return _Transient("host name not resolved", final=True)
    if has(ConnectionResetError, BrokenPipeError):
        return _Transient("connection reset")
    if has(TimeoutError, urllib3.exceptions.TimeoutError, requests.Timeout):
        return _Transient("timed out")
    if has(urllib3.exceptions.ProtocolError, http.client.HTTPException):
        return _Transient("connection closed early")
    return _Transient("connection failed")


def _tls_problem(exc: BaseException, netloc: str) -> SourceError | _NotTls:
    """A certificate error is final; any other handshake failure may be a plain-HTTP server."""
    for one in _chain(exc):
        if isinstance(one, ssl.SSLCertVerificationError):
            why = (one.verify_message or "").lower()
            if "mismatch" in why or "not valid for" in why:
                return SourceError(f"TLS certificate of {netloc} is not valid for that name")
            if "expired" in why:
                return SourceError(f"TLS certificate of {netloc} has expired")
            return SourceError(f"TLS certificate of {netloc} not trusted (use --ca-file)")
    if "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return SourceError(f"TLS certificate of {netloc} not trusted (use --ca-file)")
    return _NotTls("TLS handshake failed")


def _content_type(resp: requests.Response) -> str:
    return resp.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After", "")
    try:
        seconds = float(value)
    except ValueError:
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _pause(attempt: int) -> float:
    return float(min(BACKOFF * (2**attempt), MAX_BACKOFF))


# --- HTTP to one repository ----------------------------------------------------------------


class RegistryClient:
    """Requests to one repository of one registry: finds the scheme, answers auth
    challenges, retries with backoff. Picklable (the HTTP session is made anew in each
    process); its ``repr`` never shows credentials or tokens."""

    def __init__(self, ref: ImageReference, options: RegistryOptions) -> None:
        self.host = ref.api_host
        self.domain = ref.domain
        self.repository = ref.repository
        self.where = ref.where
        self.options = options
        self.verify = options.verify()
        self.base_url: str | None = None
        self._creds = options.creds
        self._looked_up = options.creds is not None
        # the Authorization header value in use (a Basic pair or a Bearer token)
        self._authorization: str | None = None
        self._session: requests.Session | None = None

    def __repr__(self) -> str:
        return f"RegistryClient({self.where!r}, base_url={self.base_url!r})"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_session"] = None
        return state

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            session = requests.Session()
            # no ~/.netrc credentials or environment CA settings behind our back: TLS and
            # auth are what RegistryOptions say
            session.trust_env = False
            session.headers["User-Agent"] = USER_AGENT
            self._session = session
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    # -- one request, then with retries

    def _attempt(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        stream: bool,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
    ) -> requests.Response:
        timeout = self.options.timeout
        proxies = None
        if not is_loopback(_netloc(url)):
            proxies = requests.utils.get_environ_proxies(url)
        try:
            with warnings.catch_warnings():
                # --tls-verify=false was asked for: no warning on every request
                warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
                return self.session.request(
                    method,
                    url,
                    headers=dict(headers),
                    params=params,
                    data=data,
                    stream=stream,
                    timeout=(timeout, timeout),
                    verify=self.verify,
                    allow_redirects=True,
                    proxies=proxies,
                )
        except requests.exceptions.SSLError as exc:
            raise _tls_problem(exc, _netloc(url)) from None
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
        ) as exc:
            raise _describe(exc) from None
        except requests.RequestException as exc:
            # the type only: some messages quote the request
            raise SourceError(f"request to {_netloc(url)} failed ({type(exc).__name__})") from None

    def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        probe: bool = False,
    ) -> requests.Response:
        """One request, retried on 429/5xx and dropped connections with growing pauses.
        A ``probe`` (the first contact) is not retried when refused, and lets a failed TLS
        handshake through as _NotTls so that the caller can try plain HTTP."""
        attempt = 0
        while True:
            try:
                resp = self._attempt(method, url, headers or {}, stream, params, data)
            except _NotTls:
                if probe:
                    raise
                raise SourceError(f"TLS handshake with {_netloc(url)} failed") from None
            except _Transient as exc:
                if attempt >= self.options.retries or exc.final or (exc.refused and probe):
                    tries = f" ({attempt + 1} attempts)" if attempt else ""
                    raise SourceError(f"cannot reach {_netloc(url)}: {exc.reason}{tries}") from None
                time.sleep(_pause(attempt))
                attempt += 1
                continue
            if _retryable(resp.status_code) and attempt < self.options.retries:
                pause = _retry_after(resp)
                resp.close()
                time.sleep(pause if pause is not None else _pause(attempt))
                attempt += 1
                continue
            return resp

    # -- scheme and authentication

    def connect(self) -> None:
        """Find the scheme the registry speaks (``GET /v2/``) and meet its first challenge."""
        if self.base_url is not None:
            return
        if self.options.plain_http:
            schemes = ["http"]
        else:
            schemes = ["https", "http"] if is_loopback(self.host) else ["https"]
        for scheme in schemes:
            try:
                # a refused connection is not retried here: it is a wrong address far more
                # often than a registry in the middle of a restart
                resp = self._send("GET", f"{scheme}://{self.host}/v2/", probe=True)
            except _NotTls:
                if scheme != schemes[-1]:
                    continue
                raise SourceError(
                    f"TLS handshake with {self.host} failed; if it is a plain-HTTP registry, "
                    "use --plain-http"
                ) from None
            break
        with resp:
            if resp.status_code == 401:
                self.base_url = f"{scheme}://{self.host}"
                self._authenticate(resp.headers.get("WWW-Authenticate", ""))
            elif resp.status_code == 200:
                self.base_url = f"{scheme}://{self.host}"
            elif scheme == "http" and resp.status_code == 400 and b"HTTPS" in resp.content[:512]:
                # Go's TLS servers answer a plain request so
                raise SourceError(f"{self.host} speaks HTTPS, not plain HTTP (drop --plain-http)")
            else:
                raise SourceError(
                    f"{self.host} does not serve the registry API (GET /v2/ answered "
                    f"{resp.status_code})"
                )

    def _credentials(self) -> Credentials | None:
        if not self._looked_up:
            self._creds = lookup_credentials(self.domain, self.repository)
            self._looked_up = True
        return self._creds

    def _origin(self) -> str:
        return f" (credentials from {self._creds.origin})" if self._creds else ""

    def _authenticate(self, header: str) -> None:
        """Answer a ``WWW-Authenticate`` challenge: a Bearer token, or a Basic pair."""
        challenges = parse_challenges(header)
        bearer = next((c for c in challenges if c.scheme == "bearer" and c.get("realm")), None)
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        creds = self._credentials()
        if bearer is not None:
            self._authorization = f"Bearer {self._token(bearer, creds)}"
            return
        if basic is not None:
            if creds is None or not creds.has_password:
                raise SourceError(
                    f"authentication required for {self.where}: give --creds USER:PASS, "
                    "or log in with docker login"
                )
            if self._authorization is not None and self._authorization.startswith("Basic "):
                raise SourceError(f"authentication failed for {self.where}{self._origin()}")
            pair = f"{creds.username}:{creds.password}".encode()
            self._authorization = f"Basic {base64.b64encode(pair).decode('ascii')}"
            return
        schemes = ", ".join(sorted({c.scheme for c in challenges})) or "none given"
        raise SourceError(
            f"{self.where}: the registry asks for an authentication scheme leakscan does not "
            f"support ({schemes})"
        )

    def _token(self, challenge: Challenge, creds: Credentials | None) -> str:
        """A Bearer token from the challenge's realm, for pulling this repository."""
        realm = challenge.get("realm") or ""
        if urlsplit(realm).scheme not in ("http", "https"):
            raise SourceError(f"{self.where}: the registry names an invalid token realm")
        scope = challenge.get("scope") or f"repository:{self.repository}:pull"
        service = challenge.get("service")
        fields = {"scope": scope}
        if service:
            fields["service"] = service
        if creds is not None and creds.identity_token is not None:
            # an identity token is an OAuth2 refresh token (docker login stores one for
            # registries that hand them out)
            form = dict(fields, grant_type="refresh_token", client_id="leakscan")
            form["refresh_token"] = creds.identity_token
            resp = self._send("POST", realm, data=form)
        elif creds is not None:
            pair = f"{creds.username}:{creds.password}".encode()
            headers = {"Authorization": f"Basic {base64.b64encode(pair).decode('ascii')}"}
            resp = self._send(
                "GET", realm, headers=headers, params=dict(fields, account=creds.username)
            )
        else:
            resp = self._send("GET", realm, params=fields)
        with resp:
            if resp.status_code in (401, 403):
                if creds is not None:
                    raise SourceError(f"authentication failed for {self.where}{self._origin()}")
                raise SourceError(
                    f"authentication required for {self.where}: the token server refuses "
                    "anonymous access; give --creds USER:PASS, or log in with docker login"
                )
            if resp.status_code != 200:
                raise SourceError(
                    f"token server {_netloc(realm)} answered {resp.status_code} for {self.where}"
                )
            try:
                answer = resp.json()
            except ValueError:
                answer = None
        token = None
        if isinstance(answer, dict):
            token = answer.get("token") or answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise SourceError(f"token server {_netloc(realm)} gave no token for {self.where}")
        return token

    def _denied(self, status: int) -> SourceError:
        auth = self._authorization or ""
        if status == 401 and auth.startswith("Basic "):
            return SourceError(f"authentication failed for {self.where}{self._origin()}")
        if self._creds is not None:
            return SourceError(f"access to {self.where} denied{self._origin()}")
        return SourceError(
            f"access to {self.where} denied: it does not exist or needs credentials "
            "(give --creds USER:PASS, or log in with docker login)"
        )

    # -- requests for this repository

    def get(
        self, path: str, headers: Mapping[str, str] | None = None, stream: bool = True
    ) -> requests.Response:
        """GET ``path`` of the repository's registry, authenticating when challenged.
        Returns any answer but 401/403, which raise."""
        self.connect()
        assert self.base_url is not None
        for round_ in (0, 1):
            sent = dict(headers or {})
            if self._authorization:
                sent["Authorization"] = self._authorization
            resp = self._send("GET", self.base_url + path, headers=sent, stream=stream)
            if resp.status_code != 401 or round_ == 1:
                break
            # no credentials yet, or a token that expired or has too narrow a scope
            challenge = resp.headers.get("WWW-Authenticate", "")
            resp.close()
            self._authenticate(challenge)
        if resp.status_code in (401, 403):
            resp.close()
            raise self._denied(resp.status_code)
        return resp

    def get_small(self, path: str, accept: str | None = None) -> tuple[requests.Response, bytes]:
        """GET a manifest or config; the body is read whole (at most 32 MiB), and read
        again when the connection drops on the way."""
        headers = {"Accept": accept} if accept else {}
        attempt = 0
        while True:
            resp = self.get(path, headers)
            if resp.status_code != 200:
                resp.close()
                return resp, b""
            try:
                return resp, _read_body(resp, f"{self.where}: {path}")
            except _Transient as exc:
                if attempt >= self.options.retries:
                    raise SourceError(
                        f"{self.where}: reading {path} failed: {exc.reason}"
                    ) from None
                time.sleep(_pause(attempt))
                attempt += 1
            finally:
                resp.close()

    def open_blob(self, digest: str, offset: int = 0) -> requests.Response:
        """Start streaming a blob, from byte ``offset`` on when the registry allows."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        resp = self.get(f"/v2/{self.repository}/blobs/{digest}", headers)
        if resp.status_code in (200, 206):
            return resp
        resp.close()
        if resp.status_code == 404:
            raise SourceError(f"{self.where}: blob {digest} not found")
        raise SourceError(
            f"{self.where}: registry answered {resp.status_code} {resp.reason} for blob {digest}"
        )


def _read_body(resp: requests.Response, where: str) -> bytes:
    chunks: list[bytes] = []
    total = 0
    try:
        for chunk in resp.iter_content(64 << 10):
            total += len(chunk)
            if total > MAX_JSON_BYTES:
                raise SourceError(f"{where} is larger than 32 MiB")
            chunks.append(chunk)
    except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
        raise _describe(exc) from None
    except requests.RequestException as exc:
        raise SourceError(f"{where}: reading failed ({type(exc).__name__})") from None
    return b"".join(chunks)


# --- layer blobs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlobOpener:
    """Opens one layer blob of a registry as a stream; picklable, so that a worker process
    can open the layer itself. The client it holds carries the auth material."""

    client: RegistryClient
    digest: str
    size: int | None

    def __call__(self) -> BinaryIO:
        return io.BufferedReader(_BlobStream(self.client, self.digest, self.size), READ_CHUNK)


class _BlobStream(io.RawIOBase):
    """A blob's bytes as the registry sends them (never decoded), resumed where they broke
    off: with ``Range`` when the registry honours it, else by reading past what we had."""

    def __init__(self, client: RegistryClient, digest: str, size: int | None) -> None:
        super().__init__()
        self._client = client
        self._digest = digest
        self._size = size
        self._pos = 0
        # failures since the last byte that moved the stream forward, and the last reason
        self._failures = 0
        self._reason = ""
        # the registry answered a Range request with the whole blob
        self._no_range = False
        self._resp: requests.Response | None = None

    def readable(self) -> bool:
        return True

    def _broke_off(self) -> str:
        of = f" of {self._size}" if self._size is not None else ""
        why = self._reason
        if self._no_range:
            why += "; the registry does not resume downloads (no Range support)"
        return (
            f"{self._client.where}: blob {self._digest} broke off at byte {self._pos}{of} ({why})"
        )

    def _open(self) -> requests.Response:
        resp = self._client.open_blob(self._digest, self._pos)
        self._resp = resp
        if self._pos == 0:
            return resp
        if resp.status_code == 206:
            start = resp.headers.get("Content-Range", "").removeprefix("bytes ").split("-")[0]
            if start.strip() != str(self._pos):
                raise SourceError(f"{self._broke_off()}: the registry resumed at the wrong place")
            return resp
        # the registry ignored Range and sends the whole blob: skip what we already have
        self._no_range = True
        left = self._pos
        while left:
            data = resp.raw.read(min(left, READ_CHUNK), decode_content=False)
            if not data:
                raise _Transient("connection closed early")
            left -= len(data)
        return resp

    def _drop(self, reason: str) -> None:
        """The connection broke: close it, and wait before the next attempt."""
        if self._resp is not None:
            self._resp.close()
            self._resp = None
        self._failures += 1
        self._reason = reason
        retries = self._client.options.retries
        if self._failures > retries:
            raise SourceError(f"{self._broke_off()}; gave up after {retries} retries")
        time.sleep(_pause(self._failures - 1))

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        want = len(b)
        if self._size is not None:
            want = min(want, self._size - self._pos)
        if want <= 0:
            return 0
        while True:
            data = b""
            failure: str | None = None
            try:
                resp = self._resp if self._resp is not None else self._open()
                data = resp.raw.read(want, decode_content=False)
            except SourceError as exc:
                if self._failures == 0:
                    raise
                raise SourceError(f"{self._broke_off()} and could not resume: {exc}") from None
            except _Transient as exc:
                failure = exc.reason
            except (urllib3.exceptions.HTTPError, OSError, requests.RequestException) as exc:
                failure = _describe(exc).reason
            if data:
                n = len(data)
                b[:n] = data
                self._pos += n
                self._failures = 0
                return n
            if failure is None:
                if self._size is None or self._pos >= self._size:
                    return 0  # the end of the body is the end of the blob
                failure = "connection closed early"
            self._drop(failure)

    def close(self) -> None:
        if self._resp is not None:
            self._resp.close()
            self._resp = None
        super().close()


# --- the source --------------------------------------------------------------------------------


def _annotations(where: str, value: Any) -> tuple[Annotation, ...]:
    if not isinstance(value, dict):
        return ()
    return tuple(Annotation(where, str(k), str(v)) for k, v in value.items())


def _kind(media: str, doc: Any) -> str:
    if not isinstance(doc, dict):
        return "unknown"
    media = media if media in INDEX_TYPES | MANIFEST_TYPES else str(doc.get("mediaType") or "")
    if media in INDEX_TYPES:
        return "index"
    if media in MANIFEST_TYPES:
        return "manifest"
    # some registries answer application/json: go by the document's shape
    if isinstance(doc.get("manifests"), list):
        return "index"
    if "config" in doc and "layers" in doc:
        return "manifest"
    return "unknown"


class RegistrySource:
    """Every image a registry reference names, one per platform."""

    def __init__(
        self,
        reference: str,
        ref: ImageReference,
        options: RegistryOptions,
        after_daemon: bool = False,
    ) -> None:
        self.reference = reference
        self.ref = ref
        self.client = RegistryClient(ref, options)
        # a plain name that no docker daemon had: errors say so too
        self.after_daemon = after_daemon

    @classmethod
    def open(
        cls,
        reference: str,
        name: str,
        options: RegistryOptions | None = None,
        after_daemon: bool = False,
    ) -> RegistrySource:
        """The source for ``name`` (a docker reference); ``reference`` is what the user typed."""
        return cls(reference, parse_reference(name), options or RegistryOptions(), after_daemon)

    def close(self) -> None:
        self.client.close()

    def images(self, platforms: Sequence[str]) -> Iterator[SourceImage]:
        try:
            doc, digest, media = self._manifest(self.ref.ref, self.ref.digest, top=True)
        except (InputError, SourceError) as exc:
            if not self.after_daemon:
                raise
            raise type(exc)(f"{exc} (and no docker daemon has {self.reference})") from None
        yield from self._walk(doc, digest, media, platforms, (), {digest}, 0)

    def _manifest(self, ref: str, expected: str | None, top: bool = False) -> tuple[Any, str, str]:
        """Fetch a manifest or index by tag or digest; verify it against ``expected``."""
        where = self.client.where
        resp, body = self.client.get_small(f"/v2/{self.ref.repository}/manifests/{ref}", ACCEPT)
        if resp.status_code == 404:
            if top:
                raise InputError(f"image not found: {self.ref}")
            raise SourceError(f"{where}: manifest {ref}, listed in an index, is missing")
        if resp.status_code != 200:
            raise SourceError(
                f"{where}: registry answered {resp.status_code} {resp.reason} for manifest {ref}"
            )
        media = _content_type(resp)
        if media in SCHEMA1_TYPES:
            raise SourceError(f"{where}: {ref} is a Docker schema 1 manifest, which is not read")
        header = resp.headers.get("Docker-Content-Digest")
        algo = (expected or header or "sha256:").split(":", 1)[0]
        if algo not in ("sha256", "sha512"):
            algo = "sha256"
        actual = digest_of(body, algo)
        if expected is not None and actual != expected:
            raise SourceError(f"{where}: manifest does not match its digest {expected}")
        if header and header.startswith(f"{algo}:") and header != actual:
            raise SourceError(f"{where}: manifest {ref} does not match its digest {header}")
        doc = parse_json(body, f"{where}: manifest {ref}")
        return doc, actual, media

    def _walk(
        self,
        doc: Any,
        digest: str,
        media: str,
        platforms: Sequence[str],
        inherited: tuple[Annotation, ...],
        seen: set[str],
        depth: int,
    ) -> Iterator[SourceImage]:
        where = self.client.where
        kind = _kind(media, doc)
        if kind == "manifest":
            image = self._image(digest, doc, inherited)
            if platform_wanted(image.platform, platforms):
                yield image
            return
        if kind != "index":
            raise SourceError(f"{where}: {digest} is neither an image manifest nor an index")
        if depth >= MAX_INDEX_DEPTH:
            raise SourceError(f"{where}: indexes nested more than {MAX_INDEX_DEPTH} deep")
        children = doc.get("manifests")
        if not isinstance(children, list):
            raise SourceError(f"{where}: index {digest} has no manifests list")
        notes = inherited + _annotations(f"index {digest}", doc.get("annotations"))
        for child in children:
            if not isinstance(child, dict) or is_attestation(child):
                continue
            child_digest = check_digest(child.get("digest"), f"{where}: index {digest}")
            if child_digest in seen:
                continue  # listed twice, or an index that loops
            seen.add(child_digest)
            if excluded_by_platform(child, platforms):
                continue
            child_doc, _, child_media = self._manifest(child_digest, child_digest)
            if child_media not in INDEX_TYPES | MANIFEST_TYPES:
                child_media = str(child.get("mediaType") or "")
            yield from self._walk(
                child_doc, child_digest, child_media, platforms, notes, seen, depth + 1
            )

    def _config(self, digest: str) -> dict[str, Any]:
        where = self.client.where
        resp, body = self.client.get_small(f"/v2/{self.ref.repository}/blobs/{digest}")
        if resp.status_code == 404:
            raise SourceError(f"{where}: config blob {digest} not found")
        if resp.status_code != 200:
            raise SourceError(
                f"{where}: registry answered {resp.status_code} {resp.reason} for config {digest}"
            )
        if digest_of(body, digest.split(":", 1)[0]) != digest:
            raise SourceError(f"{where}: config blob does not match its digest {digest}")
        config = parse_json(body, f"{where}: config {digest}")
        if not isinstance(config, dict):
            raise SourceError(f"{where}: config {digest} is not an object")
        return config

    def _image(
        self, digest: str, manifest: dict[str, Any], inherited: tuple[Annotation, ...]
    ) -> SourceImage:
        return build_image(
            where=self.client.where,
            reference=self.reference,
            source="registry",
            digest=digest,
            manifest=manifest,
            inherited=inherited,
            load_config=self._config,
            make_layer=self._layer,
        )

    def _layer(self, desc: LayerDescriptor, diff_id: str | None) -> LayerBlob:
        return LayerBlob(
            index=desc.index,
            diff_id=diff_id,
            digest=desc.digest,
            media_type=desc.media_type,
            size=desc.size,
            opener=BlobOpener(self.client, desc.digest, desc.size),
            unavailable=(
                "foreign layer: not distributed by the registry, not scanned"
                if is_foreign(desc.media_type)
                else None
            ),
        )
