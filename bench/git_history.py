"""What reading a git history inside a layer costs (issue 14): leakscan reading and scanning
every object of a large packed repository, against the floor of git itself reading them
plus the engines' scan of those bytes.

It builds, once (cached under the work dir), a real repository with a long history: the
files of the running Python's library tree (standard library and site-packages, no
``__pycache__``; real content nobody here wrote) committed a few hundred files at a time,
then ``--edits`` commits that each change one line of one Python file (so the pack holds
long delta chains), written with ``git fast-import`` and packed by ``git gc``
(``--aggressive`` off: git's defaults, depth 50). The image is one layer holding that
repository at ``/srv/app`` (``.git`` and no working tree), written as an unpacked
``docker save`` directory.

Three figures, each the median of ``--rounds`` runs:

- **leakscan**: ``python -m leakscan DIR --no-cache --workers 1 --format json`` (read the
  layer, spool the pack, read and resolve every object, walk the history, scan every blob
  and commit message), wall seconds and peak RSS;
- **git**: ``git cat-file --batch-all-objects --batch > /dev/null`` in the repository: git
  reading and inflating every object, deltas resolved, in C;
- **engines**: the engines leakscan runs (every blob with its path in the repository, as a
  scan hands it, and every commit message) timed alone in one process over bytes already
  in memory (git's output), the catalog load left out.

``git + engines`` is the floor: no reader of these objects that scans them with these
engines can do better on this machine. Exit status 0 when leakscan's peak RSS is within
``--bound-mb``, 1 when not, 2 on bad usage.

Usage: python bench/git_history.py [--workdir bench/out] [--source-mb 700] [--edits 3000]
                                   [--rounds 3] [--bound-mb 250] [--regen]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
VERSION = 1  # bump when the generated repository changes
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.internal",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.internal",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}
MAX_FILE = 32 << 20


def _git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(
        ["git", *args],
        cwd=repo,
        input=stdin,
        env={**os.environ, **GIT_ENV},
        check=True,
        capture_output=True,
    ).stdout


def _sources(budget: int) -> list[Path]:
    """Real files of the library tree, sorted, up to ``budget`` bytes."""
    root = Path(os.__file__).resolve().parent
    out: list[Path] = []
    total = 0
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            path = Path(folder) / name
            if path.is_symlink() or not path.is_file():
                continue
            size = path.stat().st_size
            if size > MAX_FILE or not os.access(path, os.R_OK):
                continue
            if total + size > budget:
                return out
            out.append(path)
            total += size
    return out


def _blob(data: bytes) -> bytes:
    return b"data %d\n" % len(data) + data + b"\n"


def build_repo(repo: Path, source_mb: int, edits: int) -> None:
    """The repository, through git fast-import (one stream, no working tree)."""
    if repo.exists():
        shutil.rmtree(repo)
    repo.mkdir(parents=True)
    _git(repo, "init", "-q", "--bare", "-b", "main")
    root = Path(os.__file__).resolve().parent
    files = _sources(source_mb << 20)
    rng = random.Random(14)
    stream = bytearray()
    when = 1_600_000_000
    mark = 0

    def commit(message: str, changes: list[tuple[str, bytes]]) -> None:
        nonlocal when, mark
        when += 3600
        mark += 1
        msg = message.encode()
        stream.extend(b"commit refs/heads/main\nmark :%d\n" % mark)
        stream.extend(b"author Bench <bench@example.internal> %d +0000\n" % when)
        stream.extend(b"committer Bench <bench@example.internal> %d +0000\n" % when)
        stream.extend(b"data %d\n%s\n" % (len(msg), msg))
        for path, data in changes:
            stream.extend(b"M 100644 inline %s\n" % path.encode("utf-8", "surrogateescape"))
            stream.extend(_blob(data))
        stream.extend(b"\n")

    batch: list[tuple[str, bytes]] = []
    texts: list[str] = []
    contents: dict[str, bytes] = {}
    proc = subprocess.Popen(
        ["git", "fast-import", "--quiet", "--depth=50"],
        cwd=repo,
        stdin=subprocess.PIPE,
        env={**os.environ, **GIT_ENV},
    )
    assert proc.stdin is not None

    def flush() -> None:
        assert proc.stdin is not None
        proc.stdin.write(bytes(stream))
        stream.clear()

    for path in files:
        rel = path.relative_to(root).as_posix()
        data = path.read_bytes()
        batch.append((rel, data))
        if rel.endswith(".py") and 2_000 < len(data) < 200_000:
            texts.append(rel)
        if len(batch) >= 300:
            commit(f"Import {batch[0][0].split('/')[0]} and {len(batch) - 1} more files", batch)
            batch = []
            flush()
    if batch:
        commit("Import the rest", batch)
        flush()
    for n in range(edits):
        rel = rng.choice(texts)
        data = contents.get(rel) or (root / rel).read_bytes()
        lines = data.split(b"\n")
        k = rng.randrange(len(lines))
        lines[k] = lines[k] + b"  # reviewed %d" % n
        data = b"\n".join(lines)
        contents[rel] = data
        commit(f"Review {rel} (round {n})", [(rel, data)])
        if len(stream) > 8 << 20:
            flush()
    flush()
    proc.stdin.close()
    if proc.wait() != 0:
        raise SystemExit("git fast-import failed")
    _git(repo, "gc", "-q")


def write_image(repo: Path, out: Path) -> Path:
    """One layer holding ``repo`` as /srv/app/.git, as an unpacked docker save folder."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    layer = out / "layer.tar"
    with tarfile.open(layer, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(repo, arcname="srv/app/.git")
    h = hashlib.sha256()
    with open(layer, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    diff_id = "sha256:" + h.hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "COPY . /srv/app # buildkit"}],
    }
    (out / "config.json").write_text(json.dumps(config))
    manifest = [{"Config": "config.json", "RepoTags": ["githistory:1"], "Layers": ["layer.tar"]}]
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def measure(cmd: list[str], cwd: Path, stdout: Path | None = None) -> tuple[float, int, int]:
    """Wall seconds, peak RSS (KiB) of the process, and its exit status."""
    with open(stdout or os.devnull, "wb") as sink:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=sink, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    return wall, usage.ru_maxrss, os.waitstatus_to_exitcode(status)


def engine_floor(repo: Path) -> None:
    """(in a child process) Time the engines alone over every blob, with its path, and
    every commit message; print the seconds and the bytes."""
    import io

    from leakscan.detectors import Subject, default_detectors
    from leakscan.detectors.stream import start_scan

    engines = default_detectors()
    names: dict[str, str] = {}
    for line in _git(repo, "rev-list", "--objects", "--all").decode().splitlines():
        oid, _, path = line.partition(" ")
        if path:
            names.setdefault(oid, path)
    dump = _git(repo, "cat-file", "--batch-all-objects", "--batch")
    objects: list[tuple[str, str, bytes]] = []
    pos = 0
    while pos < len(dump):
        end = dump.index(b"\n", pos)
        oid, kind, size = dump[pos:end].decode().split()
        body = dump[end + 1 : end + 1 + int(size)]
        pos = end + 2 + int(size)
        if kind == "blob":
            objects.append((oid, names.get(oid, oid), body))
        elif kind == "commit":
            objects.append((oid, "COMMIT_EDITMSG", body.partition(b"\n\n")[2]))
    del dump
    engines.scan(b"warm up")
    total = sum(len(b) for _, _, b in objects)
    start = time.perf_counter()
    for _, path, body in objects:
        scanner = engines.scanner(Subject(f"/srv/app/.git!/{path}", len(body)))
        if scanner is not None:
            start_scan(scanner, io.BytesIO(body)).result()
    print(json.dumps({"seconds": time.perf_counter() - start, "bytes": total}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=HERE / "out")
    parser.add_argument("--source-mb", type=int, default=700)
    parser.add_argument("--edits", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bound-mb", type=int, default=250)
    parser.add_argument("--regen", action="store_true")
    parser.add_argument("--engine-floor", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine_floor:
        engine_floor(args.engine_floor)
        return 0
    if shutil.which("git") is None:
        print("git is needed", file=sys.stderr)
        return 2
    work = args.workdir / "git_history"
    repo = work / "repo.git"
    stamp = work / "plan.json"
    plan = {"version": VERSION, "source_mb": args.source_mb, "edits": args.edits}
    if args.regen or not stamp.exists() or json.loads(stamp.read_text()) != plan:
        work.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        build_repo(repo, args.source_mb, args.edits)
        write_image(repo, work / "image")
        stamp.write_text(json.dumps(plan))
        print(f"built the repository and image in {time.perf_counter() - start:.0f} s")
    packs = list((repo / "objects" / "pack").glob("*.pack"))
    pack_mb = sum(p.stat().st_size for p in packs) / (1 << 20)
    count = _git(repo, "count-objects", "-v").decode()
    commits = int(_git(repo, "rev-list", "--count", "--all"))
    print(
        f"repository: {pack_mb:.0f} MiB of packs, {commits} commits; {count.split()[-1]} "
        f"MiB size-garbage; {' '.join(count.split()[4:8])}"
    )
    image = work / "image"
    runs: dict[str, list[float]] = {"leakscan": [], "git": [], "engines": []}
    rss: list[int] = []
    report = work / "report.json"
    for _ in range(args.rounds):
        wall, peak, status = measure(
            [
                sys.executable,
                "-m",
                "leakscan",
                str(image),
                "--no-cache",
                "--workers",
                "1",
                "--format",
                "json",
                "--output",
                str(report),
            ],
            work,
        )
        if status not in (0, 1):
            print(f"leakscan exited {status}", file=sys.stderr)
            return 2
        runs["leakscan"].append(wall)
        rss.append(peak)
        wall, _, _ = measure(["git", "cat-file", "--batch-all-objects", "--batch"], repo)
        runs["git"].append(wall)
        floor = subprocess.run(
            [sys.executable, __file__, "--engine-floor", str(repo)],
            capture_output=True,
            check=True,
            text=True,
        )
        runs["engines"].append(json.loads(floor.stdout)["seconds"])
    scanned = json.loads(floor.stdout)["bytes"] / (1 << 20)
    found = json.loads(report.read_text())["images"][0]
    med = {k: statistics.median(v) for k, v in runs.items()}
    peak_mb = statistics.median(rss) / 1024
    print(f"objects' bytes scanned: {scanned:.0f} MiB; rounds: {args.rounds} (medians)")
    print(
        f"  leakscan (read + scan every object)  {med['leakscan']:7.2f} s   peak {peak_mb:.0f} MiB"
    )
    print(f"  git cat-file --batch-all-objects     {med['git']:7.2f} s")
    print(f"  engines over those bytes             {med['engines']:7.2f} s")
    floor_s = med["git"] + med["engines"]
    print(
        f"  floor (git + engines)                {floor_s:7.2f} s   leakscan / floor "
        f"{med['leakscan'] / floor_s:.2f}x"
    )
    print(
        f"  report: {len(found['findings'])} findings, {len(found['errors'])} errors, "
        f"{len(found['skipped'])} skipped"
    )
    ok = peak_mb <= args.bound_mb
    print(
        f"{'PASS' if ok else 'FAIL'}: peak RSS {peak_mb:.0f} MiB against the bound of "
        f"{args.bound_mb} MiB"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
