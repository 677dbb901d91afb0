"""The JSON report's schema (JSON Schema 2020-12), shipped inside the package so that users
can validate reports without anything beside leakscan: ``leakscan schema`` or
``python -m leakscan.report.schema`` prints it."""

from __future__ import annotations

import json
import sys
from functools import cache
from importlib.resources import files
from typing import Any

RESOURCE = "schema.json"


def schema_text() -> str:
    """The schema as shipped, byte for byte."""
    return files("leakscan.report").joinpath(RESOURCE).read_text(encoding="utf-8")


@cache
def schema() -> dict[str, Any]:
    """The schema as data (parsed once per process)."""
    value: dict[str, Any] = json.loads(schema_text())
    return value


if __name__ == "__main__":  # pragma: no cover - exercised through a subprocess in the tests
    sys.stdout.write(schema_text())
