"""The schemas of Harbor's scanner adapter API (the vendored OpenAPI document in spec/) as
JSON Schema validators, for the tests to hold every request and answer to them.

OpenAPI 3.0 schema objects are nearly JSON Schema draft 7: references are moved from
``#/components/schemas/`` to ``#/definitions/``, and ``nullable: true`` becomes a ``null``
alternative. ``closed=True`` also refuses properties the schema does not name, on every
object that names its properties and does not say otherwise: a misspelt field fails."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator

SPEC = Path(__file__).resolve().parent / "spec" / "scanner-adapter-openapi-v1.2.yaml"


@cache
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(SPEC.read_text())
    return loaded


def _convert(node: Any, closed: bool) -> Any:
    if isinstance(node, list):
        return [_convert(x, closed) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _convert(v, closed) for k, v in node.items() if k not in ("example", "nullable")}
    ref = out.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
        out["$ref"] = "#/definitions/" + ref.rsplit("/", 1)[1]
    if node.get("nullable") is True:
        out = {"anyOf": [out, {"type": "null"}]}
    elif closed and "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


@cache
def validator(name: str, closed: bool = True) -> Draft7Validator:
    """A validator of ``components/schemas/NAME``."""
    schemas = copy.deepcopy(document()["components"]["schemas"])
    definitions = {k: _convert(v, closed) for k, v in schemas.items()}
    schema = {"$ref": f"#/definitions/{name}", "definitions": definitions}
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


def check(name: str, obj: Any) -> None:
    """Fail the calling test with every violation of schema ``name`` in ``obj``."""
    errors = sorted(validator(name).iter_errors(obj), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  {e.json_path}: {e.message}" for e in errors[:20]]
        pytest.fail(f"not a valid {name}:\n" + "\n".join(lines), pytrace=False)


def media_types(path: str, method: str, status: str) -> list[str]:
    """The media types the document gives for an answer (or the request body: status
    ``request``)."""
    op = document()["paths"][path][method]
    part = op["requestBody"] if status == "request" else op["responses"][int(status)]
    return list(part.get("content", {}))
