"""HTTP to one repository of a registry (Registry HTTP API v2 / OCI distribution spec):
the scheme, authentication challenges (Basic, Bearer tokens), retries with backoff, and
failures on the wire told apart, each as a short reason that holds no secret.

TLS is verified unless ``tls_verify`` is off. As docker does for loopback registries, a
``localhost`` or ``127.0.0.0/8`` registry that does not speak TLS is reached over plain
HTTP; any other host only with ``plain_http``. A loopback registry with a certificate that
does not verify is an error, not a fallback.
"""

from __future__ import annotations

import base64
import copy
import http.client
import os
import socket
import ssl
import time
import warnings
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3

from leakscan import __version__
from leakscan.errors import SourceError
from leakscan.sources.auth import (
    Challenge,
    Credentials,
    RegistryOptions,
    lookup_credentials,
    parse_challenges,
)
from leakscan.sources.hosts import is_loopback
from leakscan.sources.reference import ImageReference
from leakscan.sources.store import MAX_JSON_BYTES

USER_AGENT = f"leakscan/{__version__}"
# first pause before a retry; it doubles with every further attempt
BACKOFF = 0.2
MAX_BACKOFF = 8.0
# a registry's Retry-After is honoured up to this many seconds
MAX_RETRY_AFTER = 30.0


def _retryable(status: int) -> bool:
    # 501 and 505 say the request can never work; every other 5xx may be a passing state
    return status in (408, 429) or (500 <= status < 600 and status not in (501, 505))


def _netloc(url: str) -> str:
    return urlsplit(url).netloc


# --- what went wrong on the wire ---------------------------------------------------------------


class Transient(Exception):
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


def describe(exc: BaseException) -> Transient:
    """A short, secret-free reason for a connection failure."""
    found = list(_chain(exc))

    def has(*kinds: type[BaseException]) -> bool:
        # urllib3's NewConnectionError is a ConnectTimeoutError too: never count it as one
        return any(
            isinstance(x, kinds) and not isinstance(x, urllib3.exceptions.NewConnectionError)
            for x in found
        )

    if has(ConnectionRefusedError):
        return Transient("connection refused", refused=True)
    if has(socket.gaierror):
        return Transient("host name not resolved", final=True)
    if has(ConnectionResetError, BrokenPipeError):
        return Transient("connection reset")
    if has(TimeoutError, urllib3.exceptions.TimeoutError, requests.Timeout):
        return Transient("timed out")
    if has(urllib3.exceptions.ProtocolError, http.client.HTTPException):
        return Transient("connection closed early")
    return Transient("connection failed")


def _tls_problem(exc: BaseException, netloc: str, sent_cert: bool = False) -> SourceError | _NotTls:
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
    client = _client_cert_refused(exc, netloc, sent_cert)
    if client is not None:
        return client
    return _NotTls("TLS handshake failed")


def _client_cert_refused(exc: BaseException, netloc: str, sent: bool) -> SourceError | None:
    """The registry asks for a TLS client certificate (mutual TLS) and got none, or not
    one it accepts: final, and said in words (OpenSSL names the server's alert; TLS 1.2
    servers answer a missing certificate with "bad certificate" too)."""
    found = list(_chain(exc))
    text = " ".join(str(one) for one in found).upper()
    alerts = ("CERTIFICATE_REQUIRED", "BAD_CERTIFICATE", "UNKNOWN_CA", "CERTIFICATE_UNKNOWN")
    refused = SourceError(
        f"{netloc} refused the TLS client certificate of its certs.d folder: not one it accepts"
    )
    if sent and any(isinstance(one, ssl.SSLEOFError) for one in found):
        # Go's TLS 1.3 server hangs up on a certificate of a CA it does not know (or sends
        # its alert first: which one the client sees depends on timing, the words do not)
        return refused
    if not any(alert in text for alert in alerts):
        return None
    if not sent:
        return SourceError(
            f"{netloc} asks for a TLS client certificate: put NAME.cert and NAME.key in its "
            f"certs.d folder ({netloc}/)"
        )
    return refused


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After", "")
    try:
        seconds = float(value)
    except ValueError:
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def backoff(attempt: int) -> float:
    """The pause before retry number ``attempt + 1``."""
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
        # the registry's own certs.d CAs too (HOST:PORT, as docker and podman name them)
        self.verify = options.verify(self.domain)
        # a client certificate for registries that ask for one (mutual TLS), from certs.d
        self.cert = options.client_cert(self.domain)
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

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        # a CA bundle written by another process (or machine) may not be here
        if isinstance(self.verify, str) and not os.path.isfile(self.verify):
            self.verify = self.options.verify(self.domain)

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
                    cert=self.cert,
                    allow_redirects=True,
                    proxies=proxies,
                )
        except requests.exceptions.SSLError as exc:
            raise _tls_problem(exc, _netloc(url), self.cert is not None) from None
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
        ) as exc:
            raise describe(exc) from None
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
            except Transient as exc:
                if attempt >= self.options.retries or exc.final or (exc.refused and probe):
                    tries = f" ({attempt + 1} attempts)" if attempt else ""
                    raise SourceError(f"cannot reach {_netloc(url)}: {exc.reason}{tries}") from None
                time.sleep(backoff(attempt))
                attempt += 1
                continue
            if _retryable(resp.status_code) and attempt < self.options.retries:
                pause = _retry_after(resp)
                resp.close()
                time.sleep(pause if pause is not None else backoff(attempt))
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
        if creds is not None and creds.registry_token is not None:
            given = f"Bearer {creds.registry_token}"
            if self._authorization == given:  # sent and refused
                raise SourceError(f"authentication failed for {self.where}{self._origin()}")
            self._authorization = given
            return
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

    def sibling(self, repository: str) -> RegistryClient:
        """A client for another repository of the same registry that starts where this one
        is: the scheme found, the connections kept open (one session between them, so
        closing either closes both). Its authorization is its own (a token is scoped to a
        repository): it answers its first challenge itself."""
        other = copy.copy(self)
        other.repository = repository
        other.where = f"{self.domain}/{repository}"
        other._authorization = None
        # credentials may be kept per repository (auth.json entries of host/namespace)
        other._creds = self.options.creds
        other._looked_up = self.options.creds is not None
        other._session = self.session
        return other

    def get(
        self, path: str, headers: Mapping[str, str] | None = None, stream: bool = True
    ) -> requests.Response:
        """GET ``path`` of the repository's registry, authenticating when challenged.
        Returns any answer but 401/403, which raise."""
        return self._request("GET", path, headers, stream)

    def head(self, path: str, headers: Mapping[str, str] | None = None) -> requests.Response:
        """HEAD ``path``, as :meth:`get` (a manifest's digest without its body, and without
        counting as a pull where registries count pulls)."""
        return self._request("HEAD", path, headers, False)

    def _request(
        self, method: str, path: str, headers: Mapping[str, str] | None, stream: bool
    ) -> requests.Response:
        self.connect()
        assert self.base_url is not None
        for round_ in (0, 1):
            sent = dict(headers or {})
            if self._authorization:
                sent["Authorization"] = self._authorization
            resp = self._send(method, self.base_url + path, headers=sent, stream=stream)
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
            except Transient as exc:
                if attempt >= self.options.retries:
                    raise SourceError(
                        f"{self.where}: reading {path} failed: {exc.reason}"
                    ) from None
                time.sleep(backoff(attempt))
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
        raise describe(exc) from None
    except requests.RequestException as exc:
        raise SourceError(f"{where}: reading failed ({type(exc).__name__})") from None
    return b"".join(chunks)
