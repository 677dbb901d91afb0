"""scan_layer hands each engine what it needs: kingfisher overlapping chunks of any file,
whole-file engines (the credential-file readers, detect-secrets) each file whole up to
their own limit, and kingfisher each file's name where a rule of its is scoped to it."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import secrets
import string
from collections.abc import Sequence
from pathlib import Path

import pytest
from helpers import file_findings, only_image, scan_ref, write
from imagebuilder import Image, Layer, fake_token, make_zip

from leakscan import model as m
from leakscan.detectors import Detectors, Match, Subject
from leakscan.detectors.credfiles import MAX_SIZE
from leakscan.detectors.kingfisher import catalog, path_scopes
from leakscan.detectors.stream import CHUNK_SIZE, OVERLAP
from leakscan.layers.archives import ArchiveLimits
from leakscan.layerscan import scan_layer
from leakscan.sightings import Seen

ALNUM = string.ascii_letters + string.digits


def _sha(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _password(n: int = 24) -> str:
    return "".join(secrets.choice(ALNUM) for _ in range(n))


def _layer_blob(layer: Layer) -> m.LayerBlob:
    data = layer.tar_bytes()
    return m.LayerBlob(0, layer.diff_id(), None, None, len(data), lambda: io.BytesIO(data))


def _hits(layer: Layer, detectors: Detectors) -> dict[str, list[Seen]]:
    """Every match of scan_layer, by the path it is in."""
    out = scan_layer(_layer_blob(layer), detectors, ArchiveLimits())
    assert not out.errors
    found: dict[str, list[Seen]] = {}
    for hit in out.hits:
        found.setdefault(hit.shown, []).extend(hit.seen)
    return found


def _key(
    matches: Sequence[Match | Seen], detector: str
) -> set[tuple[str, str | None, int, int, int]]:
    return {
        (x.rule_id, x.secret, x.start, x.end, x.line) for x in matches if x.detector == detector
    }


def docker_config(size: int, auth: str, token: str) -> bytes:
    """A docker config.json of exactly ``size`` bytes: a build host logged in to many ECR
    registries through a helper, then one registry with a password and one whose
    identity token is a GitHub token, at the end (past the first chunk)."""
    helpers = {}
    room = size - 400
    n = 0
    while room > 0:
        name = f"{100000000000 + n}.dkr.ecr.eu-west-{n % 3 + 1}.amazonaws.com"
        helpers[name] = "ecr-login"
        room -= len(name) + len('"": "ecr-login", ')
        n += 1
    doc = {
        "credHelpers": helpers,
        "auths": {
            "registry.example.internal": {"auth": auth},
            "ghcr.example.internal": {"identitytoken": token},
        },
    }
    text = json.dumps(doc, indent=None).encode()
    assert len(text) <= size, (len(text), size)
    # JSON allows whitespace before its last brace: the size comes out exact
    return text[:-1] + b" " * (size - len(text)) + b"}"


SIZES = [
    CHUNK_SIZE - 1,
    CHUNK_SIZE,
    CHUNK_SIZE + 1,
    600_000,  # the size of the report
    MAX_SIZE - 1,
    MAX_SIZE,
]


@pytest.mark.parametrize("size", SIZES)
def test_docker_config_read_whole_up_to_the_limit(size: int, detectors: Detectors) -> None:
    auth = base64.b64encode(f"deploy:{_password()}".encode()).decode()
    token = fake_token("github")
    data = docker_config(size, auth, token)
    assert len(data) == size
    path = "root/.docker/config.json"
    found = _hits(Layer().file(path, data), detectors)["/" + path]
    whole = detectors.scan(data, Subject("/" + path, size))
    # the same matches as one scan of the whole file, at the same offsets and lines
    assert _key(found, "leakscan") == _key(whole, "leakscan")
    assert {x.secret for x in found if x.detector == "leakscan"} == {auth, token}
    assert token in {x.secret for x in found if x.detector == "kingfisher"}


def test_docker_config_over_the_limit(detectors: Detectors) -> None:
    """A credential file over the reader's limit: kingfisher still reads every chunk of
    it, the whole-file reader does not run on any part of it."""
    auth = base64.b64encode(f"deploy:{_password()}".encode()).decode()
    token = fake_token("github")
    data = docker_config(MAX_SIZE + 1, auth, token)
    path = "root/.docker/config.json"
    found = _hits(Layer().file(path, data), detectors)["/" + path]
    assert {x.detector for x in found} == {"kingfisher"}
    assert [x.secret for x in found if x.rule_id == "betterleaks.github-pat"] == [token]
    at = data.index(token.encode())
    assert [(x.start, x.line) for x in found if x.secret == token] == [(at, 1)]


@pytest.mark.parametrize("size", [CHUNK_SIZE + 1, MAX_SIZE, MAX_SIZE + 1])
def test_member_of_unknown_size(size: int, detectors: Detectors) -> None:
    """A zip written to a pipe does not say a member's size before its data: the reader
    gets it whole when it turns out to be within the limit, not at all otherwise."""
    auth = base64.b64encode(f"deploy:{_password()}".encode()).decode()
    token = fake_token("github")
    data = docker_config(size, auth, token)
    bundle = make_zip({"home/ci/.docker/config.json": data}, streamed=True)
    found = _hits(Layer().file("srv/bundle.zip", bundle), detectors)
    matches = found["/srv/bundle.zip!/home/ci/.docker/config.json"]
    want = {auth, token} if size <= MAX_SIZE else set()
    assert {x.secret for x in matches if x.detector == "leakscan"} == want
    assert token in {x.secret for x in matches if x.detector == "kingfisher"}


def _dotenv(size: int, password: str) -> bytes:
    """A .env of ``size`` bytes whose password line straddles where the first chunk's kept
    part ends: a chunk scan sees the key in one chunk and the value only in the next."""
    line = f"DB_PASSWORD={password}\n".encode()
    at = CHUNK_SIZE - OVERLAP - 6  # "DB_PAS" before the cut, the rest after it
    filler = b"".join(f"FEATURE_{i:06d}=on\n".encode() for i in range(size // 18 + 1))
    head = filler[: filler.rindex(b"\n", 0, at - 40) + 1]
    head += b"# " + b"-" * (at - len(head) - 3) + b"\n"
    assert len(head) == at
    return (head + line + filler)[:size]


@pytest.mark.parametrize("size", [CHUNK_SIZE + 1, 700_000, MAX_SIZE])
def test_detect_secrets_reads_whole_files(size: int, detectors: Detectors) -> None:
    password = _password()
    data = _dotenv(size, password)
    path = "app/.env"
    found = _hits(Layer().file(path, data), detectors)["/" + path]
    whole = detectors.scan(data, Subject("/" + path, size))
    assert _key(found, "detect-secrets") == _key(whole, "detect-secrets")
    assert password in {x.secret for x in found if x.detector == "detect-secrets"}


@pytest.mark.parametrize("size", [CHUNK_SIZE - 1, 600_000, MAX_SIZE, MAX_SIZE + 1])
def test_a_real_scan_gives_the_whole_file_finding(
    size: int, tmp_path: Path, detectors: Detectors
) -> None:
    auth = base64.b64encode(f"deploy:{_password()}".encode()).decode()
    token = fake_token("github")
    data = docker_config(size, auth, token)
    layer = Layer().file("root/.docker/config.json", data)
    image = only_image(scan_ref(write("oci-dir", Image(layers=[layer]), tmp_path), detectors))
    found = {f.secret_sha256: f for f in file_findings(image, "/root/.docker/config.json")}
    by_auth, by_token = found.get(_sha(auth)), found.get(_sha(token))
    assert by_token is not None and _engines(by_token) >= {"kingfisher"}
    if size <= MAX_SIZE:
        assert by_auth is not None and "leakscan" in _engines(by_auth)
        assert "leakscan" in _engines(by_token)
        assert (by_auth.location.line, by_auth.rule_id) == (1, "leakscan.docker-config-auth")
    else:
        assert by_auth is None and _engines(by_token) == {"kingfisher"}


def _engines(finding: m.Finding) -> set[str]:
    # each entry is "engine:rule"
    return {d.split(":", 1)[0] for d in finding.detectors}


# --- rules kingfisher scopes to a file name or extension -------------------------------------


def _lower(n: int) -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(n))


def _uuid() -> str:
    h = secrets.token_hex(16)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _sample(rule: str) -> tuple[str, str, str]:
    """A realistic file for ``rule``: its path in the image, its text, and the value the
    rule must report (or a part of what it reports)."""
    pw = _password(20)
    if rule == "betterleaks.freemius-secret-key":
        key = "sk_" + _password(29)
        text = (
            "<?php\nrequire_once dirname(__FILE__) . '/freemius/start.php';\n"
            "$fs = fs_dynamic_init( array(\n    'id' => '4021',\n    'slug' => 'acme-forms',\n"
            f"    'public_key' => 'pk_{secrets.token_hex(15)}',\n    'secret_key' => '{key}',\n"
            ") );\n"
        )
        return "var/www/html/wp-content/plugins/acme-forms/init.php", text, key
    if rule == "betterleaks.hashicorp-tf-password":
        value = _lower(16)
        text = (
            'resource "azurerm_mssql_server" "db" {\n  name = "acme-sql"\n'
            '  administrator_login = "acmeadmin"\n'
            f'  administrator_login_password = "{value}"\n}}\n'
        )
        return "srv/infra/database.tf", text, value
    if rule == "betterleaks.kubernetes-secret-yaml":
        value = base64.b64encode(pw.encode()).decode()
        text = (
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ntype: Opaque\n"
            f"data:\n  password: {value}\n"
        )
        return "srv/deploy/db-secret.yaml", text, value
    if rule == "betterleaks.nuget-config-password":
        text = (
            '<?xml version="1.0" encoding="utf-8"?>\n<configuration>\n'
            "  <packageSourceCredentials>\n    <acme>\n"
            '      <add key="Username" value="ci" />\n'
            f'      <add key="ClearTextPassword" value="{pw}" />\n'
            "    </acme>\n  </packageSourceCredentials>\n</configuration>\n"
        )
        return "src/app/nuget.config", text, pw
    if rule == "veles.secrets/bitbucketcredentials":
        text = (
            "[core]\n\trepositoryformatversion = 0\n\tbare = false\n"
            f'[remote "origin"]\n\turl = https://ci-bot:{pw}@bitbucket.org/acme/app.git\n'
            "\tfetch = +refs/heads/*:refs/remotes/origin/*\n"
        )
        return "src/app/.git/config", text, pw
    if rule == "veles.secrets/bitwardenoauth2access":
        value = _password(30)
        doc = {
            "global_account_activeAccountId": _uuid(),
            f"user_{_uuid()}_token_apiKeyClientSecret": value,
        }
        return "root/.config/Bitwarden CLI/data.json", json.dumps(doc, indent=2), value
    if rule == "veles.secrets/codecatalystcredentials":
        text = (
            "cd /src\n"
            f"git clone https://ci-bot:{pw}@git.us-west-2.codecatalyst.aws/v1/acme/web/web\n"
            "make build\n"
        )
        return "root/.bash_history", text, pw
    if rule == "veles.secrets/codecommitcredentials":
        return (
            "root/.git-credentials",
            f"https://ci-bot-at-1234:{pw}@git-codecommit.eu-west-1.amazonaws.com/v1/repos/app\n",
            pw,
        )
    raise AssertionError(f"no sample for {rule}: add one")


def _scoped_rules() -> set[str]:
    # from the catalog itself, not from leakscan's reading of it
    rules = catalog()
    return {m["id"] for m in rules.metadata() if rules.detail(m["id"]).get("path")}


SCOPED = sorted(_scoped_rules())


def test_every_path_scoped_rule_is_known_and_read() -> None:
    assert SCOPED, "the catalog has path-scoped rules"
    # every pattern is one leakscan can check (none left out)
    assert path_scopes().rules == set(SCOPED)


@pytest.mark.parametrize("rule", SCOPED)
@pytest.mark.parametrize("where", ["plain", "vendored", "archived"])
def test_path_scoped_rule_fires(rule: str, where: str, detectors: Detectors) -> None:
    path, text, value = _sample(rule)
    # without its path the rule does not fire: what this test shows is the path's doing
    assert rule not in {x.rule_id for x in detectors.scan(text.encode())}
    if where == "vendored":  # kingfisher's own input filters skip node_modules
        path = "usr/lib/node_modules/acme/" + path
    layer = Layer().file(path, text)
    shown = "/" + path
    if where == "archived":
        layer = Layer().file("srv/backup.zip", make_zip({path: text.encode()}))
        shown = "/srv/backup.zip!/" + path
    found = _hits(layer, detectors).get(shown, [])
    hits = [x for x in found if x.rule_id == rule]
    assert hits, (rule, shown, sorted({x.rule_id for x in found}))
    assert any(value in x.secret for x in hits)
    at = text.encode().index(value.encode())
    assert any(x.start <= at < x.end for x in hits)


def test_a_lock_file_kingfisher_excludes_is_still_read(detectors: Detectors) -> None:
    """pnpm-lock.yaml is a .yaml file, but kingfisher drops every finding of a file of that
    name: leakscan still reads it as it reads any file."""
    token = fake_token("github")
    text = f"lockfileVersion: '9.0'\nsettings:\n  registryToken: {token}\n"
    found = _hits(Layer().file("app/pnpm-lock.yaml", text), detectors)["/app/pnpm-lock.yaml"]
    assert token in {x.secret for x in found if x.detector == "kingfisher"}


@pytest.mark.parametrize(
    "path",
    [
        "/app/.env",
        "/.env",
        "/srv/node_modules/pkg/lib/config.js",
        "/srv/app/node_modules/x.js",
        "/srv/node_modules",  # a file named like a vendored folder
        "/usr/lib/python3/dist-packages/x/settings.py",
        "/usr/local/lib/python3.11/a.py",
        "/lib/x",
        "/opt/vendor/b/c/d/e/f.txt",
        "/opt/app/vendor.txt",
        "/layer.tar!/usr/lib/x.conf",
        "/repo/.git!/node_modules/x/.npmrc",
    ],
)
def test_memo_key_reads_what_the_engines_read_of_a_path(path: str) -> None:
    """A file's memo key is its content and what the engines read of its path: the last
    three parts and whether it is vendored (asked per folder, which must agree with
    asking of the whole path)."""
    from leakscan.detectors.context import is_vendored
    from leakscan.layerscan import memo_key

    digest = hashlib.sha256(path.encode()).digest()
    tail = "/".join(path.rsplit("/", 3)[-3:])
    flavour = hashlib.sha256(f"{is_vendored(path)}\0{tail}".encode()).hexdigest()[:16]
    assert memo_key(digest, path) == f"{digest.hex()}:{flavour}"
    assert memo_key(digest, path) == memo_key(digest, path)  # the folder's answer cached


class _CountingMemo:
    """A memo that knows nothing and notes the size of each batch it is asked."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.kept: dict[str, object] = {}

    def recall_many(self, keys: list[str]) -> dict[str, object]:
        self.batches.append(len(keys))
        return {}

    def keep(self, key: str, result: object, head: str | None = None) -> None:
        self.kept[key] = result

    def knows_head(self, head: str) -> bool:
        return False


def test_files_waiting_for_the_memo_hold_at_most_lookup_bytes_of_pieces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A file waiting for the memo keeps the walk's pieces that hold it (its bytes are
    not copied): a batch is looked up once the pieces held reach LOOKUP_BYTES, however
    small its files; small files side by side share a piece and wait together."""
    from leakscan import layerscan
    from leakscan.layers.walker import READ_SIZE

    monkeypatch.setattr(layerscan, "LOOKUP_BYTES", 3 * READ_SIZE)
    apart = Layer(auto_dirs=False)
    for n in range(12):
        # a piece of folders between two small files (no file the walk hands out): each
        # small file in a piece of its own
        apart.file(f"small{n}.txt", f"line {n}\n")
        for d in range(READ_SIZE // 512):
            apart.dir(f"d{n}/{d}")
    memo = _CountingMemo()
    out = scan_layer(_layer_blob(apart), Detectors([]), ArchiveLimits(), memo=memo)
    assert not out.errors
    assert sum(memo.batches) == 12 and max(memo.batches) <= 3, memo.batches
    together = Layer()
    for n in range(12):
        together.file(f"small{n}.txt", f"line {n}\n")
    memo = _CountingMemo()
    out = scan_layer(_layer_blob(together), Detectors([]), ArchiveLimits(), memo=memo)
    assert not out.errors
    assert memo.batches == [12]
    assert len(memo.kept) == 12
