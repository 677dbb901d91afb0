"""Secrets in the git history a ``COPY . /app`` drags into an image (issue 14): found in
loose objects and packs, named by the git directory, the commit that brought them and their
path in the repository, with the git directory's layer and status; a blob equal to the
working-tree file is one finding; what git keeps in clear is read too; the result store
gives back the same report."""

from __future__ import annotations

import json
from pathlib import Path

from clirun import run_leakscan
from gitrepos import git, leaky_repo, tree_layer
from helpers import file_findings, only_image, scan_ref, write
from imagebuilder import Image, Layer, fake_token
from schema import validate_report

from leakscan import model as m
from leakscan.detectors import Detectors


def _git_findings(image: m.ImageReport) -> list[m.Finding]:
    return [
        f
        for f in image.findings
        if isinstance(f.location, m.FileLocation) and f.location.git is not None
    ]


def test_a_token_removed_from_the_tree_is_found_in_the_history(
    tmp_path: Path, detectors: Detectors
) -> None:
    token = fake_token("github")
    repo = leaky_repo(tmp_path, token, extra_commits=2)
    git(repo, "gc", "-q")
    layer = tree_layer(repo, "/srv/app")
    image = only_image(
        scan_ref(write("oci-dir", Image(layers=[Layer(), layer]), tmp_path), detectors)
    )
    (found,) = [f for f in image.findings if f.secret_sha256 and f.redacted.startswith("ghp_")]
    loc = found.location
    assert isinstance(loc, m.FileLocation) and loc.git is not None
    first = git(repo, "rev-parse", "HEAD~3")
    assert loc.path == f"/srv/app/.git!{first[:7]}:config/.env"
    assert (loc.layer_index, loc.status, loc.line) == (1, "present", 1)
    assert loc.git.git_dir == "/srv/app/.git"
    assert loc.git.commit == first
    assert loc.git.subject == "Add service config"
    assert loc.git.author_date == "2023-11-14T23:13:20+01:00"
    assert loc.git.repo_path == "config/.env"
    assert loc.git.object_id == git(repo, "rev-parse", "HEAD~3:config/.env")
    assert ".dockerignore" in found.remediation and "Rotate it" in found.remediation
    assert first[:7] in found.remediation and "Add service config" in found.remediation
    assert image.errors == ()


def test_status_is_the_git_directory_s(tmp_path: Path, detectors: Detectors) -> None:
    token = fake_token("github")
    repo = leaky_repo(tmp_path, token)
    layer = tree_layer(repo, "/app")
    later = Layer().whiteout("app/.git")
    image = only_image(
        scan_ref(write("oci-dir", Image(layers=[layer, later]), tmp_path), detectors)
    )
    (found,) = _git_findings(image)
    assert isinstance(found.location, m.FileLocation)
    assert (found.location.status, found.location.removed_in_layer) == ("deleted", 1)
    assert "Deleting /app/.git in layer 1 does not remove it".lower() in found.remediation.lower()


def test_a_blob_also_in_the_working_tree_is_one_finding(
    tmp_path: Path, detectors: Detectors
) -> None:
    token = fake_token("github")
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / ".env").write_text(f"GITHUB_TOKEN={token}\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "env", when=1_700_000_000)
    image = only_image(
        scan_ref(write("oci-dir", Image(layers=[tree_layer(repo, "/app")]), tmp_path), detectors)
    )
    paths = [f.location.path for f in file_findings(image)]  # type: ignore[union-attr]
    assert paths == ["/app/.env"]
    # edited in the working tree (another blob): the committed one is a finding of its own
    (repo / ".env").write_text(f"GITHUB_TOKEN={token}\nDEBUG=1\n")
    again = tmp_path / "again"
    again.mkdir()
    image = only_image(
        scan_ref(write("oci-dir", Image(layers=[tree_layer(repo, "/app")]), again), detectors)
    )
    paths = sorted(f.location.path for f in file_findings(image))  # type: ignore[union-attr]
    commit = git(repo, "rev-parse", "HEAD")[:7]
    assert paths == ["/app/.env", f"/app/.git!{commit}:.env"]


def test_every_version_of_a_file_holding_the_secret_is_one_place(
    tmp_path: Path, detectors: Detectors
) -> None:
    token = fake_token("github")
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    for n in range(5):
        (repo / "settings.env").write_text(f"GITHUB_TOKEN={token}\nWORKERS={n + 2}\n")
        git(repo, "add", ".")
        git(repo, "commit", "-q", "-m", f"workers {n}", when=1_700_000_000 + n)
    git(repo, "rm", "-q", "settings.env")
    git(repo, "commit", "-q", "-m", "gone", when=1_700_001_000)
    git(repo, "repack", "-adf", "-q", "--depth=50")
    image = only_image(
        scan_ref(write("oci-dir", Image(layers=[tree_layer(repo, "/app")]), tmp_path), detectors)
    )
    (found,) = _git_findings(image)
    oldest = git(repo, "rev-parse", "HEAD~5")
    assert found.location.path == f"/app/.git!{oldest[:7]}:settings.env"  # type: ignore[union-attr]


def test_a_token_in_a_commit_message(tmp_path: Path, detectors: Detectors) -> None:
    token = fake_token("github")
    repo = leaky_repo(tmp_path, fake_token("github"))
    (repo / "x.txt").write_text("x\n")
    git(repo, "add", ".")
    git(
        repo,
        "commit",
        "-q",
        "-m",
        f"Use the deploy token\n\nGITHUB_TOKEN={token}",
        when=1_800_000_000,
    )
    image = only_image(
        scan_ref(write("oci-dir", Image(layers=[tree_layer(repo, "/app")]), tmp_path), detectors)
    )
    head = git(repo, "rev-parse", "HEAD")
    messages = [f for f in _git_findings(image) if f.location.git.part == "message"]  # type: ignore[union-attr]
    assert [f.location.path for f in messages] == [f"/app/.git!{head[:7]}"]  # type: ignore[union-attr]


def test_what_git_keeps_in_clear(tmp_path: Path, detectors: Detectors) -> None:
    token = fake_token("github")
    repo = leaky_repo(tmp_path, fake_token("github"))
    url = f"https://deploy:{token}@git.example.internal/team/app.git"
    git(repo, "remote", "add", "origin", url)
    (repo / ".git" / "FETCH_HEAD").write_text(f"{'0' * 40}\t\tbranch 'main' of {url}\n")
    image = only_image(
        scan_ref(write("oci-dir", Image(layers=[tree_layer(repo, "/app")]), tmp_path), detectors)
    )
    places = {
        f.location.path: f  # type: ignore[union-attr]
        for f in file_findings(image)
        if token in (f.redacted + (f.secret or "")) or f.redacted.startswith("ghp_")
    }
    assert "/app/.git/config" in places and "/app/.git/FETCH_HEAD" in places
    fix = places["/app/.git/config"].remediation
    assert ".dockerignore" in fix and "credential helper" in fix


def test_cli_json_and_the_result_store(tmp_path: Path) -> None:
    token = fake_token("github")
    repo = leaky_repo(tmp_path, token)
    ref = write("oci-dir", Image(layers=[tree_layer(repo, "/app")]), tmp_path)
    store = tmp_path / "store"
    cold = run_leakscan([ref, "-f", "json", "--cache-dir", str(store)])
    warm = run_leakscan([ref, "-f", "json", "--cache-dir", str(store)])
    assert cold.code == warm.code == 1, cold.err
    first, second = cold.report, warm.report
    validate_report(first)
    assert second["cache"]["layers_cached"] == 1
    for one in (first, second):
        one.pop("cache")
    assert first == second
    (finding,) = [f for f in first["images"][0]["findings"] if "git" in f["location"]]
    assert finding["location"]["git"]["path"] == "config/.env"
    assert finding["location"]["git"]["short_commit"] == finding["location"]["path"][10:17]
    assert token not in json.dumps(first) and token not in cold.err
    table = run_leakscan([ref, "--no-cache"])
    assert "/app/.git!" in table.out and "Add service config" in table.out
    assert token not in table.out


def test_a_clean_repository_has_no_findings(tmp_path: Path, detectors: Detectors) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    source = Path(__file__).resolve().parent.parent / "leakscan" / "layers"
    for n, path in enumerate(sorted(source.rglob("*.py"))):
        (repo / path.name).write_text(path.read_text())
        git(repo, "add", ".")
        git(repo, "commit", "-q", "-m", f"add {path.name}", when=1_700_000_000 + n)
    git(repo, "gc", "-q")
    image = only_image(
        scan_ref(write("oci-dir", Image(layers=[tree_layer(repo, "/app")]), tmp_path), detectors)
    )
    assert image.findings == () and image.errors == () and image.skipped == ()
