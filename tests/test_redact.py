"""One redaction step for every string of every output: whatever field a found secret lands
in (platform, created, media types, annotations, paths, error and skip messages), no JSON,
SARIF or table output shows it in clear, and every string taken from the image is scanned."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from clirun import run_leakscan
from helpers import write
from imagebuilder import Image, Layer, fake_token, make_zip

from leakscan import model as m
from leakscan.redact import Redactor, mask, redact_report


def _strings(value: Any, where: str = "$") -> Iterator[tuple[str, str]]:
    """Every string of a JSON document (keys included), with its path."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, inner in value.items():
            yield f"{where}.{key}", str(key)
            yield from _strings(inner, f"{where}.{key}")
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield from _strings(inner, f"{where}[{i}]")


def _in_clear(text_by_place: list[tuple[str, str]], secrets: set[str]) -> list[str]:
    return [f"{where}: {s[:4]}..." for where, text in text_by_place for s in secrets if s in text]


def test_redact_report_reaches_every_field() -> None:
    token = fake_token("github")
    problem = m.Problem(f"bad media type x/{token}", 1, f"/a/{token}")
    loc = m.FileLocation(0, "sha256:" + "0" * 64, f"/{token}.txt", 1, "present", None)
    finding = m.Finding(
        "r", f"d {token}", "sha", mask(token), "fp", loc, "high", ("k:r",), f"rm {token}"
    )
    image = m.ImageReport(
        reference=f"ref-{token}",
        source="oci",
        platform=f"linux/arm/{token}",
        manifest_digest=None,
        config_digest="sha256:" + "1" * 64,
        layers=(m.LayerInfo(0, None, "sha256:" + "2" * 64, f"x/{token}", 1, 0, token),),
        history=(m.HistoryInfo(0, token, f"2024-{token}", False, 0),),
        findings=(finding,),
        errors=(problem,),
        skipped=(problem,),
        suppressed=((f"path /{token}", 1),),
    )
    report = m.ScanReport(f"ref-{token}", (image,), (problem,))
    out = redact_report(report, Redactor([token]))
    assert token not in repr(out)
    assert out.images[0].platform == f"linux/arm/{mask(token)}"
    assert out.images[0].history[0].created == f"2024-{mask(token)}"
    # what is ours stays as it was: hashes, the schema's fixed words
    kept = out.images[0].findings[0]
    assert (kept.fingerprint, kept.secret_sha256, kept.location.status) == ("fp", "sha", "present")


def leaky_everywhere(tmp_path: Path) -> tuple[str, dict[str, str]]:
    """An image with a found secret in every kind of place a report can show, and strings of
    the config that no engine looked at before (variant, created) holding them too."""
    t = {k: fake_token(k) for k in ("npm", "github", "gitlab", "slack")}
    t["npm2"] = fake_token("npm")
    t["variant"] = fake_token("github")
    t["created"] = fake_token("gitlab")
    t["port"] = fake_token("npm")
    t["skipped"] = fake_token("github")
    base = Layer(created_by="/bin/sh -c #(nop) ADD file:base in / ").file(
        "etc/os-release", "ID=test\n"
    )
    files = (
        Layer(created_by=f"|1 NPM_TOKEN={t['npm']} /bin/sh -c echo > /root/.npmrc")
        .file("root/.npmrc", f"//npm.example.internal/:_authToken={t['npm']}\n")
        .file(f"app/{t['npm']}.txt", "a file named after a token\n")
        .file("app/lib.zip", make_zip({"conf/app.env": f"GITLAB_TOKEN={t['gitlab']}\n".encode()}))
        # a file too large to scan whose name alone holds a token no engine saw elsewhere
        .file(f"data/{t['skipped']}/big.bin", b"\0" * 8192)
    )
    gone = Layer(created_by="/bin/sh -c rm /root/.npmrc").whiteout("root/.npmrc")
    image = Image(
        layers=[base, files, gone],
        env=[f"GITHUB_TOKEN={t['github']}"],
        labels={"slack": t["slack"]},
        variant=t["variant"],
        created=t["created"],
        annotations={"org.example.note": t["npm2"]},
        config_extra={"ExposedPorts": {f"{t['port']}/tcp": {}}},
        manifest_type="oci",
    )
    return write("oci-dir", image, tmp_path), t


def _outputs(ref: str, *extra: str) -> dict[str, str]:
    out = {}
    for fmt in ("json", "sarif", "table"):
        run = run_leakscan([ref, "--format", fmt, "--max-file-size", "4K", *extra])
        assert run.code in (1, 2), run.err
        assert "Traceback" not in run.err
        out[fmt] = run.out
        out[f"{fmt} stderr"] = run.err
    return out


def test_token_in_variant_and_created_is_found_and_masked(tmp_path: Path) -> None:
    """Regression (hostile/test_properties.py::test_damaged_json_behind_good_digests): a
    token leakscan had found in a layer file was printed in clear in the image's platform
    (from the config's variant) and in history[].created, which nothing scanned."""
    ref, t = leaky_everywhere(tmp_path)
    run = run_leakscan([ref, "--format", "json", "--max-file-size", "4K"])
    report = run.report
    (image,) = report["images"]
    assert t["variant"] not in json.dumps(report) and t["created"] not in json.dumps(report)
    assert mask(t["variant"]) in image["platform"]
    assert all(mask(t["created"]) in (h["created"] or mask(t["created"])) for h in image["history"])
    places = {
        (f["location"]["kind"], f["location"].get("field"), f["secret_sha256"][:8])
        for f in image["findings"]
    }
    def sha(s: str) -> str:
        return hashlib.sha256(s.encode()).hexdigest()[:8]

    # both are findings of their own, at the place they are
    assert ("config", "variant", sha(t["variant"])) in places
    assert any(k == "history" and s == sha(t["created"]) for k, _, s in places) or (
        ("config", "created", sha(t["created"])) in places
    )


def test_no_found_secret_in_any_string_of_any_output(tmp_path: Path) -> None:
    """Walk every string of the JSON and SARIF reports (and the table's text) of an image
    leaking in every kind of place; none holds a secret that the scan found."""
    ref, planted = leaky_everywhere(tmp_path)
    shown = run_leakscan([ref, "--format", "json", "--max-file-size", "4K", "--show-secrets"])
    found = {f["secret"] for image in shown.report["images"] for f in image["findings"]}
    # every planted token but the skipped path's is a finding (that one has no content)
    missing = {k for k, v in planted.items() if v not in found and k != "skipped"}
    assert not missing, missing
    secrets = found | {planted["skipped"]}
    outputs = _outputs(ref)
    for fmt in ("json", "sarif"):
        doc = json.loads(outputs[fmt])
        assert not _in_clear(list(_strings(doc)), secrets), fmt
    for name, text in outputs.items():
        assert not _in_clear([(name, text)], secrets), name
    # the skipped path is reported, masked
    skipped = json.loads(outputs["json"])["images"][0]["skipped"]
    assert any(mask(planted["skipped"]) in (s["path"] or "") for s in skipped), skipped


def test_show_secrets_shows_them(tmp_path: Path) -> None:
    """The one way to see a secret: --show-secrets (so the walk above can fail)."""
    ref, planted = leaky_everywhere(tmp_path)
    run = run_leakscan([ref, "--format", "json", "--max-file-size", "4K", "--show-secrets"])
    assert planted["variant"] in run.report["images"][0]["platform"]
