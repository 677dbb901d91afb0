"""Registry benchmark: a scan from a local registry against a scan of the same OCI layout.

Issue 4's bar: a scan of an image in a local registry takes no more than 1.2x the time of
scanning the same image from an OCI directory.

The script

1. builds an OCI layout with gzip layers (``--size-mb``, with ``bench/memory.py``'s streaming
   generator, imported) under ``bench/out/registry/image/``, or reuses it when the parameters
   match; ``--image DIR`` takes an existing OCI layout instead (``bench/out/compare/oci``);
2. starts Debian's ``docker-registry`` (distribution 2.8), plain HTTP on a free 127.0.0.1
   port, with its storage under ``bench/out/registry/registry/`` (emptied first), and stops it
   at exit, whatever happens;
3. pushes the image with ``skopeo copy --preserve-digests oci:DIR docker://127.0.0.1:P/bench/
   app:1 --dest-tls-verify=false`` and checks that the registry serves the same manifest and
   layer digests;
4. runs ``python -m leakscan REF --format json --output FILE`` once on each source as a
   warm-up, then ``--rounds`` rounds of one scan of each, taking turns (ABBA order);
5. prints wall seconds per source (median, min, max), the registry/OCI ratio of each round and
   their median, checks every report holds the same findings (rule_id, secret_sha256, path,
   status, layer_index), and prints PASS/FAIL against ``--bound`` (1.2).

Usage: python bench/registry.py [--size-mb 400] [--rounds 5] [--image DIR] [--regen]
                                [--bound 1.2] [--workdir bench/out]

Exit status: 0 every check passed, 1 a check failed, 2 bad usage, a missing tool, too little
disk space, or a setup step (generation, registry, push) that failed.
"""

from __future__ import annotations

import argparse
import ctypes
import http.client
import json
import os
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import memory

MIB = memory.MIB
REPO_TAG = "bench/app:1"
IMAGE_NAME = "image"
START_TIMEOUT = 20.0
PUSH_TIMEOUT = 1800
SCAN_TIMEOUT = 3600
SOURCES = ("oci", "registry")
PR_SET_PDEATHSIG = 1
CLK_TCK = os.sysconf("SC_CLK_TCK")
ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)

FindingKey = tuple[Any, Any, Any, Any, Any]


class SetupError(Exception):
    """A step before the measurements failed: no figures can be given."""


# --- tools ----------------------------------------------------------------------------------


def tool_path() -> str:
    """PATH with the sbin folders: docker-registry may live there."""
    parts = os.environ.get("PATH", "").split(os.pathsep)
    parts += [d for d in ("/usr/local/sbin", "/usr/sbin", "/sbin") if d not in parts]
    return os.pathsep.join(parts)


def which(tool: str) -> str | None:
    return shutil.which(tool, path=tool_path())


def tool_version(cmd: list[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    # stdout even on a non-zero exit: `leakscan --version` prints, then exits 1 (a typer.Exit
    # raised outside typer's context)
    lines = proc.stdout.strip().splitlines()
    return lines[0] if lines else "?"


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when this script dies, even by SIGKILL."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


# --- the image ------------------------------------------------------------------------------


@dataclass
class Layout:
    """An OCI layout on disk and what the push must keep of it."""

    root: Path
    ref: str  # oci:DIR or oci:DIR:TAG, for skopeo and leakscan alike
    manifest_digest: str
    layer_digests: list[str]
    gz_bytes: int
    uncompressed: int | None
    planted: list[str] = field(default_factory=list)  # secret_sha256 of planted secrets
    how: str = ""


def read_layout(root: Path) -> Layout:
    """The one image manifest of an OCI layout (a tagged one when there are several)."""
    try:
        index = json.loads((root / "index.json").read_text())
    except (OSError, ValueError) as exc:
        raise SetupError(f"{root} is not an OCI layout: {exc}") from None
    if not (root / "oci-layout").is_file():
        raise SetupError(f"{root} is not an OCI layout: no oci-layout file")
    manifests = [m for m in index.get("manifests") or [] if isinstance(m, dict)]
    tagged = [m for m in manifests if (m.get("annotations") or {}).get(memory.REF_NAME)]
    if len(manifests) == 1:
        chosen = manifests[0]
    elif len(tagged) == 1:
        chosen = tagged[0]
    else:
        raise SetupError(f"{root}: index.json names {len(manifests)} manifests; want one")
    if chosen.get("mediaType") != memory.MT_MANIFEST:
        raise SetupError(f"{root}: the image is a {chosen.get('mediaType')}, not one manifest")
    tag = (chosen.get("annotations") or {}).get(memory.REF_NAME)
    digest = str(chosen["digest"])
    blobs = root / "blobs" / "sha256"
    manifest = json.loads((blobs / digest.split(":", 1)[1]).read_bytes())
    layers = [str(layer["digest"]) for layer in manifest.get("layers") or []]
    gz = sum(int(layer.get("size") or 0) for layer in manifest.get("layers") or [])
    ref = f"oci:{root}:{tag}" if tag else f"oci:{root}"
    return Layout(root, ref, digest, layers, gz, None)


def planted_of(plan_file: Path) -> tuple[list[str], int | None]:
    """secret_sha256 of the secrets a bench plan.json says were planted, and the layer bytes."""
    try:
        plan = json.loads(plan_file.read_text())
    except (OSError, ValueError):
        return [], None
    planted = [str(p["secret_sha256"]) for p in plan.get("planted") or [] if "secret_sha256" in p]
    sizes = plan.get("layer_sizes")
    return planted, sum(sizes) if isinstance(sizes, list) else None


def prepare_image(args: argparse.Namespace, root: Path) -> Layout:
    if args.image is not None:
        layout = read_layout(args.image.resolve())
        layout.planted, layout.uncompressed = planted_of(layout.root.parent / "plan.json")
        layout.how = "given with --image"
        return layout
    params = {"size_mb": args.size_mb}
    plan = None if args.regen else memory.reusable(root, IMAGE_NAME, params)
    if plan is not None:
        how = f"reused (generated in {plan.seconds:.1f} s)"
    else:
        need = args.size_mb * 8 // 5 + 256  # docker-save tar + gzip blobs
        free = shutil.disk_usage(root).free // MIB
        if need > free:
            raise SetupError(f"not enough disk space in {root}: need ~{need} MiB, {free} free")
        print(f"  generating a {args.size_mb} MiB image ...", flush=True)
        spec = memory.layers_image(args.size_mb)
        spec.name = IMAGE_NAME
        plan = memory.generate(spec, root / IMAGE_NAME)
        how = f"generated in {plan.seconds:.1f} s"
    layout = read_layout(root / IMAGE_NAME / "oci")
    layout.planted = [p.secret_sha256 for p in plan.planted]
    layout.uncompressed = plan.uncompressed
    layout.how = how + " with bench/memory.py's generator"
    return layout


# --- the registry ---------------------------------------------------------------------------


@dataclass
class Registry:
    root: Path
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM to its process group, SIGKILL after 5 s; safe to call twice."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass

    def cpu_seconds(self) -> float:
        """user + system CPU of the registry so far (its threads included)."""
        try:
            stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        except OSError:
            return float("nan")
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def log_tail(self) -> str:
        path = self.root / "registry.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def get(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(registry: Registry) -> bool:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if not registry.alive():
            return False
        try:
            if registry.get("/v2/", {})[0] == 200:
                return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def start_registry(root: Path, binary: str) -> Registry:
    """docker-registry on a free 127.0.0.1 port, plain HTTP, storage under ``root``."""
    storage = root / "storage"
    if storage.exists():
        shutil.rmtree(storage)
    root.mkdir(parents=True, exist_ok=True)
    config_text = "\n".join(
        [
            "version: 0.1",
            "log:",
            "  level: warn",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  cache:",
            "    blobdescriptor: inmemory",
            "  filesystem:",
            f"    rootdirectory: {storage}",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            "  addr: 127.0.0.1:{port}",
            f"  secret: {secrets.token_hex(16)}",
            "",
        ]
    )
    registry: Registry | None = None
    for _ in range(3):
        port = free_port()
        config = root / "config.yml"
        config.write_text(config_text.replace("{port}", str(port)))
        with open(root / "registry.log", "wb") as log:
            proc = subprocess.Popen(
                [binary, "serve", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() kills it whole
                preexec_fn=_die_with_parent,  # and it dies with this script, even on SIGKILL
            )
        registry = Registry(root, port, proc)
        if _answers(registry):
            return registry
        registry.stop()
        if "address already in use" not in registry.log_tail():
            break
    tail = registry.log_tail() if registry else ""
    raise SetupError(f"docker-registry did not start:\n{tail}")


def push(layout: Layout, registry: Registry, root: Path) -> tuple[str, float, list[str]]:
    """skopeo copy the layout into the registry; returns the docker:// ref, seconds, notes."""
    policy = root / "policy.json"
    policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}\n')
    dest = f"docker://{registry.host}/{REPO_TAG}"
    helps = subprocess.run(
        ["skopeo", "copy", "--help"], capture_output=True, text=True, check=False
    ).stdout
    keep = ["--preserve-digests"] if "--preserve-digests" in helps else []
    cmd = ["skopeo", "--policy", str(policy), "copy", "--quiet", *keep]
    cmd += ["--dest-tls-verify=false", layout.ref, dest]
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=PUSH_TIMEOUT, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        raise SetupError(f"skopeo did not finish in {PUSH_TIMEOUT} s") from None
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SetupError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    notes = [] if keep else ["this skopeo has no --preserve-digests"]
    repo, tag = REPO_TAG.rsplit(":", 1)
    status, headers, body = registry.get(f"/v2/{repo}/manifests/{tag}", {"Accept": ACCEPT})
    if status != 200:
        raise SetupError(f"the registry answers {status} for the pushed manifest")
    served = headers.get("docker-content-digest", "?")
    layers = [str(x.get("digest")) for x in json.loads(body).get("layers") or []]
    if served == layout.manifest_digest and layers == layout.layer_digests:
        notes.append(
            f"manifest {served[:19]}... and its {len(layers)} layer blobs kept as they are"
        )
    elif layers == layout.layer_digests:
        notes.append(f"WARNING: manifest digest changed ({served}), layer blobs kept")
    else:
        notes.append("WARNING: the registry serves other layer blobs than the OCI layout holds")
    return dest, seconds, notes


# --- scans ----------------------------------------------------------------------------------


@dataclass
class Scan:
    source: str
    round: int  # 0 is the warm-up
    wall: float
    cpu: float  # user + system of leakscan and its workers
    server_cpu: float | None  # the registry's, during this scan
    exit_code: int
    report: Path
    findings: Counter[FindingKey] = field(default_factory=Counter)
    secrets: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    digests: tuple[str, str] = ("?", "?")  # manifest, config


def finding_key(finding: dict[str, Any]) -> FindingKey:
    loc = finding.get("location") or {}
    return (
        finding.get("rule_id"),
        finding.get("secret_sha256"),
        loc.get("path"),
        loc.get("status"),
        loc.get("layer_index"),
    )


def read_report(scan: Scan) -> None:
    try:
        report = json.loads(scan.report.read_text())
    except (OSError, ValueError) as exc:
        scan.errors.append(f"no readable report: {exc}")
        return
    images = report.get("images") or []
    scan.errors += [str(e.get("message", "?")) for e in report.get("errors") or []]
    for image in images:
        scan.errors += [str(e.get("message", "?")) for e in image.get("errors") or []]
        for finding in image.get("findings") or []:
            scan.findings[finding_key(finding)] += 1
            scan.secrets.add(str(finding.get("secret_sha256")))
    if len(images) == 1:
        scan.digests = (
            str(images[0].get("manifest_digest")),
            str(images[0].get("config_digest")),
        )
    elif not images:
        scan.errors.append("the report holds no image")


def scan_once(
    source: str,
    ref: str,
    rnd: int,
    reports: Path,
    env: dict[str, str],
    registry: Registry | None,
) -> Scan:
    stem = reports / f"{source}-r{rnd}"
    report = stem.with_suffix(".json")
    report.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "leakscan", ref, "--format", "json", "--output", str(report)]
    server_before = registry.cpu_seconds() if registry else None
    # the children's rusage grows by exactly this child (and the workers it reaped)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(stem.with_suffix(".stderr"), "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=reports, env=env, stdout=subprocess.DEVNULL, stderr=err)
        try:
            code = proc.wait(timeout=SCAN_TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    server = None
    if registry is not None and server_before is not None:
        server = registry.cpu_seconds() - server_before
    scan = Scan(source, rnd, wall, cpu, server, code, report)
    read_report(scan)
    return scan


# --- output ---------------------------------------------------------------------------------


def _short(key: FindingKey) -> str:
    rule, sha, path, status, layer = key
    return f"{rule} {str(sha)[:12]} L{layer} {path} ({status})"


def compare_findings(scans: list[Scan]) -> tuple[bool, list[str]]:
    """Every report against the first one (the OCI warm-up): the same findings, each as often."""
    reference = scans[0]
    lines: list[str] = []
    ok = True
    for scan in scans:
        label = f"{scan.source} round {scan.round or 'warm-up'}"
        if scan.errors:
            ok = False
            lines += [f"{label}: report error: {e}" for e in scan.errors[:5]]
        if scan.exit_code != reference.exit_code or scan.exit_code not in (0, 1):
            ok = False
            lines.append(f"{label}: exit status {scan.exit_code} (reference {reference.exit_code})")
        if scan.findings != reference.findings:
            ok = False
            missing = reference.findings - scan.findings
            extra = scan.findings - reference.findings
            lines.append(f"{label}: {sum(missing.values())} missing, {sum(extra.values())} extra")
            lines += [f"    missing {_short(k)}" for k in list(missing)[:8]]
            lines += [f"    extra   {_short(k)}" for k in list(extra)[:8]]
    return ok, lines


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = []
    for n, row in enumerate(rows):
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# --- main -----------------------------------------------------------------------------------


@contextmanager
def terminated_as_exit() -> Iterator[None]:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so that the registry is always stopped."""

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time leakscan on an image in a local registry against its OCI layout."
    )
    here = Path(__file__).resolve().parent
    parser.add_argument("--workdir", type=Path, default=here / "out", help="default: bench/out")
    parser.add_argument("--size-mb", type=int, default=400, help="generated image, uncompressed")
    parser.add_argument("--rounds", type=int, default=5, help="measured scans of each source")
    parser.add_argument("--image", type=Path, help="an existing OCI layout to use instead")
    parser.add_argument("--regen", action="store_true", help="regenerate the image")
    parser.add_argument("--bound", type=float, default=1.2, help="largest registry/oci ratio")
    args = parser.parse_args(argv)
    if args.size_mb < 8:
        parser.error("--size-mb must be at least 8")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.image is not None and not args.image.is_dir():
        parser.error(f"--image {args.image}: no such directory")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with terminated_as_exit():
        try:
            return run(args)
        except SetupError as exc:
            print(f"setup failed: {exc}")
            return 2


def run(args: argparse.Namespace) -> int:
    root = (args.workdir / "registry").resolve()
    reports = root / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    binary = which("docker-registry")
    missing = [t for t, p in (("docker-registry", binary), ("skopeo", which("skopeo"))) if not p]
    if missing or binary is None:
        raise SetupError(f"missing: {', '.join(missing)} (Debian: apt-get install {missing[0]})")
    python = sys.executable
    version = tool_version([python, "-m", "leakscan", "--version"])
    print(
        f"leakscan registry benchmark: {version}, Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs; {tool_version(['skopeo', '--version'])}; "
        f"{tool_version([binary, '--version'])}"
    )
    print(f"leakscan from {memory.leakscan_origin(python, reports)}")
    print(f"work dir: {root}")

    layout = prepare_image(args, root)
    size = f"{layout.uncompressed / MIB:.1f} MiB uncompressed, " if layout.uncompressed else ""
    print(
        f"image: {layout.ref}\n  {layout.how}: {len(layout.layer_digests)} layers, {size}"
        f"{layout.gz_bytes / MIB:.1f} MiB gzip, {len(layout.planted)} planted secrets"
    )
    registry_free = shutil.disk_usage(root).free // MIB
    if layout.gz_bytes // MIB + 256 > registry_free:
        raise SetupError(f"not enough disk space in {root} for the registry's copy")

    env = dict(os.environ)
    env.pop("REGISTRY_AUTH_FILE", None)
    no_config = root / "docker-config"  # no credential helper of the user's runs
    no_config.mkdir(exist_ok=True)
    env["DOCKER_CONFIG"] = str(no_config)

    registry = start_registry(root / "registry", binary)
    try:
        print(f"registry: 127.0.0.1:{registry.port} (pid {registry.proc.pid}), plain HTTP")
        dest, push_s, notes = push(layout, registry, root)
        print(f"pushed to {dest} in {push_s:.1f} s: {'; '.join(notes)}")
        refs = {"oci": layout.ref, "registry": dest}
        subprocess.run(  # rules are compiled and cached on first use: not part of a scan
            [python, "-m", "leakscan", "rules"],
            cwd=reports,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        print(f"load average before: {_load()}")
        scans: list[Scan] = []
        for rnd in range(args.rounds + 1):
            order = SOURCES if rnd % 2 == 0 else SOURCES[::-1]
            for source in order:
                reg = registry if source == "registry" else None
                scan = scan_once(source, refs[source], rnd, reports, env, reg)
                scans.append(scan)
                what = "warm-up" if rnd == 0 else f"round {rnd}/{args.rounds}"
                print(
                    f"  {what:<11} {source:<8} {scan.wall:7.2f} s wall, {scan.cpu:7.2f} s CPU"
                    + (f", registry {scan.server_cpu:.2f} s CPU" if reg else "")
                    + f", exit {scan.exit_code}, {sum(scan.findings.values())} findings",
                    flush=True,
                )
                if not registry.alive():
                    raise SetupError(f"the registry died:\n{registry.log_tail()}")
        load_after = _load()
    finally:
        registry.stop()
    print(f"registry stopped; load average after: {load_after}")
    return summary(args, layout, scans, reports)


def summary(args: argparse.Namespace, layout: Layout, scans: list[Scan], reports: Path) -> int:
    measured = [s for s in scans if s.round > 0]
    by = {src: [s for s in measured if s.source == src] for src in SOURCES}
    rows = [["source", "median s", "min s", "max s", "median CPU s", "registry CPU s", "MiB/s"]]
    medians: dict[str, float] = {}
    for src in SOURCES:
        walls = [s.wall for s in by[src]]
        medians[src] = statistics.median(walls)
        server = [s.server_cpu for s in by[src] if s.server_cpu is not None]
        speed = layout.uncompressed / MIB / medians[src] if layout.uncompressed else None
        rows.append(
            [
                src,
                f"{medians[src]:.2f}",
                f"{min(walls):.2f}",
                f"{max(walls):.2f}",
                f"{statistics.median(s.cpu for s in by[src]):.2f}",
                _s(statistics.median(server) if server else None),
                f"{speed:.1f}" if speed else "-",
            ]
        )
    pairs = [r.wall / o.wall for o, r in zip(by["oci"], by["registry"], strict=True)]
    ratio = statistics.median(pairs)
    print()
    print(f"{len(measured) // 2} rounds after a warm-up, one scan of each source per round")
    print(_table(rows))
    print()
    print("registry/oci, round by round: " + " ".join(f"{p:.3f}" for p in pairs))
    print(
        f"registry/oci: median of the rounds {ratio:.3f} (min {min(pairs):.3f}, max "
        f"{max(pairs):.3f}); ratio of the medians {medians['registry'] / medians['oci']:.3f}"
    )
    same, lines = compare_findings(scans)
    reference = scans[0]
    digests = {s.digests for s in scans}
    if len(digests) != 1:
        lines.append(f"manifest/config digests differ between reports: {sorted(digests)}")
    for line in lines:
        print(f"  {line}")
    n = sum(reference.findings.values())
    print(
        f"same findings in all {len(scans)} reports (rule_id, secret_sha256, path, status, "
        f"layer_index; {n} findings, exit {reference.exit_code}): {'PASS' if same else 'FAIL'}"
    )
    planted_ok = True
    if layout.planted:
        found = {src: [len(set(layout.planted) & s.secrets) for s in by[src]] for src in SOURCES}
        planted_ok = all(x == len(layout.planted) for xs in found.values() for x in xs)
        seen = ", ".join(f"{src} {min(found[src])}/{len(layout.planted)}" for src in SOURCES)
        print(f"planted secrets found in every report ({seen}): {'PASS' if planted_ok else 'FAIL'}")
    fast = ratio <= args.bound
    print(f"registry/oci {ratio:.3f} <= {args.bound:g}: {'PASS' if fast else 'FAIL'}")
    ok = fast and same and planted_ok
    print(f"overall: {'PASS' if ok else 'FAIL'}  (reports in {reports})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
