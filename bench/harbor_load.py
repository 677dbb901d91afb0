"""Load on the Harbor adapter (issue 15): 200 scan requests in a minute against one
``leakscan serve --harbor`` process, as Harbor would send them for images in its registry.

    python bench/harbor_load.py                      # 200 requests over 60 s, 20 images
    python bench/harbor_load.py --images 200         # every request a different image

It generates ``--images`` small images (a base layer of random bytes, a layer with an .npmrc
holding a made-up npm token, an app layer), pushes them with skopeo to Debian's
``docker-registry`` on a free 127.0.0.1 port (plain HTTP, storage under
``bench/out/harbor/``), starts the adapter with a fresh result store, and sends the
requests evenly over ``--seconds`` (image ``n % images`` for request ``n``), each from its
own thread as soon as its time comes. Every id is polled until its report is final.

It prints: the POST latencies, every request's outcome (none may be lost: each gets a 202
with an id of its own and then a 200 report naming its digest and holding the planted
token's finding), how many scans ran (none duplicated: one per digest, as every request
falls in the adapter's reuse window), and the resident memory of the adapter and its scan
processes sampled every 0.25 s (bounded: the peak after the second half of the requests is
compared with the first half's). Exit status 0 when every check passes, 1 when one fails,
2 when a tool is missing or a step of the setup fails. The machine is shared and noisy:
latencies vary from run to run; the counts do not.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests"))

import registry as benchreg  # noqa: E402  (bench/registry.py: docker-registry start/stop)
from imagebuilder import Image, Layer, fake_token, write_oci_layout  # noqa: E402

REPORT = "application/vnd.security.vulnerability.report; version=1.1"


@dataclass
class Request:
    n: int
    digest: str
    sent: float = 0.0
    post_status: int = 0
    post_seconds: float = 0.0
    scan_id: str = ""
    final_status: int = 0
    final_at: float = 0.0
    report: dict[str, Any] = field(default_factory=dict)


def _http(port: int, method: str, path: str, token: str, body: Any = None,
          accept: str | None = None) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Authorization": f"Bearer {token}"}
    if accept:
        headers["Accept"] = accept
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/vnd.scanner.adapter.scan.request+json; version=1.1"
    try:
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def _tree_rss(pid: int) -> tuple[int, int]:
    """Resident bytes of ``pid`` and of all its descendants together."""

    def rss(p: int) -> int:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return 0
        return 0

    def children(p: int) -> list[int]:
        out: list[int] = []
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                text = (task / "children").read_text().split()
                out.extend(int(x) for x in text)
        except OSError:
            pass
        return out

    todo, kids = children(pid), 0
    while todo:
        p = todo.pop()
        kids += rss(p)
        todo.extend(children(p))
    return rss(pid), kids


def build_images(count: int, work: Path) -> list[tuple[Path, str]]:
    """``count`` OCI layouts, each with its own made-up npm token."""
    out = []
    for n in range(count):
        token = fake_token("npm")
        base = Layer(created_by="ADD rootfs.tar /").file("usr/lib/blob.bin", os.urandom(256 << 10))
        base.file("etc/os-release", "ID=bench\n")
        npmrc = Layer(created_by="RUN echo ... > /root/.npmrc").file(
            "root/.npmrc", f"//npm.example.internal/:_authToken={token}\n"
        )
        app = Layer(created_by="COPY . /app").file("app/main.py", f"print({n})\n" * 100)
        layout = write_oci_layout(work / f"img{n}", Image(layers=[base, npmrc, app]), tag="1")
        out.append((layout, token))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2, help="the adapter's scan processes")
    ap.add_argument("--queue-size", type=int, default=256)
    ap.add_argument("--workdir", default=str(HERE / "out"))
    args = ap.parse_args()
    for tool in ("docker-registry", "skopeo"):
        if benchreg.which(tool) is None:
            print(f"missing tool: {tool}", file=sys.stderr)
            return 2
    root = Path(args.workdir) / "harbor"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    env = dict(os.environ, PATH=benchreg.tool_path())
    policy = root / "policy.json"
    policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}')

    print(f"building and pushing {args.images} images ...", flush=True)
    images = build_images(args.images, root / "oci")
    reg = benchreg.start_registry(root / "registry", benchreg.which("docker-registry") or "")
    adapter: subprocess.Popen[bytes] | None = None
    try:
        digests: list[str] = []
        for n, (layout, _) in enumerate(images):
            dest = f"docker://{reg.host}/bench/img{n}:1"
            subprocess.run(["skopeo", "--policy", str(policy), "copy", "--quiet",
                            "--dest-tls-verify=false", f"oci:{layout}:1", dest],
                           check=True, env=env, capture_output=True)  # fmt: skip
            raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", dest],
                                 check=True, env=env, capture_output=True).stdout  # fmt: skip
            digests.append("sha256:" + hashlib.sha256(raw).hexdigest())
        token = secrets.token_hex(16)
        (root / "token").write_text(token)
        address = root / "address"
        log_path = root / "adapter.log"
        cmd = [sys.executable, "-m", "leakscan", "serve", "--harbor", "--listen", "127.0.0.1:0",
               "--address-file", str(address), "--auth-token-file", str(root / "token"),
               "--cache-dir", str(root / "cache"), "--workers", str(args.workers),
               "--queue-size", str(args.queue_size)]  # fmt: skip
        with open(log_path, "wb") as log:
            adapter = subprocess.Popen(cmd, stdout=log, stderr=log, cwd=REPO,
                                       start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 300
        while not address.exists() and time.monotonic() < deadline and adapter.poll() is None:
            time.sleep(0.05)
        if not address.exists():
            print(f"the adapter did not start:\n{log_path.read_text()[-3000:]}", file=sys.stderr)
            return 2
        port = int(address.read_text().strip().rsplit(":", 1)[1])
        while _http(port, "GET", "/probe/ready", token)[0] != 200:
            if time.monotonic() > deadline or adapter.poll() is not None:
                print("the adapter did not become ready", file=sys.stderr)
                return 2
            time.sleep(0.1)
        status = run_load(args, adapter, port, token, reg.host, digests, [t for _, t in images])
        scan_seconds(log_path)
        return status
    finally:
        if adapter is not None and adapter.poll() is None:
            adapter.send_signal(signal.SIGTERM)
            try:
                adapter.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(adapter.pid, signal.SIGKILL)
        reg.stop()


def run_load(
    args: argparse.Namespace,
    adapter: subprocess.Popen[bytes],
    port: int,
    token: str,
    host: str,
    digests: list[str],
    tokens: list[str],
) -> int:
    requests = [Request(n, digests[n % len(digests)]) for n in range(args.requests)]
    samples: list[tuple[float, int, int]] = []
    stop_sampling = threading.Event()
    start = time.monotonic()

    def sample() -> None:
        while not stop_sampling.is_set():
            own, kids = _tree_rss(adapter.pid)
            samples.append((time.monotonic() - start, own, kids))
            stop_sampling.wait(0.25)

    def one(req: Request) -> None:
        body = {
            "registry": {"url": f"http://{host}"},
            "artifact": {"repository": f"bench/img{req.n % len(digests)}", "digest": req.digest,
                         "tag": "1", "mime_type": "application/vnd.oci.image.manifest.v1+json"},
        }  # fmt: skip
        req.sent = time.monotonic() - start
        t0 = time.monotonic()
        status, _, answer = _http(port, "POST", "/api/v1/scan", token, body)
        req.post_seconds = time.monotonic() - t0
        req.post_status = status
        if status != 202:
            return
        req.scan_id = json.loads(answer)["id"]
        while True:
            status, headers, answer = _http(
                port, "GET", f"/api/v1/scan/{req.scan_id}/report", token, accept=REPORT
            )
            if status != 302:
                break
            time.sleep(min(1.0, float(headers.get("Refresh-After", "1"))))
        req.final_status = status
        req.final_at = time.monotonic() - start
        if status == 200:
            req.report = json.loads(answer)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    threads = []
    gap = args.seconds / max(1, args.requests)
    for req in requests:
        due = start + req.n * gap
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        t = threading.Thread(target=one, args=(req,))
        t.start()
        threads.append(t)
    sent_all = time.monotonic() - start
    for t in threads:
        t.join(900)
    done_all = max((r.final_at for r in requests), default=0.0)
    stop_sampling.set()
    sampler.join(5)
    status, _, body = _http(port, "GET", "/metrics", token)
    metrics = json.loads(body)
    return summary(args, requests, samples, metrics, sent_all, done_all, digests, tokens)


def scan_seconds(log_path: Path) -> None:
    """The scans' own durations, from the adapter's log (scan started to finished)."""
    secs = []
    for line in log_path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("msg") == "scan finished" and entry.get("state") == "done":
            secs.append(float(entry["seconds"]))
    if secs:
        secs.sort()
        print(f"scan seconds (adapter log, {len(secs)} scans): median "
              f"{statistics.median(secs):.2f}, max {secs[-1]:.2f}")  # fmt: skip


def _mib(n: float) -> str:
    return f"{n / (1 << 20):.0f} MiB"


def summary(
    args: argparse.Namespace,
    requests: list[Request],
    samples: list[tuple[float, int, int]],
    metrics: dict[str, Any],
    sent_all: float,
    done_all: float,
    digests: list[str],
    tokens: list[str],
) -> int:
    ok = True

    def check(what: str, good: bool) -> None:
        nonlocal ok
        ok = ok and good
        print(f"  {'PASS' if good else 'FAIL'}  {what}")

    lat = sorted(r.post_seconds for r in requests if r.post_status)
    print(f"\n{len(requests)} requests sent in {sent_all:.1f} s; last report final at "
          f"{done_all:.1f} s; {args.images} images, {args.workers} scan processes "
          f"(2-core machine shared with other work: times are noisy)")  # fmt: skip
    if lat:
        p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))]
        print(f"POST /api/v1/scan seconds: median {statistics.median(lat):.3f}, p95 {p95:.3f}, "
              f"max {lat[-1]:.3f}")  # fmt: skip
    accepted = [r for r in requests if r.post_status == 202]
    ids = {r.scan_id for r in accepted}
    by_status: dict[int, int] = {}
    for r in requests:
        by_status[r.final_status or r.post_status] = (
            by_status.get(r.final_status or r.post_status, 0) + 1
        )
    print(f"outcomes: {dict(sorted(by_status.items()))} (final report status, else POST status)")
    print(f"adapter metrics: {json.dumps(metrics)}")
    right = 0
    for r in requests:
        rep = r.report
        if not rep or rep.get("artifact", {}).get("digest") != r.digest:
            continue
        token = tokens[digests.index(r.digest)]
        masked = token[:4] + "********"
        found = any(v["package"] == "/root/.npmrc" and masked in v["description"]
                    for v in rep["vulnerabilities"])  # fmt: skip
        clear = token in json.dumps(rep)
        if found and not clear:
            right += 1
    # memory: the peak of each half of the run
    half = sent_all / 2
    first = max((own + kids for t, own, kids in samples if t <= half), default=0)
    second = max((own + kids for t, own, kids in samples if t > half), default=0)
    peak_own = max((own for _, own, _ in samples), default=0)
    peak_kids = max((kids for _, _, kids in samples), default=0)
    print(f"resident memory: peak adapter {_mib(peak_own)}, peak scan processes {_mib(peak_kids)}"
          f" (together: first half {_mib(first)}, second half {_mib(second)}); "
          f"{len(samples)} samples")  # fmt: skip
    for t0 in range(0, int(max((t for t, _, _ in samples), default=0)) + 1, 10):
        window = [own + kids for t, own, kids in samples if t0 <= t < t0 + 10]
        if window:
            print(f"  {t0:4d}-{t0 + 10:<4d} s  max {_mib(max(window))}")
    print("checks:")
    check(f"every request accepted (202): {len(accepted)}/{len(requests)}",
          len(accepted) == len(requests))  # fmt: skip
    check(f"every id distinct: {len(ids)}", len(ids) == len(requests))
    check(f"every report 200, its digest, the planted token masked, never in clear: "
          f"{right}/{len(requests)}", right == len(requests))  # fmt: skip
    check(f"one scan per digest: {metrics['scans_started']} scans for {len(set(digests))} digests",
          metrics["scans_started"] == len(set(digests)))  # fmt: skip
    check(f"requests counted by the adapter: {metrics['requests']}",
          metrics["requests"] == len(requests))  # fmt: skip
    bounded = second <= first * 1.25 + (64 << 20)
    check(f"memory bounded: second half peak {_mib(second)} <= 1.25 x first half {_mib(first)} "
          f"+ 64 MiB", bounded)  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
