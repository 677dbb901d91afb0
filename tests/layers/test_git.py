"""The git object-store reader (issue 14): real repositories made with the git command
(loose, after gc, repacked with deep deltas, shallow, a submodule), read as a layer holds
them, every blob git itself knows read back; and hand-made packs and loose objects,
hostile ones included, that end as problems, never as a hang or a crash."""

from __future__ import annotations

import io
import random
import zlib
from pathlib import Path

import pytest
from gitrepos import (
    PackWriter,
    cat,
    copy_op,
    delta,
    git,
    insert_op,
    leaky_repo,
    loose,
    obj_header,
    object_ids,
    ofs,
    oid,
    pack_index,
)
from imagebuilder import fake_token

from leakscan.layers.git import GitCollector, GitLimits, objects
from leakscan.layers.git.collect import Repository
from leakscan.layers.git.objects import Budget, ObjectStore, Spool


def _read(files: dict[str, bytes], limits: GitLimits | None = None) -> list[Repository]:
    """Hand ``files`` (image path -> bytes) to a collector as a walk would."""
    collector = GitCollector(limits or GitLimits())
    for path, data in files.items():
        if collector.wants(path):
            assert collector.take(path, len(data), io.BytesIO(data)) is None
            collector.digest(path, b"\0" * 32)
    return list(collector.repositories())


def _blobs(repo: Repository) -> dict[str, tuple[bytes, str | None, str | None]]:
    """object id -> (bytes, commit, path in the repository) of every blob read."""
    return {
        b.object_id: (b.data, b.commit.oid if b.commit else None, b.repo_path)
        for b, _, _ in repo.blobs
        if b.part == "blob"
    }


def _git_files(repo: Path, at: str = "/app") -> dict[str, bytes]:
    out = {}
    for path in sorted(repo.rglob("*")):
        if path.is_file() and not path.is_symlink():
            out[f"{at}/{path.relative_to(repo).as_posix()}"] = path.read_bytes()
    return out


@pytest.mark.parametrize("how", ["loose", "gc", "repack-depth-50"])
def test_every_blob_git_knows_is_read_and_named(tmp_path: Path, how: str) -> None:
    token = fake_token("github")
    repo = leaky_repo(tmp_path, token, extra_commits=60)
    if how == "gc":
        git(repo, "gc", "-q")
    elif how == "repack-depth-50":
        git(repo, "repack", "-adf", "-q", "--depth=50", "--window=250")
        assert not list((repo / ".git" / "objects").glob("??/*"))  # packed, nothing loose
    (got,) = _read(_git_files(repo))
    assert got.git_dir == "/app/.git"
    blobs = _blobs(got)
    assert set(blobs) == object_ids(repo, "blob")
    # every blob's bytes are git's own
    for object_id, (data, _, _) in blobs.items():
        assert data == cat(repo, object_id)
    env_blob = git(repo, "rev-parse", "HEAD~61:config/.env")
    first = git(repo, "rev-parse", "HEAD~61")
    data, commit, path = blobs[env_blob]
    assert token.encode() in data
    assert (commit, path) == (first, "config/.env")
    assert got.problems == []


def test_commit_messages_are_read_with_their_dates(tmp_path: Path) -> None:
    repo = leaky_repo(tmp_path, fake_token("github"))
    (got,) = _read(_git_files(repo))
    messages = {b.commit.subject: b for b, _, _ in got.blobs if b.commit and b.part == "message"}
    assert set(messages) == {"Add service config", "Drop the env file"}
    added = messages["Add service config"].commit
    assert added is not None and added.author_date == "2023-11-14T23:13:20+01:00"


def test_deltas_resolve_in_a_deep_chain(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    repo.mkdir()
    git(repo, "init", "-q")
    text = "\n".join(f"setting_{k} = {k * 31 % 97}" for k in range(400)) + "\n"
    for n in range(80):
        text = text.replace(f"setting_{n} =", f"setting_{n}_v{n} =")
        (repo / "settings.py").write_text(text)
        git(repo, "add", ".")
        git(repo, "commit", "-q", "-m", f"tune {n}", when=1_700_000_000 + n)
    git(repo, "repack", "-adf", "-q", "--depth=50", "--window=250")
    verify = git(repo, "verify-pack", "-v", *map(str, (repo / ".git/objects/pack").glob("*.idx")))
    assert "chain length = 40" in verify or "chain length = 50" in verify  # deltas were made
    (got,) = _read(_git_files(repo))
    assert set(_blobs(got)) == object_ids(repo, "blob")


def test_a_shallow_clone_still_names_its_blobs(tmp_path: Path) -> None:
    token = fake_token("github")
    origin = leaky_repo(tmp_path, token, extra_commits=3)
    (origin / "deploy.env").write_text(f"DEPLOY_TOKEN={token}\n")
    git(origin, "add", ".")
    git(origin, "commit", "-q", "-m", "Deploy settings", when=1_800_000_000)
    shallow = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{origin}", str(shallow))
    (got,) = _read(_git_files(shallow))
    blobs = _blobs(got)
    assert set(blobs) == object_ids(shallow, "blob")
    tip = git(shallow, "rev-parse", "HEAD")
    named = {path: commit for _, commit, path in blobs.values()}
    assert named["deploy.env"] == tip
    assert "config/.env" not in named  # not in the shallow history at all


def test_submodule_objects_are_read_in_its_own_git_dir(tmp_path: Path) -> None:
    token = fake_token("github")
    sub = leaky_repo(tmp_path / "s", token)
    top = tmp_path / "top"
    top.mkdir()
    git(top, "init", "-q")
    (top / "app.py").write_text("print('hi')\n")
    git(top, "add", ".")
    git(top, "commit", "-q", "-m", "app", when=1_700_000_000)
    git(top, "submodule", "add", "-q", f"file://{sub}", "vendor/lib")
    git(top, "commit", "-q", "-m", "add lib", when=1_700_000_100)
    assert (top / "vendor/lib/.git").is_file()  # a file pointing into .git/modules
    found = {r.git_dir: r for r in _read(_git_files(top))}
    assert set(found) == {"/app/.git", "/app/.git/modules/vendor/lib"}
    sub_blobs = _blobs(found["/app/.git/modules/vendor/lib"])
    assert any(token.encode() in data for data, _, _ in sub_blobs.values())
    # the top repository's tree names the submodule by a commit id, not a blob of its own
    assert all(token.encode() not in d for d, _, _ in _blobs(found["/app/.git"]).values())


def test_blobs_no_commit_names_are_reported_by_object_id(tmp_path: Path) -> None:
    token = fake_token("github")
    repo = leaky_repo(tmp_path, token)
    files = _git_files(repo)
    for commit in git(repo, "rev-list", "--all").split():
        files.pop(f"/app/.git/objects/{commit[:2]}/{commit[2:]}")
    (got,) = _read(files)
    blobs = _blobs(got)
    assert set(blobs) == object_ids(repo, "blob")
    assert all(commit is None and path is None for _, commit, path in blobs.values())


# --- hand-made and hostile ---------------------------------------------------------------


def _pack_files(pack: bytes) -> dict[str, bytes]:
    return {"/srv/.git/HEAD": b"ref: refs/heads/main\n", "/srv/.git/objects/pack/p.pack": pack}


def test_ofs_and_ref_deltas_by_hand() -> None:
    base = b"token=placeholder\n" * 10
    w = PackWriter()
    at = w.whole("blob", base)
    target = base[:18] + b"changed\n"
    w.ofs_delta(at, delta(len(base), len(target), copy_op(0, 18) + insert_op(b"changed\n")))
    second = target + b"more\n"
    ops = copy_op(0, len(target)) + insert_op(b"more\n")
    w.ref_delta(oid("blob", target), delta(len(target), len(second), ops))
    (got,) = _read(_pack_files(w.pack()))
    assert {d for d, _, _ in _blobs(got).values()} == {base, target, second}
    assert got.problems == []


def _problems(
    files: dict[str, bytes], limits: GitLimits | None = None
) -> tuple[set[bytes], list[str]]:
    (got,) = _read(files, limits)
    blobs = {d for d, _, _ in _blobs(got).values()}
    return blobs, got.problems


def test_delta_loops_and_bases_outside_the_pack_are_problems() -> None:
    # two REF_DELTAs each on the other: neither ever has a base
    w = PackWriter()
    w.whole("blob", b"fine\n")
    a, b = oid("blob", b"A"), oid("blob", b"B")
    w.ref_delta(b, delta(1, 1, insert_op(b"A")))
    w.ref_delta(a, delta(1, 1, insert_op(b"B")))
    blobs, problems = _problems(_pack_files(w.pack()))
    assert blobs == {b"fine\n"}
    assert any("not in the repository" in p for p in problems)
    # an OFS_DELTA pointing before the pack's start, and one pointing into an object's data
    for back in (10_000, 3):
        w = PackWriter()
        w.whole("blob", b"fine\n")
        w.raw(obj_header(6, 1) + ofs(back), zlib.compress(b"x"))
        blobs, problems = _problems(_pack_files(w.pack()))
        assert blobs == {b"fine\n"}
        assert any("base" in p or "outside" in p for p in problems), problems


def test_a_delta_that_copies_outside_its_base_is_a_problem() -> None:
    w = PackWriter()
    at = w.whole("blob", b"short base\n")
    w.ofs_delta(at, delta(11, 100, copy_op(5, 100)))
    blobs, problems = _problems(_pack_files(w.pack()))
    assert blobs == {b"short base\n"}
    assert any("outside its base" in p for p in problems)


def test_a_delta_cut_off_inside_an_instruction_is_a_problem() -> None:
    w = PackWriter()
    at = w.whole("blob", b"base bytes\n")
    w.ofs_delta(at, delta(11, 5, b"\x91\x00"))  # a copy whose size byte is missing
    blobs, problems = _problems(_pack_files(w.pack()))
    assert blobs == {b"base bytes\n"}
    assert any("inside an instruction" in p for p in problems)


def test_a_bomb_stops_at_its_declared_size() -> None:
    w = PackWriter()
    # declares 10 bytes, inflates to 64 MiB of zeros: read no further than 11
    w.raw(obj_header(3, 10), zlib.compress(b"\0" * (64 << 20), 9))
    w.whole("blob", b"after\n")
    blobs, problems = _problems(_pack_files(w.pack()))
    assert blobs == set()
    assert any("larger than declared" in p for p in problems)
    # a declared size over the limit is refused before anything is inflated
    w = PackWriter()
    w.raw(obj_header(3, 1 << 40), zlib.compress(b"x"))
    blobs, problems = _problems(_pack_files(w.pack()))
    assert any("over the limit" in p for p in problems)


def test_a_chain_deeper_than_the_limit_is_a_problem() -> None:
    w = PackWriter()
    data = b"v0\n"
    at = w.whole("blob", data)
    for n in range(1, 30):
        new = data + b"v%d\n" % n
        ops = copy_op(0, len(data)) + insert_op(b"v%d\n" % n)
        at = w.ofs_delta(at, delta(len(data), len(new), ops))
        data = new
    blobs, problems = _problems(_pack_files(w.pack()), GitLimits(max_depth=10))
    assert len(blobs) == 11  # the whole object and the ten deltas within the limit
    assert any("deeper than 10" in p for p in problems)
    blobs, problems = _problems(_pack_files(w.pack()))
    assert len(blobs) == 30 and problems == []


def test_budgets_end_the_read_with_a_reason() -> None:
    w = PackWriter()
    for n in range(50):
        w.whole("blob", b"blob %d\n" % n)
    blobs, problems = _problems(_pack_files(w.pack()), GitLimits(max_objects=20))
    assert len(blobs) == 20 and any("more than 20 objects" in p for p in problems)
    blobs, problems = _problems(_pack_files(w.pack()), GitLimits(max_inflated=100))
    assert any("MiB inflated" in p for p in problems)


def test_truncated_and_corrupt_packs_keep_what_came_before() -> None:
    w = PackWriter()
    for n in range(10):
        w.whole("blob", b"blob number %d\n" % n)
    pack = w.pack()
    cut = w.offsets[6] + 3
    blobs, problems = _problems(_pack_files(pack[:cut]))
    assert len(blobs) == 6 and any("truncated" in p for p in problems)
    # a count larger than the objects there
    blobs, problems = _problems(_pack_files(PackWriter().pack(count=1_000_000)))
    assert blobs == set() and problems
    # garbage where a pack should be
    blobs, problems = _problems(_pack_files(b"PACK\0\0\0\x09" + b"\xff" * 100))
    assert blobs == set() and problems == ["/srv/.git/objects/pack/p.pack: pack version 9"]


def test_hostile_loose_objects() -> None:
    good_path, good = loose("blob", b"fine\n")
    files = {f"/srv/.git/objects/{good_path}": good}
    # a header that lies about the size, an unknown type, a bomb, not zlib at all
    files["/srv/.git/objects/aa/" + "1" * 38] = zlib.compress(b"blob 3\0longer than three")
    files["/srv/.git/objects/aa/" + "2" * 38] = zlib.compress(b"weird 3\0abc")
    files["/srv/.git/objects/aa/" + "3" * 38] = zlib.compress(b"blob 5\0" + b"\0" * (32 << 20))
    files["/srv/.git/objects/aa/" + "4" * 38] = b"not zlib"
    blobs, problems = _problems(files)
    assert blobs == {b"fine\n"}
    assert problems == ["/srv/.git: 4 loose objects unreadable"]


def test_the_spool_budget_leaves_files_to_the_plain_scan() -> None:
    collector = GitCollector(GitLimits(max_spool=10))
    data = b"x" * 100
    why = collector.take("/a/.git/objects/pack/p.pack", len(data), io.BytesIO(data))
    assert why is not None and "not read as history" in why
    assert list(collector.repositories()) == []


# --- a pack's .idx: ids and offsets without inflating; each delta resolved once ----------


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the deltas applied (whole or streamed) from here on."""
    calls = [0]
    for name in ("apply_delta", "apply_delta_pieces"):
        real = getattr(objects, name)

        def counted(*args: object, _real: object = real) -> bytes:
            calls[0] += 1
            return _real(*args)  # type: ignore[operator, no-any-return]

        monkeypatch.setattr(objects, name, counted)
    return calls


def test_an_index_types_the_pack_without_inflating_and_each_delta_is_applied_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = leaky_repo(tmp_path, fake_token("github"), extra_commits=60)
    git(repo, "repack", "-adf", "-q", "--depth=50", "--window=250")
    (pack,) = (repo / ".git/objects/pack").glob("*.pack")
    verify = git(repo, "verify-pack", "-v", str(pack.with_suffix(".idx")))
    # "ID TYPE SIZE PACKED OFFSET DEPTH BASE" for a delta, five columns for a whole object
    deltas = sum(1 for line in verify.splitlines() if len(line.split()) == 7)
    assert deltas > 40
    calls = _counting(monkeypatch)
    with open(pack, "rb") as fh:
        store = ObjectStore(Budget(10_000, 1 << 30, 1 << 30, 4095))
        spool = Spool(fh, 0, pack.stat().st_size)
        assert store.add_pack(spool, pack.with_suffix(".idx").read_bytes()) == []
        assert store.budget.inflated == 0 and calls[0] == 0  # nothing read but headers
        read = {kind: [store.read(i) for i in store.ids(kind)] for kind in (1, 2, 3)}
        assert calls[0] == deltas  # each delta once, none twice
        assert sum(map(len, read.values())) == len(object_ids(repo.joinpath(".git"), "blob")) + len(
            object_ids(repo.joinpath(".git"), "tree")
        ) + len(object_ids(repo.joinpath(".git"), "commit"))
        assert all(
            got is not None and got[2] == oid
            for got, oid in zip(read[3], store.ids(3), strict=True)
        )
        # without its index the pack is read front to back first: every delta applied
        # there too
        calls[0] = 0
        bare = ObjectStore(Budget(10_000, 1 << 30, 1 << 30, 4095))
        assert bare.add_pack(spool) == []
        assert bare.budget.inflated > 0 and calls[0] == deltas
    assert store.problems == []


def test_the_same_blobs_with_and_without_the_index(tmp_path: Path) -> None:
    repo = leaky_repo(tmp_path, fake_token("github"), extra_commits=30)
    git(repo, "gc", "-q")
    files = _git_files(repo)
    assert any(p.endswith(".idx") for p in files)
    (indexed,) = _read(files)
    (walked,) = _read({p: d for p, d in files.items() if not p.endswith(".idx")})
    blobs = _blobs(indexed)
    assert blobs == _blobs(walked)
    assert set(blobs) == object_ids(repo, "blob")
    assert indexed.problems == walked.problems == []


def _indexed(w: PackWriter, ids: list[bytes], count: int | None = None) -> dict[str, bytes]:
    pack = w.pack(count)
    files = _pack_files(pack)
    files["/srv/.git/objects/pack/p.idx"] = pack_index(pack, w.offsets[: len(ids)], ids)
    return files


def _three() -> tuple[PackWriter, list[bytes], list[bytes]]:
    w = PackWriter()
    datas = [b"first blob\n", b"second blob\n", b"third blob\n"]
    for data in datas:
        w.whole("blob", data)
    return w, datas, [oid("blob", d) for d in datas]


def test_an_index_that_does_not_fit_its_pack_is_not_used() -> None:
    w, datas, ids = _three()
    good = _indexed(w, ids)
    blobs, problems = _problems(good)
    assert blobs == set(datas) and problems == []
    idx_path = "/srv/.git/objects/pack/p.idx"
    idx = good[idx_path]
    n_at = 8 + 255 * 4
    bad = {
        "not a version 2 index": b"\0\0\0\0" + idx[4:],
        "an index of 2 objects": idx[:n_at] + (2).to_bytes(4, "big") + idx[n_at + 4 :],
        "checksums differ": idx[:-40] + b"\0" * 20 + idx[-20:],
        "truncated index": idx[:100],
        "another size": idx + b"\0" * 8,
        # ids out of order (the first two swapped)
        "not sorted": idx[: 8 + 1024]
        + idx[8 + 1024 + 20 : 8 + 1024 + 40]
        + idx[8 + 1024 : 8 + 1024 + 20]
        + idx[8 + 1024 + 40 :],
    }
    for why, data in bad.items():
        blobs, problems = _problems({**good, idx_path: data})
        assert blobs == set(datas), why  # read front to back instead
        assert len(problems) == 1 and "index not used" in problems[0] and why in problems[0]
    # an offset outside the pack, and one offset named twice
    pack = w.pack()
    for offsets in ([w.offsets[0], w.offsets[1], len(pack)], [w.offsets[0]] * 2 + [w.offsets[2]]):
        blobs, problems = _problems({**good, idx_path: pack_index(pack, offsets, ids)})
        assert blobs == set(datas) and "index not used" in problems[0], problems


def test_an_index_that_lies_about_ids_or_hides_bytes_is_said() -> None:
    w, datas, ids = _three()
    # the first two objects' ids swapped: both still read, each named by its own id
    files = _indexed(w, [ids[1], ids[0], ids[2]])
    (got,) = _read(files)
    assert set(_blobs(got)) == {i.hex() for i in ids}
    assert sum("as the pack's index says" in p for p in got.problems) == 2
    # a pack whose count and index leave out its last object: those bytes are said
    files = _indexed(w, ids[:2], count=2)
    blobs, problems = _problems(files)
    assert blobs == set(datas[:2])
    assert any("that the pack's index does not name" in p for p in problems), problems


def test_hostile_deltas_in_an_indexed_pack_are_problems() -> None:
    # two REF_DELTAs each on the other; an OFS_DELTA into an object's data; a REF_DELTA
    # on an object that is nowhere; a bomb
    w = PackWriter()
    w.whole("blob", b"fine\n")
    a, b = oid("blob", b"A"), oid("blob", b"B")
    w.ref_delta(b, delta(1, 1, insert_op(b"A")))
    w.ref_delta(a, delta(1, 1, insert_op(b"B")))
    w.raw(obj_header(6, 1) + ofs(3), zlib.compress(b"x"))
    w.ref_delta(oid("blob", b"nowhere"), delta(7, 1, insert_op(b"C")))
    w.raw(obj_header(3, 10), zlib.compress(b"\0" * (64 << 20), 9))
    ids = [oid("blob", b"fine\n"), a, b, oid("blob", b"D"), oid("blob", b"C"), oid("blob", b"E")]
    blobs, problems = _problems(_indexed(w, ids))
    assert blobs == {b"fine\n"}
    text = "\n".join(problems)
    assert "2 objects not read: a delta chain that loops" in text
    assert "1 objects not read: a delta whose base is no object" in text
    assert "1 objects not read: a delta on an object not in the repository" in text
    assert "larger than declared" in text


def test_a_chain_deeper_than_the_limit_in_an_indexed_pack() -> None:
    w = PackWriter()
    data = b"v0\n"
    w.whole("blob", data)
    ids = [oid("blob", data)]
    for n in range(1, 30):
        new = data + b"v%d\n" % n
        ops = copy_op(0, len(data)) + insert_op(b"v%d\n" % n)
        w.ofs_delta(w.offsets[-1], delta(len(data), len(new), ops))
        data = new
        ids.append(oid("blob", data))
    files = _indexed(w, ids)
    blobs, problems = _problems(files, GitLimits(max_depth=10))
    assert len(blobs) == 11 and any("deeper than 10" in p for p in problems), problems
    blobs, problems = _problems(files)
    assert len(blobs) == 30 and problems == []


def test_a_large_delta_is_applied_in_pieces_as_it_is_inflated() -> None:
    # a 3 MiB delta (inserts of incompressible bytes between copies of the base): over
    # STREAM_DELTA, so applied as it is inflated; the same bytes as applied whole
    rng = random.Random(14)
    base = rng.randbytes(200_000)
    ops = bytearray()
    target = bytearray()
    while len(ops) < 3 << 20:
        roll = rng.random()
        if roll < 0.3:
            # mostly short copies, a few long ones (kept as views of the base)
            longest = 65_536 if roll < 0.002 else 512
            off, size = rng.randrange(0, len(base) - 70_000), rng.randrange(1, longest)
            ops += copy_op(off, size)
            target += base[off : off + size]
        else:
            chunk = rng.randbytes(rng.randrange(1, 128))
            ops += insert_op(chunk)
            target += chunk
    d = delta(len(base), len(target), bytes(ops))
    assert len(d) > objects.STREAM_DELTA
    assert objects.apply_delta(base, d, 1 << 30) == target
    # cut anywhere, even inside an instruction, the pieces make the same result
    for size in (1, 7, 127, 128, 129, 4096, 65_537):
        pieces = iter(
            [d[k : min(k + size, 300_000)] for k in range(0, 300_000, size)] + [d[300_000:]]
        )
        assert objects.apply_delta_pieces(base, pieces, 1 << 30) == target
    w = PackWriter()
    at = w.whole("blob", base)
    w.ofs_delta(at, d)
    blobs, problems = _problems(_indexed(w, [oid("blob", base), oid("blob", bytes(target))]))
    assert blobs == {base, bytes(target)} and problems == []
    # cut off inside its last instruction, or copying outside its base: problems
    for bad, why in (
        (delta(len(base), len(target) + 300, ops + copy_op(5, 300)[:-1]), "inside an instruction"),
        (d[:-1], "insert past its end"),
        (delta(len(base), len(target), bytes(ops) + copy_op(0, 2)), "larger"),
        (delta(len(base), 10, copy_op(len(base) - 5, 10) + bytes(ops)), "outside its base"),
    ):
        w = PackWriter()
        at = w.whole("blob", base)
        w.ofs_delta(at, bad)
        blobs, problems = _problems(_indexed(w, [oid("blob", base), oid("blob", b"?")]))
        assert blobs == {base} and any(why in p for p in problems), (why, problems)
