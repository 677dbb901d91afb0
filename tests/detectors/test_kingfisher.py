"""The kingfisher adapter: one catalog per process, safe to share between threads, base64
decoded in text."""

from __future__ import annotations

import base64
import random
import threading

import kingfisher_sdk
from imagebuilder import fake_token

from leakscan.detectors import Subject
from leakscan.detectors.kingfisher import (
    _KNOWN_SCOPES,
    KingfisherDetector,
    PathScopes,
    catalog,
    path_scopes,
    preload,
)

_SUBJECT = Subject("/app/config.txt", None)


def _secrets(found: list) -> list[tuple[str, int, int]]:
    return sorted((m.secret, m.start, m.end) for m in found)


def test_catalog_is_loaded_once_even_when_preloaded() -> None:
    thread = preload()
    first = catalog()
    thread.join()
    assert catalog() is first
    assert KingfisherDetector()._rules is first


def test_one_detector_scanned_from_two_threads_finds_what_one_thread_finds() -> None:
    rng = random.Random(7)
    pieces = []
    for n in range(40):
        filler = bytes(rng.randrange(256) for _ in range(2000 + 37 * n))
        token = fake_token(rng.choice(["github", "gitlab", "npm", "slack"]), rng)
        pieces.append(filler[: 300 + n] + f"\ntoken = {token}\n".encode() + filler)
    detector = KingfisherDetector()
    alone = [_secrets(detector.scan(p, _SUBJECT)) for p in pieces]
    assert all(alone), "every piece holds a token"
    together: list[list[tuple[str, int, int]] | None] = [None] * len(pieces)

    def work(start: int) -> None:
        for _ in range(5):
            for i in range(start, len(pieces), 2):
                together[i] = _secrets(detector.scan(pieces[i], _SUBJECT))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together == alone


def test_token_in_binary_bytes_and_base64_in_text() -> None:
    detector = KingfisherDetector()
    token = fake_token("github")
    binary = b"\x7fELF\x02\x01\x01\0" + b"\0" * 200 + token.encode() + b"\0" * 64
    assert token in {m.secret for m in detector.scan(binary, _SUBJECT)}
    encoded = base64.b64encode(f"password: {token}\n".encode()).decode()
    text = f"# deploy settings\ncredentials: {encoded}\n".encode()
    found = detector.scan(text, _SUBJECT)
    assert token in {m.secret for m in found}


def test_path_scopes_name_only_the_tail_the_rules_read() -> None:
    scopes = path_scopes()
    name = scopes.name
    # no path-scoped rule: plain scan(data), as for every other file
    assert name(None) is None and name("/app/main.py") is None and name("/etc/passwd") is None
    # the file name alone, with or without a leading "/", whatever the directories above
    assert name("/app/nuget.config") == name("app/nuget.config") == "nuget.config"
    assert name("/usr/lib/node_modules/x/tests/NuGet.Config") == "NuGet.Config"
    assert name("/srv/infra/main.tf") == "main.tf" and name("/x/vars.HCL") == "vars.HCL"
    assert name("/root/.bash_history") == ".bash_history"
    # a rule that reads a directory too gets it
    assert name("/src/app/.git/config") == ".git/config"
    assert name("/root/.config/Bitwarden CLI/data.json") == "Bitwarden CLI/data.json"
    assert name("/root/.config/other/data.json") is None
    # an archive member: its own path, not the archive's
    assert name("/srv/site.zip!/deploy/secret.yaml") == "secret.yaml"
    assert name("/srv/deploy.yaml.zip!/readme.txt") is None


def test_rules_sharing_a_pattern_are_each_scoped() -> None:
    scopes = path_scopes()
    shared = [ids for _, ids in scopes.patterns if len(ids) > 1]
    # the git-credential rules of 1.5.0 share one condition
    assert any("veles.secrets/bitbucketcredentials" in ids for ids in shared)
    assert len(scopes.rules) == sum(len(ids) for _, ids in scopes.patterns)


def test_the_installed_release_has_its_path_scopes_listed() -> None:
    """leakscan lists each release's path conditions (reading them from the catalog costs
    start-up time); the list must be what the catalog says. A new release fails here until
    its entry is added: print PathScopes.of(catalog()).patterns."""
    assert kingfisher_sdk.__version__ in _KNOWN_SCOPES
    listed = [(regex.pattern, ids) for regex, ids in path_scopes().patterns]
    read = [(regex.pattern, ids) for regex, ids in PathScopes.of(catalog()).patterns]
    assert listed == read


def test_path_scopes_are_read_once() -> None:
    assert path_scopes() is path_scopes()
    assert KingfisherDetector()._scopes is path_scopes()
