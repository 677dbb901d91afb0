"""Fixtures of the layer tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from leakscan.layers import inflate


@pytest.fixture(scope="module", params=["zlib-ng", "zlib"])
def deflate_engine(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run a test once with each deflate engine: zlib-ng, which leakscan uses when it is
    installed, and the standard zlib, which it falls back to."""
    before = inflate.engine()
    inflate.use(request.param)
    try:
        yield request.param
    finally:
        inflate.use(before)
