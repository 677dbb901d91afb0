"""Validate leakscan JSON reports against the shared report schema (JSON Schema 2020-12).

The schema lives beside the repository, at ``<repo>/../shared/report.schema.json``. A missing
schema is a failure, never a skip: every report the tests see must be checked against it.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

REPO = Path(__file__).resolve().parents[1]
SCHEMA_PATH = REPO.parent / "shared" / "report.schema.json"


@cache
def _validator() -> Draft202012Validator:
    if not SCHEMA_PATH.is_file():
        pytest.fail(f"report schema not found at {SCHEMA_PATH}", pytrace=False)
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def validate_report(obj: Any) -> None:
    """Fail the calling test with every schema violation in ``obj``, each with its JSON path."""
    errors = sorted(_validator().iter_errors(obj), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  {e.json_path}: {e.message}" for e in errors[:20]]
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        pytest.fail(
            f"report does not match {SCHEMA_PATH.name}:\n" + "\n".join(lines) + more,
            pytrace=False,
        )
