"""Git blobs and the result store: a blob is looked up by its content as a layer file is, so
that the same bytes are not handed to the engines twice (a blob with the bytes of the
working-tree file at its path, a blob of an image scanned before), and a report from the
store equals the cold one, git locations, statuses, fingerprints and skips included."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from gitrepos import git, tree_layer
from helpers import write
from imagebuilder import Image, Layer, fake_token, make_zip
from schema import validate_report
from test_recall import _values

from leakscan.detectors import Detectors as Engines
from leakscan.detectors import Subject
from leakscan.layers.archives import ArchiveLimits
from leakscan.report.json import report_dict
from leakscan.scan import ScanOptions, scan

# a member this large in an archive is skipped (a skip the store must give back too)
MEMBER_CAP = 4096


def _repo(root: Path, tokens: dict[str, str]) -> Path:
    """A repository whose history holds secrets the working tree no longer has: a ``.env``
    edited and finally removed, a zip (a secret inside, and a member over MEMBER_CAP)
    removed, a token in a commit message; and a working tree equal to its HEAD, one file
    of which holds a secret too."""
    repo = root / "repo"
    repo.mkdir(parents=True)
    git(repo, "init", "-q")
    (repo / "src").mkdir()
    (repo / "src" / "app.py").write_text("def main():\n    return 0\n")
    (repo / "deploy.env").write_text(f"NPM_TOKEN={tokens['tree']}\n")
    (repo / ".env").write_text(f"GITHUB_TOKEN={tokens['env']}\nWORKERS=2\n")
    zipped = make_zip(
        {
            "conf/aws.env": f"GITHUB_TOKEN={tokens['zip']}\n".encode(),
            "big.txt": b"filler line\n" * (MEMBER_CAP // 8),
        }
    )
    (repo / "bundle.zip").write_bytes(zipped)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "First cut", when=1_700_000_000)
    (repo / ".env").write_text(f"GITHUB_TOKEN={tokens['env']}\nWORKERS=4\n")
    git(repo, "add", ".")
    git(
        repo,
        "commit",
        "-q",
        "-m",
        f"More workers\n\nGITHUB_TOKEN={tokens['msg']}",
        when=1_700_000_100,
    )
    git(repo, "rm", "-q", ".env", "bundle.zip")
    git(repo, "commit", "-q", "-m", "Drop secrets", when=1_700_000_200)
    return repo


def _tokens() -> dict[str, str]:
    return {
        "tree": fake_token("npm"),
        "env": fake_token("github"),
        "zip": fake_token("github"),
        "msg": fake_token("github"),
    }


def _image(repo: Path, base: str) -> Image:
    """The repository copied into a layer over a base layer (``base`` changes its bytes:
    a rebuilt image whose layers have new digests and the same files)."""
    app = tree_layer(repo, "/app", Layer().file("etc/build-id", base))
    return Image(layers=[Layer().file("etc/os-release", base), app])


def _options(tmp: Path | None) -> ScanOptions:
    cache = str(tmp / "store" / "results.sqlite3") if tmp is not None else None
    # one process: the engines are counted in this one
    return ScanOptions(
        cache=cache,
        min_confidence="low",
        archives=ArchiveLimits(max_member_size=MEMBER_CAP),
        workers=1,
    )


def _plain(report: Any) -> dict[str, Any]:
    data = report_dict(report)
    validate_report(data)
    data.pop("cache", None)
    return data


@pytest.fixture
def subjects(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How many times the engines were handed each path (a file, a blob's subject)."""
    seen: Counter[str] = Counter()
    real = Engines.scanner

    def counting(self: Engines, subject: Subject) -> Any:
        if subject.path is not None:
            seen[subject.path] += 1
        return real(self, subject)

    monkeypatch.setattr(Engines, "scanner", counting)
    return seen


def test_a_blob_equal_to_its_working_tree_file_is_scanned_once(
    tmp_path: Path, subjects: Counter[str]
) -> None:
    """``COPY . /app`` ships each committed file twice, once in the tree and once as a
    blob: with the store, the blob is answered by the file's result, in the same scan."""
    tokens = _tokens()
    repo = _repo(tmp_path, tokens)
    ref = write("oci-dir", _image(repo, "ID=one\n"), tmp_path)
    cold = _plain(scan(ref, _options(None)))
    subjects.clear()
    first = scan(ref, _options(tmp_path))
    assert _plain(first) == cold
    # the working tree's files, each once; the history's own blobs (the removed .env's two
    # versions, the zip, its member) once each too
    assert subjects["/app/src/app.py"] == 1 and subjects["/app/deploy.env"] == 1
    assert subjects["/app/.env"] == 2  # two versions of it, neither in the working tree
    assert subjects["/app/bundle.zip!/conf/aws.env"] == 1
    # every file of the working tree is a blob of HEAD: none was handed over twice (three
    # commit messages are three contents at one subject)
    assert subjects["/app/.git!/COMMIT_EDITMSG"] == 3
    assert max(n for p, n in subjects.items() if not p.endswith("!/COMMIT_EDITMSG")) <= 2
    # the finding of the working-tree file is that file's, not a second one in the history
    findings = cold["images"][0]["findings"]
    at = sorted(f["location"]["path"] for f in findings)
    assert "/app/deploy.env" in at and not any(p.endswith(":deploy.env") for p in at), at


def test_warm_and_relayered_reports_equal_cold_without_the_engines(
    tmp_path: Path, subjects: Counter[str]
) -> None:
    tokens = _tokens()
    repo = _repo(tmp_path, tokens)
    first = write("oci-dir", _image(repo, "ID=one\n"), tmp_path / "a")
    second = write("oci-dir", _image(repo, "ID=two\n"), tmp_path / "b")
    cold_first = _plain(scan(first, _options(None)))
    cold_second = _plain(scan(second, _options(None)))
    scan(first, _options(tmp_path))

    subjects.clear()
    warm = scan(first, _options(tmp_path))
    assert warm.cache is not None and warm.cache.layers_scanned == 0
    assert _plain(warm) == cold_first
    # re-layered: new digests for both layers, so both are read, but no file and no blob of
    # the repository goes to the engines again
    subjects.clear()
    relayered = scan(second, _options(tmp_path))
    assert relayered.cache is not None and relayered.cache.layers_scanned == 2
    assert _plain(relayered) == cold_second
    assert not [p for p in subjects if p.startswith("/app")], subjects

    findings = cold_second["images"][0]["findings"]
    git_places = {
        f["location"]["path"]: f["location"]["git"] for f in findings if "git" in f["location"]
    }
    first_cut = git(repo, "rev-list", "--max-parents=0", "HEAD")[:7]
    more = git(repo, "rev-parse", "HEAD~1")[:7]
    assert set(git_places) == {
        f"/app/.git!{first_cut}:.env",
        f"/app/.git!{first_cut}:bundle.zip!/conf/aws.env",
        f"/app/.git!{more}",
    }
    assert git_places[f"/app/.git!{first_cut}:.env"]["subject"] == "First cut"
    assert git_places[f"/app/.git!{more}"]["part"] == "message"
    skipped = [s["path"] for s in cold_second["images"][0]["skipped"]]
    assert f"/app/.git!{first_cut}:bundle.zip!/big.txt" in skipped
    assert all(f["location"]["status"] == "present" for f in findings)


def test_the_store_holds_no_secret_of_a_history_in_clear(tmp_path: Path) -> None:
    tokens = _tokens()
    repo = _repo(tmp_path, tokens)
    ref = write("oci-dir", _image(repo, "ID=one\n"), tmp_path)
    report = scan(ref, _options(tmp_path))
    assert len(report.images[0].findings) == 4
    values = _values(tmp_path / "store" / "results.sqlite3")
    assert len(values) > 10
    for value in values:
        for token in tokens.values():
            assert token.encode() not in value
