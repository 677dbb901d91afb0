"""Adapter for Yelp's detect-secrets engine (pure Python, in process).

The only module that imports ``detect_secrets``. detect-secrets keeps its configuration in
process-global settings (``detect_secrets.settings``); this adapter never writes them: it
builds its plugin instances itself, once per detector, and calls detect-secrets' filter
functions directly. Two detectors with different plugin lists therefore never see each
other's plugins. The one setting it reads is whether secrets are verified over the network,
to refuse to scan if something else in the process turned that on.
"""

from __future__ import annotations

import bisect
import fnmatch
import inspect
import logging
import posixpath
import re
import threading
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import accumulate

from leakscan.detectors import Confidence, Match, RuleInfo, Subject
from leakscan.detectors.context import is_vendored

# importing detect_secrets runs logging.captureWarnings(True), which reroutes every warning
# of the whole process into logging; we undo that below unless it was on already
_SHOWWARNING = warnings.showwarning

import detect_secrets.plugins  # noqa: E402
from detect_secrets.core.plugins.util import get_plugins_from_file  # noqa: E402
from detect_secrets.filters import heuristic  # noqa: E402
from detect_secrets.plugins.base import BasePlugin, RegexBasedDetector  # noqa: E402
from detect_secrets.plugins.high_entropy_strings import HighEntropyStringsPlugin  # noqa: E402
from detect_secrets.plugins.keyword import DENYLIST, KeywordDetector  # noqa: E402
from detect_secrets.settings import get_settings  # noqa: E402
from detect_secrets.util.filetype import FileType, determine_file_type  # noqa: E402
from detect_secrets.util.importlib import import_types_from_package  # noqa: E402

if warnings.showwarning is not _SHOWWARNING:
    logging.captureWarnings(False)

NAME = "detect-secrets"

# --- which files: the high-signal text files a person writes secrets into ------------------


@dataclass(frozen=True)
class FileKind:
    """Files detect-secrets scans, matched on the basename of the last ``!`` part of a path.

    ``glob`` is an fnmatch pattern, matched case-insensitively. ``parents``, when set, is
    the directory names the file must sit in (``config`` is only interesting under
    ``.aws/``). ``bare_values``: values are written unquoted (``KEY=value``,
    ``key: value``), so the keyword plugin reads assignments the way it reads config
    files instead of insisting on quotes.
    """

    glob: str
    bare_values: bool = False
    parents: tuple[str, ...] = ()


# Entries without ``parents`` come first: the first matching pattern decides.
FILE_KINDS: tuple[FileKind, ...] = (
    # dotenv files
    FileKind(".env", bare_values=True),
    FileKind(".env.*", bare_values=True),
    FileKind("*.env", bare_values=True),
    # config formats
    FileKind("*.ini", bare_values=True),
    FileKind("*.cfg", bare_values=True),
    FileKind("*.conf", bare_values=True),
    FileKind("*.properties", bare_values=True),
    FileKind("docker-compose*.yml", bare_values=True),
    FileKind("docker-compose*.yaml", bare_values=True),
    FileKind("*.yaml", bare_values=True),
    FileKind("*.yml", bare_values=True),
    FileKind("*.toml", bare_values=True),
    FileKind("*.json"),
    FileKind("*.xml"),
    # credential dotfiles
    FileKind(".npmrc", bare_values=True),
    FileKind(".pypirc", bare_values=True),
    FileKind(".netrc", bare_values=True),
    FileKind("_netrc", bare_values=True),
    FileKind(".git-credentials", bare_values=True),
    FileKind(".gitconfig", bare_values=True),
    FileKind("credentials", bare_values=True),  # ~/.aws/credentials and the like
    FileKind("kubeconfig", bare_values=True),
    FileKind("*.kubeconfig", bare_values=True),
    # scripts and build files
    FileKind("*.sh", bare_values=True),
    FileKind("*.bash", bare_values=True),
    FileKind("*.zsh", bare_values=True),
    FileKind("Dockerfile", bare_values=True),
    FileKind("Dockerfile.*", bare_values=True),
    FileKind("*.tf"),
    FileKind("*.tfvars"),
    FileKind("settings.py"),
    FileKind("wp-config.php"),
    # keys
    FileKind("*.pem"),
    FileKind("*.key"),
    FileKind("id_rsa"),
    FileKind("id_ed25519"),
    FileKind("id_ecdsa"),
    FileKind("id_dsa"),
    # tool configs named just "config"
    FileKind("config", bare_values=True, parents=(".aws", ".docker", ".kube")),
)

# lock files detect-secrets' is_lock_file does not know (npm 7+ keeps one in node_modules)
_MORE_LOCK_FILES = frozenset({".package-lock.json", "npm-shrinkwrap.json", "pnpm-lock.yaml"})

# one regex for the whole table: wants() runs for every file of every layer
_KIND_RE = re.compile(
    "|".join(f"(?P<k{i}>{fnmatch.translate(k.glob)})" for i, k in enumerate(FILE_KINDS)),
    re.IGNORECASE,
)

# the filename the keyword plugin is given for bare-value text: detect-secrets picks its
# assignment syntax from the extension, and reads .cfg files as unquoted key=value
_BARE_VALUES_NAME = "bare-values.cfg"


def _inner(path: str) -> str:
    """The path inside the innermost archive (``OUTER!INNER`` names an archive member)."""
    return path.rsplit("!", 1)[-1]


def file_kind(path: str) -> FileKind | None:
    """The entry of :data:`FILE_KINDS` that ``path`` matches, if any."""
    inner = _inner(path)
    found = _KIND_RE.match(posixpath.basename(inner))
    if found is None or found.lastgroup is None:
        return None
    kind = FILE_KINDS[int(found.lastgroup[1:])]
    if kind.parents and posixpath.basename(posixpath.dirname(inner)) not in kind.parents:
        return None
    return kind


# --- which plugins ---------------------------------------------------------------------------

# an IP address is not a secret
_EXCLUDED = frozenset({"IPPublicDetector"})

# Confidence of each built-in plugin's findings; a plugin not listed (a user plugin, say) is
# "medium". High: a fixed prefix, checksum or structure that random text does not have. Low:
# guesses from a variable name or from randomness, and URLs with a password in them.
_CONFIDENCE: dict[str, Confidence] = {
    "KeywordDetector": "low",
    "Base64HighEntropyString": "low",
    "HexHighEntropyString": "low",
    "BasicAuthDetector": "low",
    "AWSKeyDetector": "high",  # the key id; a secret key found by its variable name: medium
    "AzureStorageKeyDetector": "high",
    "DiscordBotTokenDetector": "high",
    "GitHubTokenDetector": "high",
    "GitLabTokenDetector": "high",
    "JwtTokenDetector": "high",
    "NpmDetector": "high",
    "OpenAIDetector": "high",
    "PrivateKeyDetector": "high",
    "PypiTokenDetector": "high",
    "SendGridDetector": "high",
    "SlackDetector": "high",
    "SquareOAuthDetector": "high",
    "StripeDetector": "high",
    "TelegramBotTokenDetector": "high",
}
_AWS_KEY_ID = re.compile(r"(?:A3T[A-Z0-9]|ABIA|ACCA|AKIA|ASIA)[0-9A-Z]{16}")


def _is_plugin_class(obj: object) -> bool:
    return inspect.isclass(obj) and issubclass(obj, BasePlugin) and not inspect.isabstract(obj)


@cache
def _builtin_classes() -> tuple[type[BasePlugin], ...]:
    # discovered, not listed, so that plugins a newer detect-secrets adds are picked up
    found = set(
        import_types_from_package(detect_secrets.plugins, filter=lambda x: not _is_plugin_class(x))
    )
    return tuple(
        sorted((c for c in found if c.__name__ not in _EXCLUDED), key=lambda c: c.__name__)
    )


def _is_builtin(cls: type) -> bool:
    return cls.__module__.startswith("detect_secrets.plugins.")


def _load_plugin_file(path: str) -> list[BasePlugin]:
    """The plugins a user's Python file defines, loaded as detect-secrets loads a
    ``file://`` entry of ``plugins_used``; ValueError naming the file if that fails."""
    builtins = set(_builtin_classes())
    try:
        # runs the file: any exception it raises means it cannot be loaded
        loaded: Iterable[type[BasePlugin]] = get_plugins_from_file(path)
        classes = [c for c in loaded if c not in builtins]
    except Exception as exc:
        raise ValueError(f"cannot load detect-secrets plugin file {path}: {exc}") from exc
    if not classes:
        raise ValueError(
            f"detect-secrets plugin file {path} defines no plugin "
            "(a BasePlugin or RegexBasedDetector subclass with a secret_type)"
        )
    plugins = []
    for cls in sorted(classes, key=lambda c: c.__name__):
        try:
            plugin = cls()
        except Exception as exc:
            raise ValueError(
                f"detect-secrets plugin file {path}: cannot create {cls.__name__}: {exc}"
            ) from exc
        if not isinstance(plugin.secret_type, str) or not plugin.secret_type:
            raise ValueError(f"detect-secrets plugin file {path}: {cls.__name__}: no secret_type")
        plugins.append(plugin)
    return plugins


def rule_id(secret_type: str) -> str:
    """The leakscan rule id of a detect-secrets secret type: ``AWS Access Key`` gives
    ``detect-secrets.aws-access-key``."""
    return f"{NAME}." + re.sub(r"[^a-z0-9]+", "-", secret_type.lower()).strip("-")


# --- values detect-secrets 1.5.0 does not report whole ----------------------------------------

_Repair = Callable[[BasePlugin, str, str], list[str]]


def _whole_matches(plugin: BasePlugin, line: str, value: str) -> list[str]:
    # the GitHub and GitLab patterns put the prefix alternation in a capturing group, and
    # findall returns that group: "ghp" instead of the token
    assert isinstance(plugin, RegexBasedDetector)
    return [m.group(0) for regex in plugin.denylist for m in regex.finditer(line)]


_NPM_TOKEN = re.compile(r"npm_[A-Za-z0-9]{36}|[A-Fa-f0-9-]{36}")


def _npm_token(plugin: BasePlugin, line: str, value: str) -> list[str]:
    # the npm pattern's group runs to the end of the line ("npm_... # comment")
    found = _NPM_TOKEN.match(value)
    return [found.group(0) if found else value]


def _strip_delimiters(plugin: BasePlugin, line: str, value: str) -> list[str]:
    # the Artifactory patterns include the whitespace, "=", ":" or quote around the token
    return [value.strip(' \t\f\v=:"')]


def _azure_key(plugin: BasePlugin, line: str, value: str) -> list[str]:
    return [value.removeprefix("AccountKey=")]


_JWT = re.compile(r"eyJ[A-Za-z0-9_=-]+\.[A-Za-z0-9_=-]+(?:\.[A-Za-z0-9_.+/=-]*)?")


def _jwt_whole(plugin: BasePlugin, line: str, value: str) -> list[str]:
    # the JWT pattern ends in a lazy "*?", so the signature is never part of the match
    out = [m.group(0) for m in _JWT.finditer(line) if m.group(0).startswith(value)]
    return out or [value]


_REPAIRS: dict[str, _Repair] = {
    "GitHubTokenDetector": _whole_matches,
    "GitLabTokenDetector": _whole_matches,
    "NpmDetector": _npm_token,
    "ArtifactoryDetector": _strip_delimiters,
    "AzureStorageKeyDetector": _azure_key,
    "JwtTokenDetector": _jwt_whole,
}

# a private key is reported by detect-secrets as its header ("BEGIN RSA PRIVATE KEY"); we
# report the whole block when its end is near, like kingfisher does
_PEM_BEGIN = re.compile(r"-{4,5} ?BEGIN ([A-Z0-9 ]+?) ?-{4,5}")
_PEM_MAX = 32 << 10


# --- false positives ---------------------------------------------------------------------------


# a subresource integrity hash (npm's "integrity": "sha512-..."): high entropy, no secret
_INTEGRITY = re.compile(r"sha(?:1|256|384|512)-[A-Za-z0-9+/]+={0,2}")


def _is_not_a_secret(secret: str) -> bool:
    # AWS documents its example keys with an EXAMPLE suffix (AKIAIOSFODNN7EXAMPLE), and
    # "xxxxxxxx" is a placeholder in any format
    return (
        secret.endswith(("EXAMPLE", "EXAMPLEKEY"))
        or len(set(secret)) == 1
        or _INTEGRITY.fullmatch(secret) is not None
    )


def _is_false_positive(secret: str, line: str, plugin: BasePlugin) -> bool:
    """detect-secrets' heuristic filters that work on a line in memory, and ours."""
    return (
        heuristic.is_templated_secret(secret)
        or heuristic.is_prefixed_with_dollar_sign(secret)
        or heuristic.is_sequential_string(secret)
        or heuristic.is_potential_uuid(secret)
        or heuristic.is_likely_id_string(secret, line, plugin)
        or heuristic.is_not_alphanumeric_string(secret)
        or _is_not_a_secret(secret)
    )


# --- the detector ------------------------------------------------------------------------------

# Python's regexes are slow over a whole text when they are case-insensitive or start with an
# alternation; for those built-in plugins, a pattern every match of theirs contains instead.
# (pattern, whether it runs over the lower-cased text)
_CHEAP_TRIGGERS: dict[str, tuple[str, bool]] = {
    "KeywordDetector": ("|".join(DENYLIST), True),  # its keywords: lower-case regexes
    "CloudantDetector": ("cl", True),  # cloudant|cl|clou, or a cloudant.com URL
    "IbmCloudIamDetector": ("key|pwd|pass|token", True),
    "IbmCosHmacDetector": ("secret", True),
    "SoftlayerDetector": ("key|pwd|pass|token|softlayer", True),
    "SlackDetector": (r"xox|hooks\.slack\.com", True),
    "ArtifactoryDetector": ("AKC|AP[0-9A-F]", False),
    "MailchimpDetector": ("-us[0-9]", False),
}


@dataclass(frozen=True)
class _Trigger:
    """A regex whose matches over the whole text cover every line a plugin can report on,
    so that only those lines are handed to the plugin. ``lowered``: ``regex`` runs over the
    lower-cased text, and ``fallback`` (case-insensitive) over the text itself when
    lower-casing changes its length."""

    regex: re.Pattern[str]
    lowered: bool = False
    fallback: re.Pattern[str] | None = None


def _triggers(plugin: BasePlugin) -> tuple[_Trigger, ...] | None:
    """How to find the lines ``plugin`` can report on; None: hand it every line."""
    cls = type(plugin)
    if not _is_builtin(cls):
        return None  # a user's plugin may do anything
    cheap = _CHEAP_TRIGGERS.get(cls.__name__)
    if cheap is not None:
        pattern, lowered = cheap
        if lowered:
            return (_Trigger(re.compile(pattern), True, re.compile(pattern, re.IGNORECASE)),)
        return (_Trigger(re.compile(pattern)),)
    if isinstance(plugin, HighEntropyStringsPlugin):
        # a string of n characters has an entropy of at most log2(n): shorter quoted
        # strings can never pass the plugin's limit
        shortest = int(2**plugin.entropy_limit) + 1
        chars = re.escape(plugin.charset)
        return (_Trigger(re.compile(rf"(['\"])([{chars}]{{{shortest},}})(\1)")),)
    if isinstance(plugin, RegexBasedDetector):
        # its own patterns; over the whole text, ^ and $ must still mean the ends of a line.
        # Audited: the other lookarounds of the built-in patterns treat a newline as they
        # treat the end of a line
        return tuple(
            _Trigger(re.compile(r.pattern, r.flags | re.MULTILINE)) for r in plugin.denylist
        )
    return None


@dataclass(frozen=True, eq=False)
class _Rule:
    """A plugin and how leakscan reports it."""

    plugin: BasePlugin
    builtin: str  # the class name of a built-in plugin, "" for a user's
    rule_id: str
    description: str
    confidence: Confidence
    keyword: bool  # given the keyword filename (see _Scan)
    repair: _Repair | None
    triggers: tuple[_Trigger, ...] | None


def _rule(plugin: BasePlugin) -> _Rule:
    cls = type(plugin)
    builtin = cls.__name__ if _is_builtin(cls) else ""
    return _Rule(
        plugin=plugin,
        builtin=builtin,
        rule_id=rule_id(plugin.secret_type),
        description=plugin.secret_type,
        confidence=_CONFIDENCE.get(builtin, "medium"),
        keyword=isinstance(plugin, KeywordDetector),
        repair=_REPAIRS.get(builtin),
        triggers=_triggers(plugin),
    )


class DetectSecretsDetector:
    """Every built-in detect-secrets plugin but the public-IP one, plus the user's own."""

    name = NAME

    def __init__(self, plugin_files: Sequence[str] = (), max_file_size: int = 1 << 20) -> None:
        self.max_file_size = max_file_size
        # whole files: a chunk that starts mid-line hands the plugins a line without its
        # keyword, and a key block may run past a chunk's end
        self.whole_file: int | None = max_file_size
        plugins: dict[str, BasePlugin] = {}
        for cls in _builtin_classes():
            plugin = cls()
            plugins[plugin.secret_type] = plugin
        for path in plugin_files:
            for plugin in _load_plugin_file(path):
                # a secret type seen before is replaced, as detect-secrets does
                plugins[plugin.secret_type] = plugin
        self._rules = tuple(_rule(p) for p in plugins.values())
        self._lock = threading.Lock()

    def wants(self, subject: Subject) -> bool:
        """History and config strings; files: config, credential and key files of at most
        ``max_file_size`` bytes (see :data:`FILE_KINDS`)."""
        path = subject.path
        if path is None:
            return True
        if subject.size is not None and subject.size > self.max_file_size:
            return False
        if file_kind(path) is None or is_vendored(path):
            # vendored trees (node_modules, site-packages, system folders) hold package data,
            # not config a person wrote: kingfisher still reads every byte of them, and
            # detect-secrets' matches there could only be sample data
            return False
        inner = _inner(path)
        # lock files hold hashes, swagger files examples: detect-secrets skips both
        if posixpath.basename(inner) in _MORE_LOCK_FILES or heuristic.is_lock_file(inner):
            return False
        return not heuristic.is_swagger_file(inner)

    def rules(self) -> list[RuleInfo]:
        """One rule per plugin."""
        return [RuleInfo(r.rule_id, r.description, self.name) for r in self._rules]

    def scan(self, data: bytes, subject: Subject) -> list[Match]:
        """Every plugin over every line of ``data``; nothing for binary data."""
        if b"\0" in data[:8192]:
            return []
        _refuse_verification()
        # scans may come from a helper thread and the caller at once (detectors.stream);
        # detect-secrets was not written for that, and being pure Python it would gain
        # nothing from running twice at a time
        with self._lock:
            return _Scan(data, subject).run(self._rules)


_VERIFICATION = "detect_secrets.filters.common.is_ignored_due_to_verification_policies"


def _refuse_verification() -> None:
    # the one global setting the plugins read: with this filter configured (detect-secrets'
    # own CLI does it) analyze_line sends each secret it finds to its service to verify it
    if _VERIFICATION in get_settings().filters:
        raise RuntimeError(
            "detect-secrets' global settings enable verifying secrets over the network; "
            "leakscan does not send secrets anywhere"
        )


_SURROGATES = {c: 0xFFFD for c in range(0xDC80, 0xDD00)}


class _Scan:
    """One scan of one piece of data: its lines and their offsets."""

    def __init__(self, data: bytes, subject: Subject) -> None:
        self.data = data
        self.ascii = data.isascii()
        try:
            self.text = data.decode("utf-8")
            self.exact = self.text
        except UnicodeDecodeError:
            # surrogateescape maps each undecodable byte to one character and back, so that
            # character offsets convert to byte offsets exactly; the plugins get U+FFFD in
            # its place (detect-secrets hashes every value as UTF-8, surrogates would raise)
            self.exact = data.decode("utf-8", "surrogateescape")
            self.text = self.exact.translate(_SURROGATES)
        self.lines = self.text.split("\n")
        self.starts = list(accumulate((len(x) + 1 for x in self.lines[:-1]), initial=0))
        self._byte_starts: list[int] | None = None
        self._exact_lines: list[str] = []
        self.lower: str | None = None  # the text lower-cased, for triggers that want it
        if subject.path is None:
            self.filename = ""
            bare = True  # ENV values, build arguments, shell commands
        else:
            self.filename = _inner(subject.path)
            kind = file_kind(subject.path)
            bare = kind.bare_values if kind else False
        # the keyword plugin's assignment syntax follows the file's extension
        own = determine_file_type(self.filename) is not FileType.OTHER
        self.keyword_filename = self.filename if own or not bare else _BARE_VALUES_NAME
        self.found: dict[tuple[str, int, str], Match] = {}

    def run(self, rules: Iterable[_Rule]) -> list[Match]:
        for rule in rules:
            filename = self.keyword_filename if rule.keyword else self.filename
            for index in self._candidates(rule):
                line = self.lines[index].rstrip()
                if not line:
                    continue
                potentials = rule.plugin.analyze_line(
                    filename=filename, line=line, line_number=index + 1
                )
                if potentials:
                    values = {p.secret_value for p in potentials if p.secret_value is not None}
                    self._line(rule, index, line, values)
        return sorted(self.found.values(), key=lambda m: (m.start, m.rule_id))

    def _candidates(self, rule: _Rule) -> Iterable[int]:
        if rule.triggers is None:
            return range(len(self.lines))
        hit: set[int] = set()
        for trigger in rule.triggers:
            regex, text = trigger.regex, self.text
            if trigger.lowered:
                if self.lower is None:
                    self.lower = self.text.lower()
                if len(self.lower) == len(self.text):
                    text = self.lower
                else:
                    assert trigger.fallback is not None
                    regex = trigger.fallback
            for m in regex.finditer(text):
                first = bisect.bisect_right(self.starts, m.start()) - 1
                last = bisect.bisect_right(self.starts, max(m.end() - 1, m.start())) - 1
                hit.update(range(first, last + 1))
        return sorted(hit)

    def _line(self, rule: _Rule, index: int, line: str, values: set[str]) -> None:
        secrets: set[str] = set()
        for value in values:
            secrets.update(rule.repair(rule.plugin, line, value) if rule.repair else [value])
        indirect: bool | None = None
        for secret in secrets:
            if not secret or _is_false_positive(secret, line, rule.plugin):
                continue
            # detect-secrets' line filter (``x = get_secret()``) is for guesses from a
            # variable name: a token of a known format is a finding whatever surrounds it.
            # Last, as its regex is the slowest of the filters on a long line
            if rule.confidence != "high":
                if indirect is None:
                    indirect = heuristic.is_indirect_reference(line)
                if indirect:
                    continue
            if rule.builtin == "PrivateKeyDetector" and self._key_block(rule, index, line, secret):
                continue
            col = _locate(line, secret)
            if col >= 0:
                self._add(rule, index, col, secret)

    def _key_block(self, rule: _Rule, index: int, line: str, header: str) -> bool:
        for begin in _PEM_BEGIN.finditer(line):
            if f"BEGIN {begin.group(1)}" != header:
                continue
            end = re.compile(rf"-{{4,5}} ?END {re.escape(begin.group(1))} ?-{{4,5}}")
            at = self.starts[index] + begin.start()
            found = end.search(self.text, at, at + _PEM_MAX)
            if found is not None:
                self._add(rule, index, begin.start(), self.text[at : found.end()])
                return True
        return False

    def _add(self, rule: _Rule, index: int, col: int, secret: str) -> None:
        at = self.starts[index] + col
        start, end = self._byte_offset(at), self._byte_offset(at + len(secret))
        if not self.ascii:
            secret = self.data[start:end].decode("utf-8", "replace")
        key = (rule.rule_id, start, secret)
        if key in self.found:
            return
        confidence = rule.confidence
        if rule.builtin == "AWSKeyDetector" and not _AWS_KEY_ID.fullmatch(secret):
            confidence = "medium"  # a secret access key, found by its variable name
        self.found[key] = Match(
            rule_id=rule.rule_id,
            description=rule.description,
            secret=secret,
            start=start,
            end=end,
            line=index + 1,
            confidence=confidence,
            detector=NAME,
        )

    def _byte_offset(self, at: int) -> int:
        """The offset in ``data`` of character ``at`` of the text."""
        if self.ascii:
            return at
        if self._byte_starts is None:
            self._exact_lines = self.exact.split("\n")
            sizes = (len(x.encode("utf-8", "surrogateescape")) + 1 for x in self._exact_lines)
            self._byte_starts = list(accumulate(sizes, initial=0))
        index = bisect.bisect_right(self.starts, at) - 1
        prefix = self._exact_lines[index][: at - self.starts[index]]
        return self._byte_starts[index] + len(prefix.encode("utf-8", "surrogateescape"))


def _locate(line: str, secret: str) -> int:
    """Where ``secret`` is on ``line``: the first occurrence not inside a longer word (a
    keyword value "tok" is not the start of "token: tok"), else the first; -1 if absent."""
    first = at = line.find(secret)
    while at >= 0:
        end = at + len(secret)
        before = line[at - 1] if at else " "
        after = line[end] if end < len(line) else " "
        if not before.isalnum() and not after.isalnum():
            return at
        at = line.find(secret, at + 1)
    return first
