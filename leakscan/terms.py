"""Words every stage shares: how sure a finding is, and what became of a file. Defined
here once, so that the image model, the engines and the whiteout logic agree without
importing each other."""

from __future__ import annotations

from typing import Literal

Confidence = Literal["high", "medium", "low"]
CONFIDENCE_RANK: dict[str, int] = {"low": 0, "medium": 1, "high": 2}

# present: the same bytes are in the final filesystem; deleted: a later whiteout removed
# them; overwritten: a later layer put other bytes at the path
Status = Literal["present", "deleted", "overwritten"]
