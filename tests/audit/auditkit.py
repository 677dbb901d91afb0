"""Images and registries for the audit tests (the fixtures are in conftest.py): 20 tags in
five repositories on two shared bases, some leaking, one multi-platform, one token deleted
in a later layer; and a proxy that holds layer downloads back on request."""

from __future__ import annotations

import http.server
import threading
from dataclasses import dataclass, field
from pathlib import Path

from imagebuilder import Image, Index, Layer, fake_token, write_oci_layout
from regkit import FaultProxy, Registry


@dataclass
class Leak:
    """A secret and every repository:tag (platform) that must report it, with its status."""

    secret: str
    where: dict[tuple[str, str, str], str]  # (repository, tag, platform) -> status


@dataclass
class Fill:
    """What the session pushed, and what an audit must find."""

    tmp: Path
    layouts: dict[str, tuple[Path, Image | Index]]  # "repo:tag" -> OCI layout, its root
    leaks: list[Leak] = field(default_factory=list)
    bases: dict[str, Layer] = field(default_factory=dict)

    @property
    def tags(self) -> list[str]:
        return sorted(self.layouts)

    def config_digests(self) -> set[str]:
        out = set()
        for _, root in self.layouts.values():
            images = root.images() if isinstance(root, Index) else [root]
            out.update(img.config_digest() for img in images)
        return out

    def statement_digests(self) -> set[str]:
        """The in-toto statements of the attestations pushed beside the images: blobs a
        scan reads with the manifests, before any layer."""
        out = set()
        for path, _ in self.layouts.values():
            for blob in (path / "blobs" / "sha256").iterdir():
                if blob.stat().st_size < 1 << 20 and b'"https://in-toto.io/' in blob.read_bytes():
                    out.add(f"sha256:{blob.name}")
        return out


def _base(name: str, size: int) -> Layer:
    layer = Layer(created_by=f"ADD {name}-rootfs.tar /").file("etc/os-release", f"ID={name}\n")
    # incompressible-ish filler, the same in every image of the base
    filler = bytes((i * 7919 + len(name)) % 251 for i in range(size))
    return layer.file("usr/lib/libbase.so", filler)


def build_fill(tmp: Path) -> Fill:
    """The images: bases a and b shared by every repository."""
    a0, a1 = (
        _base("alpha", 300_000),
        Layer(created_by="RUN apk add curl").file("usr/bin/curl", b"\x7fELF" + bytes(5000)),
    )
    b0 = _base("bravo", 200_000)
    gh = fake_token("github")
    npm = fake_token("npm")
    aws = fake_token("aws")
    arm = fake_token("github")
    fill = Fill(tmp, {}, bases={"a0": a0, "a1": a1, "b0": b0})

    def add(name: str, root: Image | Index) -> None:
        path = write_oci_layout(tmp / "layouts" / name.replace(":", "_"), root, tag="t")
        fill.layouts[name] = (path, root)

    for n in range(1, 7):  # web:1..6, web:3 leaks a token in its app layer
        app = Layer(created_by=f"COPY web-{n} /srv").file("srv/index.html", f"<p>web {n}</p>\n")
        if n == 3:
            app.file("srv/.env", f"GITHUB_TOKEN={gh}\n")
        add(f"web:{n}", Image(layers=[a0, a1, app]))
    npm_layer = Layer(created_by="RUN echo token > /root/.npmrc").file(
        "root/.npmrc", f"//npm.example.internal/:_authToken={npm}\n"
    )
    rm = Layer(created_by="RUN rm /root/.npmrc").whiteout("root/.npmrc")
    for n in range(1, 6):  # api:2 deletes the token in a later layer, api:3 keeps it
        layers = [a0]
        if n == 2:
            layers += [npm_layer, rm]
        elif n == 3:
            layers += [npm_layer]
        layers.append(Layer(created_by=f"COPY api-{n} /app").file("app/main.py", f"v = {n}\n"))
        add(f"api:{n}", Image(layers=layers))
    for n in range(1, 5):  # worker:4 carries a key in its config
        env = ["PATH=/bin"] + ([f"AWS_ACCESS_KEY_ID={aws}"] if n == 4 else [])
        job = Layer(created_by=f"COPY job-{n} /job").file("job/run.sh", f"echo {n}\n")
        add(f"worker:{n}", Image(layers=[b0, job], env=env))
    for n in range(1, 5):  # tools: clean
        extra = Layer(created_by=f"COPY tools-{n} /opt").file("opt/tool", f"tool {n}\n")
        add(f"tools:{n}", Image(layers=[b0, extra]))

    def plat(arch: str, variant: str | None, token: str | None) -> Image:
        layer = Layer(created_by="COPY . /app").file("etc/arch", arch)
        if token:
            layer.file("app/.env", f"GITHUB_TOKEN={token}\n")
        return Image(layers=[b0, layer], architecture=arch, variant=variant)

    add(
        "multi:1",
        Index([plat("amd64", None, None), plat("arm64", "v8", arm)], attestations=True),
    )
    fill.leaks = [
        Leak(gh, {("web", "3", "linux/amd64"): "present"}),
        Leak(npm, {("api", "2", "linux/amd64"): "deleted", ("api", "3", "linux/amd64"): "present"}),
        Leak(aws, {("worker", "4", "linux/amd64"): "config"}),
        Leak(arm, {("multi", "1", "linux/arm64/v8"): "present"}),
    ]
    return fill


def push_all(registry: Registry, fill: Fill, only: list[str] | None = None) -> None:
    for name in only or fill.tags:
        path, root = fill.layouts[name]
        extra = ("--all",) if isinstance(root, Index) else ()
        registry.push(f"oci:{path}:t", name, *extra)


@dataclass
class Filled:
    registry: Registry
    fill: Fill


class GateProxy(FaultProxy):
    """Passes everything through, but after ``allowed`` layer downloads holds the next ones
    until ``gate`` is set; ``blocked`` is set when one is held."""

    def __init__(self, upstream: Registry, configs: set[str], allowed: int) -> None:
        super().__init__(upstream)
        self.configs = configs
        self.allowed = allowed
        self.gate = threading.Event()
        self.blocked = threading.Event()
        self.layer_gets = 0

    def handle(self, h: http.server.BaseHTTPRequestHandler, method: str) -> None:
        if method == "GET" and "/blobs/" in h.path:
            digest = h.path.rsplit("/", 1)[-1]
            if digest not in self.configs:
                with self.lock:
                    self.layer_gets += 1
                    held = self.layer_gets > self.allowed
                if held:
                    self.blocked.set()
                    self.gate.wait(120)
        super().handle(h, method)
