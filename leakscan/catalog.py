"""Which kingfisher rule catalog, named without loading the engine.

A re-scan the result store answers whole still names the catalog in its report; importing
``kingfisher_sdk`` for that loads its native module (~15-20 ms of a ~0.2 s re-scan). What
the last compile recorded (a stamp file beside the compiled catalog) and the shipped form's
manifest are plain JSON, and the installed release is in the package's metadata. Outside
:mod:`leakscan.detectors` so that naming the catalog does not import the detectors' seam
(five dataclasses and the placeholder patterns: ~4 ms of such a re-scan).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from kingfisher_sdk import Rules

# leakscan loads every rule (it filters by confidence itself); kingfisher keys its compiled
# form by release and rule set, and "low" and "medium" share one entry (same 488 rules)
CONFIDENCE: Final = "low"
# kingfisher's own setting for where its compiled catalogs live; leakscan honours it too
ENV_RULES_DIR = "KF_RULE_CACHE_DIR"
# the distribution that installs kingfisher_sdk
DISTRIBUTION = "kingfisher-secret-scanner"


@dataclass(frozen=True)
class CatalogInfo:
    """Which rule catalog: the kingfisher release, how many rules, a digest of their ids."""

    engine: str
    version: str
    rules: int
    digest: str

    def __str__(self) -> str:
        return f"{self.engine} {self.version}, {self.rules} rules, {self.digest}"

    @classmethod
    def of(cls, rules: Rules) -> CatalogInfo:
        """The catalog ``rules`` loaded (reads the rules' ids, not their definitions)."""
        import hashlib

        import kingfisher_sdk  # loaded already: ``rules`` came from it

        ids = sorted(str(meta["id"]) for meta in rules.metadata())
        digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]
        return cls("kingfisher", kingfisher_sdk.__version__, len(rules), f"sha256:{digest}")


def rules_dir() -> Path:
    """Where the compiled catalog is kept: ``$KF_RULE_CACHE_DIR`` when set, else ``rules/``
    beside the result store (``$LEAKSCAN_CACHE_DIR``, else the user's cache folder), so
    that the one folder a CI job caches holds both."""
    folder = os.environ.get(ENV_RULES_DIR)
    if folder:
        return Path(folder)
    from leakscan.store import default_location

    return default_location().parent / "rules"


def open_to_others(folder: Path) -> Path | None:
    """``folder``, or the first folder above it, that others may write to (group or
    world writable, without the sticky bit ``/tmp`` has): kingfisher keeps no compiled
    catalog below one (seen with a folder unpacked by root from ``git archive``, 0775), and
    every run then compiles it again. None when there is none."""
    import stat

    path = Path(os.path.abspath(folder))
    for each in (path, *path.parents):
        try:
            mode = each.stat().st_mode
        except OSError:
            continue  # not made yet: made private
        if mode & (stat.S_IWGRP | stat.S_IWOTH) and not mode & stat.S_ISVTX:
            return each
    return None


def stamp_name(version: str) -> str:
    """The stamp a compile of kingfisher ``version``'s catalog leaves in :func:`rules_dir`."""
    return f"kingfisher-{version}-{CONFIDENCE}.json"


def read_info(path: Path) -> CatalogInfo | None:
    """The catalog a stamp or a manifest names; None when unreadable."""
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
        return CatalogInfo(
            str(data["engine"]), str(data["version"]), int(data["rules"]), str(data["digest"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def engine_version() -> str | None:
    """The installed kingfisher release: the loaded module's when it is loaded, else the
    distribution's metadata (the same string: the native module reports its package's)."""
    loaded = sys.modules.get("kingfisher_sdk")
    if loaded is not None:
        return str(loaded.__version__)
    from leakscan.distinfo import installed_version

    return installed_version(DISTRIBUTION)


def stored_info() -> CatalogInfo | None:
    """Without the engine: what the last compile in :func:`rules_dir` recorded, else the
    shipped form's; None when none is known. As ``kingfisher.catalog_info`` when no
    catalog is loaded (that module's own form, which this one must agree with)."""
    kingfisher = sys.modules.get("leakscan.detectors.kingfisher")
    if kingfisher is not None:
        # imported already (a catalog may be loaded): its answer, whatever it holds
        info: CatalogInfo | None = kingfisher.catalog_info()
        return info
    release = engine_version()
    if release is None:
        return None
    known = read_info(rules_dir() / stamp_name(release))
    if known is not None:
        return known
    from leakscan.detectors.kingfisher import shipped

    ship = shipped()
    return ship.info if ship else None
