"""False positives per GiB: leakscan on an image of real content that nobody here wrote.

Builds, streaming to disk with the writer of ``bench/memory.py``, an image with no planted
secret, made of real third-party content fetched once and cached under the work dir:

- a Debian bookworm root filesystem (``debootstrap --variant=minbase``, made by
  ``bench/rootfs.py``); when debootstrap cannot run, ``/usr``, ``/lib``
  and ``/etc`` of this machine instead (world-readable files only), and the report says so;
- the Python standard library of the running Python;
- a dozen popular PyPI packages (``pip install --target``);
- a dozen popular npm packages (``npm install``, install scripts not run);
- a busybox-static root filesystem (busybox and its applet symlinks), under ``/busybox``
  as distroless debug images have it;
- git repositories made from the sources of a few installed Python packages (several
  commits each, packed by ``git gc``), under ``/srv`` as ``COPY . /srv`` leaves them: their
  histories are read like any layer file.

Then scans it with ``python -m leakscan`` at the default confidence (medium and above) and
at ``--min-confidence low``, and prints findings per GiB at each level, a breakdown by rule
with example paths, and the files with the most findings. Secrets are never printed: only
the report's ``redacted`` form.

Usage: python bench/clean_corpus.py [--workdir bench/out] [--regen] [--top 30]
                                    [--host-mb 600] [--no-debootstrap]

Exit status: 0 no finding at medium and above, 1 some, 2 bad usage, a failed scan or too
little disk space. Sizes are GiB / MiB (powers of 2).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import memory
import rootfs
from compare import STDLIB_SKIP, real_tree, run_measured, stdlib_dir
from gitrun import git_env
from memory import MIB, ImagePlan, ImageSpec, LayerSpec, Member, Tree, generate

GIB = 1 << 30
CLEAN_VERSION = 2  # bump when the generated image changes, so old ones are regenerated
IMAGE_NAME = "clean"
UNLIMITED = 1 << 62

PYPI_PACKAGES = (
    "requests",
    "boto3",
    "django",
    "flask",
    "numpy",
    "pandas",
    "cryptography",
    "sqlalchemy",
    "pyyaml",
    "jinja2",
    "pytest",
    "rich",
)
NPM_PACKAGES = (
    "express",
    "lodash",
    "react",
    "react-dom",
    "axios",
    "typescript",
    "webpack",
    "aws-sdk",
    "moment",
    "jest",
    "eslint",
    "chalk",
)
LEVELS = (("medium+ (default)", None), ("low (all)", "low"))


# --- fetching the content, cached ---------------------------------------------------------------


@dataclass
class Source:
    """One piece of content: where it is on disk, or why it is not there."""

    name: str
    path: Path | None
    note: str = ""


def _run(cmd: list[str], log: Path, cwd: Path | None = None) -> bool:
    """Run ``cmd`` with its output in ``log``; whether it succeeded."""
    with open(log, "ab") as out:
        out.write(f"$ {' '.join(cmd)}\n".encode())
        out.flush()
        try:
            return subprocess.run(cmd, stdout=out, stderr=out, cwd=cwd).returncode == 0
        except OSError as exc:
            out.write(f"{exc}\n".encode())
            return False


def _tail(log: Path, lines: int = 2) -> str:
    try:
        return " / ".join(log.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def ensure_debian_package(command: str, package: str, log: Path) -> bool:
    """``command`` on PATH, installing the Debian package ``package`` when it is missing."""
    if shutil.which(command):
        return True
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return False
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", package]
    if not _run(install, log):
        _run(["apt-get", "update", "-q"], log)
        _run(install, log)
    return shutil.which(command) is not None


def _marked(folder: Path, stamp: str) -> bool:
    marker = folder / ".bench-complete"
    return marker.is_file() and marker.read_text() == stamp


def _mark(folder: Path, stamp: str) -> None:
    (folder / ".bench-complete").write_text(stamp)


def debian_rootfs(cache: Path, allowed: bool) -> Source:
    """``debootstrap --variant=minbase bookworm`` (``bench/rootfs.py``), once."""
    folder = cache / "debian-rootfs"
    log = cache / "debian-rootfs.log"
    if _marked(folder, "bookworm minbase"):
        return Source("debian", folder, "debootstrap minbase bookworm (cached)")
    if not allowed:
        return Source("debian", None, "--no-debootstrap")
    if not ensure_debian_package("debootstrap", "debootstrap", log):
        return Source("debian", None, f"debootstrap is not installed and could not be: {log}")
    if folder.exists():
        shutil.rmtree(folder)
    try:
        rootfs.make_debian(folder, log)
    except (rootfs.RootfsError, OSError) as exc:
        return Source("debian", None, f"{exc} (log: {log})")
    _mark(folder, "bookworm minbase")
    return Source("debian", folder, "debootstrap minbase bookworm")


def busybox_rootfs(cache: Path) -> Source:
    """busybox-static and a symlink per applet (``bench/rootfs.py``), once."""
    folder = cache / "busybox-rootfs"
    log = cache / "busybox-rootfs.log"
    if _marked(folder, "busybox"):
        return Source("busybox", folder, "busybox-static rootfs (cached)")
    if not ensure_debian_package("busybox", "busybox-static", log):
        return Source("busybox", None, f"busybox-static is not installed and could not be: {log}")
    if folder.exists():
        shutil.rmtree(folder)
    try:
        rootfs.make_busybox(folder)
    except (rootfs.RootfsError, OSError) as exc:
        return Source("busybox", None, f"busybox rootfs failed: {exc}")
    _mark(folder, "busybox")
    return Source("busybox", folder, "busybox-static rootfs")


def pypi_packages(cache: Path) -> Source:
    """``pip install --target`` of the packages (and their dependencies), once."""
    folder = cache / "pypi-site-packages"
    log = cache / "pypi.log"
    stamp = " ".join(PYPI_PACKAGES)
    if _marked(folder, stamp):
        return Source("pypi", folder, f"{len(PYPI_PACKAGES)} PyPI packages (cached)")
    if folder.exists():
        shutil.rmtree(folder)
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    cmd += ["--cache-dir", str(cache / "pip-cache"), "--target", str(folder), *PYPI_PACKAGES]
    if not _run(cmd, log):
        return Source("pypi", None, f"pip install failed: {_tail(log)} (log: {log})")
    _mark(folder, stamp)
    return Source("pypi", folder, f"{len(PYPI_PACKAGES)} PyPI packages")


def npm_packages(cache: Path) -> Source:
    """``npm install`` of the packages into a project folder, install scripts not run."""
    folder = cache / "npm-project"
    log = cache / "npm.log"
    stamp = " ".join(NPM_PACKAGES)
    if _marked(folder, stamp):
        return Source("npm", folder, f"{len(NPM_PACKAGES)} npm packages (cached)")
    if not shutil.which("npm"):
        return Source("npm", None, "npm is not installed")
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    package = {"name": "clean-corpus", "version": "1.0.0", "private": True}
    (folder / "package.json").write_text(json.dumps(package, indent=2) + "\n")
    cmd = ["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"]
    cmd += ["--cache", str(cache / "npm-cache"), *NPM_PACKAGES]
    if not _run(cmd, log, cwd=folder):
        return Source("npm", None, f"npm install failed: {_tail(log)} (log: {log})")
    _mark(folder, stamp)
    return Source("npm", folder, f"{len(NPM_PACKAGES)} npm packages")


# Python packages installed here whose sources become git repositories (issue 14): the
# history a `COPY . /app` of a repository drags in must be as quiet as its working tree
GIT_PACKAGES = ("requests", "jinja2", "click", "rich", "yaml", "urllib3")
GIT_STAMP = "git v1 " + " ".join(GIT_PACKAGES)


def git_repositories(cache: Path) -> Source:
    """Each package of GIT_PACKAGES (its installed sources) made a git repository with a
    history: its files committed in eight commits, then six commits each editing a file,
    packed by ``git gc``; once."""
    folder = cache / "git-repos"
    log = cache / "git-repos.log"
    if _marked(folder, GIT_STAMP):
        return Source("git", folder, f"{len(GIT_PACKAGES)} git repositories (cached)")
    if not shutil.which("git"):
        return Source("git", None, "git is not installed")
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    env = git_env()
    for name in GIT_PACKAGES:
        spec = importlib.util.find_spec(name)
        places = list(spec.submodule_search_locations or []) if spec else []
        if not places:
            return Source("git", None, f"package {name} is not installed here")
        repo = folder / name
        shutil.copytree(places[0], repo, ignore=shutil.ignore_patterns("__pycache__"))
        files = sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file())
        git = ["git", "-c", "init.defaultBranch=main"]

        def run(*step: str, repo: Path = repo) -> bool:
            with open(log, "ab") as out:
                return (
                    subprocess.run(step, cwd=repo, env=env, stdout=out, stderr=out).returncode == 0
                )

        ok = run(*git, "init", "-q")
        for n in range(8):
            part = files[n::8]
            if part and ok:
                ok = run(*git, "add", "--", *part) and run(
                    *git, "commit", "-q", "-m", f"Add part {n}"
                )
        # each edit written just before its own commit
        for n, rel in enumerate([f for f in files if f.endswith(".py")][:6]):
            path = repo / rel
            path.write_text(path.read_text() + f"\n# maintenance note {n}\n")
            ok = ok and run(*git, "commit", "-q", "-a", "-m", f"Touch {rel}")
        if not (ok and run(*git, "gc", "-q")):
            return Source("git", None, f"git failed in {name} (log: {log})")
    _mark(folder, GIT_STAMP)
    return Source("git", folder, f"{len(GIT_PACKAGES)} git repositories")


# --- the image ----------------------------------------------------------------------------------


Copy = tuple[str, str, int, bool, tuple[str, ...]]  # source, dest, budget, public only, skip


def _layer(trees: list[Copy]) -> Callable[[Callable[[], int]], Iterator[Member]]:
    """A layer copying each tree in order."""

    def members(_: Callable[[], int]) -> Iterator[Member]:
        tree = Tree()
        for src, dest, budget, public_only, skip in trees:
            yield from real_tree(tree, src, dest, budget, public_only, skip)

    return members


def clean_image(
    debian: Source,
    busybox: Source,
    pypi: Source,
    npm: Source,
    host_mb: int,
    repos: Source | None = None,
) -> tuple[ImageSpec, list[tuple[bool, str]]]:
    """The layers, and per piece of content whether it has a layer and what it holds (or
    why it is missing)."""
    layers: list[LayerSpec] = []
    lines: list[tuple[bool, str]] = []
    if debian.path is not None:
        layers.append(
            LayerSpec(
                "/bin/sh -c #(nop) ADD file:debootstrap-bookworm-minbase in / ",
                _layer([(str(debian.path), "", UNLIMITED, False, ())]),
            )
        )
        lines.append((True, f"Debian root filesystem: {debian.note}"))
    else:
        budget = host_mb * MIB
        trees: list[Copy] = [
            ("/usr", "usr", budget * 80 // 100, True, ()),
            ("/lib", "lib", budget * 10 // 100, True, ()),
            ("/etc", "etc", budget * 10 // 100, True, ()),
        ]
        layers.append(LayerSpec("/bin/sh -c #(nop) ADD file:host-usr-lib-etc in / ", _layer(trees)))
        lines.append(
            (
                True,
                f"Debian root filesystem MISSING ({debian.note}): /usr, /lib and /etc of "
                f"this machine instead, world-readable files only, up to {host_mb} MiB",
            )
        )
    layers.append(
        LayerSpec(
            "/bin/sh -c #(nop) COPY dir:python-stdlib in /usr/local/lib/python3.11 ",
            _layer([(stdlib_dir(), "usr/local/lib/python3.11", UNLIMITED, True, STDLIB_SKIP)]),
        )
    )
    lines.append((True, f"Python standard library: {stdlib_dir()}"))
    for source, created_by, dest in (
        (
            pypi,
            "/bin/sh -c pip install --no-cache-dir " + " ".join(PYPI_PACKAGES),
            "usr/local/lib/python3.11/site-packages",
        ),
        (npm, "/bin/sh -c cd /app && npm install " + " ".join(NPM_PACKAGES), "app"),
        (busybox, "/bin/sh -c #(nop) COPY dir:busybox-rootfs in /busybox ", "busybox"),
        *([(repos, "COPY . /srv # buildkit", "srv")] if repos is not None else []),
    ):
        if source.path is None:
            lines.append((False, f"{source.name}: MISSING ({source.note})"))
            continue
        layers.append(
            LayerSpec(created_by, _layer([(str(source.path), dest, UNLIMITED, False, ())]))
        )
        lines.append((True, f"{source.name}: {source.note}"))
    params = {
        "clean_version": CLEAN_VERSION,
        "debian": debian.path is not None,
        "host_mb": host_mb if debian.path is None else None,
        "pypi": list(PYPI_PACKAGES) if pypi.path else None,
        "npm": list(NPM_PACKAGES) if npm.path else None,
        "busybox": busybox.path is not None,
        "stdlib": stdlib_dir(),
        "git": GIT_STAMP if repos is not None and repos.path is not None else None,
    }
    spec = ImageSpec(IMAGE_NAME, "leakscan-bench/clean:latest", layers, [], False, params)
    return spec, lines


# --- reading the reports ------------------------------------------------------------------------


@dataclass
class LevelResult:
    label: str
    findings: list[dict[str, Any]] = field(default_factory=list)
    below: int = 0  # findings hidden below the level (the report's below_threshold)
    errors: list[str] = field(default_factory=list)
    skipped: int = 0
    wall: float = 0.0
    peak_mib: float = 0.0
    exit_code: int = 0


def read_report(path: Path, result: LevelResult) -> None:
    data = json.loads(path.read_text())
    result.errors += [str(e.get("message", e)) for e in data.get("errors") or []]
    for image in data.get("images") or []:
        result.findings += image.get("findings") or []
        result.errors += [str(e.get("message", e)) for e in image.get("errors") or []]
        result.skipped += len(image.get("skipped") or [])
        below = image.get("below_threshold") or 0
        if isinstance(below, dict):  # a count per level, should the report ever say so
            below = sum(v for v in below.values() if isinstance(v, int))
        result.below += below if isinstance(below, int) else 0


def _where(finding: dict[str, Any]) -> str:
    loc = finding.get("location") or {}
    if loc.get("kind") == "file":
        line = f":{loc['line']}" if loc.get("line") else ""
        return f"L{loc.get('layer_index')} {loc.get('path')}{line}"
    if loc.get("kind") == "history":
        return f"history[{loc.get('history_index')}]"
    return f"config {loc.get('field')} {loc.get('key') or ''}".rstrip()


def _file_of(finding: dict[str, Any]) -> str:
    loc = finding.get("location") or {}
    if loc.get("kind") == "file":
        return f"L{loc.get('layer_index')} {loc.get('path')}"
    return _where(finding)


def _cut(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters: its start and, mostly, its end."""
    if len(text) <= width:
        return text
    head = min(24, width // 3)
    return text[:head] + "..." + text[-(width - head - 3) :]


def breakdown(findings: list[dict[str, Any]], top: int, title: str) -> list[str]:
    """Lines: findings by rule (count, distinct secrets, example places) and the files
    with the most findings. Secrets appear only in their ``redacted`` form."""
    if not findings:
        return [f"{title}: none"]
    by_rule: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for f in findings:
        by_rule[str(f.get("rule_id"))].append(f)
    rows = [["rule_id", "conf", "findings", "secrets", "example places (redacted secret)"]]
    ranked = sorted(by_rule.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    for rule, items in ranked[:top]:
        confs = "/".join(sorted({str(f.get("confidence")) for f in items}))
        places: list[str] = []
        for f in items:
            place = f"{_cut(_where(f), 100)} ({f.get('redacted') or 'redacted'})"
            if place not in places:
                places.append(place)
            if len(places) == 3:
                break
        secrets_n = len({f.get("secret_sha256") for f in items})
        rows.append([rule, confs, str(len(items)), str(secrets_n), places[0]])
        rows += [["", "", "", "", p] for p in places[1:]]
    out = [f"{title}: {len(findings)} findings, {len(by_rule)} rules"]
    out += ["  " + line for line in _table(rows).splitlines()]
    if len(ranked) > top:
        out.append(f"  ... {len(ranked) - top} more rules")
    files = Counter(_file_of(f) for f in findings)
    rules_of: dict[str, set[str]] = defaultdict(set)
    for f in findings:
        rules_of[_file_of(f)].add(str(f.get("rule_id")))
    out.append(f"  files with the most findings (top {top}):")
    for place, count in files.most_common(top):
        rules = ", ".join(sorted(rules_of[place]))
        out.append(f"    {count:4d}  {_cut(place, 110)}  [{rules}]")
    return out


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            c.rjust(w) if c.isdigit() else c.ljust(w) for c, w in zip(row, widths, strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Count leakscan's findings per GiB on an image of real third-party content."
    )
    here = Path(__file__).resolve().parent
    parser.add_argument("--workdir", type=Path, default=here / "out", help="default: bench/out")
    parser.add_argument("--regen", action="store_true", help="regenerate the image")
    parser.add_argument("--top", type=int, default=30, help="rules and files listed per level")
    parser.add_argument(
        "--host-mb",
        type=int,
        default=600,
        help="MiB of this machine's /usr, /lib, /etc used when debootstrap cannot run",
    )
    parser.add_argument(
        "--no-debootstrap", action="store_true", help="use this machine's files, not Debian's"
    )
    args = parser.parse_args(argv)
    if args.top < 1 or args.host_mb < 1:
        parser.error("--top and --host-mb must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root: Path = args.workdir.resolve()
    cache = root / "clean-corpus-cache"
    reports = root / "clean-corpus-reports"
    for folder in (cache, reports):
        folder.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    version = subprocess.run(
        [python, "-m", "leakscan", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    print(f"leakscan clean corpus: {version or 'leakscan ?'}, Python {sys.version.split()[0]}")
    print(f"leakscan from {memory.leakscan_origin(python, reports)}")
    print(f"work dir: {root}")
    if shutil.disk_usage(root).free < 4 * GIB:
        print(f"not enough disk space in {root}: need ~4 GiB")
        return 2

    print("  fetching content (cached after the first run) ...", flush=True)
    debian = debian_rootfs(cache, not args.no_debootstrap)
    busybox = busybox_rootfs(cache)
    pypi = pypi_packages(cache)
    npm = npm_packages(cache)
    repos = git_repositories(cache)
    spec, lines = clean_image(debian, busybox, pypi, npm, args.host_mb, repos)
    plan: ImagePlan | None = None if args.regen else memory.reusable(root, IMAGE_NAME, spec.params)
    if plan is None:
        print("  generating the image ...", flush=True)
        plan = generate(spec, root / IMAGE_NAME)
        how = f"generated in {plan.seconds:.1f} s"
    else:
        how = f"reused (generated in {plan.seconds:.1f} s)"
    total = plan.uncompressed
    print(f"  image {how}: {len(plan.layer_sizes)} layers, {total / GIB:.3f} GiB uncompressed")
    sizes = iter(enumerate(plan.layer_sizes))
    for has_layer, line in lines:
        if has_layer:
            n, size = next(sizes)
            print(f"    layer {n}: {size / MIB:8.1f} MiB  {line}")
        else:
            print(f"    no layer: {line}")

    subprocess.run(
        [python, "-m", "leakscan", "rules"],
        cwd=reports,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    ref = plan.layouts["docker-archive"]
    results: list[LevelResult] = []
    for label, level in LEVELS:
        stem = reports / ("clean-" + (level or "default"))
        report = stem.with_suffix(".json")
        report.unlink(missing_ok=True)
        cmd = [python, "-m", "leakscan", ref, "--format", "json", "--output", str(report)]
        if level:
            cmd += ["--min-confidence", level]
        print(f"  scanning at {label} ...", flush=True)
        measured = run_measured(cmd, reports, stem.with_suffix(".stderr"))
        result = LevelResult(label, wall=measured.wall, exit_code=measured.exit_code)
        result.peak_mib = measured.peak_sum_kib / 1024
        try:
            read_report(report, result)
        except (OSError, ValueError) as exc:
            result.errors.append(f"no readable report: {exc} (see {stem}.stderr)")
        results.append(result)

    gib = total / GIB
    rows = [
        [
            "level",
            "findings",
            "secrets",
            "per GiB",
            "hidden below",
            "wall s",
            "MiB/s",
            "peak RSS MiB",
            "exit",
        ]
    ]
    for r in results:
        hidden = r.below
        rows.append(
            [
                r.label,
                str(len(r.findings)),
                str(len({f.get("secret_sha256") for f in r.findings})),
                f"{len(r.findings) / gib:.1f}",
                str(hidden),
                f"{r.wall:.1f}",
                f"{total / MIB / r.wall:.1f}",
                f"{r.peak_mib:.1f}",
                str(r.exit_code),
            ]
        )
    print()
    print(f"clean corpus: {gib:.3f} GiB of uncompressed layers ({total / MIB:.1f} MiB)")
    print(memory._table(rows))
    for r in results:
        for error in r.errors[:10]:
            print(f"  {r.label}: report error: {error}")
        if r.skipped:
            print(f"  {r.label}: {r.skipped} items skipped by leakscan (see the report)")

    default, low = results
    low_only = [f for f in low.findings if f.get("confidence") == "low"]
    print()
    for line in breakdown(default.findings, args.top, "findings at medium and above"):
        print(line)
    print()
    for line in breakdown(low_only, args.top, "findings at low confidence only"):
        print(line)

    summary = {
        "gib": gib,
        "levels": {
            r.label: {
                "findings": len(r.findings),
                "per_gib": len(r.findings) / gib,
                "by_rule": Counter(str(f.get("rule_id")) for f in r.findings).most_common(),
                "places": [
                    {
                        "rule_id": f.get("rule_id"),
                        "confidence": f.get("confidence"),
                        "where": _where(f),
                        "redacted": f.get("redacted"),
                    }
                    for f in r.findings
                ],
            }
            for r in results
        },
    }
    (reports / "clean-breakdown.json").write_text(json.dumps(summary, indent=2) + "\n")

    print()
    failed_scan = any(r.exit_code not in (0, 1) or r.errors for r in results)
    ok = not default.findings
    print(
        f"zero findings at medium and above: {'PASS' if ok else 'FAIL'} "
        f"({len(default.findings)} findings, {len(default.findings) / gib:.1f} per GiB)"
    )
    print(
        f"findings at low confidence: {len(low.findings)} ({len(low.findings) / gib:.1f} per GiB)"
    )
    if failed_scan:
        print("scan incomplete: see the report errors above")
    print(f"reports in {reports} (clean-breakdown.json: every finding, redacted)")
    if failed_scan:
        return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
