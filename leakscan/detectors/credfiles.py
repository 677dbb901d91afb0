"""leakscan's own engine: credential files whose format says where the secret is.

Pattern engines find tokens by their shape; a password in ``~/.netrc`` or a base64 ``auth``
in ``~/.docker/config.json`` has no shape, only a place. Each reader below knows one file
format and reports the values that format reserves for credentials.
"""

from __future__ import annotations

import base64
import binascii
import json
import posixpath
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from leakscan.detectors import Match, RuleInfo, Subject

NAME = "leakscan"
MAX_SIZE = 1 << 20


@dataclass(frozen=True)
class _Found:
    rule: str
    value: str
    near: int = 0  # where in the text to start looking for the value


def _basename(path: str) -> tuple[str, str]:
    inner = path.rsplit("!", 1)[-1]
    return posixpath.basename(inner), posixpath.basename(posixpath.dirname(inner))


def _docker_config(text: str) -> Iterator[_Found]:
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or nested to exhaust the stack
        return
    if not isinstance(doc, dict):
        return
    # config.json keeps registries under "auths"; the legacy .dockercfg is the map itself
    auths = doc.get("auths") if "auths" in doc else doc
    if not isinstance(auths, dict):
        return
    for entry in auths.values():
        if not isinstance(entry, dict):
            continue
        auth = entry.get("auth")
        if isinstance(auth, str) and _has_password(auth):
            yield _Found("leakscan.docker-config-auth", auth)
        for key in ("identitytoken", "registrytoken", "password"):
            value = entry.get(key)
            if isinstance(value, str) and value:
                yield _Found(f"leakscan.docker-config-{key}", value)


def _has_password(auth: str) -> bool:
    """A docker ``auth`` is base64 of ``user:password``; an empty password is no secret."""
    try:
        decoded = base64.b64decode(auth, validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return False
    user, sep, password = decoded.partition(":")
    return bool(sep and password)


def _netrc(text: str) -> Iterator[_Found]:
    for m in re.finditer(r"(?:^|\s)password\s+(\S+)", text):
        yield _Found("leakscan.netrc-password", m.group(1), m.start(1))


def _ini_values(text: str, keys: dict[str, str]) -> Iterator[_Found]:
    """``key = value`` / ``key: value`` lines of INI-like files, for the keys given."""
    for m in re.finditer(
        r"(?mi)^[ \t]*([A-Za-z_][\w.-]*)[ \t]*[=:][ \t]*(\S[^\r\n]*?)[ \t]*$", text
    ):
        rule = keys.get(m.group(1).lower())
        if rule is not None:
            yield _Found(rule, m.group(2).strip("\"'"), m.start(2))


def _pypirc(text: str) -> Iterator[_Found]:
    yield from _ini_values(text, {"password": "leakscan.pypirc-password"})


def _aws(text: str) -> Iterator[_Found]:
    yield from _ini_values(
        text,
        {
            "aws_secret_access_key": "leakscan.aws-secret-access-key",
            "aws_session_token": "leakscan.aws-session-token",
        },
    )


def _npmrc(text: str) -> Iterator[_Found]:
    for m in re.finditer(r"(?m)(?:^|:)(_authToken|_auth|_password)[ \t]*=[ \t]*(\S+)", text):
        yield _Found("leakscan.npmrc-credential", m.group(2).strip("\"'"), m.start(2))


def _kubeconfig(text: str) -> Iterator[_Found]:
    keys = {
        "token": "leakscan.kubeconfig-token",
        "password": "leakscan.kubeconfig-password",
        "client-key-data": "leakscan.kubeconfig-client-key",
    }
    for m in re.finditer(r"(?m)^[ \t-]*(token|password|client-key-data):[ \t]*(\S+)[ \t]*$", text):
        yield _Found(keys[m.group(1)], m.group(2).strip("\"'"), m.start(2))


_K8S_SECRET = re.compile(r"(?m)^kind:[ \t]*Secret[ \t]*$")


def _kubernetes_secret(text: str) -> Iterator[_Found]:
    """``data:`` (base64) and ``stringData:`` values of Kubernetes Secret manifests."""
    for doc_match in re.finditer(r"(?ms)(?:\A|^---[^\n]*\n)(.*?)(?=^---|\Z)", text):
        doc, base = doc_match.group(1), doc_match.start(1)
        if not _K8S_SECRET.search(doc):
            continue
        for block in re.finditer(r"(?m)^(data|stringData):[ \t]*\n((?:[ \t]+[^\n]*\n?)+)", doc):
            encoded = block.group(1) == "data"
            for item in re.finditer(r"(?m)^[ \t]+[\w.-]+:[ \t]*(\S+)[ \t]*$", block.group(2)):
                value = item.group(1).strip("\"'")
                if encoded and not _decodes_to_text(value):
                    continue
                yield _Found(
                    "leakscan.kubernetes-secret-data", value, base + block.start(2) + item.start(1)
                )


def _decodes_to_text(value: str) -> bool:
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return len(decoded) >= 6 and decoded.isascii() and decoded.decode().isprintable()


_Reader = Callable[[str], Iterator[_Found]]

# basename (of the last part of an OUTER!INNER path), and the directory it must be in if any
_BY_NAME: dict[tuple[str, str | None], _Reader] = {
    ("config.json", ".docker"): _docker_config,
    ("auth.json", "containers"): _docker_config,
    (".dockercfg", None): _docker_config,
    (".netrc", None): _netrc,
    ("_netrc", None): _netrc,
    (".pypirc", None): _pypirc,
    ("credentials", ".aws"): _aws,
    ("config", ".aws"): _aws,
    (".npmrc", None): _npmrc,
    ("npmrc", None): _npmrc,
    ("config", ".kube"): _kubeconfig,
    ("kubeconfig", None): _kubeconfig,
}

_RULES = {
    "leakscan.docker-config-auth": "Registry credentials (base64 user:password) in a docker config",
    "leakscan.docker-config-identitytoken": "Registry identity token in a docker config",
    "leakscan.docker-config-registrytoken": "Registry token in a docker config",
    "leakscan.docker-config-password": "Registry password in a docker config",
    "leakscan.netrc-password": "Password in a .netrc file",
    "leakscan.pypirc-password": "Package index password in a .pypirc file",
    "leakscan.aws-secret-access-key": "AWS secret access key in an AWS credentials file",
    "leakscan.aws-session-token": "AWS session token in an AWS credentials file",
    "leakscan.npmrc-credential": "npm registry credential in an .npmrc file",
    "leakscan.kubeconfig-token": "Bearer token in a kubeconfig",
    "leakscan.kubeconfig-password": "Password in a kubeconfig",
    "leakscan.kubeconfig-client-key": "Client private key in a kubeconfig",
    "leakscan.kubernetes-secret-data": "Value of a Kubernetes Secret manifest",
}


def _reader(path: str | None) -> _Reader | None:
    if path is None:
        return None
    name, parent = _basename(path)
    found = _BY_NAME.get((name, parent)) or _BY_NAME.get((name, None))
    if found is None and (name.endswith(".kubeconfig")):
        found = _kubeconfig
    if found is None and name.endswith((".yaml", ".yml")):
        found = _kubernetes_secret
    return found


class CredentialFilesDetector:
    """Credential files by format: docker and podman auth, .netrc, .pypirc, AWS credentials,
    .npmrc, kubeconfig, Kubernetes Secret manifests."""

    name = NAME
    # a format is read whole: a JSON document split in two parses as neither half
    whole_file: int | None = MAX_SIZE

    def wants(self, subject: Subject) -> bool:
        """Files of the formats above, up to 1 MiB."""
        return (subject.size is None or subject.size <= MAX_SIZE) and _reader(
            subject.path
        ) is not None

    def scan(self, data: bytes, subject: Subject) -> list[Match]:
        """Read ``data`` as the format its path names."""
        read = _reader(subject.path)
        if read is None or b"\x00" in data[:8192]:
            return []
        text = data.decode("utf-8", "replace")
        out = []
        for found in read(text):
            at = text.find(found.value, found.near)
            if at < 0:
                at = text.find(found.value)
            if at < 0 or not found.value:
                continue
            start = len(text[:at].encode("utf-8"))
            end = start + len(found.value.encode("utf-8"))
            out.append(
                Match(
                    rule_id=found.rule,
                    description=_RULES[found.rule],
                    secret=found.value,
                    start=start,
                    end=end,
                    line=text.count("\n", 0, at) + 1,
                    confidence="medium",
                    detector=NAME,
                )
            )
        return out

    def rules(self) -> list[RuleInfo]:
        """This engine's rules."""
        return [RuleInfo(rule, text, NAME) for rule, text in sorted(_RULES.items())]
