"""The renderers' tests import their hand-made reports (reportkit.py) from this folder."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent))
