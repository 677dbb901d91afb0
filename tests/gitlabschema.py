"""Check GitLab Secret Detection reports as GitLab would: against GitLab's schema of the
version the report declares (vendored in report/gitlab/, with its notice), ids unique."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator

SCHEMA = (
    Path(__file__).resolve().parent / "report" / "gitlab" / "secret-detection-report-format.json"
)


@cache
def _validator() -> Draft7Validator:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


def gitlab_problems(doc: dict[str, Any]) -> list[str]:
    """What GitLab would refuse: the schema of the version the report declares, and ids
    unique in the report (GitLab keys findings by them)."""
    out = [f"{e.json_path}: {e.message}" for e in _validator().iter_errors(doc)]
    if doc.get("version") != _validator().schema["self"]["version"]:
        out.append("the version declared is not the vendored schema's")
    ids = [v["id"] for v in doc.get("vulnerabilities", [])]
    if len(ids) != len(set(ids)):
        out.append("vulnerability ids repeat")
    return out
