"""What the Harbor adapter's tests share (the fixtures are in conftest.py): the images
pushed to the registry, the scan requests Harbor would send for them, and the adapter
process with a client for its API."""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# appended, not prepended: "conftest" must stay tests/conftest.py for the other tests
sys.path.append(str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parents[1] / "registry"))

import regkit  # noqa: E402
from imagebuilder import Image, Layer  # noqa: E402
from regkit import Registry, Secrets  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 240.0  # a cold machine compiles the rule catalog on the first start
POLL_TIMEOUT = 240.0
SCAN_REQUEST = "application/vnd.scanner.adapter.scan.request+json; version=1.1"
REPORT = "application/vnd.security.vulnerability.report; version=1.1"


@dataclass(frozen=True)
class Pushed:
    """An image in the registry, as Harbor names it in a scan request."""

    repository: str
    tag: str
    digest: str
    mime_type: str


@dataclass
class HarborWorld:
    """The registry, its credentials and what was pushed to it."""

    tmp: Path
    registry: Registry
    ca: Path
    secrets: Secrets
    leaky: Pushed
    clean: Pushed
    many: list[Pushed]
    tls: regkit.Tls
    # values that must never be in an answer or a log line
    forbidden: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"https://{self.registry.host}"

    @property
    def authorization(self) -> str:
        """What Harbor puts in ``registry.authorization``: the robot account's Basic pair."""
        pair = f"{self.registry.user}:{self.registry.password}".encode()
        return "Basic " + base64.b64encode(pair).decode()

    def scan_request(self, image: Pushed, **over: Any) -> dict[str, Any]:
        """A scan request shaped as Harbor sends it (the spec's ScanRequest, every field)."""
        body: dict[str, Any] = {
            "registry": {"url": self.url, "authorization": self.authorization},
            "artifact": {
                "repository": image.repository,
                "digest": image.digest,
                "tag": image.tag,
                "mime_type": image.mime_type,
            },
            "enabled_capabilities": [
                {"type": "vulnerability", "produces_mime_types": [REPORT], "parameters": None}
            ],
        }
        for key, value in over.items():
            body[key] = value
        return body


def _inspect_digest(registry: Registry, ca_dir: Path, ref: str) -> tuple[str, str]:
    out = regkit.run(
        ["skopeo", "inspect", "--raw", "--cert-dir", str(ca_dir),
         "--creds", f"{registry.user}:{registry.password}", f"docker://{registry.host}/{ref}"]
    )  # fmt: skip
    import hashlib

    raw = out.encode()
    doc = json.loads(raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest(), str(doc["mediaType"])


def _clean_image(n: int) -> Image:
    base = Layer(created_by="ADD rootfs.tar /").file("etc/os-release", "ID=leakscan-test\n")
    app = Layer(created_by="COPY . /app").file("app/main.py", f"print('hello {n}')\n" * 20)
    return Image(layers=[base, app], env=["PATH=/usr/bin:/bin"])


# --- the adapter as a process ------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Adapter:
    """One ``leakscan serve --harbor`` process."""

    proc: subprocess.Popen[bytes]
    host: str
    port: int
    token: str
    log_path: Path
    context: ssl.SSLContext | None = None

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = "",
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """One request; ``token`` "" is the right one, None none at all."""
        sent = dict(headers or {})
        given = self.token if token == "" else token
        if given is not None:
            sent["Authorization"] = f"Bearer {given}"
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            sent.setdefault("Content-Type", SCAN_REQUEST)
        if self.context is not None:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self.host, self.port, timeout=60, context=self.context
            )
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            conn.request(method, path, body=data, headers=sent)
            resp = conn.getresponse()
            return Answer(resp.status, dict(resp.getheaders()), resp.read())
        finally:
            conn.close()

    def scan(self, body: dict[str, Any]) -> str:
        answer = self.request("POST", "/api/v1/scan", body)
        assert answer.status == 202, (answer.status, answer.body)
        scan_id: str = answer.json()["id"]
        return scan_id

    def report(self, scan_id: str, accept: str = REPORT, timeout: float = POLL_TIMEOUT) -> Answer:
        """Poll the report until it is no longer 302 (as Harbor does)."""
        deadline = time.monotonic() + timeout
        while True:
            answer = self.request(
                "GET", f"/api/v1/scan/{scan_id}/report", headers={"Accept": accept}
            )
            if answer.status != 302:
                return answer
            assert int(answer.headers["Refresh-After"]) > 0
            if time.monotonic() > deadline or self.proc.poll() is not None:
                pytest.fail(f"report {scan_id} still pending after {timeout} s\n{self.log()}")
            time.sleep(0.1)

    def metrics(self) -> dict[str, Any]:
        answer = self.request("GET", "/metrics")
        assert answer.status == 200, answer.body
        out: dict[str, Any] = answer.json()
        return out

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log().splitlines():
            if line.strip():
                lines.append(json.loads(line))  # every line is JSON
        return lines

    def wait_for(self, what: str, test: Callable[[], bool], timeout: float = POLL_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not test():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                pytest.fail(f"waited {timeout} s for {what}\n{self.log()[-4000:]}")
            time.sleep(0.05)

    def stop(self, timeout: float = 120) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            pytest.fail(f"the adapter did not stop on SIGTERM in {timeout} s\n{self.log()}")


StartAdapter = Callable[..., Adapter]
