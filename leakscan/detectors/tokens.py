"""leakscan's own rules: token formats the other engines miss, and values a name gives away.

Part of the ``leakscan`` engine (beside the credential-file readers), in three kinds:

- **formats**: a token whose issuer documents a fixed shape (Alibaba Cloud ``LTAI...`` key
  ids, Harness ``pat.<account>.<id>.<secret>``, JFrog ``AKCp...`` keys, Azure AD client
  secrets with ``Q~`` at their fifth character...). High confidence.
- **named values**: ``AWS_SECRET_ACCESS_KEY=...``, ``api_key: ...``, ``"dbPassword": "..."``,
  ``<password>...</password>``: a value assigned to a name that says it is a secret, and
  that looks like one (long enough, random enough, not a reference, a path or a word).
  Medium: the name is the evidence, and a name is no format. Some names also pin the
  provider (an Etsy keystring, an Algolia admin key, a Codecov token).
- **pairs**: an AWS or Alibaba Cloud key id and its secret in one file or string, or in two
  history or config strings of one image, are one credential, usable as it stands: both
  are reported, high.

Read only in text files a person writes (configuration, source, scripts, dotenv) and in
history and config strings, never in vendored trees: the rules are Python regexes, and the
bulk of an image (binaries, libraries, packages) is kingfisher's to read.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import cached_property

from leakscan.detectors import Confidence, Match, RuleInfo, Subject
from leakscan.detectors.context import documented_examples, in_spans, is_vendored
from leakscan.detectors.placeholders import is_placeholder
from leakscan.metadata import Text

NAME = "leakscan"
MAX_SIZE = 1 << 20


@dataclass(frozen=True)
class Format:
    """A token format: ``regex`` (its ``secret`` group, or the whole match, is the token)
    runs only over text that holds one of ``triggers``, plain substrings."""

    rule_id: str
    description: str
    triggers: tuple[str, ...]
    pattern: str
    confidence: Confidence = "high"

    @cached_property
    def regex(self) -> re.Pattern[str]:
        """``pattern`` compiled on first use: a re-scan the result store answers whole
        imports this module but runs no format."""
        return re.compile(self.pattern)


def _fmt(rule: str, description: str, triggers: tuple[str, ...], pattern: str) -> Format:
    return Format(f"{NAME}.{rule}", description, triggers, pattern)


_B = r"(?<![A-Za-z0-9])"  # no letter or digit before
_E = r"(?![A-Za-z0-9])"  # nor after

FORMATS: tuple[Format, ...] = (
    _fmt("aws-access-key-id", "AWS access key id (AKIA, ASIA, ABIA, ACCA)",
         ("AKIA", "ASIA", "ABIA", "ACCA"), rf"{_B}(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{{16}}{_E}"),
    _fmt("alibaba-access-key-id", "Alibaba Cloud AccessKey id (LTAI...)",
         ("LTAI",), rf"{_B}LTAI[A-Za-z0-9]{{12,20}}{_E}"),
    _fmt("harness-token", "Harness personal access or service account token",
         ("pat.", "sat."),
         r"(?<![\w.])(?:pat|sat)\.[A-Za-z0-9_-]{22}\.[0-9a-f]{24}\.[A-Za-z0-9]{20}(?![\w.])"),
    _fmt("jfrog-api-key", "JFrog Artifactory API key (AKCp...)",
         ("AKCp",), rf"{_B}AKCp[A-Za-z0-9]{{69}}{_E}"),
    _fmt("jfrog-reference-token", "JFrog identity (reference) token",
         ("cmVmdGtu",), rf"{_B}cmVmdGtu[A-Za-z0-9]{{56}}{_E}"),
    _fmt("azure-ad-client-secret", "Azure AD (Entra ID) application client secret",
         ("Q~",),
         r"(?<![\w~.-])[A-Za-z0-9_~.-]{3}[0-9]Q~[A-Za-z0-9_~.-]{31,34}(?![\w~.-])"),
    _fmt("clickhouse-cloud-key-secret", "ClickHouse Cloud API key secret (4b1d...)",
         ("4b1d",), rf"{_B}4b1d[A-Za-z0-9]{{38}}{_E}"),
    _fmt("atlassian-api-token", "Atlassian (Jira, Confluence) API token (ATATT...)",
         ("ATATT",), r"(?<![\w-])ATATT3[A-Za-z0-9_\-=]{150,250}=[A-F0-9]{8}(?![\w=-])"),
    _fmt("stripe-secret-key", "Stripe secret or restricted key, live or test",
         ("k_live_", "k_test_"), rf"{_B}[sr]k_(?:live|test)_[A-Za-z0-9]{{24,247}}{_E}"),
    _fmt("flyio-token", "Fly.io access token",
         ("FlyV1 ", "fo1_"),
         r"FlyV1 fm[12][a-z]?_[A-Za-z0-9+/=_,-]{40,}|(?<![\w-])fo1_[A-Za-z0-9_-]{43}(?![\w-])"),
    _fmt("freemius-secret-key", "Freemius secret key",
         ("secret_key",),
         r"""secret_key['"]?\s*(?:=>|=|:)\s*['"](?P<secret>sk_[^'"\s]{29})['"]"""),
    _fmt("nuget-config-password", "Cleartext package source password in a NuGet config",
         ("ClearTextPassword",),
         r"""<add\s+key\s*=\s*"ClearTextPassword"\s+value\s*=\s*"(?P<secret>[^"]+)\""""),
    _fmt("nuget-api-key", "NuGet API key (oy2...)", ("oy2",), rf"{_B}oy2[a-z0-9]{{43}}{_E}"),
    _fmt("discord-webhook-url", "Discord webhook URL", ("/api/webhooks/",),
         r"https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/[0-9]{17,20}/"
         r"[A-Za-z0-9_-]{60,68}"),
    _fmt("microsoft-teams-webhook-url", "Microsoft Teams incoming webhook URL", ("webhookb2/",),
         r"https://[\w.-]+\.webhook\.office\.com/webhookb2/[\w-]{36}@[\w-]{36}/IncomingWebhook/"
         r"[0-9a-f]{32}/[\w-]{36}"),
    _fmt("hubspot-private-app-token", "HubSpot private app access token", ("pat-",),
         rf"{_B}pat-(?:na|eu|ap)[0-9]-[0-9a-f]{{8}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-"
         rf"[0-9a-f]{{12}}{_E}"),
    _fmt("braintree-access-token", "Braintree production access token", ("access_token$",),
         r"access_token\$production\$[a-z0-9]{16}\$[a-f0-9]{32}"),
    _fmt("gcp-service-account-key", "Google Cloud service account private key (JSON key file)",
         ('"private_key"',),
         r""""private_key"\s*:\s*"(?P<secret>-----BEGIN PRIVATE KEY-----\\n[A-Za-z0-9+/=\\n]{64,}"""
         r"""-----END PRIVATE KEY-----)(?:\\n)?\""""),
)  # fmt: skip


# --- named values ----------------------------------------------------------------------------

# KEY=value, key: value, "key": "value", key = 'value', KEY ?= value, key => 'value';
# a quoted value may hold any character but its quote, a bare one ends at a delimiter
_ASSIGN = re.compile(
    r"""(?P<name>[A-Za-z_][A-Za-z0-9_.\-]{0,80})["']?\]?[ \t]*
        (?::=|\?=|\+=|=>|(?<![=!<>])=(?!=)|:(?![/:]))[ \t]*(?:!!str[ \t]+)?
        (?: "(?P<dq>[^"\s\\]{8,1024})"
          | '(?P<sq>[^'\s\\]{8,1024})'
          | `(?P<bq>[^`\s\\]{8,1024})`
          | (?P<bare>[^\s"'`<>;,(){}\[\]\\]{8,1024})(?=[\s;,)}\]]|$) )""",
    re.X | re.M,
)
# <password>value</password>, <add key="ApiKey" value="..."/>
_XML = re.compile(
    r"""<(?P<name>[A-Za-z][\w.:-]{0,60})>(?P<value>[^<>\s]{8,1024})</(?P=name)>
      | <add\s+key\s*=\s*"(?P<key>[^"]{1,80})"\s+value\s*=\s*"(?P<kv>[^"\s]{8,1024})\"""",
    re.X,
)
# the lines worth reading at all: a name that may be a secret's
_KEYWORD = re.compile(r"pass|secret|token|key|pat\b|pwd|auth|credential", re.IGNORECASE)

# the last word of a name that says the value is a secret; a "key" must say which kind
_SECRET_WORDS = frozenset({
    "password", "passwd", "passphrase", "secret", "token", "apikey", "pat", "authtoken",
    "accesstoken", "secretkey", "credential", "credentials",
})  # fmt: skip
_KEY_KINDS = frozenset({
    "api", "secret", "access", "admin", "app", "application", "private", "auth", "master",
    "signing", "account", "service", "write", "encryption", "io", "storage", "server",
})  # fmt: skip
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
# words joined (db-password-secret, os.environ, settings.SECRET_KEY2): a name, not a value
_IDENTIFIER = re.compile(r"[A-Za-z]+(?:[._-][A-Za-z]+)+|[A-Za-z_]+[0-9]*(?:\.[A-Za-z_]+[0-9]*)+")
# a regular expression (IPV4_PAT, TOKEN_PATTERN...): classes, groups, repeats
_REGEX = re.compile(r"\(\?|\[[0-9a-zA-Z]-[0-9a-zA-Z]|\{\d+,\d*\}|\\[dwsS]|\.[*+]|\][*+{]")
# short letters and a number (config52, apiKey91, Summer2024): an identifier, or what a
# person types; and code that assigns or calls (apiKey.data=const, password:value)
_WORDS_AND_NUMBER = re.compile(r"(?:(?:[A-Z]?[a-z]+){1,3}|[A-Z]+)[0-9]{0,6}")
# a reference to a value kept elsewhere: $VAR, ${...}, $(...), Maven's @name@
_REFERENCE = re.compile(r"\$(?:\{|\(|[A-Za-z_]\w*$)|@[\w.-]+@$")
_CODE = re.compile(r"[A-Za-z]{3,}[A-Za-z.]*[=:][A-Za-z]|.*[A-Za-z0-9]&&[A-Za-z]")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)


def name_words(name: str) -> list[str]:
    """``AWS_SECRET_ACCESS_KEY``, ``awsSecretAccessKey``, ``aws.secret-access.key`` all give
    aws, secret, access, key."""
    return [w for w in re.split(r"[^a-z0-9]+", _CAMEL.sub("_", name).lower()) if w]


def names_a_secret(name: str) -> bool:
    """Whether a value called ``name`` is a secret by its name."""
    words = name_words(name)
    if not words:
        return False
    last = words[-1]
    if last in _SECRET_WORDS:
        return True
    return last == "key" and len(words) > 1 and words[-2] in _KEY_KINDS


def _entropy(value: str) -> float:
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def _random_segment(value: str) -> bool:
    """Whether a value that starts with "/" holds runs no path has: between its slashes,
    pieces with upper and lower case letters and digits, one of 16 characters or more or 20
    characters in all. A secret access key is 40 characters of base64's alphabet, "/"
    included, and may start with one."""
    mixed = [
        len(part)
        for part in value.split("/")
        if any(c.isupper() for c in part)
        and any(c.islower() for c in part)
        and any(c.isdigit() for c in part)
    ]
    return bool(mixed) and (max(mixed) >= 16 or sum(mixed) >= 20)


def looks_random(value: str) -> bool:
    """Whether ``value`` could be a generated secret: not a placeholder, a reference, a
    path, a URL, code, an identifier or a word; at least 8 characters, with a digit or, from
    10 characters on, two kinds of characters, and near the entropy its length allows (3
    bits a character from 12 characters on; a short random string repeats a character)."""
    if len(value) < 8 or is_placeholder(value):
        return False
    if value.startswith("/") and not _random_segment(value):
        return False
    if value.startswith(("./", "~/", "#{", "classpath:", "file:")) or _REFERENCE.match(value):
        return False
    if "://" in value or _IDENTIFIER.fullmatch(value) or _REGEX.search(value):
        return False
    if "||" in value or "=>" in value or _CODE.match(value):
        return False
    if len(value) <= 24 and _WORDS_AND_NUMBER.fullmatch(value):
        return False
    if _UUID.fullmatch(value):
        return True  # many services issue UUIDs as tokens; the name says this one is
    kinds = sum(
        (any(c.islower() for c in value), any(c.isupper() for c in value),
         any(c.isdigit() for c in value), any(not c.isalnum() for c in value))
    )  # fmt: skip
    has_digit = any(c.isdigit() for c in value)
    if not (has_digit or (kinds >= 2 and len(value) >= 10)):
        return False
    return _entropy(value) >= min(3.0, 0.85 * math.log2(len(value)))


@dataclass(frozen=True)
class Keyed:
    """A provider a name gives away: a name with ``word`` whose value matches ``value``."""

    rule_id: str
    description: str
    word: str
    value: re.Pattern[str]


KEYED: tuple[Keyed, ...] = (
    Keyed(f"{NAME}.etsy-api-key", "Etsy API keystring", "etsy", re.compile(r"[a-z0-9]{24}")),
    Keyed(f"{NAME}.algolia-admin-key", "Algolia admin or write API key", "algolia",
          re.compile(r"[a-f0-9]{32}")),
    Keyed(f"{NAME}.codecov-token", "Codecov upload token", "codecov",
          re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{40}")),
    Keyed(f"{NAME}.atlassian-api-token", "Atlassian (Jira, Confluence) API token", "jira",
          re.compile(r"[A-Za-z0-9]{24}")),
    Keyed(f"{NAME}.atlassian-api-token", "Atlassian (Jira, Confluence) API token", "atlassian",
          re.compile(r"[A-Za-z0-9]{24}")),
    Keyed(f"{NAME}.atlassian-api-token", "Atlassian (Jira, Confluence) API token", "confluence",
          re.compile(r"[A-Za-z0-9]{24}")),
)  # fmt: skip

NAMED = f"{NAME}.named-secret"
NAMED_DESCRIPTION = "A random value assigned to a name that says it is a secret"
AWS_PAIR = f"{NAME}.aws-credential-pair"
ALIBABA_PAIR = f"{NAME}.alibaba-credential-pair"
_PAIRS = {
    AWS_PAIR: "AWS access key id and secret access key side by side",
    ALIBABA_PAIR: "Alibaba Cloud AccessKey id and secret side by side",
}
PAIR_RULES = frozenset(_PAIRS)
_AWS_ID = re.compile(rf"{_B}(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{{16}}{_E}")
_AWS_SECRET = re.compile(r"[A-Za-z0-9/+]{40}")
_ALIBABA_ID = re.compile(rf"{_B}LTAI[A-Za-z0-9]{{12,20}}{_E}")
_ALIBABA_SECRET = re.compile(r"[A-Za-z0-9]{30}")


@dataclass(frozen=True)
class Found:
    """A value of a rule, at character ``at`` of the text."""

    rule_id: str
    description: str
    secret: str
    at: int
    confidence: Confidence


def _named(text: str, bare: bool = True) -> Iterator[tuple[str, str, int]]:
    """(name, value, offset) of every assignment on a line that may name a secret; unquoted
    values only when ``bare`` (configuration, not source code)."""
    seen_lines: set[int] = set()
    for hit in _KEYWORD.finditer(text):
        start = text.rfind("\n", 0, hit.start()) + 1
        if start in seen_lines:
            continue
        seen_lines.add(start)
        end = text.find("\n", hit.end())
        end = len(text) if end < 0 else end
        for m in _ASSIGN.finditer(text, start, end):
            group = next(g for g in ("dq", "sq", "bq", "bare") if m.group(g) is not None)
            if group == "bare" and not bare:
                continue
            yield m.group("name"), m.group(group), m.start(group)
        for m in _XML.finditer(text, start, end):
            if m.group("name") is not None:
                yield m.group("name"), m.group("value"), m.start("value")
            else:
                yield m.group("key"), m.group("kv"), m.start("kv")


def find(text: str, bare: bool = True) -> list[Found]:
    """Every value of leakscan's rules in ``text``; ``bare``: values may stand unquoted (a
    configuration file or a history string, not source code, where a literal is quoted
    and whatever else follows ``=`` is code)."""
    out: list[Found] = []
    for rule in FORMATS:
        if not any(t in text for t in rule.triggers):
            continue
        for m in rule.regex.finditer(text):
            group = "secret" if "secret" in rule.regex.groupindex else 0
            out.append(
                Found(rule.rule_id, rule.description, m.group(group), m.start(group),
                      rule.confidence)
            )  # fmt: skip
    named: list[tuple[str, str, int]] = []
    for name, value, at in _named(text, bare):
        if not names_a_secret(name) or not looks_random(value):
            continue
        named.append((name, value, at))
        words = name_words(name)
        keyed = next((k for k in KEYED if k.word in words and k.value.fullmatch(value)), None)
        if keyed is not None:
            out.append(Found(keyed.rule_id, keyed.description, value, at, "medium"))
        else:
            out.append(Found(NAMED, NAMED_DESCRIPTION, value, at, "medium"))
    out.extend(_pairs(text, named))
    return out


def _pairs(text: str, named: list[tuple[str, str, int]]) -> Iterator[Found]:
    for rule, ids, secrets in (
        (AWS_PAIR, _AWS_ID, _AWS_SECRET),
        (ALIBABA_PAIR, _ALIBABA_ID, _ALIBABA_SECRET),
    ):
        found = [
            (value, at)
            for name, value, at in named
            if "secret" in name_words(name) and secrets.fullmatch(value)
        ]
        if not found:
            continue
        key_ids = [m for m in ids.finditer(text) if not is_placeholder(m.group(0))]
        if not key_ids:
            continue
        for m in key_ids:
            yield Found(rule, _PAIRS[rule], m.group(0), m.start(), "high")
        for value, at in found:
            yield Found(rule, _PAIRS[rule], value, at, "high")


def pairs_apart(hits: Sequence[tuple[Text, Match]]) -> list[tuple[Text, Match]]:
    """An id and its secret in separate history or config strings of one image (``ENV
    AWS_ACCESS_KEY_ID=...`` and ``ENV AWS_SECRET_ACCESS_KEY=...``, two ``Env`` variables,
    two layers' instructions): what the engines matched in each, paired like the two in
    one file. Returns a pair match, high, beside each match it pairs."""
    out: list[tuple[Text, Match]] = []
    for rule, ids, secrets in (
        (AWS_PAIR, _AWS_ID, _AWS_SECRET),
        (ALIBABA_PAIR, _ALIBABA_ID, _ALIBABA_SECRET),
    ):
        # the engines already dropped placeholders; the documented example ids are
        # dropped again because a pair is judged on both halves
        key_ids = [
            (text, match)
            for text, match in hits
            if ids.fullmatch(match.secret) and not is_placeholder(match.secret)
        ]
        if not key_ids:
            continue
        named = [
            (text, match)
            for text, match in hits
            if secrets.fullmatch(match.secret) and _secret_named(text.text, match.secret)
        ]
        if not named:
            continue
        seen: set[tuple[int, str]] = set()
        for text, match in (*key_ids, *named):
            if (id(text), match.secret) in seen:
                continue
            seen.add((id(text), match.secret))
            pair = replace(
                match, rule_id=rule, description=_PAIRS[rule], confidence="high", detector=NAME
            )
            out.append((text, pair))
    return out


def _secret_named(text: str, value: str) -> bool:
    """Whether ``value`` is assigned in ``text`` to a name with the word secret."""
    return any(v == value and "secret" in name_words(n) for n, v, _ in _named(text))


# --- which files ---------------------------------------------------------------------------

# wants() runs for every file of every layer: set lookups, no regex, until a name matches
_TEXT_EXTENSIONS = frozenset({
    "env", "ini", "cfg", "conf", "config", "properties", "yaml", "yml", "toml", "json", "xml",
    "sh", "bash", "zsh", "py", "js", "mjs", "cjs", "ts", "go", "java", "kt", "kts", "groovy",
    "gradle", "scala", "rb", "php", "cs", "rs", "tf", "tfvars", "hcl", "ps1", "bat", "cmd",
    "npmrc", "pypirc", "netrc", "secret", "secrets", "creds", "credentials",
})  # fmt: skip
_TEXT_NAMES = frozenset({
    "makefile", "gnumakefile", "dockerfile", "containerfile", "jenkinsfile", ".npmrc",
    ".pypirc", ".netrc", "_netrc", ".git-credentials", "credentials", ".pgpass", ".my.cnf",
    ".s3cfg", ".env",
})  # fmt: skip


_SOURCE_EXTENSIONS = frozenset({
    "py", "js", "mjs", "cjs", "ts", "go", "java", "kt", "kts", "groovy", "scala", "rb", "php",
    "cs", "rs",
})  # fmt: skip


def is_source(path: str) -> bool:
    """Whether ``path`` is source code (its string literals are quoted)."""
    return path.rpartition(".")[2].lower() in _SOURCE_EXTENSIONS


def wants_path(path: str) -> bool:
    """Text files a person writes: configuration, source, scripts, dotenv; not vendored."""
    inner = path.rsplit("!", 1)[-1]
    name = inner[inner.rfind("/") + 1 :].lower()
    if not (
        name in _TEXT_NAMES
        or name.rpartition(".")[2] in _TEXT_EXTENSIONS
        or name.startswith((".env.", "dockerfile."))
    ):
        return False
    # the whole path: a wheel under site-packages is vendored whatever its members are called
    return not is_vendored(path)


class TokenRulesDetector:
    """leakscan's token formats, named values and pairs (see the module's docstring)."""

    name = NAME
    # whole files: a pair may be a file apart, and a chunk's seam may cut an assignment
    whole_file: int | None = MAX_SIZE

    def wants(self, subject: Subject) -> bool:
        """History and config strings; text files by name, up to 1 MiB, not vendored."""
        if subject.path is None:
            return True
        if subject.size is not None and subject.size > MAX_SIZE:
            return False
        return wants_path(subject.path)

    def scan(self, data: bytes, subject: Subject) -> list[Match]:
        """Every value of the rules in ``data``; nothing in binary data."""
        if b"\0" in data[:8192]:
            return []
        text = data.decode("utf-8", "replace")
        ascii_ = len(text) == len(data)
        out: list[Match] = []
        python = subject.path is not None and subject.path.lower().endswith(".py")
        examples: list[tuple[int, int]] | None = None
        for found in find(text, subject.path is None or not is_source(subject.path)):
            start = found.at if ascii_ else len(text[: found.at].encode("utf-8"))
            confidence = found.confidence
            if python and found.rule_id == NAMED:
                examples = documented_examples(text) if examples is None else examples
            if examples and found.rule_id == NAMED and in_spans(examples, found.at):
                # judged by the text, not the path: a repository's own code (its history
                # in a layer) is no vendored tree, but its docstrings' examples are examples
                confidence = "low"
            out.append(
                Match(
                    rule_id=found.rule_id,
                    description=found.description,
                    secret=found.secret,
                    start=start,
                    end=start + len(found.secret.encode("utf-8")),
                    line=text.count("\n", 0, found.at) + 1,
                    confidence=confidence,
                    detector=NAME,
                )
            )
        return out

    def rules(self) -> list[RuleInfo]:
        """This part's rules."""
        rules = {r.rule_id: r.description for r in FORMATS}
        rules.update({k.rule_id: k.description for k in KEYED})
        rules[NAMED] = NAMED_DESCRIPTION
        rules.update(_PAIRS)
        return [RuleInfo(rule, text, NAME) for rule, text in sorted(rules.items())]
