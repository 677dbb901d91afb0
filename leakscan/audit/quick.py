"""The re-audit of an unchanged registry, before the command-line framework and the audit's
scanners load.

An audit of a registry nothing was pushed to since the last one reads no config and scans
no layer: it lists the repositories and tags, asks each tag for its digest (HEAD), and
reports what the audit database kept for those digests. That is a few milliseconds of work
per tag; the interpreter importing the CLI (typer, pydantic), the registry client
(requests) and the scanners cost more than all of it. :mod:`leakscan.__main__` hands
``leakscan audit`` arguments here first.

Anything this path does not handle sends the full audit on its way, with nothing written
and nothing said: an option it does not know or that needs the full machinery (credentials
or TLS flags, a plugin, a baseline, a shared store), a terminal on stderr
(it gets the progress bar), a challenge it cannot answer as the registry client would (it
answers Bearer and Basic with the stored credentials the client looks up: docker config,
auth files), a status other than 200, a tag that is new or names another digest, a kept
report that does not read back. Only once
every tag is known unchanged does it write to the audit database, through the same steps
as the full audit (:mod:`leakscan.audit.result`), and render with the same renderers: the
report is the full path's, to the byte (bar the audit's id, start and duration). With
``--dask`` the cluster is not contacted: an unchanged registry has nothing to scan.

HTTP is :mod:`leakscan.audit.wire`'s, with kept-alive connections, one per thread: the
listings and HEADs are small and many, and each one through ``requests`` costs several times
the CPU, and importing :mod:`http.client` alone costs more than all of them. A repository's
HEADs are pipelined on one connection. Those requests (:class:`Walk`) start on threads of their
own as soon as the target and the audit database are known, before the rest of this module's
imports, and the registry answers them while this process imports the model and decodes the
kept reports: most of a re-audit is waiting for a registry, which need not be waited for idle.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from leakscan import __version__
from leakscan.audit import referrers
from leakscan.audit.db import AuditDb, audit_db_path
from leakscan.audit.referrers import UNLISTED, Listing, listing_of
from leakscan.audit.target import (
    MAX_PAGES,
    PAGE,
    Target,
    parse_target,
    repository_names,
    since_time,
)
from leakscan.audit.wire import Answer, Connection, TooLarge
from leakscan.quick import read_options
from leakscan.sources.auth import Challenge, Credentials, RegistryOptions
from leakscan.sources.hosts import is_loopback
from leakscan.terms import CONFIDENCE_RANK

if TYPE_CHECKING:
    import ssl

    # the model and what is built of it load once the registry's side is under way
    from leakscan import model as m
    from leakscan.audit.result import AuditedImage, AuditReport, Entry
    from leakscan.settings import FileConfig

# what the registry source accepts for a manifest (leakscan.sources.registry.ACCEPT: the
# digest a HEAD names depends on it; a test holds the two equal)
ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
# what a registry's answer to GET /v2/ carries (the distribution spec's API version field)
API_VERSION = "Docker-Distribution-API-Version"
# as the registry client names itself
USER_AGENT = f"leakscan/{__version__}"
# HEADs and listings in flight at once: a remote registry is mostly round trips
THREADS = 4
# the interpreter's switch interval while a Walk runs: its threads wait for answers while
# this process imports and decodes kept reports (seconds; Python's default is 0.005)
SWITCH = 0.0005
# a listing page larger than this is not one this path reads
MAX_PAGE_BYTES = 16 << 20
# names this path puts in a URL as they are (the registry spec's characters)
_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPO = re.compile(rf"{_PART}(?:/{_PART})*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_DASK = re.compile(r"(?:(?:tcp|tls)://)?[A-Za-z0-9.-]+:[0-9]{1,5}")
# what a registry without the referrers API answers it (the registry source's
# NO_REFERRERS_API; a test holds the two equal)
NO_REFERRERS_API = frozenset({400, 404, 405, 501})
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_NEXT = re.compile(r'\s*<([^>]*)>\s*;\s*rel="?next"?\s*')
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy")


class Fallback(Exception):
    """Something this path does not handle: the full audit runs instead."""


# --- the arguments ----------------------------------------------------------------------------

# options taking a value: name -> (field, repeatable)
_VALUED = {
    "--repo": ("repo", True),
    "--repos-from": ("repos_from", False),
    "--tag": ("tag", False),
    "--db": ("db", False),
    "--workers": ("workers", False),
    "-j": ("workers", False),
    "--format": ("format", False),
    "-f": ("format", False),
    "--output": ("output", False),
    "-o": ("output", False),
    "--min-confidence": ("level", False),
    "--cache": ("cache", False),
    "--cache-dir": ("cache_dir", False),
    "--config": ("config", False),
    "--since": ("since", False),
    "--dask": ("dask", False),
}
_SWITCHES = {"--new-only": "new_only", "--no-cache": "no_cache", "--plain-http": "plain_http"}


@dataclass
class Args:
    """The audit command's arguments this path knows."""

    target: str = ""
    repo: list[str] = field(default_factory=list)
    repos_from: str | None = None
    tag: str | None = None
    db: str | None = None
    workers: str = "1"
    format: str = "table"
    output: str | None = None
    level: str | None = None
    cache: str | None = None
    cache_dir: str | None = None
    config: str | None = None
    since: str | None = None
    dask: str | None = None
    new_only: bool = False
    no_cache: bool = False
    plain_http: bool = False


def parse(argv: Sequence[str]) -> Args | None:
    """The arguments after ``audit``, when each is an option this path knows or the one
    target; None otherwise (the full command reads them, and says what is wrong)."""
    args = Args()
    targets = read_options(argv, args, _VALUED, _SWITCHES)
    if targets is None or len(targets) != 1 or args.format not in ("table", "json", "html"):
        return None
    if args.level is not None and args.level not in CONFIDENCE_RANK:
        return None
    if not (args.workers.isascii() and args.workers.isdigit() and int(args.workers) >= 1):
        return None
    # a scheduler's address: never contacted here (nothing is scanned), so only its form
    # is looked at; one of another form is the full command's to judge
    if args.dask is not None and not _DASK.fullmatch(args.dask):
        return None
    args.target = targets[0]
    return args


# --- HTTP -----------------------------------------------------------------------------------


class Wire:
    """Requests to one registry over kept-alive connections, one per thread, answering
    authentication challenges as the registry client does (a Bearer token per repository
    from the token server, or a Basic pair, with the credentials it would look up).
    Anything but a clean exchange is :class:`Fallback`."""

    def __init__(self, target: Target, tls: ssl.SSLContext | None) -> None:
        assert target.host is not None
        self.target = target
        self.host = target.host
        self.tls = tls
        self.timeout = target.options.timeout
        self._local = threading.local()
        self._all: list[Connection] = []
        self._lock = threading.Lock()
        # the Authorization value in use, per repository ("catalog": the registry's root),
        # as the registry client keeps one per repository client
        self._auth: dict[str, str] = {}
        self._auth_lock = threading.Lock()

    def _connection(self) -> Connection:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = Connection(self.host, self.timeout, self.tls)
            with self._lock:
                self._all.append(conn)
        return conn

    def request(
        self, method: str, path: str, accept: str | None = None, who: str = "catalog"
    ) -> Answer:
        """``method`` ``path`` for repository ``who``, authenticating when challenged
        (once: a second 401 is returned, and the caller falls back)."""
        for round_ in (0, 1):
            sent = self._auth.get(who)
            got = self._exchange(method, path, accept, sent)
            if got.status != 401 or round_:
                break
            self.authenticate(who, sent, got.headers.get("WWW-Authenticate", "") or "")
        return got

    def heads(self, who: str, paths: Sequence[str]) -> list[tuple[int, str | None]]:
        """HEAD each manifest of ``paths`` for repository ``who``: (status, the digest it
        names). Sent together on this thread's connection and answered in order (HTTP/1.1
        pipelining: one write, no round trip nor thread hand-over between them); what is
        not answered cleanly so (a 401, a connection closed, an answer this reader does not
        take) is asked again one by one, as :meth:`request` asks."""
        got: list[tuple[int, str | None]] = []
        conn = self._connection()
        fields = _fields(ACCEPT, self._auth.get(who))
        try:
            conn.send([("HEAD", path) for path in paths], fields)
            for _ in paths:
                one = conn.receive(True, 0)
                got.append((one.status, one.headers.get("Docker-Content-Digest")))
                if not conn.is_open:
                    break  # closed after this answer: the rest is asked again
        except (OSError, ValueError, UnicodeError):
            pass
        if len(got) < len(paths):
            # where the registry's answers are is not known: the next request opens anew
            conn.close()
        out: list[tuple[int, str | None]] = []
        for n, path in enumerate(paths):
            if n < len(got) and got[n][0] != 401:
                out.append(got[n])
            else:
                again = self.request("HEAD", path, ACCEPT, who)
                out.append((again.status, again.headers.get("Docker-Content-Digest")))
        return out

    def _exchange(
        self, method: str, path: str, accept: str | None, authorization: str | None
    ) -> Answer:
        """One request; once more on a fresh connection when a kept-alive one was closed
        by the other side (every request here is an idempotent read)."""
        fields = _fields(accept, authorization)
        for attempt in (0, 1):
            conn = self._connection()
            try:
                return conn.exchange(method, path, fields, MAX_PAGE_BYTES)
            except TooLarge:
                raise Fallback("a response larger than a listing page") from None
            except (OSError, ValueError) as exc:
                if _is_tls_error(exc):
                    raise Fallback("TLS") from None
                if attempt:
                    raise Fallback("the connection failed") from None
        raise AssertionError("unreachable")

    def authenticate(self, who: str, sent: str | None, header: str) -> None:
        """Answer a challenge for ``who`` (one thread at a time: the others then use what
        it got)."""
        with self._auth_lock:
            if self._auth.get(who) != sent:
                return  # answered by another thread meanwhile
            self._auth[who] = self._authorization(who, sent, header)

    def _authorization(self, who: str, sent: str | None, header: str) -> str:
        """The registry client's answer to a ``WWW-Authenticate`` challenge."""
        from leakscan.sources.auth import lookup_credentials, parse_challenges

        if self.target.options.creds is not None:
            raise Fallback("credentials given")  # not read here: the flags fall back
        challenges = parse_challenges(header)
        bearer = next((c for c in challenges if c.scheme == "bearer" and c.get("realm")), None)
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        creds = lookup_credentials(self.host, who)
        if creds is not None and creds.registry_token is not None:
            given = f"Bearer {creds.registry_token}"
            if sent == given:
                raise Fallback("the registry token was refused")
            return given
        if bearer is not None:
            return f"Bearer {self._token(who, bearer, creds)}"
        if basic is not None and creds is not None and creds.has_password:
            if sent is not None and sent.startswith("Basic "):
                raise Fallback("the credentials were refused")
            pair = f"{creds.username}:{creds.password}".encode()
            return f"Basic {base64.b64encode(pair).decode('ascii')}"
        raise Fallback("a challenge this path does not answer")

    def _token(self, who: str, challenge: Challenge, creds: Credentials | None) -> str:
        """A Bearer token from the challenge's realm for pulling ``who``, asked for as the
        registry client asks (an identity token's exchange is left to it)."""
        parts = urlsplit(challenge.get("realm") or "")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise Fallback("an invalid token realm")
        if not is_loopback(parts.netloc) and _proxied():
            raise Fallback("a proxy")
        query = {"scope": challenge.get("scope") or f"repository:{who}:pull"}
        service = challenge.get("service")
        if service:
            query["service"] = service
        authorization = None
        if creds is not None:
            if creds.identity_token is not None:
                raise Fallback("an identity token")
            pair = f"{creds.username}:{creds.password}".encode()
            authorization = f"Basic {base64.b64encode(pair).decode('ascii')}"
            query["account"] = creds.username
        path = (parts.path or "/") + "?" + (f"{parts.query}&" if parts.query else "")
        path += urlencode(query)
        tls = None
        if parts.scheme == "https":
            tls = self.tls or _verifying_context(self.target)
        try:
            conn = Connection(parts.netloc, self.timeout, tls)
            try:
                got = conn.exchange("GET", path, _fields(None, authorization), MAX_PAGE_BYTES)
            finally:
                conn.close()
        except (OSError, ValueError):
            raise Fallback("the token server") from None
        if got.status != 200:
            raise Fallback("the token server refused")
        try:
            answer: Any = json.loads(got.body)
        except ValueError:
            raise Fallback("the token server's answer") from None
        token = (
            answer.get("token") or answer.get("access_token") if isinstance(answer, dict) else None
        )
        if not isinstance(token, str) or not token:
            raise Fallback("no token")
        return token

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()


def _fields(accept: str | None, authorization: str | None) -> dict[str, str]:
    """A request's header fields, as the registry client sends them."""
    fields = {"User-Agent": USER_AGENT}
    if accept is not None:
        fields["Accept"] = accept
    if authorization is not None:
        fields["Authorization"] = authorization
    return fields


def _is_tls_error(exc: BaseException) -> bool:
    """Whether ``exc`` is TLS's (ssl is loaded only when a registry speaks it)."""
    ssl_module = sys.modules.get("ssl")
    return ssl_module is not None and isinstance(exc, ssl_module.SSLError)


def _proxied() -> bool:
    """Whether the environment names a proxy (requests would send through it)."""
    return any(os.environ.get(v) or os.environ.get(v.upper()) for v in _PROXY_VARS)


def _verifying_context(target: Target) -> ssl.SSLContext:
    """TLS as the registry client verifies it (requests' default CA bundle, a bundle a
    variable names, the host's certs.d CAs); Fallback for what this path does not do
    (client certificates, --ca-file, no verification)."""
    import ssl

    assert target.host is not None
    options = target.options
    if options.client_cert(target.host) is not None:
        raise Fallback("a TLS client certificate")
    verify = options.verify(target.host)
    if verify is False:
        raise Fallback("no TLS verification")
    if verify is True:
        import certifi

        verify = certifi.where()
    return ssl.create_default_context(cafile=verify)


def _speaks_tls(host: str, timeout: float) -> bool:
    """Whether ``host`` answers a TLS handshake at all (no certificate checked: only which
    scheme to use is asked here, with no CA bundle loaded for a plain-HTTP registry)."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        conn = Connection(host, timeout, ctx)
    except ValueError:
        raise Fallback("cannot connect") from None
    try:
        conn.open()
    except ssl.SSLError:
        return False
    except (OSError, ValueError):
        raise Fallback("cannot connect") from None
    finally:
        conn.close()
    return True


def connect(target: Target) -> Wire:
    """The registry's scheme, as the registry client finds it (HTTPS; plain HTTP when
    asked, or for a loopback registry that does not speak TLS), checked with ``GET /v2/``:
    200, or a 401 whose challenge is answered; else Fallback."""
    host = target.host
    assert host is not None
    options = target.options
    loopback = is_loopback(host)
    if not loopback and _proxied():
        raise Fallback("a proxy")
    if options.plain_http:
        return _first_contact(Wire(target, None), None)
    if loopback:
        # A loopback registry is asked in plain HTTP first: a registry's answer to it means
        # the port speaks no TLS (a TLS port answers plain HTTP with a 400, or hangs up), so
        # the registry client, which tries TLS first there, would have found plain HTTP too.
        # This spares the TLS handshake that fails and the ssl module's import.
        plain = Wire(target, None)
        try:
            got = plain._connection().exchange("GET", "/v2/", _fields(None, None), MAX_PAGE_BYTES)
        except (OSError, ValueError):
            got = None
        if got is not None and got.status in (200, 401) and got.headers.get(API_VERSION):
            return _first_contact(plain, got)
        plain.close()
        if not _speaks_tls(host, options.timeout):
            raise Fallback("neither plain HTTP nor TLS")
    return _first_contact(Wire(target, _verifying_context(target)), None)


def _first_contact(wire: Wire, got: Answer | None) -> Wire:
    """``wire`` once its ``GET /v2/`` (``got``, when asked already) is 200, or a 401 that
    was answered; else Fallback."""
    try:
        # as the registry client's first contact: a 401 is answered (for its root), not
        # asked again
        if got is None:
            got = wire._exchange("GET", "/v2/", None, None)
        if got.status == 401:
            wire.authenticate("catalog", None, got.headers.get("WWW-Authenticate", "") or "")
        elif got.status != 200:
            raise Fallback("GET /v2/ was not 200")
    except BaseException:
        wire.close()
        raise
    return wire


def paged(wire: Wire, path: str, key: str, who: str = "catalog") -> list[str]:
    """Every string of ``key`` in a paginated listing (``Link: <...>; rel="next"``
    followed by its path and query, as the full walk does)."""
    seen: dict[str, None] = {}
    for _ in range(MAX_PAGES):
        got = wire.request("GET", path, None, who)
        if got.status != 200:
            raise Fallback(f"a listing answered {got.status}")
        try:
            body: Any = json.loads(got.body)
        except ValueError:
            raise Fallback("a listing that is not JSON") from None
        names = body.get(key) if isinstance(body, dict) else None
        if names is None and isinstance(body, dict):
            names = []  # a repository whose tags were all deleted: none, as the full walk reads it
        if not isinstance(names, list):
            raise Fallback("a listing without its list")
        for name in names:
            if isinstance(name, str):
                seen.setdefault(name)
        links = got.headers.get_all("Link") or []
        if not links:
            return list(seen)
        found = [_NEXT.fullmatch(part) for link in links for part in link.split(",")]
        nexts = [x.group(1) for x in found if x is not None]
        if len(nexts) != 1 or len(found) != 1:
            raise Fallback("a Link header this path does not read")
        parts = urlsplit(nexts[0])
        path = parts.path + (f"?{parts.query}" if parts.query else "")
    raise Fallback("too many pages")


# --- the re-audit ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Quick:
    """What the re-audit needs besides the target (the full audit's AuditOptions, as far
    as an unchanged registry uses them)."""

    db: str
    settings: str  # the key kept reports are filed under (memo.settings_key)
    repos: tuple[str, ...] = ()
    repos_from: str | None = None
    tag_pattern: str | None = None
    new_only: bool = False
    since: float | None = None


# a tag's place in the walk, and the digest it names: (repository, tag, digest)
Named = tuple[str, str, str]
# a (repository, digest) asked for its referrers, and the registry's answer
Probe = tuple[tuple[str, str], Answer]


def _digests(
    wire: Wire, repos: list[str], tag_filter: re.Pattern[str] | None, stop: threading.Event
) -> Iterator[Named]:
    """Each (repository, tag, digest the registry names now) in the walk's order. Tags are
    listed and HEADs sent ``THREADS`` at a time, a repository's HEADs as soon as its tags
    are in; nothing more is sent once ``stop`` is set."""

    def listing(repository: str) -> list[str]:
        return sorted(paged(wire, f"/v2/{repository}/tags/list?n={PAGE}", "tags", repository))

    def digests(repository: str, tags: list[str]) -> list[str]:
        paths = [f"/v2/{repository}/manifests/{tag}" for tag in tags]
        named = []
        for status, digest in wire.heads(repository, paths):
            if status != 200 or not digest:
                raise Fallback("a tag that does not name its digest")
            named.append(digest)
        return named

    pool = _Pool(THREADS)
    try:
        lists = [pool.submit(listing, r) for r in repos]
        heads: list[tuple[str, list[str], _Job]] = []
        for repository, names in zip(repos, lists, strict=True):
            tags = [t for t in names.result() if tag_filter is None or tag_filter.search(t)]
            if stop.is_set():
                raise Fallback("stopped")
            if not all(_TAG.fullmatch(t) for t in tags):
                raise Fallback("a tag this path does not put in a URL")
            if tags:
                # a repository's HEADs in one go, as soon as its tags are in
                heads.append((repository, tags, pool.submit(digests, repository, tags)))
        for repository, tags, head in heads:
            for tag, digest in zip(tags, head.result(), strict=True):
                yield repository, tag, digest
    finally:
        # on a Fallback, nothing more is sent than what is on the wire already
        pool.close()


class _Job:
    """A call handed to a :class:`_Pool`, and what it returned or raised."""

    __slots__ = ("call", "done", "value", "error")

    def __init__(self, call: Callable[[], Any]) -> None:
        self.call = call
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def result(self) -> Any:
        """What the call returned, once it has; what it raised, raised."""
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.value


class _Pool:
    """``size`` threads running calls in the order they are handed in (a thread pool
    without :mod:`concurrent.futures`, whose import brings :mod:`logging`: the walk starts
    before the rest of this process has imported anything)."""

    def __init__(self, size: int) -> None:
        self._jobs: deque[_Job] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._run, name=f"leakscan-reaudit-{n}", daemon=True)
            for n in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, call: Callable[..., Any], *args: Any) -> _Job:
        job = _Job(lambda: call(*args))
        with self._ready:
            self._jobs.append(job)
            self._ready.notify()
        return job

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._jobs and not self._closed:
                    self._ready.wait()
                if not self._jobs:
                    return
                job = self._jobs.popleft()
            try:
                job.value = job.call()
            except BaseException as exc:  # noqa: BLE001 - raised by the job's result()
                job.error = exc
            finally:
                job.done.set()

    def close(self) -> None:
        """Drop the calls not started, wait for those running."""
        with self._ready:
            for job in self._jobs:
                job.error = Fallback("stopped")
                job.done.set()
            self._jobs.clear()
            self._closed = True
            self._ready.notify_all()
        for thread in self._threads:
            thread.join()


class Walk:
    """The registry's side of a re-audit, on a thread of its own from the moment the
    target is known: the catalog, each repository's tags and each tag's digest.

    Most of a re-audit's time is the registry answering a request per tag; meanwhile this
    process imports the model, reads the audit database and decodes the kept reports, which
    is most of the rest of its work. :meth:`result` gives the walk or raises what stopped
    it (a Fallback, mostly)."""

    def __init__(
        self,
        target: Target,
        repos: Sequence[str],
        repos_from: str | None,
        tag_filter: re.Pattern[str] | None,
    ) -> None:
        self._stop = threading.Event()
        self._found: list[Named] = []
        # the registry's referrers answer for the first tag walked, when it has the API
        # (None: it has not)
        self.probe: Probe | None = None
        self._error: BaseException | None = None
        # while the walk runs its threads need the interpreter only briefly for each
        # answer, and get it sooner than Python's default 5 ms from this process's imports
        # and decoding; the interval is put back once the walk is over
        self._interval: float | None = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH)
        self._thread = threading.Thread(
            target=self._run,
            args=(target, tuple(repos), repos_from, tag_filter),
            name="leakscan-reaudit-walk",
            daemon=True,
        )
        self._thread.start()

    def _run(
        self,
        target: Target,
        repos: tuple[str, ...],
        repos_from: str | None,
        tag_filter: re.Pattern[str] | None,
    ) -> None:
        try:
            wire = connect(target)
            try:
                catalog = f"/v2/_catalog?n={PAGE}"
                names = repository_names(
                    repos, repos_from, lambda: paged(wire, catalog, "repositories")
                )
                if not all(_REPO.fullmatch(r) for r in names):
                    raise Fallback("a repository name this path does not put in a URL")
                self._found = list(_digests(wire, names, tag_filter, self._stop))
                if self._found:
                    repository, _, digest = self._found[0]
                    got = _referrers_answer(wire, repository, digest)
                    if got.status not in NO_REFERRERS_API:
                        self.probe = ((repository, digest), got)
            finally:
                wire.close()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by result()
            self._error = exc

    def result(self) -> list[Named]:
        """Every (repository, tag, digest) walked; what stopped the walk, raised."""
        self._join()
        if self._error is not None:
            raise self._error
        return self._found

    def stop(self) -> None:
        """Send nothing more; return once what is on the wire is answered."""
        self._stop.set()
        self._join()

    def _join(self) -> None:
        self._thread.join()
        if self._interval is not None:
            sys.setswitchinterval(self._interval)
            self._interval = None


def _referrers_answer(wire: Wire, repository: str, digest: str) -> Answer:
    """The registry's answer to the referrers API (OCI distribution 1.1) for ``digest``."""
    if not _DIGEST.fullmatch(digest):
        raise Fallback("a digest this path does not put in a URL")
    return wire.request("GET", f"/v2/{repository}/referrers/{digest}", OCI_INDEX, repository)


def _listing(got: Answer) -> Listing:
    """What a referrers answer of a registry that has the API lists (as the full audit
    reads it)."""
    if got.status == 200:
        try:
            return listing_of(json.loads(got.body))
        except ValueError:
            return UNLISTED
    if got.status in NO_REFERRERS_API:
        raise Fallback("a subject the referrers API does not answer for")
    return UNLISTED


def _referrers_moved(
    target: Target, probe: Probe | None, walked: list[Named], entries: list[Entry]
) -> bool:
    """Whether the referrers of a walked tag are not those its kept reports read (see
    :mod:`leakscan.audit.referrers`): on a registry with the API (``probe``: its answer
    for the first tag walked), each other subject's listing is asked now (``THREADS`` at a
    time, on connections of their own)."""
    by_tag: dict[tuple[str, str], list[m.ImageReport]] = {}
    for repository, tag, report in entries:
        by_tag.setdefault((repository, tag or ""), []).append(report)
    pairs = {
        (repository, tag): referrers.subjects(repository, digest, by_tag.get((repository, tag), []))
        for repository, tag, digest in walked
    }
    listed: dict[tuple[str, str], Listing] | None = None
    if probe is not None:
        asked, answer = probe
        listed = {asked: _listing(answer)}
        wanted = sorted({pair for both in pairs.values() for pair in both} - {asked})
        if wanted:
            wire = connect(target)
            pool = _Pool(THREADS)
            try:
                jobs = [pool.submit(_referrers_answer, wire, r, d) for r, d in wanted]
                listed.update(
                    (pair, _listing(job.result())) for pair, job in zip(wanted, jobs, strict=True)
                )
            finally:
                pool.close()
                wire.close()
    return any(referrers.moved(by_tag.get(tag, []), both, listed) for tag, both in pairs.items())


def _tag_filter(pattern: str | None) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern) if pattern else None
    except re.error:
        raise Fallback("a --tag that is no expression") from None


def _reachable(target: Target, db: str) -> None:
    """Fallback unless ``target`` is a registry this path reaches and ``db`` exists."""
    if target.host is None or target.host in ("docker.io", "index.docker.io"):
        raise Fallback("not a registry this path reaches")
    if not os.path.isfile(db):
        raise Fallback("no audit database")


def _expected(
    quick: Quick, known: dict[tuple[str, str], str], tag_filter: re.Pattern[str] | None
) -> list[Named]:
    """The walk as it goes when nothing changed: the known tags of the repositories the
    options select among the known ones, and of ``--tag``, in the walk's order."""
    chosen = repository_names(quick.repos, quick.repos_from, lambda: {r for r, _ in known})
    tags: dict[str, list[tuple[str, str]]] = {}
    for (repository, tag), digest in known.items():
        tags.setdefault(repository, []).append((tag, digest))
    return [
        (repository, tag, digest)
        for repository in chosen
        for tag, digest in sorted(tags.get(repository, ()))
        if tag_filter is None or tag_filter.search(tag)
    ]


def _prefetched(
    db: AuditDb, settings: str, expected: list[Named]
) -> dict[str, tuple[m.ImageReport, ...] | Exception]:
    """The kept reports of the ``expected`` digests, decoded (a decoding that fails is kept
    as its error: it matters only if its tag is walked)."""
    from leakscan.audit.memo import MemoError, decode_reports

    out: dict[str, tuple[m.ImageReport, ...] | Exception] = {}
    for digest, value in db.reports(settings, sorted({d for *_, d in expected})).items():
        try:
            out[digest] = decode_reports(value)
        except MemoError as exc:
            out[digest] = exc
    return out


def _entries(
    target: Target, walked: list[Named], decoded: dict[str, tuple[m.ImageReport, ...] | Exception]
) -> list[Entry]:
    """The audit's images of the ``walked`` tags, from their kept reports."""
    entries: list[Entry] = []
    for repository, tag, digest in walked:
        reports = decoded.get(digest)
        if reports is None:
            raise Fallback("a kept report is missing")
        if isinstance(reports, Exception):
            raise Fallback("a kept report does not read back")
        reference = f"{target.host}/{repository}:{tag}"
        entries.extend((repository, tag, _named(r, reference)) for r in reports)
    return entries


# an image's text in the JSON report (leakscan.audit.report.image_text)
Render = Callable[["AuditedImage"], str]


def reaudit(target: Target, quick: Quick, walk: Walk | None = None) -> AuditReport:
    """The audit of ``target`` when nothing changed since the last one: the report the
    full audit makes, from the audit database alone. Fallback (nothing written) on
    anything else. ``walk``: the registry's side, started already (else started here)."""
    return _reaudit(target, quick, walk, None)[0]


def _reaudit(
    target: Target, quick: Quick, walk: Walk | None, render: Render | None
) -> tuple[AuditReport, list[str] | None]:
    """:func:`reaudit`, and with ``render`` each image's text, made while the registry
    answers, for the images the audit would report if nothing changed: the texts are
    returned when the images reported are those (else None)."""
    from leakscan.audit.result import AuditReport, AuditStats, audited, kept_layer_ids, record

    t0 = time.monotonic()
    started = time.time()
    tag_filter = _tag_filter(quick.tag_pattern)
    own = walk is None
    try:
        if walk is None:
            _reachable(target, quick.db)
            walk = Walk(target, quick.repos, quick.repos_from, tag_filter)
        db = AuditDb(quick.db)
        try:
            known = db.remembered(target.name, quick.settings)
            if not known:
                raise Fallback("nothing kept")
            # while the registry answers
            expected = _expected(quick, known, tag_filter)
            decoded = _prefetched(db, quick.settings, expected)
            guessed: list[Entry] | None = None
            guess: tuple[AuditedImage, ...] = ()
            texts: list[str] | None = None
            if render is not None:
                try:
                    guessed = _entries(target, expected, decoded)
                    # the sightings as they are: record() leaves a known one as it is
                    guess = audited(
                        guessed, db.sightings(target.name), -1, quick.new_only, quick.since
                    )
                    texts = [render(image) for image in guess]
                except (Fallback, KeyError):  # a finding never seen: not guessed
                    texts = None
            walked = walk.result()
            for repository, tag, digest in walked:
                if known.get((repository, tag)) != digest:
                    raise Fallback("a tag that is new, or names another digest")
            if guessed is not None and walked == expected:
                entries = guessed
            else:
                entries = _entries(target, walked, decoded)
            if _referrers_moved(target, walk.probe, walked, entries):
                raise Fallback("referrers came or went, or could not be listed last time")
            lids = kept_layer_ids(e[2] for e in entries)
            # every tag is as it was: from here on this is the audit, written as the full one is
            audit_id = db.start(target.name, started)
            now = time.time()
            sightings = record(db, target.name, audit_id, entries, now)
            db.used_reports(quick.settings, (digest for *_, digest in walked), now)
            db.finish(audit_id, now)
        finally:
            db.close()
    finally:
        if own and walk is not None:
            walk.stop()
    images = audited(entries, sightings, audit_id, quick.new_only, quick.since)
    if images != guess:
        texts = None  # not the images guessed: the report writes its own
    stats = AuditStats(
        repositories=len({r for r, _, _ in walked}),
        images=len(images),
        layers_total=len(lids),
        layers_unique=len(set(lids)),
        layers_scanned=0,
        layers_cached=len(set(lids)),
        bytes_scanned=0,
        seconds=round(time.monotonic() - t0, 3),
    )
    report = AuditReport(
        target.name, images, (), stats, audit_id, started, quick.new_only, quick.since
    )
    return report, texts


def _named(report: m.ImageReport, reference: str) -> m.ImageReport:
    return replace(report, reference=reference)


# --- the command ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What the command's arguments resolve to, before the model is imported."""

    target: Target
    db: str
    config: FileConfig


def _plan(args: Args) -> Plan | None:
    """The target and the audit database, as the full command would resolve them; None
    for settings the full path alone handles."""
    from leakscan.settings import load_config
    from leakscan.store import FILE_NAME, default_location

    config = load_config(args.config)
    if config.baseline is not None or config.detect_secrets_plugins:
        return None
    # the result store as the command resolves it (leakscan.command.cache_spec)
    cache_dir = Path(args.cache_dir) if args.cache_dir is not None else None
    store: str | None
    if args.no_cache:
        store = None
    elif args.cache:
        store = args.cache
    elif cache_dir is not None:
        store = str(cache_dir / FILE_NAME)
    else:
        store = str(default_location())
    if store is not None and "://" in store:
        return None  # a shared store: the full audit opens it, and says what it thinks
    db = audit_db_path(args.db, cache_dir, store)
    options = RegistryOptions(plain_http=args.plain_http)
    return Plan(parse_target(args.target, options), db, config)


def _quick(args: Args, plan: Plan) -> Quick:
    """What the re-audit needs: the key its kept reports are filed under (this imports the
    model), the selection, --since read as the command reads it (a bad one: Fallback, and
    the full command says what is wrong)."""
    from leakscan.audit.memo import settings_key
    from leakscan.store.keys import DEFAULT_DETECTORS, DEFAULT_LIMITS, fingerprint_of

    config = plan.config
    level = args.level or config.min_confidence or "medium"
    settings = settings_key(
        # detection_fingerprint(DetectorConfig(), ArchiveLimits(), None), as the command
        # has it without --max-file-size or a plugin, without importing the scanners' classes
        fingerprint_of(DEFAULT_DETECTORS, DEFAULT_LIMITS, None),
        level,
        frozenset(),
        config.ignore_rules,
        config.ignore_paths,
    )
    after = since_time(args.since) if args.since is not None else None
    return Quick(
        plan.db, settings, tuple(args.repo), args.repos_from, args.tag, args.new_only, after
    )


def answer(argv: Sequence[str]) -> int | None:
    """The exit status of ``leakscan audit`` with ``argv``, its report written, when the
    registry is unchanged since the last audit; None (nothing written, nothing said) when
    the full command must run."""
    args = parse(argv)
    if args is None or sys.stderr.isatty():
        return None  # a terminal gets the progress bar of the full command
    walk = None
    try:
        plan = _plan(args)
        if plan is None:
            return None
        tag_filter = _tag_filter(args.tag)
        _reachable(plan.target, plan.db)
        # the registry's side starts now: its answers come while the rest is imported and
        # prepared
        walk = Walk(plan.target, args.repo, args.repos_from, tag_filter)
        render = _image_text() if args.format == "json" else None
        report, texts = _reaudit(plan.target, _quick(args, plan), walk, render)
    except Exception:  # noqa: BLE001 - whatever it is, the full audit does it and says it
        return None
    finally:
        if walk is not None:
            walk.stop()
    # from here on the audit is recorded: no second run, whatever happens; a failure is
    # one line, as the full command's guard says it
    try:
        return _write(report, args, texts)
    except OSError as exc:  # stdout closed under us
        _say(f"error: {exc.filename or ''}: {exc.strerror or exc}")
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback
        _say(f"internal error ({type(exc).__name__}); run with --debug for details")
    return 2


def _say(message: str) -> None:
    sys.stderr.write(f"leakscan: {' '.join(message.split())}\n")


def _image_text() -> Render:
    from leakscan.audit.report import image_text

    return image_text


def _write(report: AuditReport, args: Args, images: list[str] | None = None) -> int:
    from leakscan.audit.report import render_json, render_table

    if args.format == "json":
        text = render_json(report, images)
    elif args.format == "html":
        from leakscan.report.html import render_html

        text = render_html(report)
    else:
        text = render_table(report)
    if args.output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        try:
            Path(args.output).write_text(text, encoding="utf-8", errors="backslashreplace")
        except OSError as exc:
            _say(f"error: cannot write {args.output}: {exc.strerror}")
            return 2
    if not report.complete:
        return 2
    return 1 if report.findings else 0
