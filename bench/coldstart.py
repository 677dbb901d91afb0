"""Cold-start benchmark: the first scans on a fresh CI runner (issue 17).

leakscan is used as `pip install leakscan` leaves it: the wheel of this tree is built (its
build step, build_catalog.py, compiles kingfisher's rule catalog into it) and installed
with `pip install --no-deps --target` into bench/out/coldstart/ (its dependencies are this
interpreter's); every run imports that copy, not this tree. Beside it, the same install
without the compiled catalog (what a build without kingfisher, or leakscan before issue 17,
gives). Each round plays a fresh machine: a new empty HOME and XDG_CACHE_HOME, on 2 cores,
scanning fixtures/leaky-npm.tar (3 layers):
- "first scan (pip install)": `pip install leakscan && leakscan IMAGE`: the shipped
  compiled catalog is copied into the rules folder and loaded;
- "second scan": the same image again (the result store answers);
- "first scan, no shipped catalog": kingfisher compiles its catalog during the scan;
- "warm-up, no shipped catalog": `leakscan warm-up` alone, compiling (what an image build
  or a CI step before its cache is saved runs once, when nothing is shipped);
- "first scan after warm-up": the catalog compiled, the result store still empty;
- Trivy on the same tar (secret scanner, offline), cold (fresh cache) and with its cache.
Wall seconds and CPU seconds (user + system of the process tree) per run, medians over the
rounds (the machine may be shared: the CPU time says what the wall time does not). Where
each run's catalog came from (the rules folder's stamp: shipped, compiled) is counted.

With --image NAME (leakscan's image, built from the Dockerfile) the same scans run in
containers too (`--engine podman` or docker): the first with an empty /cache volume, the
second with the volume the first filled; what the engine adds to start a container is in
the figures, as it is in a CI job's. Their CPU column counts only what the engine's client
process waited for (the container itself runs under the engine's monitor).

Usage: python bench/coldstart.py [--rounds 5] [--cores 2] [--workdir bench/out] [--no-install]
                                 [--image NAME [--engine 'podman ...'] [--run-args '...']]

Targets: first scan (pip install, nothing else) <= 1.5 s, second scan <= 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare  # noqa: E402 - the private Trivy comes from the peer benchmark

REPO = Path(__file__).resolve().parents[1]
IMAGE = REPO / "fixtures" / "leaky-npm.tar"
TARGETS = {"first scan (pip install)": 1.5, "second scan": 0.5}


def fresh_env(home: Path) -> dict[str, str]:
    """A new machine's environment: its own HOME and cache folder, no cache settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KF_RULE_CACHE_DIR", "LEAKSCAN_CACHE_DIR", "XDG_CACHE_HOME")
    }
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    return env


def install(workdir: Path) -> tuple[Path, Path]:
    """The wheel of this tree installed into ``workdir/site``, and a copy of that install
    without the compiled catalog in ``workdir/site-bare``."""
    shutil.rmtree(workdir, ignore_errors=True)
    wheels = workdir / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheels), str(REPO)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = wheels.glob("leakscan-*.whl")
    site = workdir / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
         "--target", str(site), str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    if not (site / "leakscan" / "detectors" / "compiled").is_dir():
        sys.exit(f"{wheel.name} carries no compiled catalog (is kingfisher installed here?)")
    bare = workdir / "site-bare"
    shutil.copytree(site, bare, ignore=shutil.ignore_patterns("compiled"))
    return site, bare


def origin(home: Path) -> str:
    """Where the catalog in ``home``'s rules folder came from, as its stamp says."""
    for stamp in (home / ".cache" / "leakscan" / "rules").glob("kingfisher-*.json"):
        return str(json.loads(stamp.read_text()).get("origin"))
    return "none"


# One fresh first scan, phase by phase, one after the other (in a real run the catalog loads
# on a thread while the CLI imports): the interpreter, the CLI's imports (detect-secrets and
# its plugins among them), the rule catalog (copied and loaded, or compiled), the scan. Wall
# and CPU seconds of each, as JSON on stdout; the report goes nowhere.
PHASES = r"""
import json, os, sys, time
wall, cpu = time.perf_counter, time.process_time
marks = {"start": (wall(), cpu())}
def mark(name, since):
    marks[name] = (wall() - since[0], cpu() - since[1])
at = (wall(), cpu())
import leakscan.cli, leakscan.scan, leakscan.detectors.kingfisher as kf
mark("imports: CLI, scan", at)
at = (wall(), cpu())
import leakscan.detectors.detect_secrets
mark("imports: detect-secrets", at)
at = (wall(), cpu())
kf.catalog()
mark("rule catalog", at)
marks["catalog origin"] = kf.catalog_origin()
at = (wall(), cpu())
sys.argv = ["leakscan", *sys.argv[1:]]
from leakscan.__main__ import main
try:
    main()
except SystemExit:
    pass
mark("scan and report", at)
del marks["start"]
sys.stderr.write(json.dumps(marks))
"""


def phases(env: dict[str, str], cwd: Path) -> dict[str, object]:
    """The phases of one first scan (PHASES) in ``env``, and the bare interpreter's start."""
    start = timed([sys.executable, "-c", "pass"], env, cwd)
    done = subprocess.run(
        [sys.executable, "-c", PHASES, str(IMAGE), "--format", "json", "-o", os.devnull,
         "--fail-on", "none"],
        env=env, cwd=cwd, capture_output=True, text=True, check=True,
    )  # fmt: skip
    marks: dict[str, object] = {"interpreter start": start}
    marks.update(json.loads(done.stderr.strip().splitlines()[-1]))
    return marks


def timed(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> tuple[float, float]:
    """(wall, cpu) seconds of ``cmd`` and everything it waited for."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, env=env, cwd=cwd, check=False)
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
    site, bare = install(args.workdir / "coldstart")
    print(f"leakscan: the wheel of {REPO.name} installed in {site} (and without its catalog)")
    tools = compare.install_peers(args.workdir / "peers-venv", ["trivy"], not args.no_install)
    binary = tools["trivy"].binary
    print(f"trivy: {tools['trivy'].version or tools['trivy'].missing}")
    rows: dict[str, list[tuple[float, float]]] = {}

    def note(name: str, figures: tuple[float, float]) -> None:
        rows.setdefault(name, []).append(figures)

    origins: dict[str, list[str]] = {}
    steps: dict[str, list[dict[str, object]]] = {}

    def installed(folder: Path) -> Callable[[Path], dict[str, str]]:
        """A fresh machine's environment with leakscan installed in ``folder``."""
        return lambda home: {**fresh_env(home), "PYTHONPATH": str(folder)}

    shipped_env, bare_env = installed(site), installed(bare)
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="leakscan-cold-") as tmp:
            work = Path(tmp)
            fresh, nothing, warmed = work / "fresh", work / "nothing", work / "warmed"
            for home in (fresh, nothing, warmed):
                home.mkdir()
            # run from the install: from this tree, `python -m` would import the tree's
            note("first scan (pip install)", timed(scan(), shipped_env(fresh), site))
            origins.setdefault("first scan (pip install)", []).append(origin(fresh))
            note("second scan", timed(scan(), shipped_env(fresh), site))
            note("first scan, no shipped catalog", timed(scan(), bare_env(nothing), bare))
            origins.setdefault("first scan, no shipped catalog", []).append(origin(nothing))
            note("warm-up, no shipped catalog", timed(leakscan("warm-up"), bare_env(warmed), bare))
            note("first scan after warm-up", timed(scan(), bare_env(warmed), bare))
            for name, folder, env in (
                ("pip install", site, shipped_env),
                ("no shipped catalog", bare, bare_env),
            ):
                home = work / f"phases-{name}"
                home.mkdir()
                steps.setdefault(name, []).append(phases(env(home), folder))
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
                start = [*run[:i], "--entrypoint", "python", args.image, "-c", "pass"]
                note("image: container start only", timed(start, dict(os.environ)))
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
    for name, seen in origins.items():
        counts = ", ".join(f"{o} {seen.count(o)}" for o in sorted(set(seen)))
        print(f"catalog of {name}: {counts}")
    for name, runs in steps.items():
        origin_seen = sorted({str(r["catalog origin"]) for r in runs})
        print(f"\nfirst scan phase by phase, {name} (catalog {', '.join(origin_seen)}; "
              f"one after the other; medians)")  # fmt: skip
        print(f"  {'':26} {'wall':>6} {'cpu':>6}")
        for phase in [k for k in runs[0] if k != "catalog origin"]:
            walls = [float(r[phase][0]) for r in runs]  # type: ignore[index]
            cpus = [float(r[phase][1]) for r in runs]  # type: ignore[index]
            print(f"  {phase:26} {statistics.median(walls):6.2f} {statistics.median(cpus):6.2f}")
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
