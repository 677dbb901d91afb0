"""What the result store saves on an image that holds a repository with its ``.git`` (issue
14): ``COPY . /app`` ships every committed file twice, once in the working tree and once as
a blob of the history, and a rebuilt image ships them again in new layers.

It builds, once (cached under the work dir), a real repository with a working tree equal to
its HEAD: files of the running Python's library tree (real content nobody here wrote, no
``__pycache__``) committed 300 at a time with ``git add``/``git commit``, then ``--edits``
commits that each change one line of one Python file, then ``git gc``. Two images hold it at
``/app`` over a base layer (unpacked ``docker save`` folders); they differ by one line of
one file in each layer, so the second is the first rebuilt: new layer digests, the same
files and blobs.

Four scans (``python -m leakscan IMAGE --format json --workers 1``), each the median of
``--rounds`` runs, wall and CPU (user + system of the process) seconds:

- **cold, no store**: ``--no-cache``;
- **cold, new store**: a store of its own each run (a blob equal to its working-tree file
  is answered by that file's result in the same scan);
- **warm**: the same image again, the store it filled;
- **re-layered**: the second image, with the store the first filled.

Every report must be the cold one (the ``cache`` statistics aside): exit 1 when one is not.

Usage: python bench/git_recall.py [--workdir bench/out] [--source-mb 40] [--edits 300]
                                  [--rounds 3] [--regen]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from gitrun import git

HERE = Path(__file__).resolve().parent
VERSION = 1  # bump when the generated repository changes
MAX_FILE = 4 << 20


def build_repo(repo: Path, source_mb: int, edits: int) -> None:
    """The repository and its working tree (equal to HEAD)."""
    if repo.exists():
        shutil.rmtree(repo)
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    root = Path(os.__file__).resolve().parent
    budget, total, batch, when = source_mb << 20, 0, 0, 1_600_000_000
    python: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            src = Path(folder) / name
            if src.is_symlink() or not src.is_file() or src.stat().st_size > MAX_FILE:
                continue
            if total + src.stat().st_size > budget:
                break
            dst = repo / src.relative_to(root)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            total += src.stat().st_size
            batch += 1
            if dst.suffix == ".py":
                python.append(dst)
            if batch == 300:
                when += 3600
                git(repo, "add", "-A")
                git(repo, "commit", "-q", "-m", f"Add {batch} files", when=when)
                batch = 0
        if total >= budget * 0.99:
            break
    when += 3600
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", "Add the rest", when=when)
    for n in range(edits):
        path = python[(n * 7919) % len(python)]
        lines = path.read_bytes().split(b"\n")
        k = (n * 104729) % len(lines)
        lines[k] += b"  # edit %d" % n
        path.write_bytes(b"\n".join(lines))
        when += 60
        git(repo, "commit", "-q", "-am", f"Edit {n}", when=when)
    git(repo, "gc", "-q")


def _layer_tar(files: list[tuple[str, bytes]], tree: Path | None, at: str) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_600_000_000
            tar.addfile(info, io.BytesIO(data))
        if tree is not None:
            for folder, dirs, names in sorted(os.walk(tree)):
                dirs.sort()
                for name in sorted(names):
                    path = Path(folder) / name
                    if path.is_symlink():
                        continue
                    info = tar.gettarinfo(str(path), f"{at}/{path.relative_to(tree).as_posix()}")
                    info.mtime, info.uid, info.gid, info.uname, info.gname = (
                        1_600_000_000,
                        0,
                        0,
                        "",
                        "",
                    )
                    with path.open("rb") as fh:
                        tar.addfile(info, fh)
    return out.getvalue()


def write_image(repo: Path, out: Path, variant: str) -> Path:
    """An unpacked ``docker save`` folder: a base layer, then the repository at /app."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    layers = [
        _layer_tar([("etc/os-release", f"ID=bench\nBUILD={variant}\n".encode())], None, ""),
        _layer_tar([("etc/build-id", variant.encode())], repo, "app"),
    ]
    names, diff_ids = [], []
    for data in layers:
        digest = hashlib.sha256(data).hexdigest()
        (out / f"{digest}.tar").write_bytes(data)
        names.append(f"{digest}.tar")
        diff_ids.append(f"sha256:{digest}")
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {"created_by": "/bin/sh -c #(nop) ADD file:base in / "},
            {"created_by": "COPY . /app # buildkit"},
        ],
    }
    raw = json.dumps(config).encode()
    config_name = f"{hashlib.sha256(raw).hexdigest()}.json"
    (out / config_name).write_bytes(raw)
    manifest = [
        {"Config": config_name, "RepoTags": [f"bench/git-recall:{variant}"], "Layers": names}
    ]
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def _run(image: Path, *extra: str) -> tuple[float, float, dict[str, object]]:
    """One scan: wall and CPU seconds, and the JSON report."""
    with tempfile.NamedTemporaryFile(suffix=".json") as report:
        cmd = [sys.executable, "-m", "leakscan", str(image), "--format", "json", "--workers", "1"]
        cmd += ["--min-confidence", "low"]  # low findings too: more to compare
        start = time.monotonic()
        proc = subprocess.Popen(
            [*cmd, "--output", report.name, *extra],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - start
        if os.waitstatus_to_exitcode(status) not in (0, 1):
            raise SystemExit(f"leakscan failed on {image} ({extra})")
        data = json.loads(Path(report.name).read_bytes())
    data.pop("cache", None)
    return wall, usage.ru_utime + usage.ru_stime, data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=HERE / "out")
    parser.add_argument("--source-mb", type=int, default=40)
    parser.add_argument("--edits", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--regen", action="store_true")
    args = parser.parse_args()
    work = args.workdir / "git_recall"
    stamp = work / "stamp.json"
    want = {"version": VERSION, "source_mb": args.source_mb, "edits": args.edits}
    repo = work / "repo"
    if args.regen or not stamp.exists() or json.loads(stamp.read_text()) != want:
        build_repo(repo, args.source_mb, args.edits)
        write_image(repo, work / "image-a", "a")
        write_image(repo, work / "image-b", "b")
        stamp.write_text(json.dumps(want))
    first, second = work / "image-a", work / "image-b"
    figures: dict[str, list[tuple[float, float]]] = {}
    same = True
    for _ in range(args.rounds):
        store = Path(tempfile.mkdtemp(prefix="store-", dir=work))
        try:
            cold = _run(first, "--no-cache")
            fresh = _run(first, "--cache-dir", str(store))
            warm = _run(first, "--cache-dir", str(store))
            relayered = _run(second, "--cache-dir", str(store))
            cold_b = _run(second, "--no-cache")
        finally:
            shutil.rmtree(store)
        same = same and cold[2] == fresh[2] == warm[2] and relayered[2] == cold_b[2]
        for name, one in (
            ("cold, no store", cold),
            ("cold, new store", fresh),
            ("warm", warm),
            ("re-layered", relayered),
        ):
            figures.setdefault(name, []).append(one[:2])
    findings = len(cold[2]["images"][0]["findings"])  # type: ignore[index]
    print(f"repository {args.source_mb} MiB of files, {args.edits} edits; {findings} findings")
    print(f"{'scan':<18} {'wall s':>8} {'cpu s':>8}   (medians of {args.rounds})")
    for name, runs in figures.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        print(f"{name:<18} {wall:8.2f} {cpu:8.2f}")
    print("reports equal to cold:", "yes" if same else "NO")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
