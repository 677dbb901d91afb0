"""setuptools build step: kingfisher's rule catalog compiled into the package (issue 17).

pip runs no code of a package after installing it, so the 3-4 s of CPU kingfisher spends
compiling its catalog before the first scan cannot move to install time; it can move to
build time. ``build_py`` here compiles the catalog once, while the wheel is built, into
``leakscan/detectors/compiled/`` (in the source tree for an editable install, which builds
nothing else): kingfisher's cache entry as it wrote it, and ``catalog.json`` saying which
kingfisher release made it. leakscan copies it into its rules folder on first use
(leakscan/detectors/kingfisher.py); kingfisher compiles again where the entry does not suit
the machine (another architecture or Vectorscan build; the x86_64 entry is the same bytes
whatever the CPU model), so a foreign or damaged entry costs the old compile, nothing else.

No kingfisher in the build environment (``--no-build-isolation`` before it is installed), a
failed compile, or ``LEAKSCAN_SHIP_CATALOG=0``: the package is built without it, as before.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Final

from setuptools.command.build_py import build_py

# where the package keeps it, relative to the project root; leakscan.detectors.kingfisher
# reads it from there (SHIPPED, MANIFEST)
TARGET = Path("leakscan", "detectors", "compiled")
MANIFEST = "catalog.json"
# leakscan loads every rule and filters by confidence itself (kingfisher.py's _CONFIDENCE)
CONFIDENCE: Final = "low"


def compile_catalog(target: Path) -> tuple[bool, str]:
    """Compile the catalog into ``target`` (emptied first); whether it was, and what was
    done, for the build's log."""
    if os.environ.get("LEAKSCAN_SHIP_CATALOG", "1") == "0":
        return False, "catalog not compiled: LEAKSCAN_SHIP_CATALOG=0"
    try:
        import kingfisher_sdk
    except ImportError:
        return False, "catalog not compiled: no kingfisher in the build environment"
    with tempfile.TemporaryDirectory(prefix="leakscan-catalog-") as tmp:
        rules = kingfisher_sdk.Rules(confidence=CONFIDENCE, cache_dir=tmp)
        entries = sorted(Path(tmp).glob("*.vscdb"))
        if rules.cache_status != "stored" or len(entries) != 1:
            return False, f"catalog not compiled: kingfisher kept no entry ({rules.cache_status})"
        # the catalog's identity, as leakscan's CatalogInfo.of reads it (a test compares)
        ids = sorted(str(meta["id"]) for meta in rules.metadata())
        digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]
        manifest = {
            "engine": "kingfisher",
            "version": kingfisher_sdk.__version__,
            "rules": len(rules),
            "digest": f"sha256:{digest}",
            "confidence": CONFIDENCE,
            "file": entries[0].name,
        }
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        shutil.copyfile(entries[0], target / entries[0].name)
    (target / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return True, f"kingfisher {manifest['version']}'s catalog compiled into {target}"


class BuildPy(build_py):
    """``build_py``, then the compiled catalog beside the package's modules."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            # an editable install imports from the source tree: the catalog goes there
            target = Path(__file__).resolve().parent / TARGET
        else:
            target = Path(self.build_lib) / TARGET
        done, what = compile_catalog(target)
        self.announce(f"leakscan: {what}", level=logging.INFO if done else logging.WARNING)
