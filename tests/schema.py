"""Validate leakscan JSON reports against the report schema that ships inside the package
(``leakscan/report/schema.json``, JSON Schema 2020-12). Every report the tests see is checked
against it; the repository needs nothing beside it."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from leakscan.report.schema import schema


@cache
def _validator() -> Draft202012Validator:
    Draft202012Validator.check_schema(schema())
    return Draft202012Validator(schema(), format_checker=Draft202012Validator.FORMAT_CHECKER)


def validate_report(obj: Any) -> None:
    """Fail the calling test with every schema violation in ``obj``, each with its JSON path."""
    errors = sorted(_validator().iter_errors(obj), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  {e.json_path}: {e.message}" for e in errors[:20]]
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        pytest.fail(
            "report does not match the packaged schema:\n" + "\n".join(lines) + more,
            pytrace=False,
        )
