"""Cold-start benchmark: the first scans on a fresh CI runner (issue 17).

Each round plays a fresh machine: a new empty HOME and XDG_CACHE_HOME, on 2 cores, scanning
fixtures/leaky-npm.tar (3 layers):
- "first scan, nothing compiled": `pip install leakscan && leakscan IMAGE` as it stands;
  kingfisher compiles its rule catalog during the scan;
- "warm-up": `leakscan warm-up` alone (what an image build, an install step or a CI job
  before its cache is saved runs once);
- "first scan after warm-up": the catalog compiled, the result store still empty (a runner
  whose cache folder was restored, or leakscan's container image);
- "second scan": the same image again (the result store answers);
- Trivy on the same tar (secret scanner, offline), cold (fresh cache) and with its cache.
Wall seconds and CPU seconds (user + system of the process tree) per run, medians over the
rounds (the machine may be shared: the CPU time says what the wall time does not).

With --image NAME (leakscan's image, built from the Dockerfile) the same scans run in
containers too (`--engine podman` or docker): the first with an empty /cache volume, the
second with the volume the first filled; what the engine adds to start a container is in
the figures, as it is in a CI job's. Their CPU column counts only what the engine's client
process waited for (the container itself runs under the engine's monitor).

Usage: python bench/coldstart.py [--rounds 5] [--cores 2] [--workdir bench/out] [--no-install]
                                 [--image NAME [--engine 'podman ...'] [--run-args '...']]

Targets: first scan after warm-up <= 1.5 s, second scan <= 0.5 s.
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare  # noqa: E402 - the private Trivy comes from the peer benchmark

REPO = Path(__file__).resolve().parents[1]
IMAGE = REPO / "fixtures" / "leaky-npm.tar"
TARGETS = {"first scan after warm-up": 1.5, "second scan": 0.5}


def fresh_env(home: Path) -> dict[str, str]:
    """A new machine's environment: its own HOME and cache folder, no cache settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KF_RULE_CACHE_DIR", "LEAKSCAN_CACHE_DIR", "XDG_CACHE_HOME")
    }
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    return env


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, cpu) seconds of ``cmd`` and everything it waited for."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, env=env, check=False)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 1):
        sys.exit(f"{cmd[:4]} failed ({done.returncode}): {done.stderr.decode()[-400:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def leakscan(*args: str) -> list[str]:
    return [sys.executable, "-m", "leakscan", *args]


def scan() -> list[str]:
    return leakscan(str(IMAGE), "--format", "json", "--fail-on", "none")


def trivy(binary: str, cache: Path) -> list[str]:
    return [
        binary, "image", "--input", str(IMAGE), "--scanners", "secret",
        "--image-config-scanners", "secret", "--offline-scan", "--skip-db-update",
        "--format", "json", "--cache-dir", str(cache), "--quiet",
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cores", type=int, default=2, help="CPUs the runs may use (0: all)")
    ap.add_argument("--workdir", type=Path, default=Path(__file__).parent / "out")
    ap.add_argument("--no-install", action="store_true", help="no private Trivy install")
    ap.add_argument("--image", help="leakscan's container image, to time scans inside it")
    ap.add_argument(
        "--engine",
        default="podman",
        help="podman or docker, with options (--root DIR...), as a shell splits it",
    )
    ap.add_argument("--run-args", default="", help="options for `ENGINE run` (--ulimit ...)")
    args = ap.parse_args(argv)
    if args.cores:
        cpus = sorted(os.sched_getaffinity(0))[: args.cores]
        os.sched_setaffinity(0, cpus)  # inherited by every command below
    print(f"image: {IMAGE.name}; cores: {sorted(os.sched_getaffinity(0))}; rounds: {args.rounds}")
    tools = compare.install_peers(args.workdir / "peers-venv", ["trivy"], not args.no_install)
    binary = tools["trivy"].binary
    print(f"trivy: {tools['trivy'].version or tools['trivy'].missing}")
    rows: dict[str, list[tuple[float, float]]] = {}

    def note(name: str, figures: tuple[float, float]) -> None:
        rows.setdefault(name, []).append(figures)

    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="leakscan-cold-") as tmp:
            work = Path(tmp)
            bare, warmed = work / "bare", work / "warmed"
            bare.mkdir()
            warmed.mkdir()
            note("first scan, nothing compiled", timed(scan(), fresh_env(bare)))
            note("second scan", timed(scan(), fresh_env(bare)))
            note("warm-up", timed(leakscan("warm-up"), fresh_env(warmed)))
            note("first scan after warm-up", timed(scan(), fresh_env(warmed)))
            if args.image:
                volume = work / "volume"
                volume.mkdir()
                os.chown(volume, 10001, 10001)  # the image's user, as a named volume gives
                run = [
                    *shlex.split(args.engine), "run", *shlex.split(args.run_args),
                    "--rm", "--network", "none",
                    "-v", f"{IMAGE}:/scan/app.tar:ro", "-v", f"{volume}:/cache",
                    args.image, "/scan/app.tar", "--format", "json", "--fail-on", "none",
                ]  # fmt: skip
                note("image: first scan", timed(run, dict(os.environ)))
                note("image: second scan", timed(run, dict(os.environ)))
                # what the engine alone costs (its storage driver, the container's set-up)
                i = run.index(args.image)
                bare = [*run[:i], "--entrypoint", "python", args.image, "-c", "pass"]
                note("image: container start only", timed(bare, dict(os.environ)))
            if binary:
                cache = work / "trivy"
                note("trivy, empty cache", timed(trivy(binary, cache), fresh_env(work)))
                note("trivy, its cache kept", timed(trivy(binary, cache), fresh_env(work)))
            shutil.rmtree(work / "trivy", ignore_errors=True)

    print(f"\n{'':32} {'wall median':>11} {'min':>6} {'max':>6} {'cpu median':>11}")
    for name, runs in rows.items():
        walls = [w for w, _ in runs]
        cpu = statistics.median(c for _, c in runs)
        print(f"{name:32} {statistics.median(walls):11.2f} {min(walls):6.2f} {max(walls):6.2f} "
              f"{cpu:11.2f}")  # fmt: skip
    failed = 0
    print()
    for name, target in TARGETS.items():
        wall = statistics.median(w for w, _ in rows[name])
        ok = wall <= target
        failed += not ok
        print(f"{name:32} {wall:5.2f} s (target <= {target} s: {'met' if ok else 'NOT met'})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
