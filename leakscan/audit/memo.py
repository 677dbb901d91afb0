"""Image reports as the audit database keeps them, and back.

A tag whose manifest digest has not changed since the last audit is reported from what that
audit assembled: no config is fetched, no layer result decoded, no engine loaded. What is
kept is the report as it is shown (redacted: no secret in clear, like every value of the
audit database), as JSON with each dataclass named, so that decoding builds exactly the
model classes the type hints allow and raises :class:`MemoError` on anything else (the
database is a file another program could have written).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
import zlib
from collections.abc import Callable
from functools import cache
from typing import Any

from leakscan import model as m

# bump when what is kept changes shape beyond what the model's own fields say
FORMAT = 1
_TAG = "@"


class MemoError(ValueError):
    """A kept value that is not what this leakscan writes (or cannot keep)."""


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@cache
def _classes() -> dict[str, type]:
    """The model's dataclasses, by name: the only classes a kept value may build."""
    return {
        name: value
        for name, value in vars(m).items()
        if isinstance(value, type) and dataclasses.is_dataclass(value)
    }


@cache
def schema_digest() -> str:
    """A digest of the model's fields and their types: a report kept by a leakscan whose
    model differs is never read back."""
    parts: list[Any] = [FORMAT]
    for name, cls in sorted(_classes().items()):
        parts.append([name, [[k, repr(v)] for k, v in _hints(cls).items()]])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def settings_key(
    detection: str,
    min_confidence: str,
    fingerprints: typing.Collection[str],
    rules: typing.Sequence[str],
    paths: typing.Sequence[str],
) -> str:
    """Everything a kept image report depends on besides the image: what detects (the
    ``detection`` fingerprint: leakscan, engines, limits), what is reported (confidence,
    suppressions) and the shape of the report. Reports are kept and read under it."""
    parts = [detection, min_confidence, sorted(fingerprints), list(rules), list(paths)]
    parts.append(schema_digest())
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _plain(value: Any) -> Any:
    """A JSON-native value (fields typed Any), checked."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _plain(v) for k, v in value.items()}
    raise MemoError(f"cannot keep a {type(value).__name__}")


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {_TAG: type(value).__name__}
        for f in dataclasses.fields(value):
            out[f.name] = _encode(getattr(value, f.name))
        return out
    if isinstance(value, (tuple, list)):
        return [_encode(v) for v in value]
    if isinstance(value, frozenset):
        return sorted(_encode(v) for v in value)
    return _plain(value)


def encode_reports(reports: typing.Sequence[m.ImageReport]) -> bytes:
    """The reports of one manifest digest (one per platform), as kept."""
    text = json.dumps([_encode(r) for r in reports], separators=(",", ":"))
    return zlib.compress(text.encode(), 6)


Reader = Callable[[Any], Any]


def _decode(data: Any, hint: Any) -> Any:
    return _reader(hint)(data)


def _check(data: Any, kind: type) -> Any:
    # bool is an int: an int field must not take one, nor a bool field an int
    if type(data) is not kind:
        raise MemoError(f"a {type(data).__name__} where a {kind.__name__} was kept")
    return data


@cache
def _reader(hint: Any) -> Reader:
    """How to read a value of type ``hint`` (made once per type: a report has thousands of
    values of a few dozen types)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return lambda data: data
    if origin is typing.Literal:
        allowed = typing.get_args(hint)

        def literal(data: Any) -> Any:
            if data not in allowed or type(data) is bool:
                raise MemoError(f"{data!r} is not one of {allowed}")
            return data

        return literal
    if origin in (typing.Union, types.UnionType):
        members = typing.get_args(hint)
        return lambda data: _union(data, members)
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            item = _reader(args[0])

            def many(data: Any) -> Any:
                if not isinstance(data, list):
                    raise MemoError("a tuple that is not a list")
                return tuple(item(v) for v in data)

            return many
        items = [_reader(a) for a in args]

        def fixed(data: Any) -> Any:
            if not isinstance(data, list) or len(data) != len(items):
                raise MemoError("a tuple of another length")
            return tuple(r(v) for r, v in zip(items, data, strict=True))

        return fixed
    if origin is frozenset:
        (arg,) = typing.get_args(hint)
        member = _reader(arg)

        def frozen(data: Any) -> Any:
            if not isinstance(data, list):
                raise MemoError("a set that is not a list")
            return frozenset(member(v) for v in data)

        return frozen
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return lambda data: _object(data, hint)
    if hint is type(None):

        def none(data: Any) -> Any:
            if data is not None:
                raise MemoError("a value where None was kept")
            return None

        return none
    if hint is float:
        return lambda data: float(data) if type(data) is int else _check(data, float)
    if hint in (str, int, bool):
        return lambda data: _check(data, hint)
    raise MemoError(f"cannot read a {hint!r}")


def _union(data: Any, members: tuple[Any, ...]) -> Any:
    if data is None:
        if type(None) in members:
            return None
        raise MemoError("None where a value was kept")
    if isinstance(data, dict) and _TAG in data:
        named = [c for c in members if isinstance(c, type) and c.__name__ == data[_TAG]]
        if len(named) != 1:
            raise MemoError(f"a {data[_TAG]!r} where it cannot be")
        return _object(data, named[0])
    for member in members:
        if member is type(None) or (isinstance(member, type) and dataclasses.is_dataclass(member)):
            continue
        try:
            return _decode(data, member)
        except MemoError:
            continue
    raise MemoError("a value of none of the kinds it can be")


@cache
def _fields(cls: type) -> tuple[tuple[str, Reader, bool], ...]:
    """Each field of ``cls``: its name, how to read it, whether it must be there."""
    if _classes().get(cls.__name__) is not cls:
        raise MemoError(f"{cls.__name__} is not kept")
    hints = _hints(cls)
    return tuple(
        (
            f.name,
            _reader(hints[f.name]),
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
        )
        for f in dataclasses.fields(cls)
    )


def _object(data: Any, cls: type) -> Any:
    if not isinstance(data, dict) or data.get(_TAG) != cls.__name__:
        raise MemoError(f"not a {cls.__name__}")
    kwargs = {}
    for name, read, required in _fields(cls):
        if name in data:
            kwargs[name] = read(data[name])
        elif required:
            raise MemoError(f"{cls.__name__}.{name} missing")
    if len(data) != len(kwargs) + 1:
        raise MemoError(f"{cls.__name__}: unknown fields")
    return cls(**kwargs)


def decode_reports(value: bytes) -> tuple[m.ImageReport, ...]:
    """Reports kept by :func:`encode_reports`; MemoError when they are not."""
    try:
        data = json.loads(zlib.decompress(value))
    except (zlib.error, ValueError, RecursionError) as exc:
        raise MemoError(f"kept reports unreadable: {type(exc).__name__}") from None
    if not isinstance(data, list) or not data:
        raise MemoError("kept reports: not a list")
    try:
        return tuple(_object(item, m.ImageReport) for item in data)
    except (TypeError, RecursionError) as exc:
        raise MemoError(f"kept reports unreadable: {type(exc).__name__}") from None
