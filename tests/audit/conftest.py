"""Session fixtures for the audit tests: a real docker-registry filled with the images of
auditkit.py (shared, read-only), and registries of a test's own."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

# appended, not prepended: "conftest" must stay tests/conftest.py for the other tests
sys.path.append(str(Path(__file__).resolve().parents[1] / "registry"))
sys.path.append(str(Path(__file__).resolve().parent))

import regkit  # noqa: E402
from auditkit import Fill, Filled, build_fill, push_all  # noqa: E402
from regkit import require, start_registry  # noqa: E402


@pytest.fixture(scope="session")
def fill(tmp_path_factory: pytest.TempPathFactory) -> Fill:
    require("docker-registry", "skopeo")
    tmp = tmp_path_factory.mktemp("audit")
    regkit.POLICY = tmp / "policy.json"
    regkit.POLICY.write_text('{"default": [{"type": "insecureAcceptAnything"}]}')
    return build_fill(tmp)


@pytest.fixture(scope="session")
def filled(fill: Fill) -> Iterator[Filled]:
    """The shared registry: tests must not push to it (use ``fresh`` for that)."""
    registry = start_registry(fill.tmp / "registry", "audit")
    try:
        push_all(registry, fill)
        yield Filled(registry, fill)
    finally:
        registry.stop()


@pytest.fixture()
def fresh(fill: Fill, tmp_path: Path) -> Iterator[Filled]:
    """A registry of this test's own, filled the same way."""
    registry = start_registry(tmp_path / "registry", "fresh")
    try:
        push_all(registry, fill)
        yield Filled(registry, fill)
    finally:
        registry.stop()


# --- a private dockerd (tests/real/conftest.py's fixtures, loaded once under their own name)


def _real_fixtures() -> ModuleType:
    name = "leakscan_tests_real_conftest"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "real" / "conftest.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_real = _real_fixtures()
dockerd = _real.dockerd
busybox_rootfs = _real.busybox_rootfs
real_workdir = _real.real_workdir
