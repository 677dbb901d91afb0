"""The pre-build check (``leakscan dockerfile``): what a Dockerfile will leak into the image
before it is built.

- an ``ARG`` whose name says it is a secret: docker records every build argument in scope
  in the history of each ``RUN`` that follows it, so ``--build-arg NPM_TOKEN=...`` ships;
- an ``ENV`` whose name or value says it is a secret: the config keeps it for ever;
- an ``ARG`` or ``ENV`` whose default is a token in a known format;
- a ``COPY``/``ADD`` of a credentials file (``.env``, ``.npmrc``, ``.git``, keys...) that the
  ``.dockerignore`` does not exclude, or of the whole context without one that does.

Nothing is built or run: the Dockerfile is parsed, the context folder listed, the
``.dockerignore`` patterns applied the way the docker builder applies them. Values that look
like secrets are masked in everything this module returns.
"""

from __future__ import annotations

import fnmatch
import json
import os
import posixpath
import re
import shlex
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from leakscan.detectors.placeholders import is_placeholder
from leakscan.errors import InputError

ROTATE = "If it was ever built and pushed so, rotate it."
# a context folder is listed up to this many entries: enough for any real context, and a
# bound when someone points the check at their home folder
MAX_CONTEXT_ENTRIES = 50_000
MAX_DOCKERFILE_BYTES = 4 << 20

# words that make a variable name a secret's, as one of its _-separated parts
_SECRET_WORDS = frozenset(
    {
        "TOKEN", "TOKENS", "SECRET", "SECRETS", "PASSWORD", "PASSWD", "PASSPHRASE",
        "CREDENTIAL", "CREDENTIALS", "APIKEY", "PRIVATEKEY", "PAT",
    }
)  # fmt: skip
# two parts that together make one (API_KEY, but not KEY alone: GPG_KEY is a fingerprint)
_SECRET_PAIRS = frozenset(
    {
        ("API", "KEY"), ("SECRET", "KEY"), ("PRIVATE", "KEY"), ("ACCESS", "KEY"),
        ("SIGNING", "KEY"), ("ENCRYPTION", "KEY"), ("MASTER", "KEY"), ("AUTH", "KEY"),
        ("CLIENT", "SECRET"), ("NPM", "AUTH"), ("BASIC", "AUTH"), ("DB", "PASS"),
    }
)  # fmt: skip
# a last part that makes the name one of a reference, not of the secret itself
_REFERENCE_ENDINGS = frozenset(
    {"FILE", "PATH", "DIR", "URL", "URI", "ENDPOINT", "HOST", "NAME", "TYPE", "ID", "LENGTH",
     "SIZE", "TTL", "EXPIRY", "EXPIRES", "VERSION", "MODE", "ENABLED", "HEADER", "FIELD"}
)  # fmt: skip
# AWS_ACCESS_KEY_ID ends in ID, yet it is half of a credential
_ALWAYS_SECRET = frozenset({"AWS_ACCESS_KEY_ID"})

# values in an issuer's format (prefixes fixed by the issuers)
_TOKEN = re.compile(
    r"(?:ghp_|gho_|ghu_|ghs_|ghr_)[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{60,}"
    r"|glpat-[A-Za-z0-9_-]{20,}|npm_[A-Za-z0-9]{36}|(?:AKIA|ASIA)[0-9A-Z]{16}"
    r"|xox[abprs]-[A-Za-z0-9-]{10,}|sk_live_[A-Za-z0-9]{20,}|rk_live_[A-Za-z0-9]{20,}"
    r"|AIza[0-9A-Za-z_-]{35}|pypi-[A-Za-z0-9_-]{50,}|dckr_pat_[A-Za-z0-9_-]{20,}"
    r"|sk-(?:proj-)?[A-Za-z0-9_-]{32,}|-----BEGIN [A-Z ]*PRIVATE KEY-----"
)
_REFERENCE = re.compile(r"^\$\{?[A-Za-z_][A-Za-z0-9_]*(?::?[-+?][^}]*)?\}?$")

# files and folders whose very name says they hold credentials
_CREDENTIAL_NAMES = frozenset(
    {
        ".env", ".npmrc", ".yarnrc", ".yarnrc.yml", ".pypirc", ".netrc", "_netrc", ".git",
        ".git-credentials", ".gitconfig", ".ssh", ".aws", ".docker", ".kube", ".gnupg",
        ".terraformrc", "terraform.tfstate", "terraform.tfvars", "credentials",
        "credentials.json", "service-account.json", "id_rsa", "id_dsa", "id_ecdsa",
        "id_ed25519", ".htpasswd", "secrets.yml", "secrets.yaml", "secrets.json",
        ".composer-auth.json", "auth.json", "settings-security.xml", "kubeconfig",
    }
)  # fmt: skip
_CREDENTIAL_GLOBS = (".env.*", "*.pem", "*.key", "*.p12", "*.pfx", "*.keystore", "*.jks")
# harmless by their name although they match a glob above
_HARMLESS = re.compile(r"\.env\.(?:example|sample|template|dist|defaults?)$|\.pub$")
# what a .dockerignore should hold when the whole context is copied
SUGGESTED_IGNORES = (".git", ".env", ".env.*", ".npmrc", ".pypirc", ".netrc", "**/*.pem",
                     "**/*.key", ".aws", ".ssh", ".docker")  # fmt: skip


@dataclass(frozen=True)
class Finding:
    """One thing the Dockerfile will leak. ``rule``: ``secret-build-arg``, ``secret-env``,
    ``secret-value``, ``credentials-copy`` or ``context-copy``."""

    rule: str
    line: int
    instruction: str
    message: str
    remediation: str
    confidence: str = "high"
    path: str | None = None  # the context file, for a copy


@dataclass(frozen=True)
class Check:
    """The result of checking one Dockerfile."""

    dockerfile: str
    context: str
    dockerignore: str | None
    findings: tuple[Finding, ...]

    def exit_status(self) -> int:
        """0 nothing will leak, 1 something will (2 is for what could not be read)."""
        return 1 if self.findings else 0


@dataclass(frozen=True)
class Instruction:
    """One instruction: its keyword, its arguments (continuations joined) and first line."""

    keyword: str
    body: str
    line: int
    stage: int

    def shown(self, masked: Sequence[str] = ()) -> str:
        text = f"{self.keyword} {self.body}"
        for value in masked:
            text = text.replace(value, mask(value))
        return text if len(text) <= 100 else text[:99] + "…"


def mask(value: str) -> str:
    """The first four characters, then stars: enough to recognise it, not to use it."""
    return value[:4] + "********" if len(value) > 8 else "********"


# --- parsing ---------------------------------------------------------------------------------


_DIRECTIVE = re.compile(r"#\s*([a-zA-Z]+)\s*=\s*(\S+)\s*$")
_HEREDOC = re.compile(r"<<-?\s*[\"']?([A-Za-z_][A-Za-z0-9_]*)[\"']?")


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuations joined, comments and heredoc bodies left out, and the
    build stage (0 for the first ``FROM``) each belongs to."""
    lines = text.splitlines()
    escape = "\\"
    # parser directives come first, before any other line
    for raw in lines:
        found = _DIRECTIVE.match(raw.strip())
        if not found:
            break
        if found.group(1).lower() == "escape" and found.group(2) in ("\\", "`"):
            escape = found.group(2)
    out: list[Instruction] = []
    stage = -1
    i = 0
    while i < len(lines):
        start = i
        stripped = lines[i].strip()
        i += 1
        if not stripped or stripped.startswith("#"):
            continue
        parts = [stripped]
        while parts[-1].endswith(escape) and i < len(lines):
            parts[-1] = parts[-1][:-1]
            # comment and empty lines inside a continuation are dropped
            while i < len(lines) and (not lines[i].strip() or lines[i].strip().startswith("#")):
                i += 1
            if i < len(lines):
                parts.append(lines[i].strip())
                i += 1
        joined = " ".join(p.strip() for p in parts if p.strip())
        keyword, _, body = joined.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        # a heredoc's body is the command's input, not instructions
        for name in _HEREDOC.findall(body) if keyword in ("RUN", "COPY", "ADD") else ():
            while i < len(lines) and lines[i].strip() != name:
                i += 1
            i += 1
        out.append(Instruction(keyword, body.strip(), start + 1, max(stage, 0)))
    return out


def _pairs(body: str) -> list[tuple[str, str | None]]:
    """``K=v`` pairs of ENV or ARG (``ARG K`` has no value; ENV's legacy ``K v`` too)."""
    try:
        words = shlex.split(body, posix=True)
    except ValueError:
        words = body.split()
    if not words:
        return []
    if "=" not in words[0]:
        rest = " ".join(words[1:])
        return [(words[0], rest if rest else None)]
    return [(k, v) for k, _, v in (w.partition("=") for w in words)]


def _flags(body: str) -> tuple[dict[str, str], list[str]]:
    """``--from=x --chown=y src... dest`` -> flags and the other words (JSON form too)."""
    text = body.strip()
    words: list[str]
    flags: dict[str, str] = {}
    rest = text
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        name, _, value = flag[2:].partition("=")
        flags[name.lower()] = value
        rest = rest.strip()
    if rest.startswith("["):
        try:
            parsed = json.loads(rest)
            words = [str(w) for w in parsed] if isinstance(parsed, list) else rest.split()
        except ValueError:
            words = rest.split()
    else:
        try:
            words = shlex.split(rest)
        except ValueError:
            words = rest.split()
    return flags, words


# --- names and values ------------------------------------------------------------------------


def secret_name(name: str) -> bool:
    """Whether a variable's name says it holds a secret (``NPM_TOKEN``, ``DB_PASSWORD``,
    ``AWS_SECRET_ACCESS_KEY``), not a reference to one (``TOKEN_FILE``, ``AUTH_URL``)."""
    upper = name.upper()
    if upper in _ALWAYS_SECRET:
        return True
    parts = [p for p in re.split(r"[^A-Z0-9]+", upper) if p]
    if not parts or parts[-1] in _REFERENCE_ENDINGS:
        return False
    if any(p in _SECRET_WORDS for p in parts):
        return True
    return any(pair in _SECRET_PAIRS for pair in zip(parts, parts[1:], strict=False))


def secret_value(value: str) -> str | None:
    """The token in ``value`` when it is one in an issuer's format (not a placeholder)."""
    found = _TOKEN.search(value)
    if found is None or is_placeholder(found.group(0)):
        return None
    return found.group(0)


def _literal(value: str | None) -> bool:
    """A value typed into the Dockerfile, not empty and not a ``$REFERENCE``."""
    return bool(value) and not _REFERENCE.match(value or "") and not is_placeholder(value or "")


# --- .dockerignore ---------------------------------------------------------------------------


@dataclass(frozen=True)
class IgnoreRule:
    pattern: re.Pattern[str]
    negated: bool


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go's filepath.Match, plus ``**`` for any number of folders)."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if i < len(pattern) and pattern[i] == "/":
                i += 1
                out.append("(?:.*/)?")
            else:
                out.append(".*")
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : end]
                if body.startswith("^"):
                    body = "!" + body[1:]
                out.append(fnmatch.translate(f"[{body}]").removeprefix("(?s:").removesuffix(r")\Z"))
                i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


class DockerIgnore:
    """The patterns of a .dockerignore, applied as the builder does: paths relative to the
    context, the last matching pattern wins, ``!`` re-includes, and a pattern that matches a
    folder excludes what is in it."""

    def __init__(self, text: str = "") -> None:
        rules: list[IgnoreRule] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            line = line[1:].strip() if negated else line
            cleaned = os.path.normpath(line.replace("\\", "/")).lstrip("/")
            if cleaned in ("", "."):
                continue
            rules.append(IgnoreRule(_glob_regex(cleaned), negated))
        self.rules = tuple(rules)

    def excludes(self, relpath: str) -> bool:
        """Whether ``relpath`` (``a/b/.env``) stays out of the build context."""
        parts = relpath.strip("/").split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        excluded = False
        for rule in self.rules:
            if any(rule.pattern.match(p) for p in prefixes):
                excluded = not rule.negated
        return excluded


def find_dockerignore(dockerfile: Path, context: Path) -> Path | None:
    """BuildKit's ``<Dockerfile>.dockerignore`` beside the Dockerfile, else the context's."""
    own = dockerfile.with_name(dockerfile.name + ".dockerignore")
    if own.is_file():
        return own
    shared = context / ".dockerignore"
    return shared if shared.is_file() else None


def credential_name(name: str) -> bool:
    """Whether a file or folder name says it holds credentials."""
    if _HARMLESS.search(name):
        return False
    return name in _CREDENTIAL_NAMES or any(fnmatch.fnmatchcase(name, g) for g in _CREDENTIAL_GLOBS)


def _walk(context: Path, start: str, ignore: DockerIgnore) -> Iterator[str]:
    """Credential files and folders under ``start`` (relative to the context) that the
    build would send, as context-relative paths: the builder's own view of the context."""
    base = context.resolve()
    root = (base / start).resolve()
    if not root.exists() or not root.is_relative_to(base):
        return
    rel_root = root.relative_to(base).as_posix() if root != base else ""
    if rel_root and ignore.excludes(rel_root):
        return
    if root.is_file() or (rel_root and credential_name(root.name)):
        if credential_name(root.name):
            yield rel_root
        return
    seen = 0
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        rel_here = here.relative_to(base).as_posix() if here != base else ""
        dirs.sort()
        for name in sorted(dirs + files):
            seen += 1
            if seen > MAX_CONTEXT_ENTRIES:
                return
            rel = f"{rel_here}/{name}" if rel_here else name
            if ignore.excludes(rel):
                if name in dirs:
                    dirs.remove(name)  # nothing under it is sent (re-includes are rare)
                continue
            if credential_name(name):
                yield rel
                if name in dirs:
                    dirs.remove(name)  # one finding for .git, not one per object


# --- the checks ------------------------------------------------------------------------------


def _uses(inst: Instruction, name: str) -> bool:
    return re.search(rf"\$(?:{re.escape(name)}\b|\{{{re.escape(name)}[}}:])", inst.body) is not None


def _secret_id(name: str) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_") or "secret"


def _arg_findings(insts: list[Instruction], inst: Instruction) -> Iterator[Finding]:
    for name, value in _pairs(inst.body):
        token = secret_value(value or "")
        masked = [token] if token else ([value] if value and _literal(value) else [])
        if not secret_name(name) and token is None:
            continue
        runs = [
            i for i in insts
            if i.keyword == "RUN" and i.stage == inst.stage and i.line > inst.line
        ]  # fmt: skip
        # the RUN that names it, else the first after it (npm reads ${NPM_TOKEN} in .npmrc)
        using = next((r for r in runs if _uses(r, name)), runs[0] if runs else None)
        command = using.body if using is not None else "<command that needs it>"
        command = command if len(command) <= 160 else command[:159] + "…"
        sid = _secret_id(name)
        where = f"; the RUN on line {using.line} has it" if using is not None else ""
        message = (
            f"build argument {name} is written into the image history of every RUN after "
            f"line {inst.line}{where}"
        )
        if token is not None:
            message += "; its default is a real-looking token, in the Dockerfile itself"
        yield Finding(
            "secret-build-arg",
            inst.line,
            inst.shown(masked),
            message,
            f"Drop ARG {name} and mount the secret in the RUN that needs it: RUN "
            f"--mount=type=secret,id={sid},env={name} {command} (build with docker build "
            f"--secret id={sid},env={name}). {ROTATE}",
            "high" if runs else "medium",
        )


def _env_findings(inst: Instruction) -> Iterator[Finding]:
    for name, value in _pairs(inst.body):
        token = secret_value(value or "")
        if token is None and not (secret_name(name) and value):
            continue
        masked = [token] if token else ([value] if value and _literal(value) else [])
        origin = f"the value of {value}" if value and _REFERENCE.match(value) else "its value"
        yield Finding(
            "secret-env" if secret_name(name) else "secret-value",
            inst.line,
            inst.shown(masked),
            f"ENV {name} keeps {origin} in the image config, readable by anyone who pulls "
            "the image",
            f"Remove ENV {name}; give it at run time (docker run -e {name}, a Kubernetes "
            f"Secret, your platform's secret store), or at build time only with RUN "
            f"--mount=type=secret,id={_secret_id(name)},env={name} <command>. {ROTATE}",
            "high" if token is not None or _literal(value) else "medium",
        )


def _copy_findings(
    inst: Instruction,
    context: Path,
    ignore: DockerIgnore,
    ignore_file: str | None,
    workdir: str = "/",
) -> Iterator[Finding]:
    flags, words = _flags(inst.body)
    if "from" in flags or len(words) < 2:
        return  # from another stage or image: not the build context
    sources, dest = words[:-1], words[-1]
    for source in sources:
        if inst.keyword == "ADD" and re.match(r"^[a-z]+://|^git@", source):
            continue
        clean = os.path.normpath(source).lstrip("/")
        whole = clean in (".", "")
        matched = (
            sorted(str(p.relative_to(context)) for p in context.glob(clean))
            if any(c in clean for c in "*?[") and not whole
            else [clean]
        )
        found: list[str] = []
        for one in matched:
            found.extend(_walk(context, one, ignore))
        named = os.path.basename(clean)
        if not whole and credential_name(named) and not ignore.excludes(clean) and not found:
            found.append(clean)  # named in the Dockerfile, even when not in the context here
        for rel in found:
            yield Finding(
                "credentials-copy",
                inst.line,
                inst.shown(),
                f"{inst.keyword} puts {rel} from the build context into the image",
                _copy_fix(
                    context, rel, _landing(dest, rel if whole else posixpath.basename(rel), workdir)
                ),
                "high",
                rel,
            )
        if whole:
            missing = [p for p in SUGGESTED_IGNORES if not ignore.excludes(_probe(p))]
            if missing:
                has = (
                    f"{ignore_file} does not exclude"
                    if ignore_file
                    else "no .dockerignore excludes"
                )
                yield Finding(
                    "context-copy",
                    inst.line,
                    inst.shown(),
                    f"{inst.keyword} copies the whole build context and {has} "
                    f"{', '.join(missing[:5])}{'…' if len(missing) > 5 else ''}: whatever "
                    "credentials are there at build time (a CI checkout, a developer's "
                    ".env) ship in the image",
                    f"Add to .dockerignore: {' '.join(missing)}; or copy only what the "
                    "build needs.",
                    "medium",
                )


def _copy_fix(context: Path, rel: str, target: str) -> str:
    """What to do instead of copying ``rel``: .dockerignore it, and hand the build what it
    needs in a way that leaves no layer behind."""
    name = posixpath.basename(rel)
    ignore = f"Add {rel} to .dockerignore"
    if name == ".git":
        how = "the history and .git/config can hold tokens; pass the commit the build needs "
        how += "as a build argument (--build-arg GIT_COMMIT=$(git rev-parse HEAD))"
    elif name == ".ssh":
        how = "use the SSH agent where a RUN needs it: RUN --mount=type=ssh <command> "
        how += "(docker build --ssh default)"
    elif (context / rel).is_dir():
        how = "mount the files the build needs, each as a secret, in the RUN that needs it: "
        how += f"RUN --mount=type=secret,id=<name>,target={target}/<file> <command>"
    else:
        sid = _secret_id(name)
        how = f"mount it only in the RUN that needs it: RUN --mount=type=secret,id={sid},"
        how += f"target={target} <command> (docker build --secret id={sid},src={rel})"
    return f"{ignore}; {how}. {ROTATE}"


def _landing(dest: str, rel: str, workdir: str) -> str:
    """Where a copied file lands (a relative destination is under the WORKDIR)."""
    folder = posixpath.join(workdir, dest)
    if dest.endswith("/") or dest in (".", "./") or rel != posixpath.basename(rel):
        return posixpath.normpath(posixpath.join(folder, rel))
    return posixpath.normpath(folder)


def _probe(pattern: str) -> str:
    """A path that ``pattern`` of :data:`SUGGESTED_IGNORES` is there to exclude."""
    return pattern.replace("**/", "").replace("*", "x")


def check_text(
    text: str, context: Path, ignore_text: str | None = None, ignore_file: str | None = None
) -> tuple[Finding, ...]:
    """The findings of a Dockerfile's ``text`` built with ``context``."""
    insts = parse_dockerfile(text)
    ignore = DockerIgnore(ignore_text or "")
    found: list[Finding] = []
    workdir, stage = "/", 0
    for inst in insts:
        if inst.stage != stage:
            workdir, stage = "/", inst.stage
        if inst.keyword == "WORKDIR":
            workdir = posixpath.join(workdir, inst.body.strip().strip("\"'"))
        if inst.keyword == "ARG":
            found.extend(_arg_findings(insts, inst))
        elif inst.keyword == "ENV":
            found.extend(_env_findings(inst))
        elif inst.keyword in ("COPY", "ADD"):
            found.extend(_copy_findings(inst, context, ignore, ignore_file, workdir))
    return tuple(found)


def locate(path: str | None) -> Path:
    """The Dockerfile ``path`` names: a file, or a folder holding a Dockerfile or
    Containerfile. Refused in our words when there is none."""
    given = Path(path or ".")
    if given.is_dir():
        for name in ("Dockerfile", "Containerfile", "dockerfile"):
            if (given / name).is_file():
                return given / name
        raise InputError(f"{given}: no Dockerfile or Containerfile in this folder")
    if not given.exists():
        raise InputError(f"{given}: no such file or directory")
    if not given.is_file():
        raise InputError(f"{given}: not a file")
    return given


def check(path: str | None = None, context: str | None = None) -> Check:
    """Check the Dockerfile at ``path`` (a file or folder) built with ``context`` (default:
    the Dockerfile's folder)."""
    dockerfile = locate(path)
    ctx = Path(context) if context is not None else dockerfile.parent
    if not ctx.is_dir():
        raise InputError(f"--context {ctx}: not a folder")
    try:
        with dockerfile.open("rb") as fh:
            raw = fh.read(MAX_DOCKERFILE_BYTES + 1)
    except OSError as exc:
        raise InputError(f"cannot read {dockerfile}: {exc.strerror}") from None
    if len(raw) > MAX_DOCKERFILE_BYTES or b"\0" in raw:
        raise InputError(f"{dockerfile}: not a Dockerfile (binary or larger than 4 MiB)")
    text = raw.decode("utf-8", errors="replace")
    insts = parse_dockerfile(text)
    if not any(i.keyword == "FROM" for i in insts):
        raise InputError(f"{dockerfile}: not a Dockerfile (no FROM instruction)")
    ignore_path = find_dockerignore(dockerfile, ctx)
    ignore_text = ignore_path.read_text(errors="replace") if ignore_path else None
    shown = str(ignore_path) if ignore_path else None
    findings = check_text(text, ctx, ignore_text, shown)
    return Check(str(dockerfile), str(ctx), shown, findings)


# --- output ----------------------------------------------------------------------------------


def to_json(result: Check) -> str:
    """The check as JSON: the files read and every finding with its remediation."""
    data = {
        "dockerfile": result.dockerfile,
        "context": result.context,
        "dockerignore": result.dockerignore,
        "findings": [asdict(f) for f in result.findings],
    }
    return json.dumps(data, indent=2) + "\n"


def to_table(result: Check, width: int = 100) -> str:
    """The check for a CI log: one block per finding, remediation wrapped by words."""
    width = max(width, 40)
    ignore = f".dockerignore {result.dockerignore}" if result.dockerignore else "no .dockerignore"
    lines = [f"{result.dockerfile}  (context {result.context}, {ignore})"]
    for f in result.findings:
        lines.append("")
        lines.append(f" line {f.line}  {f.rule}  {f.confidence}")
        lines.append(f"   {f.instruction}")
        wrap = textwrap.TextWrapper(
            width=width, initial_indent="   ", subsequent_indent="   ",
            break_long_words=False, break_on_hyphens=False,
        )  # fmt: skip
        lines.extend(wrap.wrap(f.message))
        wrap.initial_indent = "   fix: "
        wrap.subsequent_indent = "        "
        lines.extend(wrap.wrap(f.remediation))
    n = len(result.findings)
    lines.append("")
    lines.append(
        f"{n} finding{'s' if n != 1 else ''}: this build would leak"
        if n
        else "nothing this Dockerfile would leak was found"
    )
    return "\n".join(lines) + "\n"
