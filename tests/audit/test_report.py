"""The audit's JSON text (leakscan.audit.report.dumps_indented): what ``json.dumps(value,
indent=2, ensure_ascii=False)`` writes, to the byte, for any value json can write, and
json's own error for one it cannot."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leakscan.audit.report import dumps_indented

_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
)
_VALUES = st.recursive(
    _LEAVES,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=40,
)


def same(value: Any) -> None:
    assert dumps_indented(value) == json.dumps(value, indent=2, ensure_ascii=False)


@settings(max_examples=400, deadline=None)
@given(_VALUES)
def test_as_json_writes_it(value: Any) -> None:
    same(value)


@pytest.mark.parametrize(
    "value",
    [
        {},
        [],
        {"a": {}, "b": [], "c": [[]], "d": [{}]},
        '\u00e9\u2028\x00\x1f"\\/\ud800',
        [float("nan"), float("inf"), float("-inf"), -0.0, 1e300, 5e-324, 0.1],
        [True, False, None, 1, -1, 2**64],
        {"nested": {"deeper": [1, {"x": "y", "z": [None, 0.5]}]}},
        # keys json turns into strings itself: left to json
        {1: "one", 2.5: "two", False: "f", None: "n"},
    ],
)
def test_edges(value: Any) -> None:
    same(value)


def test_what_json_cannot_write_is_its_error() -> None:
    for value in ({"a": {1, 2}}, [object()], {("a",): 1}):
        with pytest.raises(TypeError) as mine:
            dumps_indented(value)
        with pytest.raises(TypeError) as theirs:
            json.dumps(value, indent=2, ensure_ascii=False)
        assert str(mine.value) == str(theirs.value)
