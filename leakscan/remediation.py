"""What a developer should do about one finding, said for its place and the instruction that
put it there: the exact ``RUN --mount=type=secret`` line for a build argument or a file a
``RUN`` wrote, ``.dockerignore`` for a file ``COPY`` brought in, run-time injection for
``ENV``, ``LABEL`` and commands. Every text ends by asking to rotate the secret: once pushed,
an image cannot be recalled from whoever pulled it.

Texts are built in clear, like the rest of a finding; the report's one redaction step masks
whatever secret one quotes (commands are quoted with the secret replaced anyway).
"""

from __future__ import annotations

import posixpath
import re
import shlex

from leakscan import model as m
from leakscan.instructions import HistoryKeys, Instruction, parse

ROTATE = "Rotate it: it has shipped."
_COMMAND_WIDTH = 72
_ID = re.compile(r"[^A-Za-z0-9_]+")
_CMD_FIELDS = ("Cmd", "Entrypoint", "Healthcheck", "Shell", "OnBuild")


def _clip(text: str, width: int = _COMMAND_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def _secret_id(path: str) -> str:
    """A secret mount id from a file's name: ``/root/.npmrc`` -> ``npmrc``."""
    name = _ID.sub("_", posixpath.basename(path.rstrip("/")).lstrip(".")).strip("_")
    return name or "secret"


def _pairs(body: str) -> list[tuple[str, str]]:
    """``K=v`` pairs of an ENV, LABEL or ARG body (ENV's legacy ``K v`` form too)."""
    try:
        words = shlex.split(body)
    except ValueError:
        words = body.split()
    if words and "=" not in words[0]:
        return [(words[0], " ".join(words[1:]))]
    return [tuple(w.split("=", 1)) for w in words if "=" in w]  # type: ignore[misc]


def _holder(pairs: list[tuple[str, str]], secret: str | None) -> str | None:
    """The name whose value holds ``secret`` (the first name when the secret is unknown)."""
    for name, value in pairs:
        if secret and secret in value:
            return name
    return pairs[0][0] if pairs and not secret else None


def _command(inst: Instruction, secret: str | None, name: str) -> str:
    body = inst.body
    if secret:
        body = body.replace(secret, f"${name}")
    return _clip(body)


def _kept(loc: m.FileLocation, path: str) -> str:
    if loc.status == "present":
        return f"{path} is in the final image."
    what = "Deleting" if loc.status == "deleted" else "Overwriting"
    later = f" in layer {loc.removed_in_layer}" if loc.removed_in_layer is not None else ""
    return f"{what} {path}{later} does not remove it: layer {loc.layer_index} still ships it."


# a file git keeps in clear inside its directory (config, credentials, refs, logs)
_IN_GIT_DIR = re.compile(r"/\.git(/|$)")


def _dockerignore(git_dir: str) -> str:
    """How to keep a git directory out of an image."""
    name = posixpath.basename(git_dir.rstrip("/")) or ".git"
    entry = ".git" if name == ".git" or "/.git/" in git_dir + "/" else name
    return (
        f"Keep the repository out of the image: add {entry} to .dockerignore (COPY . copies it "
        f"otherwise) or COPY only what the application needs, and rebuild"
    )


def _git(loc: m.FileLocation, git: m.GitPlace) -> str:
    """A secret in the history a git directory of the image holds."""
    if git.commit is not None:
        when = f" of {git.author_date}" if git.author_date else ""
        commit = f"commit {git.commit[:7]}{when} ({git.subject!r})"
        if git.part == "message":
            what = f"The message of {commit} holds it"
        else:
            what = f"{commit} added it as {git.repo_path}"
    else:
        what = f"Object {git.object_id[:12]} holds it (no commit of the layer names it)"
    return (
        f"{what}, in the history {git.git_dir} keeps; removing the file in a later commit or "
        f"layer does not remove it from the history, and the image ships it "
        f"({_kept(loc, git.git_dir).lower()[:-1]}). {_dockerignore(git.git_dir)}. {ROTATE}"
    )


def _file(loc: m.FileLocation, keys: HistoryKeys, secret: str | None) -> str:
    made_by = keys.layer_instruction(loc.layer_index)
    inst = parse(made_by) if made_by else None
    path, layer = loc.path, loc.layer_index
    if loc.git is not None:
        return _git(loc, loc.git)
    kept = _kept(loc, path)
    found = _IN_GIT_DIR.search(path)
    if found:
        git_dir = path[: found.start() + 5]
        return (
            f"{kept} Git keeps it in clear in {git_dir} (remote URLs, credentials, refs and "
            f"logs are text). {_dockerignore(git_dir)}; use a credential helper, not a URL "
            f"with the token. {ROTATE}"
        )
    if "!" in path:
        outer = path.split("!", 1)[0]
        return f"{kept} It is inside {outer}: rebuild that archive without it. {ROTATE}"
    sid = _secret_id(path)
    if inst is not None and inst.keyword in ("COPY", "ADD"):
        return (
            f"{kept} {inst.keyword} in layer {layer} brought it from the build context: add it "
            f"to .dockerignore, and mount it only in the RUN that needs it: RUN "
            f"--mount=type=secret,id={sid},target={path} <command> (docker build --secret "
            f"id={sid},src=<file>). {ROTATE}"
        )
    if inst is not None and inst.keyword == "RUN":
        held = [n for n, v in inst.build_args if secret and secret in v]
        if held:
            name = held[0]
            mount = f"RUN --mount=type=secret,id={name},env={name} {_command(inst, secret, name)}"
            how = f"docker build --secret id={name},env={name}"
        else:
            mount = f"RUN --mount=type=secret,id={sid},target={path} {_command(inst, secret, sid)}"
            how = f"docker build --secret id={sid},src=<file>"
        same = "" if loc.status == "present" else ", and use it and remove it in that same RUN"
        return (
            f"{kept} The RUN of layer {layer} wrote it: give that RUN the secret as a mount "
            f"instead{same}: {mount} ({how}), or write the file in a build stage the final "
            f"image does not copy from. {ROTATE}"
        )
    return (
        f"{kept} Keep it out of every layer: mount it where it is needed (RUN "
        f"--mount=type=secret,id={sid},target={path} <command>) or use it in a build stage the "
        f"final image does not copy from. {ROTATE}"
    )


def _history(loc: m.HistoryLocation, secret: str | None) -> str:
    inst = parse(loc.created_by)
    held = [n for n, v in inst.build_args if secret and secret in v]
    if held:
        arg = held[0]
        return (
            f"Build argument {arg} is recorded in the image history. Drop ARG {arg} and pass "
            f"it as a secret: RUN --mount=type=secret,id={arg},env={arg} "
            f"{_command(inst, secret, arg)} (docker build --secret id={arg},env={arg}). "
            f"{ROTATE}"
        )
    name: str | None = None
    if inst.keyword in ("ENV", "LABEL", "ARG"):
        name = _holder(_pairs(inst.body), secret)
    if inst.keyword == "ENV":
        var = name or "the variable"
        return (
            f"ENV {var} is in the history and in the config of every container. Remove it and "
            f"inject it at run time (docker run -e {var}, an orchestrator secret); for a build "
            f"step use RUN --mount=type=secret,id={var},env={var} <command>. {ROTATE}"
        )
    if inst.keyword == "LABEL":
        return (
            f"LABEL {name or ''} is public image metadata: remove it and give the secret to the "
            f"container at run time. {ROTATE}".replace("LABEL  ", "LABEL ")
        )
    if inst.keyword == "ARG":
        var = name or "the argument"
        return (
            f"The default of ARG {var} is recorded in the history: remove it and pass the value "
            f"as a secret: RUN --mount=type=secret,id={var},env={var} <command>. {ROTATE}"
        )
    if inst.keyword == "RUN":
        return (
            f"The command line of this RUN is recorded in the history. Read the secret from a "
            f"mount instead: RUN --mount=type=secret,id=TOKEN,env=TOKEN "
            f"{_command(inst, secret, 'TOKEN')} (docker build --secret id=TOKEN,env=TOKEN). "
            f"{ROTATE}"
        )
    if inst.keyword in ("CMD", "ENTRYPOINT", "HEALTHCHECK", "SHELL", "ONBUILD"):
        return (
            f"{inst.keyword} is stored in the image: inject the secret at run time (an "
            f"environment variable from an orchestrator secret, a mounted file). {ROTATE}"
        )
    return (
        "The image history ships with the image: keep the secret out of instructions and "
        f"build arguments (RUN --mount=type=secret,id=TOKEN,env=TOKEN <command>). {ROTATE}"
    )


def _config(loc: m.ConfigLocation) -> str:
    field = loc.field.removeprefix("container_config.")
    if field == "Env":
        var = (loc.key or "the variable").split("=", 1)[0]
        return (
            f"Env {var} is in the config of every container: remove the ENV and inject it at "
            f"run time (docker run -e {var}, an orchestrator secret, a mounted file). {ROTATE}"
        )
    if field == "Labels":
        return (
            f"Label {loc.key or ''} is public image metadata: remove it and give the secret to "
            f"the container at run time. {ROTATE}".replace("Label  ", "Label ")
        )
    if field in _CMD_FIELDS:
        return (
            f"{field} is stored in the image config: inject the secret at run time (an "
            f"environment variable from an orchestrator secret, a mounted file) instead of the "
            f"command line. {ROTATE}"
        )
    if field == "manifest" or "annotation" in field.lower():
        return (
            f"{field} {loc.key or ''} ships with the image: remove it from the build's "
            f"annotations and labels. {ROTATE}".replace("  ", " ")
        )
    return (
        "The image config ships with the image: inject the secret at run time (an "
        f"orchestrator secret, a mounted file) instead. {ROTATE}"
    )


_BUILD_ARG = re.compile(r"build-arg:([A-Za-z_][A-Za-z0-9_]*)")


def _attestation(loc: m.AttestationLocation) -> str:
    """A secret in an attestation: the build records it; another build without it does not
    take it back from the registry, so the attestation (or the tag) goes too."""
    what = loc.predicate_type or "an attestation"
    gone = (
        "Delete the attestation and push again (or delete the tag and push an image built "
        "without the secret in its arguments, or with --provenance=false)"
    )
    arg = _BUILD_ARG.search(loc.path)
    if arg:
        name = arg.group(1)
        return (
            f"Build argument {name} is recorded in the provenance attestation ({what}) pushed "
            f"with the image. Pass it as a build secret, not an argument: RUN "
            f"--mount=type=secret,id={name},env={name} <command> (docker buildx build --secret "
            f"id={name},env={name}). {gone}. {ROTATE}"
        )
    if loc.line is not None or ".source." in loc.path or "llbDefinition" in loc.path:
        return (
            f"The build definition recorded in the attestation ({what}: the Dockerfile and the "
            f"build steps) holds it. Keep it out of the Dockerfile and pass it as a build "
            f"secret: RUN --mount=type=secret,id=TOKEN,env=TOKEN <command>. {gone}. {ROTATE}"
        )
    return (
        f"The attestation ({what}) is pushed with the image and readable by whoever can pull "
        f"it. Keep the secret out of what the build records (pass it as a build secret). "
        f"{gone}. {ROTATE}"
    )


def remediation(loc: m.Location, keys: HistoryKeys, secret: str | None) -> str:
    """What to do about a secret at ``loc``; ``keys`` name the instruction that made a
    file's layer, ``secret`` (when known) tells which build argument or variable holds it."""
    if isinstance(loc, m.FileLocation):
        return _file(loc, keys, secret)
    if isinstance(loc, m.HistoryLocation):
        return _history(loc, secret)
    if isinstance(loc, m.AttestationLocation):
        return _attestation(loc)
    return _config(loc)
