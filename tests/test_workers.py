"""Layers scanned in worker processes give what the calling process gives."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

import pytest
from clirun import Run, run_leakscan
from helpers import write
from imagebuilder import Image, Layer, fake_token

from leakscan import model as m
from leakscan import workers
from leakscan.detectors import DetectorConfig, default_detectors
from leakscan.layers.archives import ArchiveLimits
from leakscan.layerscan import scan_layer
from leakscan.sources import open_source
from leakscan.workers import LayerPool


def _image(tmp_path: Path) -> tuple[str, list[str]]:
    tokens = [fake_token("github") for _ in range(4)]
    layers = [Layer().file(f"app/{i}.env", f"GITHUB_TOKEN={t}\n") for i, t in enumerate(tokens)]
    layers.append(Layer().whiteout("app/1.env"))
    return write("docker-skopeo", Image(layers=layers), tmp_path), tokens


def _summary(result: object) -> tuple:
    assert hasattr(result, "hits")
    return (
        sorted((h.layer_index, h.path, x.secret, h.digest) for h in result.hits for x in h.seen),
        result.record.entries,
        result.record.whiteouts,
        result.errors,
        result.diff_id,
    )


def test_pool_matches_serial(tmp_path: Path) -> None:
    ref, tokens = _image(tmp_path)
    source = open_source(ref)
    (image,) = list(source.images(()))
    serial = [scan_layer(blob, default_detectors(), ArchiveLimits()) for blob in image.layers]
    pool = LayerPool(DetectorConfig(), 2)
    try:
        parallel = dict(pool.scan(image.layers, ArchiveLimits()))
    finally:
        pool.close()
        source.close()
    assert len(parallel) == len(image.layers)
    for blob, result in zip(image.layers, serial, strict=True):
        assert _summary(parallel[blob]) == _summary(result)
    found = {x.secret for r in serial for h in r.hits for x in h.seen}
    assert set(tokens) <= found


def test_dead_worker_is_an_error_not_a_crash() -> None:
    dying = m.LayerBlob(0, None, None, None, 1 << 30, partial(os._exit, 3))
    pool = LayerPool(DetectorConfig(detect_secrets=False), 2)
    try:
        ((blob, result),) = list(pool.scan([dying], ArchiveLimits()))
    finally:
        pool.close()
    assert blob is dying
    assert result.errors and "worker process failed" in result.errors[0].message


def test_worth_it() -> None:
    pool = LayerPool(DetectorConfig(), 2)
    small = [
        m.LayerBlob(i, None, None, None, 1 << 20, partial(open, os.devnull, "rb")) for i in range(3)
    ]
    big = [
        m.LayerBlob(i, None, None, None, 200 << 20, partial(open, os.devnull, "rb"))
        for i in range(2)
    ]
    assert not pool.worth_it(small) and pool.worth_it(big)
    assert not pool.worth_it(big[:1])
    assert not LayerPool(DetectorConfig(), 0).worth_it(big)
    # a forked worker starts at once: smaller images are worth sharing, when forking is safe
    middle = [
        m.LayerBlob(i, None, None, None, 24 << 20, partial(open, os.devnull, "rb"))
        for i in range(2)
    ]
    assert not pool.worth_it(middle)
    forking = LayerPool(DetectorConfig(), 2, default_detectors())
    assert forking.worth_it(middle) == workers.can_fork()
    assert not forking.worth_it(small)


# the CLI, with every layer scanned in a worker process noted in a file: the pid of the
# process that scanned it. Forked workers run the traced function they inherited; it is
# pickled by the name of the real one, so a spawned worker would run that, untraced.
_TRACED_CLI = """
import os, sys
from leakscan import workers

real_work = workers._work

def traced(*args, **kwargs):
    with open(os.environ["LEAKSCAN_TEST_TRACE"], "a") as fh:
        fh.write(f"{os.getpid()}\\n")
    return real_work(*args, **kwargs)

traced.__module__, traced.__qualname__ = real_work.__module__, real_work.__qualname__
workers._work = traced
with open(os.environ["LEAKSCAN_TEST_TRACE"], "a") as fh:
    fh.write(f"cli {os.getpid()}\\n")
sys.argv[0] = "leakscan"
from leakscan.__main__ import main
main()
"""


def _traced_cli(args: list[str], trace: Path) -> tuple[Run, int, list[int]]:
    """Run the CLI; return its result, its pid and the pids that scanned layers in workers."""
    done = subprocess.run(
        [sys.executable, "-c", _TRACED_CLI, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "LEAKSCAN_TEST_TRACE": str(trace)},
        check=False,
    )
    lines = trace.read_text().splitlines()
    trace.unlink()
    cli = [int(line.split()[1]) for line in lines if line.startswith("cli ")]
    assert len(cli) == 1, lines
    scanned_by = [int(line) for line in lines if not line.startswith("cli ")]
    return Run(done.returncode, done.stdout, done.stderr), cli[0], scanned_by


def test_cli_workers_flag_same_report(tmp_path: Path) -> None:
    """``-j 2`` on an image big enough for a worker (over MIN_FORKED_BYTES, two layers): a
    worker process really scans a layer, and the report is the one ``--workers 1`` gives."""
    tokens = [fake_token("github") for _ in range(2)]
    filler = os.urandom(workers.MIN_FORKED_BYTES + (1 << 20))
    layers = [
        Layer().file("opt/data.bin", filler).file("app/0.env", f"GITHUB_TOKEN={tokens[0]}\n"),
        Layer().file("app/1.env", f"GITHUB_TOKEN={tokens[1]}\n"),
    ]
    ref = write("docker-skopeo", Image(layers=layers, compression="none"), tmp_path)
    trace = tmp_path / "trace"
    one, _, none = _traced_cli([ref, "-f", "json", "--no-cache", "--workers", "1"], trace)
    two, cli, scanned_by = _traced_cli([ref, "-f", "json", "--no-cache", "-j", "2"], trace)
    assert one.code == two.code == 1, (one.err, two.err)
    assert none == [], "--workers 1 means no worker process"
    assert scanned_by and cli not in scanned_by, "-j 2 scanned no layer in a worker"
    assert one.report == two.report
    found = {f["secret_sha256"] for f in two.report["images"][0]["findings"]}
    assert {hashlib.sha256(t.encode()).hexdigest() for t in tokens} <= found


def test_detect_secrets_plugin_file(tmp_path: Path) -> None:
    plugin = tmp_path / "myplugin.py"
    plugin.write_text(
        "import re\n"
        "from detect_secrets.plugins.base import RegexBasedDetector\n\n\n"
        "class LeakscanTestDetector(RegexBasedDetector):\n"
        '    secret_type = "Leakscan Test Token"\n'
        "    denylist = [re.compile(r'LEAKSCANTEST-[0-9a-f]{16}')]\n"
    )
    token = "LEAKSCANTEST-" + os.urandom(8).hex()
    ref = write("oci-dir", Image(layers=[Layer().file("app/.env", f"T={token}\n")]), tmp_path)
    run = run_leakscan([ref, "-f", "json", "--detect-secrets-plugin", str(plugin)])
    assert run.code == 1, run.err
    (image,) = run.report["images"]
    assert any(f["rule_id"] == "detect-secrets.leakscan-test-token" for f in image["findings"])
    rules = run_leakscan(["rules", "--detect-secrets-plugin", str(plugin)])
    assert "detect-secrets.leakscan-test-token" in rules.out
    broken = tmp_path / "broken.py"
    broken.write_text("this is not python(")
    run = run_leakscan([ref, "--detect-secrets-plugin", str(broken)])
    assert run.code == 2 and "broken.py" in run.err and "Traceback" not in run.err
    assert len(run.err.strip().splitlines()) == 1


def test_share_balances_by_size() -> None:
    sizes = [50, 10, 40, 30, 20]
    blobs = [
        m.LayerBlob(i, None, None, None, s << 20, partial(open, os.devnull, "rb"))
        for i, s in enumerate(sizes)
    ]
    mine, theirs = LayerPool(DetectorConfig(), 1).share(blobs)
    assert sorted(b.index for b in mine + theirs) == [0, 1, 2, 3, 4]
    load = lambda share: sum(b.size or 0 for b in share)  # noqa: E731
    assert abs(load(mine) - load(theirs)) <= 10 << 20


# run in a fresh interpreter: whether workers can be forked depends on the threads of the
# whole process, and other tests' session fixtures (registries, proxies) run threads
_FORK_CHECK = """
import json, sys, threading
from leakscan.detectors import DetectorConfig, default_detectors
from leakscan.layers.archives import ArchiveLimits
from leakscan.sources import open_source
from leakscan.workers import LayerPool, can_fork

def run(pool, image):
    try:
        found = dict(pool.scan(image.layers, ArchiveLimits()))
    finally:
        pool.close()
    return sorted(
        (b.index, h.path, x.secret, h.digest.hex())
        for b, r in found.items()
        for h in r.hits
        for x in h.seen
    )

source = open_source(sys.argv[1])
(image,) = list(source.images(()))
out = {"can_fork_alone": can_fork()}
out["spawned"] = run(LayerPool(DetectorConfig(), 2), image)
pool = LayerPool(DetectorConfig(), 2, default_detectors())
out["forked"] = run(pool, image)
out["forked_flag"] = pool.forked
stop = threading.Event()
other = threading.Thread(target=stop.wait)
other.start()
out["can_fork_with_thread"] = can_fork()
pool = LayerPool(DetectorConfig(), 2, default_detectors())
out["fallback"] = run(pool, image)
out["fallback_forked"] = pool.forked
stop.set()
other.join()
out["can_fork_after"] = can_fork()
source.close()
print(json.dumps(out))
"""


def test_workers_forked_when_single_threaded_spawned_otherwise(tmp_path: Path) -> None:
    ref, tokens = _image(tmp_path)
    run = subprocess.run(
        [sys.executable, "-c", _FORK_CHECK, ref], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["can_fork_alone"] and out["forked_flag"], "a single-threaded process forks"
    assert not out["can_fork_with_thread"] and not out["fallback_forked"]
    assert out["can_fork_after"], "once the other thread has ended, forking is safe again"
    assert out["forked"] == out["spawned"] == out["fallback"]
    assert set(tokens) <= {hit[2] for hit in out["forked"]}


def test_forked_worker_drops_the_handlers_it_inherited() -> None:
    # the daemon source's handlers remove its spool: a worker must not run them
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: stands for the calling process, then becomes a worker
        try:
            signal.signal(signal.SIGTERM, lambda *_: None)
            signal.signal(signal.SIGHUP, lambda *_: None)
            signal.signal(signal.SIGINT, lambda *_: None)
            workers._start(None)
            # SIGINT ignored: Ctrl-C reaches the whole group, and the calling process ends
            # its workers itself (no KeyboardInterrupt traceback from each of them)
            ok = (
                signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
                and signal.getsignal(signal.SIGHUP) == signal.SIG_DFL
                and signal.getsignal(signal.SIGINT) == signal.SIG_IGN
            )
            os.write(write_end, b"ok" if ok else b"no")
        finally:
            os._exit(0)
    os.close(write_end)
    answer = os.read(read_end, 2)
    os.close(read_end)
    os.waitpid(pid, 0)
    assert answer == b"ok"


def test_abort_ends_workers_in_the_middle_of_a_layer(tmp_path: Path) -> None:
    """Ctrl-C in the calling process: close(abort=True) ends a worker stuck in a layer
    (here: opening a FIFO nobody writes) instead of waiting for it."""
    fifo = tmp_path / "never"
    os.mkfifo(fifo)
    stuck = m.LayerBlob(0, None, None, None, 1, partial(open, fifo, "rb"))
    pool = LayerPool(DetectorConfig(), 1, default_detectors())
    futures = pool.submit([stuck], ArchiveLimits())
    processes = list(pool._pool._processes.values())  # type: ignore[union-attr]
    assert processes and all(p.is_alive() for p in processes)
    closer = threading.Thread(target=pool.close, kwargs={"abort": True}, daemon=True)
    closer.start()
    closer.join(timeout=120)  # a hang guard: close must not wait for the stuck layer
    assert not closer.is_alive(), "close(abort=True) waited for the stuck worker"
    assert all(not p.is_alive() for p in processes)
    (future,) = futures
    assert future.done()


def test_a_lopsided_share_gets_a_helper_thread() -> None:
    from leakscan.scan import lopsided

    def blobs(*mib: int) -> list[m.LayerBlob]:
        return [
            m.LayerBlob(i, None, None, None, s << 20, partial(open, os.devnull, "rb"))
            for i, s in enumerate(mib)
        ]

    layers = blobs(300, 60, 40)
    assert lopsided(layers[:1], layers, 2)  # 75% of the bytes in one of two processes
    even = blobs(214, 90, 88, 6)
    assert not lopsided(even[:1], even, 2)  # 54%: the bench image, no faster with one
    assert not lopsided([], blobs(0, 0), 2)


@pytest.mark.parametrize(
    ("sizes", "handed"),
    [
        ((100, 50, 30, 20), [0, 1]),  # the layers after layer 1 hold as much again: handed behind
        ((100, 50, 20, 10), [0]),  # they hold less: kept for whoever frees up first
    ],
)
def test_the_caller_takes_back_the_layers_no_worker_was_handed(
    sizes: tuple[int, ...], handed: list[int], tmp_path: Path
) -> None:
    """A worker gets the largest layer, and one behind it only while the layers left after
    that one hold at least as much again; the calling process takes the others back, the
    smallest first; every layer is scanned once, by the worker or by the caller."""
    from leakscan.workers import Handout

    fifo = tmp_path / "held"
    os.mkfifo(fifo)
    data = Layer().file("app/a.env", f"GITHUB_TOKEN={fake_token('github')}\n").tar_bytes()
    plain = tmp_path / "layer.tar"
    plain.write_bytes(data)
    held = m.LayerBlob(0, None, None, None, sizes[0], partial(open, fifo, "rb"))
    rest = [
        m.LayerBlob(i, None, None, None, size, partial(open, plain, "rb"))
        for i, size in enumerate(sizes[1:], start=1)
    ]
    pool = LayerPool(DetectorConfig(), 1, default_detectors())
    handout = Handout(pool, [rest[2], held, rest[0], rest[1]], ArchiveLimits())
    try:
        handout.start()
        # the worker waits in the held layer (a FIFO nobody writes yet): what is handed to
        # it now stays handed. A hang guard, not a race: the hand-out is awaited
        deadline = time.monotonic() + 120
        while len(handout.futures) < len(handed) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # (and nothing more is handed meanwhile: checked below)
        assert [blob.index for blob in handout.futures.values()] == handed
        back = []
        while (blob := handout.take_back()) is not None:
            back.append(blob.index)
        assert back == sorted(set(range(len(sizes))) - set(handed), reverse=True)
        with open(fifo, "wb") as fh:  # the held layer's bytes at last
            fh.write(data)
        assert handout.settled()
        results = {blob.index: result for blob, result in handout.results()}
    finally:
        pool.close()
    assert sorted(results) == handed
    assert all(not r.errors and r.hits for r in results.values())


# a scan with a result store while the rule catalog "loads": a thread stands for the one
# python -m leakscan starts (kingfisher.preload), and ends once this process has scanned
# a file of its own share. The pool's start is noted: forked or spawned, and when.
_EARLY_CHECK = """
import json, sys, threading
from leakscan import workers
from leakscan.detectors import kingfisher
from leakscan.scan import ScanOptions, scan

workers.MIN_FORKED_BYTES = 0
go = threading.Event()
loading = threading.Thread(target=go.wait, daemon=True)
loading.start()
kingfisher._PRELOAD = loading
seen = []

def progress(p):
    seen.append(p.layer_index)
    if len(seen) == 2:
        go.set()
        loading.join()

opened = []
real_open = workers.LayerPool._open

def spy(self, tasks):
    real_open(self, tasks)
    opened.append({"forked": self.forked, "progress_before": len(seen)})

workers.LayerPool._open = spy
options = ScanOptions(workers=2, cache=sys.argv[2], min_confidence="low")
report = scan(sys.argv[1], options, progress=progress)
plain = scan(sys.argv[1], ScanOptions(workers=1, min_confidence="low"))

def key(r):
    return sorted(
        [f.rule_id, f.location.path, f.location.status, f.fingerprint]
        for i in r.images for f in i.findings
    )

print(json.dumps({"opened": opened, "found": key(report), "plain": key(plain),
                  "errors": [e.message for e in report.errors]}))
"""


def test_a_scan_with_a_store_walks_while_the_catalog_loads_then_forks(tmp_path: Path) -> None:
    """While the rule catalog still loads on its thread, a scan with a result store walks
    this process's share, and starts the workers once the thread has ended: forked (they
    inherit the engines built then), after this process has scanned a file. The report is
    the one a scan in one process gives."""
    ref, tokens = _image(tmp_path)
    run = subprocess.run(
        [sys.executable, "-c", _EARLY_CHECK, ref, str(tmp_path / "store" / "results.sqlite3")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert not out["errors"]
    (opened,) = out["opened"]
    assert opened["forked"], "the workers were spawned, not forked"
    assert opened["progress_before"] >= 2, "the workers started before this process walked"
    assert out["found"] == out["plain"] and len(out["found"]) >= len(tokens)


def test_layers_a_broken_pool_could_not_take_are_taken_back(tmp_path: Path) -> None:
    """A worker that dies (here: its layer ends the process) breaks the pool: its layer is
    an error, and the layers not handed out yet, the one the hand-out was handing
    included, are taken back by the caller, none lost."""
    from leakscan.workers import Handout

    plain = tmp_path / "layer.tar"
    plain.write_bytes(Layer().file("app/a.txt", "nothing here\n").tar_bytes())
    dying = m.LayerBlob(0, None, None, None, 100, partial(os._exit, 3))
    # the layers after the second hold less than it does: none is handed behind the first
    rest = [
        m.LayerBlob(i, None, None, None, size, partial(open, plain, "rb"))
        for i, size in ((1, 50), (2, 20), (3, 10))
    ]
    pool = LayerPool(DetectorConfig(detect_secrets=False), 1, default_detectors())
    handout = Handout(pool, [*rest, dying], ArchiveLimits())
    try:
        handout.start()
        ((blob, result),) = list(handout.results())  # the dying layer, once it is done
        # the hand-out took the next layer, could not hand it to the broken pool, and ended:
        # the layer is back in line, not lost
        assert not handout.settled()
        back = []
        while (one := handout.take_back()) is not None:
            back.append(one.index)
        assert handout.settled()
    finally:
        pool.close()
    assert blob is dying and "worker process failed" in result.errors[0].message
    assert back == [3, 2, 1]
