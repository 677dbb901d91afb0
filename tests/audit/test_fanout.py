"""Where layers are scanned: a real Dask LocalCluster over TCP on 127.0.0.1 (its workers
pull the layers from the registry themselves, the client alone writes the database), local
worker processes, this process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from auditkit import Filled
from test_core import findings_view, run

from leakscan.audit.catalog import Tagged, parse_target, resolve_registry
from leakscan.audit.core import layer_id
from leakscan.audit.fanout import DaskFanout, InProcess, LocalPool, ScanSettings, fanout
from leakscan.detectors import DetectorConfig
from leakscan.errors import InputError
from leakscan.layers.archives import ArchiveLimits
from leakscan.sources.auth import RegistryOptions

SETTINGS = ScanSettings(DetectorConfig(), ArchiveLimits(), None)


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        protocol="tcp",
        host="127.0.0.1",
        dashboard_address=None,
    ) as local:
        yield local.scheduler_address


def test_dask_cluster_scans_the_layers(filled: Filled, tmp_path: Path, cluster: str) -> None:
    assert cluster.startswith("tcp://127.0.0.1:")
    local = run(filled.registry.host, tmp_path / "a.db")
    remote = run(filled.registry.host, tmp_path / "b.db", dask=cluster)
    assert remote.complete, remote.errors
    assert remote.stats.layers_scanned == local.stats.layers_scanned > 0
    assert findings_view(remote) == findings_view(local)
    # the client wrote every result down: the next audit (here, no cluster) scans nothing
    again = run(filled.registry.host, tmp_path / "b.db")
    assert again.stats.layers_scanned == 0


def test_dask_workers_are_other_processes(filled: Filled, cluster: str) -> None:
    from distributed import Client

    with Client(cluster, set_as_default=False) as client:
        pids = set(client.run(os.getpid).values())
    assert len(pids) == 2 and os.getpid() not in pids


def test_dask_unreachable_is_an_error() -> None:
    from leakscan.audit.fanout import DaskFanout as Fan

    with pytest.raises(OSError):
        Fan(SETTINGS, "tcp://127.0.0.1:1")


def test_daemon_target_refuses_dask(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--dask"):
        run("docker-daemon:", tmp_path / "a.db", dask="tcp://127.0.0.1:1")


def test_fanout_choice() -> None:
    assert isinstance(fanout(SETTINGS, 1, None), InProcess)
    pool = fanout(SETTINGS, 3, None)
    assert isinstance(pool, LocalPool) and pool.workers == 3
    assert DaskFanout.__name__ == "DaskFanout"


def test_local_pool_started_late_holds_layers_until_drained(filled: Filled) -> None:
    """Layers handed to a pool that was not started before the walk are held until
    drain() (when the walk's threads are gone and workers can be forked): no worker starts
    meanwhile, and every layer comes back scanned."""
    target = parse_target(filled.registry.host, RegistryOptions())
    blobs = {}
    for found in resolve_registry(target, ["web"], None):
        assert isinstance(found, Tagged)
        for blob in found.image.layers:
            blobs.setdefault(layer_id(blob), blob)
    pool = LocalPool(SETTINGS, 2)
    try:
        pool.submit(list(blobs.values()))
        assert list(pool.ready()) == []
        assert pool._pool is None
        results = list(pool.drain())
        assert pool._pool is not None
        assert sorted(layer_id(b) for b, _ in results) == sorted(blobs)
        assert all(not r.errors and r.diff_id == b.diff_id for b, r in results)
    finally:
        pool.close()


# --- a Dask worker's allocator ------------------------------------------------------------

_FAULTS = """
import resource, sys
from leakscan.audit.fanout import RoomyMalloc

def faults():
    # 40 buffers of 4 MiB, each written whole and freed: glibc with a fixed mmap threshold
    # maps each anew (a page fault per 4 KiB page), a heap reuses the same pages
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(40):
        buf = bytearray(4 << 20)
        del buf
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

roomy = RoomyMalloc()
outside = faults()
with roomy:
    inside = faults()
after = faults()
print(roomy.active, outside, inside, after)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's mallopt")
def test_roomy_malloc_under_a_nanny_setting() -> None:
    """A Dask nanny's MALLOC_TRIM_THRESHOLD_ pins glibc's mmap threshold at 128 KiB: every
    large buffer is mapped afresh (page faults, system time). During a scan the thresholds
    are roomy (the pages are reused), and put back after it."""
    env = dict(os.environ, MALLOC_TRIM_THRESHOLD_="65536")
    out = subprocess.run(
        [sys.executable, "-c", _FAULTS], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    active, outside, inside, after = out[0], *map(int, out[1:])
    assert active == "True"
    pages = 40 * (4 << 20) // 4096
    assert outside > pages // 2 and after > pages // 2  # the nanny's setting, before and after
    assert inside < pages // 10


def test_roomy_malloc_leaves_glibc_alone_without_a_setting() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run(
        [sys.executable, "-c", _FAULTS], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0] == "False"
