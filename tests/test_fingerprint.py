"""A finding's fingerprint survives every rebuild that does not touch the secret or its
place (instructions added before it, another builder's spelling, a new base, new layer
digests), so a baseline keeps holding; baselines of version 1 keep matching where they can."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import only_image, scan_ref, write
from imagebuilder import Image, Layer, fake_token

from leakscan import model as m
from leakscan.detectors import Detectors
from leakscan.suppress import Suppressions, baseline_json, legacy_fingerprint, load_baseline


def app(
    token: str,
    gh: str,
    *,
    buildkit: bool = False,
    extra: int = 0,
    base: str = "busybox",
    command: str = "npm ci",
) -> Image:
    """ARG NPM_TOKEN; RUN writes .npmrc and runs ``command``; RUN rm; ENV GITHUB_TOKEN.
    ``extra`` more ``RUN echo N > /app/BUILD`` layers (and one more build argument in
    scope) before the leak; ``buildkit`` spells the history as BuildKit does."""
    nop = "" if buildkit else "/bin/sh -c #(nop)  "

    def run(args: str, cmd: str) -> str:
        if buildkit:
            return f"RUN {args}/bin/sh -c {cmd} # buildkit"
        return f"{args}/bin/sh -c {cmd}"

    args = f"|1 NPM_TOKEN={token} " if not extra else f"|2 NPM_TOKEN={token} VERSION={extra} "
    layers = [Layer(created_by=f"{nop}ADD file:{base} in / ").file("bin/sh", base)]
    history: list[dict[str, object]] = [{"created_by": layers[0].created_by}]
    history.append({"created_by": f"{nop}ARG NPM_TOKEN", "empty_layer": True})
    for n in range(extra):
        history.append({"created_by": f"{nop}ARG VERSION={n}", "empty_layer": True})
        layer = Layer(created_by=run("", f"echo {n} > /app/BUILD")).file("app/BUILD", f"{n}\n")
        layers.append(layer)
        history.append({"created_by": layer.created_by})
    write = f'echo "//r.example.internal/:_authToken=$NPM_TOKEN" > /root/.npmrc && {command}'
    rc = f"//r.example.internal/:_authToken={token}\n"
    write_rc = Layer(created_by=run(args, write)).file("root/.npmrc", rc)
    remove = Layer(created_by=run(args, "rm /root/.npmrc")).whiteout("root/.npmrc")
    layers += [write_rc, remove]
    history += [{"created_by": write_rc.created_by}, {"created_by": remove.created_by}]
    history.append({"created_by": f"{nop}ENV GITHUB_TOKEN={gh}", "empty_layer": True})
    return Image(layers=layers, history=history, env=[f"GITHUB_TOKEN={gh}"])


def _scan(image: Image, tmp: Path, detectors: Detectors, **options: object) -> m.ImageReport:
    tmp.mkdir()
    return only_image(scan_ref(write("docker-legacy", image, tmp), detectors, **options))


def _kinds(image: m.ImageReport) -> list[str]:
    return sorted(f.location.kind for f in image.findings)


def test_rebuild_with_instructions_before_the_leak_keeps_the_baseline(
    tmp_path: Path, detectors: Detectors
) -> None:
    token, gh = fake_token("npm"), fake_token("github")
    first = _scan(app(token, gh), tmp_path / "1", detectors)
    assert _kinds(first) == ["config", "file", "history", "history", "history"]
    baseline = tmp_path / "baseline.json"
    baseline.write_text(baseline_json(m.ScanReport("app:1", (first,))))
    accepted = load_baseline(baseline)
    assert accepted.notice is None
    suppress = Suppressions(fingerprints=accepted.fingerprints)
    rebuilds = {
        "3": app(token, gh, extra=1),
        "buildkit": app(token, gh, buildkit=True),
        "new-base": app(token, gh, base="busybox 1.37", extra=2, buildkit=True),
    }
    for name, image in rebuilds.items():
        again = _scan(image, tmp_path / name, detectors, suppressions=suppress)
        # the history indexes moved and the layer digests changed, the places did not
        assert again.findings == (), (name, [f.location for f in again.findings])
        assert again.suppressed == (("baseline", len(first.findings)),), name
        changed = {f.location.history_index for f in first.findings if f.location.kind == "history"}
        if name != "buildkit":
            assert changed != {
                f.location.history_index
                for f in _scan(image, tmp_path / f"{name}-plain", detectors).findings
                if f.location.kind == "history"
            }


def test_what_renews_a_fingerprint(tmp_path: Path, detectors: Detectors) -> None:
    token, gh = fake_token("npm"), fake_token("github")
    first = _scan(app(token, gh), tmp_path / "1", detectors)
    suppress = Suppressions(fingerprints=frozenset(f.fingerprint for f in first.findings))
    # the instruction that holds the secret edited: its history findings are new, the file
    # and config findings are not
    edited_image = app(token, gh, command="npm install")
    edited = _scan(edited_image, tmp_path / "2", detectors, suppressions=suppress)
    assert [f.location.kind for f in edited.findings] == ["history"]
    # a rotated secret: everything it touches is new
    rotated = _scan(app(fake_token("npm"), gh), tmp_path / "3", detectors, suppressions=suppress)
    assert _kinds(rotated) == ["file", "history", "history"]


def test_identical_instructions_are_told_apart(tmp_path: Path, detectors: Detectors) -> None:
    gh = fake_token("github")
    image = Image(
        layers=[Layer(created_by="ADD file:x in /").file("a", "a")],
        history=[
            {"created_by": "ADD file:x in /"},
            {"created_by": f"ENV GITHUB_TOKEN={gh}", "empty_layer": True},
            {"created_by": "ENV B=1", "empty_layer": True},
            {"created_by": f"ENV GITHUB_TOKEN={gh}", "empty_layer": True},
        ],
    )
    found = _scan(image, tmp_path / "1", detectors)
    history = [f for f in found.findings if f.location.kind == "history"]
    assert len(history) == 2 and len({f.fingerprint for f in history}) == 2


def test_version_1_baseline_still_matches_and_asks_to_regenerate(
    tmp_path: Path, detectors: Detectors
) -> None:
    token, gh = fake_token("npm"), fake_token("github")
    first = _scan(app(token, gh), tmp_path / "1", detectors)
    doc = json.loads(baseline_json(m.ScanReport("app:1", (first,))))
    # what leakscan wrote before history findings were keyed by instruction
    doc["version"] = 1
    for entry, f in zip(doc["findings"], first.findings, strict=True):
        entry["fingerprint"] = legacy_fingerprint(f) or f.fingerprint
    old = tmp_path / "v1.json"
    old.write_text(json.dumps(doc))
    accepted = load_baseline(old)
    assert accepted.notice is not None and "regenerate" in accepted.notice
    assert "3 history findings" in accepted.notice
    suppress = Suppressions(fingerprints=accepted.fingerprints)
    same = _scan(app(token, gh), tmp_path / "2", detectors, suppressions=suppress)
    assert same.findings == ()
    # an instruction added before the leak: version 1 keys move, as they always did
    moved = _scan(app(token, gh, extra=1), tmp_path / "3", detectors, suppressions=suppress)
    assert "history" in _kinds(moved) and "file" not in _kinds(moved)
