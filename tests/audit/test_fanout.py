"""Where layers are scanned: a real Dask LocalCluster over TCP on 127.0.0.1 (its workers
pull the layers from the registry themselves, the client alone writes the database), local
worker processes, this process."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest
import regkit
from auditkit import Fill, Filled
from imagebuilder import Image, Layer, fake_token, write_oci_layout
from test_core import findings_view, run

from leakscan import model as m
from leakscan.audit import core as core_module
from leakscan.audit import fanout as fanout_module
from leakscan.audit.catalog import Tagged, parse_target, resolve_registry
from leakscan.audit.core import layer_id
from leakscan.audit.fanout import (
    DaskFanout,
    InProcess,
    LocalPool,
    ScanSettings,
    SharedStore,
    _machine,
    build_engines,
    fanout,
    scan_batch_on_worker,
    scan_on_worker,
)
from leakscan.detectors import DetectorConfig
from leakscan.errors import InputError
from leakscan.layers.archives import ArchiveLimits
from leakscan.layerscan import LayerScan
from leakscan.scan import ScanOptions
from leakscan.sources.auth import RegistryOptions
from leakscan.store import CONTENT, open_store, store_info

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
    """A cluster that cannot be reached: the error comes by drain() (the layers wait);
    strings are not scanned there (None: the caller scans them)."""
    fan = DaskFanout(SETTINGS, "tcp://127.0.0.1:1")
    try:
        assert fan.scan_texts([b"PATH=/bin"]) is None
        with pytest.raises(OSError):
            list(fan.drain())
    finally:
        fan.close()


def _web_layers(filled: Filled) -> dict[str, m.LayerBlob]:
    """Every layer of the ``web`` repository's images, once each, by layer id."""
    target = parse_target(filled.registry.host, RegistryOptions())
    blobs = {}
    for found in resolve_registry(target, ["web"], None):
        assert isinstance(found, Tagged)
        for blob in found.image.layers:
            blobs.setdefault(layer_id(blob), blob)
    return blobs


def test_dask_layers_come_back_scanned_the_workers_warmed_first(
    filled: Filled, cluster: str
) -> None:
    """The client connects when made; the workers are warmed when the audit starts, then
    every layer handed in comes back scanned."""
    blobs = _web_layers(filled)
    fan = DaskFanout(SETTINGS, cluster)
    try:
        fan.start()
        fan.submit(list(blobs.values()))
        early = list(fan.ready())
        results = early + list(fan.drain())
        assert len(fan._warming) == 2
        assert sorted(layer_id(b) for b, _ in results) == sorted(blobs)
        assert all(not r.errors and r.diff_id == b.diff_id for b, r in results)
    finally:
        fan.close()


def test_dask_small_layers_travel_in_batches(filled: Filled, cluster: str) -> None:
    """Small layers handed in together go as one task while the cluster has an idle
    thread (one round trip through the scheduler, not one per layer), and each comes back
    on its own, scanned as a worker scans it alone."""
    blobs = _web_layers(filled)
    assert len(blobs) > 2 and all(
        0 < (b.size or 0) < fanout_module.SMALL_LAYER for b in blobs.values()
    )
    fan = DaskFanout(SETTINGS, cluster)
    try:
        fan.submit(list(blobs.values()))
        assert fan._submitted == 1
        assert [len(batch) for batch in fan._futures.values()] == [len(blobs)]
        results = list(fan.ready()) + list(fan.drain())
    finally:
        fan.close()
    assert sorted(layer_id(b) for b, _ in results) == sorted(blobs)
    for blob, result in results:
        alone = scan_on_worker(blob, SETTINGS)
        assert not result.errors and result.diff_id == blob.diff_id
        assert result.hits == alone.hits and result.record == alone.record


def test_dask_batches_are_bounded(
    filled: Filled, cluster: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch never holds more than BATCH_LAYERS layers; a layer of SMALL_LAYER bytes or
    more, or of unknown size, goes alone; what is held back goes at drain()."""
    blobs = list(_web_layers(filled).values())
    sizes = sorted(b.size or 0 for b in blobs)
    monkeypatch.setattr(fanout_module, "BATCH_LAYERS", 2)
    monkeypatch.setattr(fanout_module, "SMALL_LAYER", sizes[-1])  # the largest goes alone
    unsized = dataclasses.replace(blobs[0], size=None, index=99)
    fan = DaskFanout(SETTINGS, cluster)
    try:
        fan.submit([*blobs, unsized])
        sent = [len(batch) for batch in fan._futures.values()]
        assert all(n <= 2 for n in sent)
        alone = [batch for batch in fan._futures.values() if len(batch) == 1]
        assert any(b.size is None for (b,) in alone) and any(b.size == sizes[-1] for (b,) in alone)
        results = list(fan.drain())
    finally:
        fan.close()
    assert not fan._batch
    assert len(results) == len(blobs) + 1
    assert all(not r.errors for _, r in results)


def test_dask_batch_bytes_bound(
    filled: Filled, cluster: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch that reaches BATCH_BYTES is sent as it is."""
    blobs = list(_web_layers(filled).values())
    monkeypatch.setattr(fanout_module, "BATCH_BYTES", 1)  # every layer fills a batch
    fan = DaskFanout(SETTINGS, cluster)
    try:
        fan.submit(blobs)
        assert sorted(len(batch) for batch in fan._futures.values()) == [1] * len(blobs)
        assert len(list(fan.drain())) == len(blobs)
    finally:
        fan.close()


def test_a_layer_that_fails_in_a_batch_fails_alone(filled: Filled) -> None:
    """An unexpected error scanning one layer of a batch is that layer's error (its type
    only); the layers beside it are scanned."""
    good = list(_web_layers(filled).values())[:2]

    def broken() -> BinaryIO:
        raise RuntimeError("a message that quotes image content")

    bad = dataclasses.replace(good[0], index=7, opener=broken)
    results = scan_batch_on_worker([good[0], bad, good[1]], SETTINGS)
    assert [r.diff_id for r in results] == [good[0].diff_id, bad.diff_id, good[1].diff_id]
    assert not results[0].errors and not results[2].errors
    assert [p.message for p in results[1].errors] == ["layer 7: Dask worker failed (RuntimeError)"]
    assert results[0].record == scan_on_worker(good[0], SETTINGS).record


def test_dask_client_loads_no_engines(
    filled: Filled, tmp_path: Path, cluster: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a cluster, the images' strings (an ENV that leaks) are scanned by a worker too:
    the client never builds the engines, and finds what a local audit finds."""
    local = run(filled.registry.host, tmp_path / "a.db")
    strings = [f for f in findings_view(local) if f[4] in ("config", "history")]
    assert strings, findings_view(local)

    def refused(*_: object) -> None:
        raise AssertionError("the client built the engines")

    monkeypatch.setattr(core_module, "build_engines", refused)
    remote = run(filled.registry.host, tmp_path / "b.db", dask=cluster)
    assert remote.complete, remote.errors
    assert findings_view(remote) == findings_view(local)


def test_dask_client_scans_strings_itself_past_its_calls(
    filled: Filled, tmp_path: Path, cluster: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past REMOTE_TEXT_CALLS calls the client loads the engines and scans its strings
    itself (one load costs less than many round trips); the findings are the same."""
    built: list[object] = []
    real = core_module.build_engines

    def counted(config: DetectorConfig) -> object:
        built.append(config)
        return real(config)

    monkeypatch.setattr(core_module, "build_engines", counted)
    monkeypatch.setattr(core_module, "REMOTE_TEXT_CALLS", 0)
    remote = run(filled.registry.host, tmp_path / "b.db", dask=cluster)
    assert len(built) == 1
    local = run(filled.registry.host, tmp_path / "a.db")
    assert findings_view(remote) == findings_view(local)


def test_dask_scan_texts_is_the_engines_scan(cluster: str) -> None:
    """A worker finds in strings what the engines here find."""
    texts = [f"GITHUB_TOKEN={fake_token('github')}".encode(), b"PATH=/bin", b""]
    engines = build_engines(DetectorConfig())
    fan = DaskFanout(SETTINGS, cluster)
    try:
        found = fan.scan_texts(texts)
    finally:
        fan.close()
    assert found == [engines.scan(t) for t in texts]
    assert found[0] and not found[1]


def test_dask_scan_texts_that_fail_on_the_cluster_are_the_callers(
    cluster: str, tmp_path: Path
) -> None:
    """A string scan that fails on the worker (here its engines cannot be built: a
    detect-secrets plugin file that is not there) gives None, for the caller to scan the
    strings itself (and say what is wrong, as a scan does)."""
    missing = DetectorConfig(detect_secrets_plugins=(str(tmp_path / "no-such-plugin.py"),))
    fan = DaskFanout(ScanSettings(missing, ArchiveLimits(), None), cluster)
    try:
        assert fan.scan_texts([b"PATH=/bin"]) is None
    finally:
        fan.close()


class _Answered:
    """A future that is done, with ``value``."""

    def __init__(self, value: object) -> None:
        self.value = value

    def result(self) -> object:
        return self.value

    def release(self) -> None:
        return None


def test_dask_results_not_the_layers_are_errors(filled: Filled, cluster: str) -> None:
    """A batch's answer that is not one result per layer (a worker of another leakscan)
    fails each of its layers; it never pairs results with the wrong layers."""
    blobs = tuple(_web_layers(filled).values())[:2]
    fan = DaskFanout(SETTINGS, cluster)
    try:
        for answer in ([LayerScan(diff_id=blobs[0].diff_id)], "scanned", None):
            future = _Answered(answer)
            fan._futures[future] = blobs
            got = list(fan._results(future))
            assert [b for b, _ in got] == list(blobs)
            assert all(
                [p.message for p in r.errors]
                == [f"layer {b.index}: Dask worker answered with something else than the "
                    "layers' results"]
                for b, r in got
            )  # fmt: skip
    finally:
        fan.close()


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
    blobs = _web_layers(filled)
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


# --- Dask workers and the client's result store --------------------------------------------


def test_dask_workers_answer_from_the_shared_store(
    fill: Fill, tmp_path: Path, cluster: str
) -> None:
    """A file content a Dask worker scanned in one layer is taken from the client's result
    store in another layer that holds it (as local worker processes do), not scanned again:
    the store counts the lookup a hit; the findings are a cold local audit's."""
    token = fake_token("github")
    env = f"GITHUB_TOKEN={token}\n" + "x = 1\n" * 4000
    first = Layer(created_by="COPY . /app").file("app/.env", env)
    second = Layer(created_by="COPY . /app").file("app/.env", env).file("app/b.txt", "other\n")
    registry = regkit.start_registry(tmp_path / "registry", "memo")
    try:
        for name, layer in (("a", first), ("b", second)):
            image = Image(layers=[fill.bases["b0"], layer])
            registry.push(f"oci:{write_oci_layout(tmp_path / name, image, tag='t')}:t", f"{name}:1")
        store = tmp_path / "store" / "results.sqlite3"
        scan = ScanOptions(cache=str(store))
        db = tmp_path / "a.db"
        one = run(registry.host, db, scan=scan, repos=("a",), dask=cluster)
        assert one.complete and one.stats.layers_scanned == 2
        hits = store_info(str(store)).hits.get(CONTENT, 0)
        # b's own layer is new; its .env was stored by the worker that scanned a's
        two = run(registry.host, db, scan=scan, dask=cluster)
        assert two.complete and two.stats.layers_scanned == 1
        assert store_info(str(store)).hits.get(CONTENT, 0) >= hits + 1
        cold = run(registry.host, tmp_path / "cold.db")
        assert findings_view(two) == findings_view(cold)
        assert len({f.fingerprint for f in two.findings}) == 1
    finally:
        registry.stop()


def test_dask_worker_without_the_store_scans_without_it(
    filled: Filled, tmp_path: Path, cluster: str
) -> None:
    """A store the worker does not reach (a path that does not exist there) is neither
    used nor created; the layer is scanned all the same."""
    from distributed import Client

    target = parse_target(filled.registry.host, RegistryOptions())
    blob = next(
        b
        for found in resolve_registry(target, ["web"], None)
        if isinstance(found, Tagged)
        for b in found.image.layers
    )
    nowhere = tmp_path / "nowhere" / "results.sqlite3"
    store = SharedStore(str(nowhere), "fp", _machine(), (1, 1))
    with Client(cluster, set_as_default=False) as client:
        remote = client.submit(scan_on_worker, blob, SETTINGS, store, pure=False).result()
    local = scan_on_worker(blob, SETTINGS)
    assert not remote.errors and remote.hits == local.hits
    assert remote.record == local.record
    assert not nowhere.parent.exists()


def test_shared_store_reached_only_where_it_is_the_same(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite3"
    open_store(str(path)).close()
    here = SharedStore.of((str(path), "fp"))
    assert here.reachable() and here.file is not None
    # another machine (or boot, or network namespace); another file at the same path
    assert not SharedStore(here.spec, "fp", "another boot", here.file).reachable()
    other = tmp_path / "other.sqlite3"
    open_store(str(other)).close()
    other.replace(path)  # made while the first existed: another inode
    assert not here.reachable()
    assert not SharedStore(str(tmp_path / "missing"), "fp", _machine(), here.file).reachable()
    # redis: a host of its own is the same store from anywhere; localhost only here
    remote = SharedStore.of(("redis://cache.example.internal:6379/0", "fp"))
    assert SharedStore("redis://cache.example.internal:6379/0", "fp", None, None).reachable()
    assert remote.reachable()
    local = SharedStore.of(("redis://127.0.0.1:6379/0", "fp"))
    assert local.reachable()
    assert not SharedStore(local.spec, "fp", "another boot", None).reachable()
    assert not SharedStore("redis://localhost/0", "fp", None, None).reachable()


def test_shared_store_path_is_the_clients(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``~`` and a relative path are resolved by the client: a worker is told the file."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert SharedStore.of(("~/s.sqlite3", "fp")).spec == str(tmp_path / "s.sqlite3")
    assert SharedStore.of(("s.sqlite3", "fp")).spec == str(tmp_path / "s.sqlite3")
