"""Audit benchmark (issue 11): a registry of ``--tags`` tags in ``--repos`` repositories on
three shared bases (``--unique-mb`` MB of unique layer blobs in all, as the registry stores
them), audited with ``leakscan audit``.

Prints:

* the first audit's time against the time to scan the unique layers once (the same layers,
  fetched from the same registry by the same fan-out, with no catalog, no manifests and no
  fan-out of findings), and their ratio (issue's bar: at most 1.15);
* the second audit of the unchanged registry, as a share of the first (bar: at most 3%), and
  the images per second it covers;
* with ``--dask``, the first audit on a Dask LocalCluster of 2 workers against
  ``--workers 2`` (bar: no slower).

Each measurement runs in a fresh interpreter (``leakscan audit`` itself, or this script's
``_unique`` step), so each pays the same start-up and rule loading. The registry is Debian's
``docker-registry`` on 127.0.0.1 (plain HTTP), filled through the registry API: each base
blob uploaded once and mounted into the other repositories.

Every measurement is taken ``--rounds`` times and the medians printed (the machine is shared:
min and max show how noisy it was); CPU seconds (the process and its workers) beside wall
seconds tell load from cost.

With ``--dask-config KEY=VALUE`` (repeated) the LocalCluster's workers run with that Dask
setting (e.g. ``distributed.worker.profile.enabled=false``: no statistical profiler sampling
the task's stack every 10 ms on the worker's event loop); ``--dask-only`` skips the
first/second audit figures.

Usage: python bench/audit.py [--unique-mb 600] [--repos 20] [--tags 100] [--workers 2]
                             [--dask] [--dask-only] [--dask-config KEY=VALUE]...
                             [--rounds 3] [--workdir bench/out/audit]
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import io
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "registry")]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


@dataclass(frozen=True)
class Blob:
    digest: str
    diff_id: str
    size: int
    data: bytes


def _tar(files: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _blob(files: list[tuple[str, bytes]]) -> Blob:
    tar = _tar(files)
    data = gzip.compress(tar, compresslevel=1, mtime=0)
    return Blob(
        "sha256:" + hashlib.sha256(data).hexdigest(),
        "sha256:" + hashlib.sha256(tar).hexdigest(),
        len(data),
        data,
    )


def _text(rng: random.Random, size: int) -> bytes:
    """``size`` bytes of random base64 in lines of 76: text as engines read it."""
    text = base64.b64encode(rng.randbytes(size * 3 // 4)).decode()
    return "\n".join(text[j : j + 76] for j in range(0, len(text), 76)).encode()


def _raw_for(stored: int) -> int:
    """The text to put in a base for its blob (gzip, as stored) to be ``stored`` bytes:
    random base64 keeps about 0.8 of its size, measured here on a sample."""
    size = 4 << 20
    sample = _text(random.Random(0), size)
    # per byte of ``size`` as _text takes it (its lines' newlines included in the blob)
    ratio = len(gzip.compress(sample, compresslevel=1, mtime=0)) / size
    return int(stored / ratio)


def _base(n: int, size: int, rng: random.Random) -> Blob:
    """Text files of random words: what engines read at their usual pace."""
    files = []
    left = size
    i = 0
    while left > 0:
        chunk = min(left, 4 << 20)
        files.append((f"usr/share/base{n}/file{i}.txt", _text(rng, chunk)))
        left -= chunk
        i += 1
    return _blob(files)


def _app(repo: str, tag: int) -> Blob:
    token = "ghp_" + "".join(
        random.Random(f"{repo}{tag}").choices(
            "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789", k=36
        )
    )
    files = [(f"srv/{repo}/app.py", f"VERSION = {tag}\n".encode() * 2000)]
    if tag % 5 == 0:
        files.append((f"srv/{repo}/.env", f"GITHUB_TOKEN={token}\n".encode()))
    return _blob(files)


def fill(registry: object, repos: int, tags: int, unique_mb: int) -> int:
    """Push the images; returns the bytes of unique layers (blobs as the registry stores
    them: ``unique_mb`` MB, 10^6 bytes each, in all, the app layers a few KB of it)."""
    reg = registry  # regkit.Registry
    rng = random.Random(11)
    per_base = _raw_for(unique_mb * 10**6 // 3)
    total = 0
    owner: dict[str, str] = {}
    bases = []
    for n in range(3):
        blob = _base(n, per_base, rng)
        first = f"bench/repo{n}"
        reg.upload_blob(first, blob.data)  # type: ignore[attr-defined]
        owner[blob.digest] = first
        total += blob.size
        bases.append(Blob(blob.digest, blob.diff_id, blob.size, b""))
    per_repo = max(1, tags // repos)
    for r in range(repos):
        repo = f"bench/repo{r}"
        base = bases[r % 3]
        if owner[base.digest] != repo:
            status, _, body = reg.raw_request(  # type: ignore[attr-defined]
                "POST", f"/v2/{repo}/blobs/uploads/?mount={base.digest}&from={owner[base.digest]}"
            )
            assert status == 201, (status, body)
        for t in range(per_repo):
            app = _app(repo, t)
            reg.upload_blob(repo, app.data)  # type: ignore[attr-defined]
            total += app.size
            config = json.dumps(
                {
                    "architecture": "amd64",
                    "os": "linux",
                    "config": {},
                    "rootfs": {"type": "layers", "diff_ids": [base.diff_id, app.diff_id]},
                    "history": [{"created_by": "ADD base /"}, {"created_by": f"COPY app{t} /srv"}],
                }
            ).encode()
            reg.upload_blob(repo, config)  # type: ignore[attr-defined]
            manifest = {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": OCI_CONFIG,
                    "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
                    "size": len(config),
                },
                "layers": [
                    {"mediaType": OCI_LAYER, "digest": base.digest, "size": base.size},
                    {"mediaType": OCI_LAYER, "digest": app.digest, "size": app.size},
                ],
            }
            reg.put_manifest(repo, str(t), manifest)  # type: ignore[attr-defined]
    return total


def _cpu() -> float:
    """CPU seconds of this process's waited-for descendants (workers included: each
    process's own children are added to it when it is reaped)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# this process's environment before a LocalCluster started in it (set in main): distributed's
# nannies write their workers' settings into os.environ (MALLOC_TRIM_THRESHOLD_=65536 among
# them, which pins glibc's mmap threshold), and every audit started from here afterwards
# would inherit them: runs before 2026-12-05 09:10 timed --workers 2 "beside the cluster" so
_ENV: dict[str, str] = {}


def _audit(host: str, db: Path, *extra: str) -> tuple[float, float, dict[str, Any]]:
    """One audit in a fresh interpreter, with a result store of its own beside ``db``:
    wall seconds, CPU seconds, the JSON report."""
    t0, c0 = time.monotonic(), _cpu()
    proc = subprocess.run(
        [sys.executable, "-m", "leakscan", "audit", host, "--format", "json", "--db", str(db),
         "--cache-dir", str(db.with_suffix(".cache")), *extra],
        capture_output=True, text=True, cwd=ROOT, check=False, env=_ENV or None,
    )  # fmt: skip
    took, cpu = time.monotonic() - t0, _cpu() - c0
    if proc.returncode not in (0, 1):
        raise SystemExit(f"audit failed ({proc.returncode}): {proc.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(proc.stdout)
    return took, cpu, report


def _once(host: str, workers: int) -> tuple[float, float]:
    """Scanning the unique layers once, in a fresh interpreter: wall seconds without the
    (untimed) walk, and CPU seconds."""
    t0, c0 = time.monotonic(), _cpu()
    proc = subprocess.run(
        [sys.executable, __file__, "--_unique", host, "--workers", str(workers)],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )  # fmt: skip
    took, cpu = time.monotonic() - t0, _cpu() - c0
    if proc.returncode:
        raise SystemExit(f"scanning the unique layers failed: {proc.stderr[-2000:]}")
    return took - json.loads(proc.stdout.strip().splitlines()[-1])["walk"], cpu


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f})"


def _unique_step(host: str, workers: int) -> None:
    """Scan every unique layer of the registry once (run in a fresh interpreter)."""
    from leakscan.audit.catalog import Tagged, parse_target, repositories, resolve_registry
    from leakscan.audit.core import layer_id
    from leakscan.audit.fanout import ScanSettings, fanout, scan_all
    from leakscan.detectors import DetectorConfig
    from leakscan.layers.archives import ArchiveLimits
    from leakscan.sources.auth import RegistryOptions

    t0 = time.monotonic()
    target = parse_target(host, RegistryOptions())
    # the layer list is read first, untimed: the figure is the scanning of unique bytes
    blobs = {}
    for found in resolve_registry(target, list(repositories(target)), None):
        if not isinstance(found, Tagged):
            raise SystemExit(f"the walk failed: {found}")
        for blob in found.image.layers:
            blobs.setdefault(layer_id(blob), blob)
    walk = time.monotonic() - t0
    fan = fanout(ScanSettings(DetectorConfig(), ArchiveLimits(), None), workers, None)
    n = sum(1 for _ in scan_all(fan, list(blobs.values())))
    fan.close()
    print(json.dumps({"layers": n, "walk": walk}))


def _cluster_cpu(pids: list[int]) -> float:
    """CPU seconds so far of the Dask worker processes ``pids`` and of this process (the
    LocalCluster's scheduler and nannies run in it)."""
    total = 0.0
    for pid in pids:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return total + usage.ru_utime + usage.ru_stime


def _dask(args: argparse.Namespace, host: str) -> int:
    """The first audit on a Dask LocalCluster of 2 workers against ``--workers 2``, in
    paired rounds (taking turns, so that load on the machine falls on both alike)."""
    import dask
    from distributed import Client, LocalCluster

    settings: dict[str, Any] = {}
    for item in args.dask_config:
        key, _, value = item.partition("=")
        settings[key] = dask.config.interpret_value(value)
    if settings:
        dask.config.set(settings)
        print(f"Dask settings: {settings}")
    med = statistics.median
    twos: list[tuple[float, float]] = []
    dasks: list[tuple[float, float]] = []
    # --workers 2 on a machine with no cluster at all, as a user choosing between the two
    # would run it: an idle LocalCluster is not free (heartbeats, the workers' profilers),
    # and the pairs below run --workers 2 beside it
    alone = [
        _audit(host, args.workdir / f"alone-{n}.sqlite3", "--workers=2")[:2]
        for n in range(args.rounds)
    ]
    print(f"--workers 2, no cluster running: {_spread([t for t, _ in alone])}, CPU "
          f"{med(c for _, c in alone):.2f} s", flush=True)  # fmt: skip
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      host="127.0.0.1", dashboard_address=None) as cluster:  # fmt: skip
        with Client(cluster.scheduler_address, set_as_default=False) as client:
            pids = list(client.run(os.getpid).values())
        for n in range(args.rounds):
            pair = [("w2", "--workers=2"), ("dask", f"--dask={cluster.scheduler_address}")]
            for name, flag in pair if n % 2 == 0 else pair[::-1]:
                c0 = _cluster_cpu(pids)
                took, cpu, _ = _audit(host, args.workdir / f"{name}-{n}.sqlite3", flag)
                if name == "dask":  # the audit's own process, and the cluster's
                    cpu += _cluster_cpu(pids) - c0
                (twos if name == "w2" else dasks).append((took, cpu))
                print(f"round {n + 1} {name}: {took:.2f} s, CPU {cpu:.2f} s, "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
    pairs = [d[0] / t[0] for d, t in zip(dasks, twos, strict=True)]
    print(f"--workers 2: {_spread([t for t, _ in twos])}, CPU {med(c for _, c in twos):.2f} s; "
          f"Dask LocalCluster of 2 workers: {_spread([t for t, _ in dasks])}, CPU "
          f"{med(c for _, c in dasks):.2f} s (client, scheduler, workers); "
          f"{med(pairs):.2f}x (median of the rounds' ratios; bar 1.0)")  # fmt: skip
    lone = med(t for t, _ in alone)
    print(f"Dask against --workers 2 with no cluster running: "
          f"{med(t for t, _ in dasks) / lone:.2f}x (medians)")  # fmt: skip
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--unique-mb", type=int, default=600)
    parser.add_argument("--repos", type=int, default=20)
    parser.add_argument("--tags", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dask", action="store_true")
    parser.add_argument("--dask-only", action="store_true")
    parser.add_argument("--dask-config", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench" / "out" / "audit")
    parser.add_argument("--_unique", metavar="HOST", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._unique:
        _unique_step(args._unique, args.workers)
        return 0
    import regkit

    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    # one compiled rule catalog for every run (each audit has a store folder of its own,
    # and compiling the catalog there would be counted against the audit). In a private
    # folder of its own: kingfisher keeps its compiled rules only where neither the folder
    # nor one above it is writable by others, and a tree unpacked by root from `git archive`
    # has group-writable folders (runs before 2026-12-05 09:20 from such a tree compiled
    # the catalog, 3-4 s of CPU, in every audit, and in every Dask worker)
    own_rules = None
    if not os.environ.get("KF_RULE_CACHE_DIR"):
        own_rules = tempfile.mkdtemp(prefix="leakscan-bench-rules-")
        os.environ["KF_RULE_CACHE_DIR"] = own_rules
    rules = os.environ["KF_RULE_CACHE_DIR"]
    _ENV.update(os.environ)
    registry = regkit.start_registry(args.workdir / "registry", "bench")
    try:
        t0 = time.monotonic()
        unique = fill(registry, args.repos, args.tags, args.unique_mb)
        took = time.monotonic() - t0
        print(f"filled {registry.host}: {args.tags} tags in {args.repos} repositories, "
              f"{unique / 1e6:.0f} MB ({unique / (1 << 20):.0f} MiB) of unique layers "
              f"({took:.0f} s)")  # fmt: skip
        w = f"--workers={args.workers}"
        # leakscan's bytecode compiled once, as an install has it: with PYTHONDONTWRITEBYTECODE
        # set (this machine and some CI images set it) every run would compile every module
        leakscan_dir = str(ROOT / "leakscan")
        subprocess.run([sys.executable, "-m", "compileall", "-q", leakscan_dir], check=True)
        # compile the catalog (untimed), so that neither measurement pays for it
        warm = subprocess.run([sys.executable, "-m", "leakscan", "warm-up"], cwd=ROOT,
                              capture_output=True, text=True, check=True, env=_ENV)  # fmt: skip
        if "not kept" in warm.stdout:
            raise SystemExit(f"the rule catalog cannot be kept in {rules}: {warm.stdout.strip()}")
        once: list[float] = []
        firsts: list[float] = []
        seconds: list[float] = []
        cpus: dict[str, list[float]] = {"once": [], "first": [], "second": []}
        inside: list[float] = []  # the second audit's stats.seconds: without start-up
        ratios: list[float] = []
        shares: list[float] = []
        stats: dict[str, Any] = {}
        s2: dict[str, Any] = {}
        for n in range(0 if args.dask_only else args.rounds):
            # the interpreter's start and the engines' loading count, the walk does not
            took, cpu = _once(registry.host, args.workers)
            once.append(took)
            cpus["once"].append(cpu)
            db = args.workdir / f"audit-{n}.sqlite3"
            first, cpu, report = _audit(registry.host, db, w)
            firsts.append(first)
            cpus["first"].append(cpu)
            second, cpu, again = _audit(registry.host, db, w)
            seconds.append(second)
            cpus["second"].append(cpu)
            stats, s2 = report["stats"], again["stats"]
            inside.append(float(s2["seconds"]))
            ratios.append(first / once[-1])
            shares.append(second / first)
            print(f"round {n + 1}: once {once[-1]:.2f} s, first audit {first:.2f} s "
                  f"({ratios[-1]:.2f}x), second audit {second:.2f} s ({100 * shares[-1]:.1f}%; "
                  f"{s2['layers_scanned']} layers scanned)", flush=True)  # fmt: skip
        med = statistics.median
        if args.dask_only:
            return _dask(args, registry.host)
        print(f"unique layers scanned once ({w}): {_spread(once)}, CPU {med(cpus['once']):.2f} s")
        print(f"first audit ({w}):                {_spread(firsts)}, CPU "
              f"{med(cpus['first']):.2f} s; ratio {med(ratios):.2f} (median of the rounds' "
              "ratios; bar 1.15)")  # fmt: skip
        print(f"  layers {stats['layers_total']} in all, {stats['layers_unique']} unique, "
              f"{stats['layers_scanned']} scanned")  # fmt: skip
        print(f"second audit:                     {_spread(seconds)}, CPU "
              f"{med(cpus['second']):.2f} s; {100 * med(shares):.1f}% of the first (bar 3%), "
              f"{s2['layers_scanned']} layers scanned, "
              f"{s2['images'] / med(seconds):.1f} images/s")  # fmt: skip
        print(f"  of which the audit itself (stats.seconds, no interpreter start, no imports): "
              f"{med(inside):.2f} s, {s2['images'] / med(inside):.0f} images/s")  # fmt: skip
        if args.dask:
            return _dask(args, registry.host)
    finally:
        registry.stop()
        if own_rules is not None:
            shutil.rmtree(own_rules, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
