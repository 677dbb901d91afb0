"""The adapter's HTTP server (standard library only): the API routes, Harbor's Bearer token,
TLS, the probes, ``/metrics``, and a graceful stop on SIGTERM or SIGINT."""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import re
import signal
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from leakscan import __version__
from leakscan.harbor import api
from leakscan.harbor.jobs import QueueFull, Scheduler, Settings, ShuttingDown, State
from leakscan.harbor.logs import JsonLog
from leakscan.harbor.report import SeverityMap, harbor_report
from leakscan.scan import ScanOptions

_REPORT_PATH = re.compile(r"/api/v1/scan/([A-Za-z0-9._-]{1,128})/report")


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``leakscan serve --harbor`` is told."""

    host: str = "127.0.0.1"
    port: int = 8080
    # Harbor's credential for the adapter (None: no authentication asked)
    token: str | None = field(default=None, repr=False)
    tls_cert: str | None = None
    tls_key: str | None = None
    settings: Settings = field(default_factory=Settings)
    severities: SeverityMap = field(default_factory=SeverityMap)
    # the scan settings every scan starts from (config file, confidence, store...)
    options: ScanOptions = field(default_factory=ScanOptions)
    # how the adapter reaches registries over TLS
    ca_file: str | None = None
    tls_verify: bool = True
    # the seconds Harbor is told to wait before asking for a pending report again
    refresh_after: int = 5
    # seconds running scans get to end on SIGTERM
    grace: float = 30.0
    # where the bound HOST:PORT is written once the server listens (port 0 picks one)
    address_file: str | None = None


def scan_options(config: ServerConfig, request: api.ScanRequest) -> ScanOptions:
    """One request's scan settings: the adapter's, with the request's registry and
    credentials; secrets masked always; one process per scan (the adapter runs several)."""
    registry = request.registry_options(config.ca_file, config.tls_verify)
    return replace(config.options, registry=registry, show_secrets=False, workers=1)


def metadata(config: ServerConfig, rules: str) -> dict[str, Any]:
    """The ``ScannerAdapterMetadata`` document."""
    return {
        "scanner": {"name": "leakscan", "vendor": "leakscan", "version": __version__},
        "capabilities": [
            {
                "type": "vulnerability",
                "consumes_mime_types": list(api.CONSUMES),
                "produces_mime_types": list(api.PRODUCES),
            }
        ],
        "properties": {
            "harbor.scanner-adapter/scanner-type": "secret-leak",
            "org.leakscan/finds": (
                "secrets leaked into image layers (present, deleted or overwritten files), "
                "the history and the config"
            ),
            "org.leakscan/rules": rules or "not loaded yet",
            "org.leakscan/min-confidence": config.options.min_confidence,
            "org.leakscan/severity-map": config.severities.describe(),
        },
    }


def _rss(pid: int | str = "self") -> int | None:
    """Resident bytes of a process (Linux ``/proc``; None elsewhere or when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class Adapter:
    """The scheduler and what the HTTP handler needs around it."""

    def __init__(self, config: ServerConfig, log: JsonLog) -> None:
        self.config = config
        self.log = log
        self.scheduler = Scheduler(config.settings, lambda r: scan_options(config, r), log)

    def authorized(self, headers: Any) -> bool:
        """Harbor's Bearer token (or its API-key header), compared in constant time."""
        token = self.config.token
        if token is None:
            return True
        given = headers.get("Authorization") or ""
        scheme, _, value = given.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            value.strip().encode(), token.encode()
        ):
            return True
        key = headers.get("X-ScannerAdapter-API-Key") or ""
        return bool(key) and hmac.compare_digest(key.encode(), token.encode())

    def metrics(self) -> dict[str, Any]:
        out = self.scheduler.snapshot()
        out["rss_bytes"] = _rss()
        return out


def _handler(adapter: Adapter) -> type[BaseHTTPRequestHandler]:
    log = adapter.log
    config = adapter.config

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = f"leakscan-harbor/{__version__}"
        sys_version = ""
        # a client that stalls mid-request does not hold a thread for ever
        timeout = 60

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # the access log below is ours, in JSON, without headers

        def _send(
            self,
            status: int,
            body: bytes = b"",
            ctype: str | None = None,
            headers: dict[str, str] | None = None,
        ) -> None:
            self.send_response(status)
            if ctype:
                self.send_header("Content-Type", ctype)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body and self.command != "HEAD":
                self.wfile.write(body)
            self._status = status

        def _json(self, status: int, doc: Any, ctype: str = "application/json") -> None:
            self._send(status, json.dumps(doc).encode(), ctype)

        def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
            self._send(status, api.error_body(message), api.MIME_ERROR, headers)

        def _route(self, method: str) -> None:
            began = time.monotonic()
            self._status = 0
            path = self.path.split("?", 1)[0]
            try:
                self._dispatch(method, path)
            except (BrokenPipeError, ConnectionResetError):
                self._status = 499  # the client left
            except Exception as exc:  # a bug: answer 500 and keep serving
                log("internal error", level="error", path=path, error=type(exc).__name__)
                if not self._status:
                    with contextlib.suppress(OSError):
                        self._error(500, "internal error")
            finally:
                log(
                    "http",
                    method=method,
                    path=path,
                    status=self._status,
                    ms=round(1000 * (time.monotonic() - began), 1),
                    client=self.client_address[0],
                )

        def _dispatch(self, method: str, path: str) -> None:
            if path == "/probe/healthy":
                self._send(200, b"ok\n", "text/plain")
                return
            if path == "/probe/ready":
                if adapter.scheduler.ready:
                    self._send(200, b"ready\n", "text/plain")
                else:
                    self._send(503, b"not ready\n", "text/plain")
                return
            fixed = ("/api/v1/metadata", "/api/v1/scan", "/metrics")
            if path not in fixed and not _REPORT_PATH.fullmatch(path):
                self._error(404, "no such endpoint")
                return
            if not adapter.authorized(self.headers):
                self._drain()
                self._error(401, "unauthorized", {"WWW-Authenticate": 'Bearer realm="leakscan"'})
                return
            if path == "/api/v1/scan":
                if method != "POST":
                    self._error(405, "POST only")
                    return
                self._scan()
                return
            if method != "GET":
                self._drain()
                self._error(405, "GET only")
                return
            if path == "/api/v1/metadata":
                self._json(200, metadata(config, adapter.scheduler.rules), api.MIME_METADATA)
            elif path == "/metrics":
                self._json(200, adapter.metrics())
            else:
                found = _REPORT_PATH.fullmatch(path)
                assert found is not None
                self._report(found.group(1))

        def _drain(self) -> None:
            """Read a small body nobody wants, so that the connection stays usable."""
            length = self._length()
            if length and length <= api.MAX_REQUEST_BYTES:
                self.rfile.read(length)
            elif length:
                self.close_connection = True

        def _length(self) -> int:
            try:
                return max(0, int(self.headers.get("Content-Length") or 0))
            except ValueError:
                return -1

        def _scan(self) -> None:
            length = self._length()
            if length < 0:
                self.close_connection = True
                self._error(400, "bad Content-Length")
                return
            if length > api.MAX_REQUEST_BYTES:
                self.close_connection = True
                self._error(413, f"a scan request is at most {api.MAX_REQUEST_BYTES} bytes")
                return
            body = self.rfile.read(length)
            try:
                request = api.parse_scan_request(body)
                scan_id = adapter.scheduler.submit(request)
            except api.RequestError as exc:
                self._error(exc.status, exc.message)
                return
            except QueueFull as exc:
                self._error(429, str(exc), {"Retry-After": str(config.refresh_after)})
                return
            except ShuttingDown as exc:
                self._error(503, str(exc))
                return
            self._json(202, {"id": scan_id}, api.MIME_SCAN_RESPONSE)

        def _report(self, scan_id: str) -> None:
            job = adapter.scheduler.get(scan_id)
            if job is None:
                self._error(404, f"no scan {scan_id}")
                return
            accept = self.headers.get("Accept")
            kind = api.report_kind(accept)
            if kind is None:
                self._error(501, f"this scanner produces {', '.join(api.PRODUCES)}")
                return
            state, report, error = job.state, job.report, job.error  # a consistent copy
            if state in (State.queued, State.running):
                self._send(302, b"", None, {"Refresh-After": str(config.refresh_after)})
                return
            if state is State.failed or report is None:
                self._error(500, error or "the scan failed")
                return
            if kind == "raw":
                from leakscan.report.json import report_dict

                self._send(200, json.dumps(report_dict(report)).encode(), api.MIME_RAW)
                return
            scanner = {"name": "leakscan", "vendor": "leakscan", "version": __version__}
            doc = harbor_report(
                report, job.request.artifact(), scanner, config.severities, job.finished_at
            )
            v10 = accept is not None and "harbor+json" in accept
            self._json(200, doc, api.MIME_REPORT_V10 if v10 else api.MIME_REPORT)

        def do_GET(self) -> None:  # noqa: N802
            self._route("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._route("POST")

        def do_PUT(self) -> None:  # noqa: N802
            self._route("PUT")

        def do_DELETE(self) -> None:  # noqa: N802
            self._route("DELETE")

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # the listen backlog: a burst of Harbor's requests waits instead of being refused
    request_queue_size = 128
    log: JsonLog | None = None

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that drops its connection (or a failed TLS handshake): one log line,
        # not socketserver's traceback on stderr
        import sys

        kind = sys.exc_info()[0]
        if self.log is not None:
            self.log(
                "connection error",
                level="warning",
                client=str(client_address[0]),
                error=kind.__name__ if kind else "unknown",
            )


def _write_address(path: str, address: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    Path(tmp).write_text(address + "\n")
    os.replace(tmp, path)


def serve(
    config: ServerConfig, log: JsonLog | None = None, stop: threading.Event | None = None
) -> int:
    """Run the adapter until SIGTERM or SIGINT (or ``stop`` is set); returns the exit status.
    Raises OSError when it cannot listen, ssl.SSLError for unusable TLS material."""
    log = log or JsonLog()
    stop = stop or threading.Event()
    adapter = Adapter(config, log)
    httpd = _Server((config.host, config.port), _handler(adapter))
    httpd.log = log
    scheme = "http"
    if config.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(config.tls_cert, config.tls_key)
        # the handshake happens in the request's thread, not in the accepting loop
        httpd.socket = context.wrap_socket(
            httpd.socket, server_side=True, do_handshake_on_connect=False
        )
        scheme = "https"
    host, port = str(httpd.server_address[0]), int(httpd.server_address[1])
    address = f"{host}:{port}"
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        handler: Callable[[int, Any], None] = lambda signum, frame: stop.set()  # noqa: E731
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, handler)
    adapter.scheduler.start()
    thread = threading.Thread(target=httpd.serve_forever, name="http", daemon=True)
    thread.start()
    log(
        "listening",
        address=address,
        url=f"{scheme}://{address}",
        auth="bearer" if config.token else "none",
        workers=config.settings.workers,
        queue_size=config.settings.queue_size,
        timeout=config.settings.timeout,
        result_ttl=config.settings.result_ttl,
    )
    if config.token is None and host not in ("127.0.0.1", "::1", "localhost"):
        log("no --auth-token-file: anyone who reaches the adapter can use it", level="warning")
    if config.address_file:
        _write_address(config.address_file, address)
    try:
        stop.wait()
        log("stopping: no new scans; running ones get the grace period", grace=config.grace)
        adapter.scheduler.shutdown(config.grace)
    finally:
        httpd.shutdown()
        httpd.server_close()
        for sig, old in previous.items():
            signal.signal(sig, old)
    log("stopped", **adapter.scheduler.snapshot())
    return 0
