"""leakscan against real images built by dockerd and buildah (see conftest.py).

Every layout holds the same leak: an npm token passed as a build arg (so it is in the history),
written to /root/.npmrc by one RUN and deleted by the next. leakscan runs as a subprocess, the
way users run it; its JSON report is validated against the shared schema and compared with what
skopeo and tarfile read from the same layout.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest
from schema import validate_report

if TYPE_CHECKING:
    from tests.real.conftest import RealImage

pytestmark = pytest.mark.real

SCAN_TIMEOUT = 300
NPMRC_PATH = "/root/.npmrc"


class Scan(NamedTuple):
    code: int
    out: str
    err: str
    report: dict[str, Any] | None  # the parsed JSON, when the format was json


Scanner = Callable[..., Scan]


@pytest.fixture(scope="session")
def real_scan(leakscan: Any) -> Scanner:
    """Run leakscan (a subprocess, via tests/conftest.py's ``leakscan``) once per layout and
    options in the session; later calls reuse the result."""
    cache: dict[tuple[str, ...], Scan] = {}

    def run(image: RealImage, *options: str, fmt: str = "json") -> Scan:
        key = (image.transport, fmt, *options)
        if key not in cache:
            done = leakscan([image.transport, "--format", fmt, *options], timeout=SCAN_TIMEOUT)
            report = None
            if fmt == "json":
                try:
                    report = json.loads(done.out)
                except json.JSONDecodeError as exc:
                    pytest.fail(
                        f"leakscan {image.transport} --format json {' '.join(options)}: "
                        f"stdout is not JSON ({exc})\n{_explain(done, image.token)}",
                        pytrace=False,
                    )
            cache[key] = Scan(done.code, done.out, done.err, report)
        return cache[key]

    return run


def _redact(text: str, token: str) -> str:
    """Keep the token out of assertion messages too."""
    return text.replace(token, "<TOKEN>")


def _explain(result: Any, token: str) -> str:
    """Exit status, stderr and stdout of a run, for an assertion message (token masked)."""
    return (
        f"exit {result.code}\nstderr:\n{_redact(result.err, token)[-3000:]}"
        f"\nstdout:\n{_redact(result.out, token)[:3000]}"
    )


def _only_image(result: Scan) -> dict[str, Any]:
    assert result.report is not None
    images = result.report["images"]
    assert len(images) == 1, f"one single-platform image expected, got {len(images)}"
    image: dict[str, Any] = images[0]
    return image


def _layer_made_by(image: dict[str, Any], *needles: str) -> int:
    """Index of the one layer whose created_by contains every needle (from the report)."""
    matches = [
        layer["index"]
        for layer in image["layers"]
        if all(n in (layer.get("created_by") or "") for n in needles)
    ]
    assert len(matches) == 1, (
        f"expected one layer created by {needles}, got {matches}; layers: "
        f"{[(la['index'], la.get('created_by')) for la in image['layers']]}"
    )
    return matches[0]


def _token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _finding_keys(image: dict[str, Any]) -> list[tuple[Any, ...]]:
    """(rule_id, location kind, path, status, created_by of its layer or history entry) for
    every finding, sorted."""
    layers = {layer["index"]: layer for layer in image["layers"]}
    keys = set()
    for finding in image["findings"]:
        loc = finding["location"]
        created_by = None
        if loc.get("layer_index") is not None:
            created_by = layers[loc["layer_index"]].get("created_by")
        elif loc["kind"] == "history":
            created_by = image["history"][loc["history_index"]].get("created_by")
        keys.add((finding["rule_id"], loc["kind"], loc.get("path"), loc.get("status"), created_by))
    return sorted(keys, key=repr)


def _expected_source(transport: str) -> str:
    return transport.split(":", 1)[0]


# ---------------------------------------------------------------------------------------------


def test_json_report_valid_with_findings(real_image: RealImage, real_scan: Scanner) -> None:
    result = real_scan(real_image)
    assert result.code == 1, _explain(result, real_image.token)
    validate_report(result.report)
    image = _only_image(result)
    assert image["errors"] == [], image["errors"]
    assert image["source"] == _expected_source(real_image.transport)
    assert image["findings"], "no findings"
    layers = sorted(image["layers"], key=lambda layer: layer["index"])
    assert [layer["index"] for layer in layers] == list(range(len(layers)))
    assert [layer["diff_id"] for layer in layers] == real_image.info["diff_ids"]
    assert [h["index"] for h in image["history"]] == list(range(len(image["history"])))
    assert len(image["history"]) == len(real_image.info["history_created_by"])


def test_deleted_npmrc_is_found_in_the_layer_that_wrote_it(
    real_image: RealImage, real_scan: Scanner
) -> None:
    image = _only_image(real_scan(real_image))
    written_in = _layer_made_by(image, "_authToken=", "> /root/.npmrc")
    removed_in = _layer_made_by(image, "rm /root/.npmrc")
    # the report's indices agree with the layers skopeo + tarfile found
    assert written_in == real_image.info["npmrc_layer"]
    assert removed_in == real_image.info["whiteout_layer"]

    file_findings = [f for f in image["findings"] if f["location"]["kind"] == "file"]
    wanted = {
        "kind": "file",
        "path": NPMRC_PATH,
        "status": "deleted",
        "layer_index": written_in,
        "removed_in_layer": removed_in,
    }
    matching = [
        f
        for f in file_findings
        if all(f["location"].get(k) == v for k, v in wanted.items())
        and f["secret_sha256"] == _token_sha256(real_image.token)
    ]
    assert matching, (
        f"no finding {wanted} with sha256(token); file findings: "
        f"{[(f['rule_id'], f['location'], f['secret_sha256']) for f in file_findings]}"
    )
    for finding in matching:
        assert finding["location"]["diff_id"] == real_image.info["diff_ids"][written_in]
        assert "secret" not in finding


def test_build_arg_is_found_in_history(real_image: RealImage, real_scan: Scanner) -> None:
    image = _only_image(real_scan(real_image))
    history_findings = [f for f in image["findings"] if f["location"]["kind"] == "history"]
    truth = real_image.info["history_created_by"]
    hits = []
    for finding in history_findings:
        index = finding["location"]["history_index"]
        assert 0 <= index < len(image["history"]), finding["location"]
        if (
            "NPM_TOKEN=" in (image["history"][index].get("created_by") or "")
            and f"NPM_TOKEN={real_image.token}" in truth[index]
            and finding["secret_sha256"] == _token_sha256(real_image.token)
        ):
            hits.append(finding)
    assert hits, (
        "no history finding points at a `|1 NPM_TOKEN=` entry; history findings: "
        f"{[(f['rule_id'], f['location']) for f in history_findings]}"
    )


def test_token_never_printed_without_show_secrets(
    real_image: RealImage, real_scan: Scanner
) -> None:
    result = real_scan(real_image)
    assert real_image.token not in result.out
    assert real_image.token not in result.err
    image = _only_image(result)
    assert all("secret" not in f for f in image["findings"])


def test_show_secrets_puts_token_in_json(real_image: RealImage, real_scan: Scanner) -> None:
    result = real_scan(real_image, "--show-secrets")
    assert result.code == 1, _explain(result, real_image.token)
    validate_report(result.report)
    image = _only_image(result)
    npmrc = [
        f
        for f in image["findings"]
        if f["location"]["kind"] == "file" and f["location"].get("path") == NPMRC_PATH
    ]
    assert npmrc, "no /root/.npmrc finding with --show-secrets"
    assert any(f.get("secret") == real_image.token for f in npmrc)
    for finding in image["findings"]:
        assert "secret" in finding
        assert hashlib.sha256(finding["secret"].encode()).hexdigest() == finding["secret_sha256"]


def test_table_format(docker_layouts: dict[str, RealImage], real_scan: Scanner) -> None:
    image = docker_layouts["docker-save"]
    result = real_scan(image, fmt="table")
    assert result.code == 1, _explain(result, image.token)
    assert image.token not in result.out
    assert image.token not in result.err
    assert ".npmrc" in result.out
    assert "deleted" in result.out.lower()


def test_same_findings_in_every_layout(
    real_images: dict[str, RealImage], real_scan: Scanner
) -> None:
    keys = {
        name: _finding_keys(_only_image(real_scan(real_images[name])))
        for name in sorted(real_images)
    }
    reference_name = next(iter(keys))
    reference = keys[reference_name]
    assert reference, "no findings at all"
    token = real_images[reference_name].token
    differ = {name: k for name, k in keys.items() if k != reference}
    assert not differ, _redact(
        f"{reference_name}: {reference}\n"
        + "\n".join(f"{name}: {k}" for name, k in differ.items()),
        token,
    )
