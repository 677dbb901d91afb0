"""The hostile-input fixture (see tests/hostile_kit.py)."""

from hostile_kit import hostile

__all__ = ["hostile"]
