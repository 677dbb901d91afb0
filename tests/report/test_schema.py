"""The report schema ships inside the package: printed by ``leakscan schema`` and
``python -m leakscan.report.schema``, carried by the built wheel, and a superset of the
first published draft (fields may be added, never renamed or dropped)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from clirun import REPO, run_leakscan
from jsonschema import Draft202012Validator

from leakscan.report.schema import schema, schema_text

# every property of the first draft of the schema (schema_version 1), as JSON paths
FIRST_DRAFT = {
    "": ["schema_version", "tool", "images", "registry", "stats"],
    "tool": ["name", "version"],
    "stats": ["repositories", "images", "layers_total", "layers_unique", "layers_scanned",
              "layers_cached", "seconds"],
    "image": ["reference", "source", "platform", "manifest_digest", "config_digest", "layers",
              "history", "findings", "errors", "skipped", "repository", "tag"],
    "image.layers": ["index", "digest", "diff_id", "media_type", "size", "history_index",
                     "created_by"],
    "image.history": ["index", "created_by", "created", "empty_layer", "layer_index"],
    "image.errors": ["message", "layer_index", "path"],
    "image.skipped": ["reason", "layer_index", "path"],
    "finding": ["rule_id", "description", "secret_sha256", "redacted", "secret", "fingerprint",
                "location", "confidence", "remediation", "detectors"],
    "location.file": ["kind", "layer_index", "diff_id", "path", "line", "status",
                      "removed_in_layer"],
    "location.history": ["kind", "history_index", "layer_index", "created_by"],
    "location.config": ["kind", "field", "key"],
}


def _properties(where: str) -> set[str]:
    s = schema()
    defs = s["$defs"]
    node: dict[str, Any]
    if where == "":
        node = s
    elif where in ("tool", "stats"):
        node = s["properties"][where]
    elif where == "image" or where == "finding":
        node = defs[where]
    elif where.startswith("image."):
        node = defs["image"]["properties"][where.split(".", 1)[1]]["items"]
    else:
        kind = where.split(".", 1)[1]
        options = defs["finding"]["properties"]["location"]["oneOf"]
        node = next(o for o in options if o["properties"]["kind"].get("const") == kind)
    return set(node["properties"])


def test_schema_is_valid_json_schema() -> None:
    Draft202012Validator.check_schema(schema())
    assert schema()["properties"]["schema_version"] == {"const": 1}


def test_no_field_of_the_first_draft_is_gone() -> None:
    for where, names in FIRST_DRAFT.items():
        missing = set(names) - _properties(where)
        assert not missing, f"{where or 'report'} lost {sorted(missing)}"


def test_leakscan_schema_prints_the_packaged_file() -> None:
    run = run_leakscan(["schema"])
    assert run.code == 0, run.err
    assert run.out == schema_text()
    assert run.out == (REPO / "leakscan" / "report" / "schema.json").read_text(encoding="utf-8")


def test_python_m_prints_the_schema() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "leakscan.report.schema"],
        capture_output=True, text=True, check=True, cwd=REPO,
    ).stdout
    assert json.loads(out) == schema()


def test_wheel_carries_the_schema(tmp_path: Path) -> None:
    """A user who installs the wheel (not the source tree) still has the schema."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(REPO)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = tmp_path.glob("leakscan-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        assert json.loads(zf.read("leakscan/report/schema.json")) == schema()


def test_report_of_the_demo_image_validates() -> None:
    run = run_leakscan([str(REPO / "fixtures" / "leaky-npm.tar"), "--format", "json"])
    assert run.code == 1, run.err
    report = run.report  # validated against the packaged schema on access
    assert report["images"][0]["findings"]
