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

With ``--dulwich PYTHON`` (an interpreter that can import dulwich, e.g. a throwaway venv
under bench/out; dulwich is no dependency of leakscan) it also compares readers: dulwich
and leakscan's own reader each reading every object of the pack (deltas resolved), one
process each, CPU seconds and peak RSS; and dulwich over hostile packs (a delta loop,
deltas whose base is outside the pack or inside another object, a zlib bomb), each with a
time bound: whether it raises, hangs or dies.

Usage: python bench/git_history.py [--workdir bench/out] [--source-mb 760] [--edits 3000]
                                   [--rounds 3] [--bound-mb 250] [--regen] [--dulwich PY]
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
import zlib
from pathlib import Path
from typing import Any

from gitrun import git, git_env

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from gitrepos import PackWriter, obj_header, ofs, pack_index  # noqa: E402
from gitrepos import oid as git_oid  # noqa: E402

HERE = Path(__file__).resolve().parent
VERSION = 2  # bump when the generated repository changes
MAX_FILE = 32 << 20


# more real Python sources, read once the library tree is all in (it holds ~490 MiB here):
# the Google Cloud SDK's Python packages, when this machine has them, as gcloud/...
MORE_SOURCES = [("gcloud", Path("/usr/lib/google-cloud-sdk/lib"))]


def _roots() -> list[tuple[str, Path]]:
    """Where the files come from: a prefix in the repository and a folder."""
    return [("", Path(os.__file__).resolve().parent)] + [
        (prefix, root) for prefix, root in MORE_SOURCES if root.is_dir()
    ]


def _sources(budget: int) -> list[tuple[str, Path]]:
    """Real files of the source trees (their path in the repository and on disk), each tree
    sorted, up to ``budget`` bytes."""
    out: list[tuple[str, Path]] = []
    total = 0
    for prefix, root in _roots():
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
                rel = path.relative_to(root).as_posix()
                out.append((f"{prefix}/{rel}" if prefix else rel, path))
                total += size
    return out


def _blob(data: bytes) -> bytes:
    return b"data %d\n" % len(data) + data + b"\n"


def build_repo(repo: Path, source_mb: int, edits: int) -> None:
    """The repository, through git fast-import (one stream, no working tree)."""
    if repo.exists():
        shutil.rmtree(repo)
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "--bare", "-b", "main")
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
    texts: dict[str, Path] = {}
    contents: dict[str, bytes] = {}
    proc = subprocess.Popen(
        ["git", "fast-import", "--quiet", "--depth=50"],
        cwd=repo,
        stdin=subprocess.PIPE,
        env=git_env(),
    )
    assert proc.stdin is not None

    def flush() -> None:
        assert proc.stdin is not None
        proc.stdin.write(bytes(stream))
        stream.clear()

    for rel, path in files:
        data = path.read_bytes()
        batch.append((rel, data))
        if rel.endswith(".py") and 2_000 < len(data) < 200_000:
            texts[rel] = path
        if len(batch) >= 300:
            commit(f"Import {batch[0][0].split('/')[0]} and {len(batch) - 1} more files", batch)
            batch = []
            flush()
    if batch:
        commit("Import the rest", batch)
        flush()
    names = list(texts)
    for n in range(edits):
        rel = rng.choice(names)
        data = contents.get(rel) or texts[rel].read_bytes()
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
    git(repo, "gc", "-q")


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
    for line in git(repo, "rev-list", "--objects", "--all").decode().splitlines():
        oid, _, path = line.partition(" ")
        if path:
            names.setdefault(oid, path)
    dump = git(repo, "cat-file", "--batch-all-objects", "--batch")
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


def read_all(pack: Path, reader: str) -> None:
    """(in a child process) Read every object of ``pack`` (with its .idx), deltas resolved,
    with ``reader`` (leakscan or dulwich); print the objects, their bytes, CPU seconds."""
    start = time.process_time()
    n = total = 0
    if reader == "dulwich":
        for obj in _dulwich_pack(pack).iterobjects():
            n += 1
            total += obj.raw_length()
    else:
        from leakscan.layers.git.objects import Budget, ObjectStore, Spool

        store = ObjectStore(Budget(1 << 40, 1 << 50, 1 << 30, 4095))
        with open(pack, "rb") as fh:
            spool = Spool(fh, 0, pack.stat().st_size)
            problems = store.add_pack(spool, pack.with_suffix(".idx").read_bytes())
            assert not problems, problems
            for kind in (1, 2, 3, 4):
                for oid in store.ids(kind):
                    got = store.get(oid)
                    assert got is not None
                    n += 1
                    total += len(got[1])
    print(json.dumps({"objects": n, "bytes": total, "cpu": time.process_time() - start}))


def _dulwich_pack(pack: Path) -> Any:
    """dulwich's Pack of ``pack`` (its .idx beside it), sha1 objects."""
    from dulwich.pack import Pack  # type: ignore[import-not-found]

    try:
        from dulwich.object_format import SHA1  # type: ignore[import-not-found]
    except ImportError:  # (dulwich before 1.0 had no object formats)
        return Pack(str(pack.with_suffix("")))
    return Pack(str(pack.with_suffix("")), object_format=SHA1)


def _write_pack(folder: Path, objects: list[tuple[bytes, bytes]]) -> None:
    """``objects`` ((header, zlib payload), the id the index gives it) as pack-x.pack and
    a version 2 pack-x.idx as git writes them."""
    writer = PackWriter()
    for raw, _ in objects:
        writer.raw(raw, b"")
    pack = writer.pack()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pack-x.pack").write_bytes(pack)
    ids = [object_id for _, object_id in objects]
    (folder / "pack-x.idx").write_bytes(pack_index(pack, writer.offsets, ids))


def hostile_packs(root: Path) -> dict[str, Path]:
    """Small hostile packs, each beside a whole blob that reads fine."""
    fine = (obj_header(3, 5) + zlib.compress(b"fine\n"), git_oid("blob", b"fine\n"))
    a, b = git_oid("blob", b"A"), git_oid("blob", b"B")
    delta_on = bytes([1, 1, 1]) + b"X"  # base 1 byte, result 1 byte, insert "X"
    cases = {
        # two REF_DELTAs, each on the other
        "delta loop": [
            fine,
            (obj_header(7, 4) + b + zlib.compress(delta_on), a),
            (obj_header(7, 4) + a + zlib.compress(delta_on), b),
        ],
        # OFS_DELTA bases before the pack's start, and 3 bytes back (inside an object)
        "delta base outside the pack": [
            fine,
            (obj_header(6, 4) + ofs(10_000) + zlib.compress(delta_on), git_oid("blob", b"X")),
        ],
        "delta base inside an object": [
            fine,
            (obj_header(6, 4) + ofs(3) + zlib.compress(delta_on), git_oid("blob", b"X")),
        ],
        # declares 10 bytes, inflates to 256 MiB of zeros
        "zlib bomb": [
            fine,
            (obj_header(3, 10) + zlib.compress(bytes(256 << 20), 9), git_oid("blob", b"Z")),
        ],
    }
    out = {}
    for n, (name, objects) in enumerate(cases.items()):
        _write_pack(root / f"case{n}", objects)
        out[name] = root / f"case{n}" / "pack-x.pack"
    return out


def dulwich_on(pack: Path) -> None:
    """(in a child process) dulwich reading every object of a hostile pack, by iterating
    the pack and by id; print what happened to each."""
    said: list[str] = []
    p = _dulwich_pack(pack)
    try:
        said.append(f"iterobjects: {sum(1 for _ in p.iterobjects())} objects")
    except Exception as exc:  # noqa: BLE001 (what it raises is the figure)
        said.append(f"iterobjects raised {type(exc).__name__}")
    for sha, _, _ in p.index.iterentries():
        try:
            kind, data = p.get_raw(sha)
            said.append(f"get_raw: {len(data)} bytes")
        except Exception as exc:  # noqa: BLE001
            said.append(f"get_raw raised {type(exc).__name__}")
    print("; ".join(said))


def compare_readers(pack: Path, python: str, rounds: int) -> None:
    """leakscan's reader and dulwich, each reading every object of ``pack``; dulwich over
    the hostile packs."""
    probe = subprocess.run([python, "-c", "import dulwich"], capture_output=True, check=False)
    if probe.returncode != 0:
        print(f"dulwich: skipped ({python} cannot import dulwich)")
        return
    version = subprocess.run(
        [python, "-c", "import dulwich; print('.'.join(map(str, dulwich.__version__)))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    got: dict[str, list[tuple[float, float, int, str]]] = {"leakscan": [], "dulwich": []}
    for _ in range(rounds):
        for reader, exe in (("leakscan", sys.executable), ("dulwich", python)):
            start = time.perf_counter()
            proc = subprocess.Popen(
                [exe, __file__, "--read-all", reader, str(pack)],
                stdout=subprocess.PIPE,
                env=env,
            )
            assert proc.stdout is not None
            out = proc.stdout.read().decode()
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - start
            if os.waitstatus_to_exitcode(status) != 0:
                print(f"{reader} reader failed", file=sys.stderr)
                return
            cpu = usage.ru_utime + usage.ru_stime
            got[reader].append((wall, cpu, usage.ru_maxrss, out))
    print(f"readers over every object of the pack (dulwich {version}); medians of {rounds}:")
    for reader, runs in got.items():
        last = json.loads(runs[-1][3])
        print(
            f"  {reader:9} {statistics.median(r[1] for r in runs):7.2f} s CPU  "
            f"{statistics.median(r[0] for r in runs):7.2f} s wall  peak "
            f"{statistics.median(r[2] for r in runs) / 1024:.0f} MiB  "
            f"({last['objects']} objects, {last['bytes'] / (1 << 20):.0f} MiB)"
        )
    print("dulwich over hostile packs (each beside a blob that reads fine; 60 s bound):")
    for name, bad in hostile_packs(pack.parent.parent.parent.parent / "hostile").items():
        start = time.perf_counter()
        said = bad.with_suffix(".out")
        with open(said, "wb") as sink:
            proc = subprocess.Popen(
                [python, __file__, "--dulwich-on", str(bad)],
                stdout=sink,
                stderr=subprocess.DEVNULL,
            )
        verdict = "HANG (killed after 60 s)"
        peak = 0
        while time.perf_counter() - start < 60:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                code = os.waitstatus_to_exitcode(status)
                peak = usage.ru_maxrss >> 10
                verdict = said.read_text().strip() or f"died (exit {code})"
                if code < 0:
                    verdict = f"killed by signal {-code}"
                break
            time.sleep(0.05)
        else:
            proc.kill()
            os.wait4(proc.pid, 0)
        print(f"  {name:28} {verdict} ({time.perf_counter() - start:.1f} s, peak {peak} MiB)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=HERE / "out")
    parser.add_argument("--source-mb", type=int, default=760)
    parser.add_argument("--edits", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bound-mb", type=int, default=250)
    parser.add_argument("--regen", action="store_true")
    parser.add_argument(
        "--dulwich",
        metavar="PYTHON",
        help="also compare with dulwich, run by this interpreter (e.g. a venv's python)",
    )
    parser.add_argument(
        "--readers-only", action="store_true", help="with --dulwich: only compare the readers"
    )
    parser.add_argument("--engine-floor", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--read-all", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--dulwich-on", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine_floor:
        engine_floor(args.engine_floor)
        return 0
    if args.read_all:
        read_all(Path(args.read_all[1]), args.read_all[0])
        return 0
    if args.dulwich_on:
        dulwich_on(args.dulwich_on)
        return 0
    if shutil.which("git") is None:
        print("git is needed", file=sys.stderr)
        return 2
    work = args.workdir / "git_history"
    repo = work / "repo.git"
    stamp = work / "plan.json"
    plan = {
        "version": VERSION,
        "source_mb": args.source_mb,
        "edits": args.edits,
        "roots": [str(root) for _, root in _roots()],
    }
    if args.regen or not stamp.exists() or json.loads(stamp.read_text()) != plan:
        work.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        build_repo(repo, args.source_mb, args.edits)
        write_image(repo, work / "image")
        stamp.write_text(json.dumps(plan))
        print(f"built the repository and image in {time.perf_counter() - start:.0f} s")
    packs = list((repo / "objects" / "pack").glob("*.pack"))
    pack_mb = sum(p.stat().st_size for p in packs) / (1 << 20)
    count = git(repo, "count-objects", "-v").decode()
    commits = int(git(repo, "rev-list", "--count", "--all"))
    print(
        f"repository: {pack_mb:.0f} MiB of packs, {commits} commits; {count.split()[-1]} "
        f"MiB size-garbage; {' '.join(count.split()[4:8])}"
    )
    if args.dulwich:
        compare_readers(packs[0], args.dulwich, args.rounds)
    if args.readers_only:
        return 0
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
