"""The quick re-audit's HTTP/1.1 client (leakscan.audit.wire) against a socket that answers
canned bytes: how answers end (length, chunks, the connection's close), kept-alive and
pipelined requests, what it refuses."""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from leakscan.audit.wire import (
    Connection,
    Headers,
    TooLarge,
    read_answer,
    sni_name,
    split_host,
)


class Canned:
    """A server on loopback for one connection: it reads ``requests`` requests (their
    header blocks), keeps them, answers ``reply`` and then closes when ``close``."""

    def __init__(self, reply: bytes, requests: int = 1, close: bool = False) -> None:
        self.reply = reply
        self.requests = requests
        self.close = close
        self.seen = b""
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            while self.seen.count(b"\r\n\r\n") < self.requests:
                data = conn.recv(65536)
                if not data:
                    return
                self.seen += data
            conn.sendall(self.reply)
            if not self.close:
                # hold the connection open until the client is done
                conn.recv(1)

    def join(self) -> None:
        self.thread.join(timeout=30)
        self.listener.close()


@contextmanager
def canned(reply: bytes, requests: int = 1, close: bool = False) -> Iterator[Canned]:
    server = Canned(reply, requests, close)
    try:
        yield server
    finally:
        server.join()


def answer(text: bytes, head: bool = False, limit: int = 1 << 20) -> tuple[int, bytes, bool]:
    got = read_answer(io.BufferedReader(io.BytesIO(text)), head, limit)  # type: ignore[arg-type]
    return got.status, got.body, got.keep_alive


def test_bodies_end_by_length_by_chunks_or_by_the_close() -> None:
    assert answer(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloNEXT") == (200, b"hello", True)
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    assert answer(chunked) == (200, b"hello world", True)
    assert answer(b"HTTP/1.1 200 OK\r\n\r\nto the end") == (200, b"to the end", False)
    # an answer to a HEAD has no body, whatever its length says
    assert answer(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", head=True) == (200, b"", True)
    assert answer(b"HTTP/1.1 204 No Content\r\n\r\n") == (204, b"", True)


def test_which_answers_keep_the_connection() -> None:
    assert answer(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")[2] is False
    assert answer(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")[2] is False
    kept = b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n"
    assert answer(kept)[2] is True


def test_headers_by_name_folded_lines_and_repeats() -> None:
    text = (
        b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm="x",\r\n'
        b'  service="y"\r\nLink: <a>\r\nlink: <b>\r\nContent-Length: 0\r\n\r\n'
    )
    got = read_answer(io.BufferedReader(io.BytesIO(text)), False, 10)  # type: ignore[arg-type]
    assert got.headers.get("www-authenticate") == 'Bearer realm="x", service="y"'
    assert got.headers.get_all("LINK") == ["<a>", "<b>"]
    assert got.headers.get("Docker-Content-Digest") is None
    assert Headers([("A", "1")]).get("b", "none") == "none"


@pytest.mark.parametrize(
    "text",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\nhello world",
    ],
    ids=["length", "chunked", "close"],
)
def test_a_body_over_the_bound_is_refused(text: bytes) -> None:
    assert answer(text, limit=11)[1] == b"hello world"
    with pytest.raises(TooLarge):
        answer(text, limit=10)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (b"", ConnectionResetError),
        (b"SSH-2.0-OpenSSH\r\n", ValueError),
        (b"HTTP/1.1 abc OK\r\n\r\n", ValueError),
        (b"HTTP/1.1 100 Continue\r\n\r\n", ValueError),
        (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", ValueError),
        (b"HTTP/1.1 200 OK\r\n folded first\r\n\r\n", ValueError),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", ValueError),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort", ConnectionResetError),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", ValueError),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n", ValueError),
        (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 101 + b"\r\n", ValueError),
        (b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70000 + b"\r\n\r\n", ValueError),
    ],
    ids=[
        "nothing",
        "not-http",
        "status",
        "interim",
        "no-colon",
        "folded-first",
        "two-lengths",
        "cut-short",
        "chunk-size",
        "chunk-end",
        "too-many-fields",
        "line-too-long",
    ],
)
def test_answers_it_does_not_take(text: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        answer(text)


def test_pipelined_requests_are_answered_in_order_on_one_connection() -> None:
    replies = b"".join(
        b"HTTP/1.1 200 OK\r\nDocker-Content-Digest: sha256:%d\r\nContent-Length: 40\r\n\r\n" % n
        for n in range(3)
    )
    with canned(replies, requests=3) as server:
        conn = Connection(server.host, 10)
        conn.send([("HEAD", f"/v2/r/manifests/{n}") for n in range(3)], {"Accept": "x/y"})
        digests = [conn.receive(True, 0).headers.get("docker-content-digest") for _ in range(3)]
        assert conn.is_open
        conn.close()
    assert digests == ["sha256:0", "sha256:1", "sha256:2"]
    requests = server.seen.decode().split("\r\n\r\n")[:3]
    port = server.host.split(":")[1]
    for n, request in enumerate(requests):
        lines = request.split("\r\n")
        assert lines[0] == f"HEAD /v2/r/manifests/{n} HTTP/1.1"
        assert f"Host: 127.0.0.1:{port}" in lines and "Accept: x/y" in lines


def test_a_connection_the_other_side_closes_is_closed_here() -> None:
    with canned(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbye", close=True) as server:
        conn = Connection(server.host, 10)
        got = conn.exchange("GET", "/v2/", {}, 100)
        assert (got.status, got.body, conn.is_open) == (200, b"bye", False)
    with canned(b"", close=True) as server:
        conn = Connection(server.host, 10)
        with pytest.raises(ConnectionResetError):
            conn.exchange("GET", "/v2/", {}, 100)
        assert not conn.is_open


def test_host_names_and_ports() -> None:
    assert split_host("127.0.0.1:5000", 80) == ("127.0.0.1", 5000)
    assert split_host("registry.example.internal", 443) == ("registry.example.internal", 443)
    assert split_host("[::1]:5000", 80) == ("::1", 5000)
    assert split_host("[::1]", 443) == ("::1", 443)
    with pytest.raises(ValueError):
        split_host("host:port", 80)
    # the Host field leaves out the scheme's own port, as http.client and requests do
    assert Connection("registry.example.internal:80", 1)._host_field == "registry.example.internal"
    assert Connection("[::1]:80", 1)._host_field == "[::1]"
    assert Connection("[::1]:5000", 1)._host_field == "[::1]:5000"
    # no server name is sent in TLS for an address
    assert sni_name("127.0.0.1") is None and sni_name("::1") is None
    assert sni_name("registry.example.internal") == "registry.example.internal"


def test_a_request_never_carries_a_control_character() -> None:
    """A path or a value the registry handed back (a Link, a token realm) cannot end the
    request line or a field early."""
    conn = Connection("127.0.0.1:1", 1)
    for path in ("/v2/x\r\nX-Injected: 1", "/v2/x y", "/v2/\x00"):
        with pytest.raises(ValueError):
            conn.send([("GET", path)], {})
    with pytest.raises(ValueError):
        conn.send([("GET", "/v2/")], {"Authorization": "Bearer a\r\nX-Injected: 1"})
    assert not conn.is_open  # refused before connecting
