"""A small HTTP/1.1 client for the quick re-audit (:mod:`leakscan.audit.quick`): kept-alive
connections, plain or TLS, requests pipelined on one connection, answers read whole up to a
bound.

Why not :mod:`http.client`: importing it (its email parser, ssl) costs a re-audit more CPU
than the hundred HEADs it sends, and it is imported before the first request can go out,
while the registry sits idle. This module imports only :mod:`socket` and :mod:`threading`
level modules; :mod:`ssl` is imported by the caller only for a registry that speaks TLS.
Every request here is an idempotent read of a few kilobytes (a listing, a HEAD, a token).

Errors: :class:`OSError` for the transport (refused, reset, timed out, closed midway),
:class:`ValueError` for an answer this reader does not take (not HTTP/1.x, a header or a
chunk it cannot read), :class:`TooLarge` for a body over the bound.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    import ssl

# a header line, and header lines per answer, longer or more than this reader takes (as
# http.client bounds them)
MAX_LINE = 65536
MAX_FIELDS = 100
_IP = re.compile(r"[0-9.]+|[0-9A-Fa-f:.]+")
_UNSAFE_PATH = re.compile(r"[\x00-\x20\x7f]")
_UNSAFE_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class TooLarge(ValueError):
    """A body larger than the caller's bound."""


class Headers:
    """An answer's header fields in their order; names compared without case."""

    __slots__ = ("_fields",)

    def __init__(self, fields: Sequence[tuple[str, str]]) -> None:
        self._fields = [(name.lower(), value) for name, value in fields]

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first field called ``name``, else ``default``."""
        name = name.lower()
        return next((value for n, value in self._fields if n == name), default)

    def get_all(self, name: str) -> list[str]:
        """Every field called ``name``, in order."""
        name = name.lower()
        return [value for n, value in self._fields if n == name]


class Answer:
    """One answer, its body read whole."""

    __slots__ = ("status", "headers", "body", "keep_alive")

    def __init__(self, status: int, headers: Headers, body: bytes, keep_alive: bool) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        # whether the connection may carry the next request
        self.keep_alive = keep_alive


def split_host(host: str, default_port: int) -> tuple[str, int]:
    """``host[:port]`` or ``[v6]:port`` as (name, port)."""
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        name, _, port = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
    if port and not port.isdigit():
        raise ValueError(f"not a port: {port!r}")
    return name, int(port) if port else default_port


def _line(answer: BinaryIO) -> bytes:
    line = answer.readline(MAX_LINE + 1)
    if not line:
        raise ConnectionResetError("the connection closed before an answer")
    if len(line) > MAX_LINE or not line.endswith(b"\n"):
        raise ValueError("a line too long, or cut short")
    return line


def read_answer(answer: BinaryIO, head: bool, limit: int) -> Answer:
    """One answer from ``answer`` (a buffered binary file on the connection); ``head``: the
    answer to a HEAD (no body, whatever its Content-Length says); a body over ``limit``
    bytes is :class:`TooLarge`."""
    status_line = _line(answer)
    parts = status_line.split(None, 2)
    if len(parts) < 2 or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise ValueError("not an HTTP/1.x answer")
    if not (parts[1].isdigit() and len(parts[1]) == 3):
        raise ValueError("not a status")
    status = int(parts[1])
    if status < 200:
        raise ValueError("an interim answer")  # nothing here asks for one
    fields: list[tuple[str, str]] = []
    for _ in range(MAX_FIELDS + 1):
        line = _line(answer)
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] in (b" ", b"\t"):  # an obsolete folded line: part of the field above
            if not fields:
                raise ValueError("a folded line first")
            above, text = fields[-1]
            fields[-1] = (above, f"{text} {line.strip().decode('latin-1')}")
            continue
        key, colon, raw = line.partition(b":")
        if not colon or not key or key != key.strip():
            raise ValueError("a header field this reader does not take")
        fields.append((key.decode("latin-1"), raw.strip().decode("latin-1")))
    else:
        raise ValueError("too many header fields")
    headers = Headers(fields)
    tokens = ",".join(headers.get_all("connection")).lower()
    keep_alive = "close" not in tokens if parts[0] == b"HTTP/1.1" else "keep-alive" in tokens
    if head or status in (204, 304):
        return Answer(status, headers, b"", keep_alive)
    if "chunked" in ",".join(headers.get_all("transfer-encoding")).lower():
        return Answer(status, headers, _chunked(answer, limit), keep_alive)
    lengths = {v.strip() for v in headers.get_all("content-length")}
    if lengths:
        if len(lengths) != 1 or not next(iter(lengths)).isdigit():
            raise ValueError("a Content-Length this reader does not take")
        size = int(next(iter(lengths)))
        if size > limit:
            raise TooLarge("a body over the bound")
        body = answer.read(size)
        if len(body) != size:
            raise ConnectionResetError("the connection closed within a body")
        return Answer(status, headers, body, keep_alive)
    # neither: the body ends where the connection does
    body = answer.read(limit + 1)
    if len(body) > limit:
        raise TooLarge("a body over the bound")
    return Answer(status, headers, body, False)


def _chunked(answer: BinaryIO, limit: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        size_text = _line(answer).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ValueError("a chunk size this reader does not take") from None
        if size < 0:
            raise ValueError("a negative chunk size")
        if size == 0:
            break
        total += size
        if total > limit:
            raise TooLarge("a body over the bound")
        chunk = answer.read(size)
        if len(chunk) != size:
            raise ConnectionResetError("the connection closed within a chunk")
        chunks.append(chunk)
        if _line(answer).strip():
            raise ValueError("a chunk without its end")
    for _ in range(MAX_FIELDS + 1):  # trailer fields, read and left
        if _line(answer) in (b"\r\n", b"\n"):
            return b"".join(chunks)
    raise ValueError("too many trailer fields")


class Connection:
    """One connection to ``host`` (``host[:port]``, as the Host field names it), opened
    on first use and again after the other side closed it; TLS when ``tls`` is given."""

    def __init__(self, host: str, timeout: float, tls: ssl.SSLContext | None = None) -> None:
        self.host = host
        self.timeout = timeout
        self.tls = tls
        default = 443 if tls is not None else 80
        self._name, self._port = split_host(host, default)
        # as http.client and requests name the host: no port when it is the scheme's own
        bare = f"[{self._name}]" if ":" in self._name else self._name
        self._host_field = host if self._port != default else bare
        self._sock: socket.socket | None = None
        self._file: BinaryIO | None = None

    @property
    def is_open(self) -> bool:
        """Whether a connection is up (it may still have been closed by the other side)."""
        return self._sock is not None

    def open(self) -> None:
        """Connect (and shake hands, for TLS) unless connected."""
        if self._sock is not None:
            return
        sock = open_socket(self._name, self._port, self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                # a context that checks no host name is given none for an address (ssl
                # would send none, and naming it imports the idna codec)
                name = self._name if self.tls.check_hostname else sni_name(self._name)
                sock = self.tls.wrap_socket(sock, server_hostname=name)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._file = sock.makefile("rb")

    def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        file, sock, self._file, self._sock = self._file, self._sock, None, None
        if file is not None:
            file.close()
        if sock is not None:
            sock.close()

    def _head_line(self, method: str, path: str, fields: Mapping[str, str]) -> bytes:
        # a path or a value the registry handed back (a Link, a token realm) must not end
        # the request line or a field early, as http.client refuses them too
        if _UNSAFE_PATH.search(path) or any(_UNSAFE_VALUE.search(v) for v in fields.values()):
            raise ValueError("a control character in a request")
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._host_field}"]
        lines.append("Accept-Encoding: identity")
        lines += [f"{key}: {value}" for key, value in fields.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def send(self, requests: Sequence[tuple[str, str]], fields: Mapping[str, str]) -> None:
        """Write the (method, path) ``requests`` in one go (pipelined, when more than one),
        each with the header ``fields``."""
        data = b"".join(self._head_line(m, p, fields) for m, p in requests)
        self.open()
        assert self._sock is not None
        self._sock.sendall(data)

    def receive(self, head: bool, limit: int) -> Answer:
        """The next answer on this connection; the connection closed after it when the
        other side says it will close, and on any error."""
        if self._file is None:
            raise ConnectionResetError("not connected")
        try:
            got = read_answer(self._file, head, limit)
        except BaseException:
            self.close()
            raise
        if not got.keep_alive:
            self.close()
        return got

    def exchange(self, method: str, path: str, fields: Mapping[str, str], limit: int) -> Answer:
        """One request and its answer."""
        try:
            self.send([(method, path)], fields)
        except BaseException:
            self.close()
            raise
        return self.receive(method == "HEAD", limit)


def open_socket(name: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to ``name`` (ASCII: a host the audit's target took) on ``port``."""
    # the name as bytes: a str would be encoded with the idna codec, which is imported for it
    host: Any = name.encode("ascii")
    return socket.create_connection((host, port), timeout=timeout)


def sni_name(name: str) -> str | None:
    """The name to send in TLS's server name field: none for an address (as ssl does not
    send one for it anyway)."""
    return None if _IP.fullmatch(name) else name
