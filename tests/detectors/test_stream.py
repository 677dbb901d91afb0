"""Chunked scanning: a secret across any chunk boundary is found once, whole, with the
right absolute offset and line."""

from __future__ import annotations

import io
import os
import threading
import time

import pytest
from imagebuilder import fake_token

from leakscan.detectors import DetectorConfig, Detectors, build_detectors
from leakscan.detectors.stream import CHUNK_SIZE, OVERLAP, ScanRunner, scan_stream, start_scan

SMALL_CHUNK, SMALL_OVERLAP = 4096, 512


@pytest.fixture(scope="module")
def detectors() -> Detectors:
    # one engine, so that every count below is the chunker's doing
    engines = build_detectors(DetectorConfig(detect_secrets=False)).engines
    return Detectors([e for e in engines if e.name == "kingfisher"])


def _scan(detectors: Detectors, data: bytes, chunk: int, overlap: int) -> list:
    return scan_stream(detectors.scan, io.BytesIO(data), chunk_size=chunk, overlap=overlap)


def _planted(token: str, at: int, size: int) -> bytes:
    # filler lines, so that line numbers are checked too
    filler = (b"lorem ipsum dolor sit amet\n" * (size // 27 + 1))[:size]
    line = f"TOKEN={token}\n".encode()
    return filler[:at] + line + filler[at : size - len(line)]


@pytest.mark.parametrize("boundary", [SMALL_CHUNK, SMALL_CHUNK - SMALL_OVERLAP])
@pytest.mark.parametrize("shift", [-1, 0, 1])
@pytest.mark.parametrize("straddle", [0, 10, 20, 39])
def test_secret_across_small_boundaries(
    detectors: Detectors, boundary: int, shift: int, straddle: int
) -> None:
    token = fake_token("github")
    at = boundary - len("TOKEN=") - straddle + shift
    data = _planted(token, at, 3 * SMALL_CHUNK)
    found = [m for m in _scan(detectors, data, SMALL_CHUNK, SMALL_OVERLAP) if m.secret == token]
    assert len(found) == 1, found
    start = data.index(token.encode())
    assert (found[0].start, found[0].end) == (start, start + len(token))
    assert found[0].line == data[:start].count(b"\n") + 1


@pytest.mark.parametrize("boundary", [CHUNK_SIZE, CHUNK_SIZE - OVERLAP])
@pytest.mark.parametrize("shift", [-1, 0, 1])
def test_secret_across_the_real_boundaries(detectors: Detectors, boundary: int, shift: int) -> None:
    token = fake_token("github")
    at = boundary - len("TOKEN=") - len(token) // 2 + shift
    data = _planted(token, at, CHUNK_SIZE + OVERLAP * 2)
    found = [m for m in scan_stream(detectors.scan, io.BytesIO(data)) if m.secret == token]
    assert len(found) == 1
    assert found[0].start == data.index(token.encode())


def test_every_copy_of_a_repeated_secret_is_reported_once(detectors: Detectors) -> None:
    token = fake_token("github")
    data = b"".join(_planted(token, 100, SMALL_CHUNK - 700) for _ in range(6))
    found = [m for m in _scan(detectors, data, SMALL_CHUNK, SMALL_OVERLAP) if m.secret == token]
    starts = [m.start for m in found]
    assert len(starts) == 6 and len(set(starts)) == 6


def test_empty_and_tiny_streams(detectors: Detectors) -> None:
    assert _scan(detectors, b"", SMALL_CHUNK, SMALL_OVERLAP) == []
    token = fake_token("github")
    found = _scan(detectors, token.encode(), SMALL_CHUNK, SMALL_OVERLAP)
    assert [m.secret for m in found] == [token]


def test_exact_chunk_size_stream(detectors: Detectors) -> None:
    token = fake_token("github")
    data = _planted(token, SMALL_CHUNK - 60, SMALL_CHUNK)
    assert len(data) == SMALL_CHUNK
    found = [m for m in _scan(detectors, data, SMALL_CHUNK, SMALL_OVERLAP) if m.secret == token]
    assert len(found) == 1


def test_overlap_must_be_smaller_than_chunk(detectors: Detectors) -> None:
    with pytest.raises(ValueError):
        _scan(detectors, b"x", 10, 10)


def test_threaded_runner_gives_what_the_caller_gives(detectors: Detectors) -> None:
    # many pieces, secrets across boundaries, scanned on a helper thread and in the caller
    # at once (a depth of 2 makes the caller scan whatever finds both slots taken)
    pieces = []
    for n in range(24):
        token = fake_token("github")
        pieces.append(_planted(token, SMALL_CHUNK - 20 + n, 3 * SMALL_CHUNK + 7 * n))
    inline = [_scan(detectors, data, SMALL_CHUNK, SMALL_OVERLAP) for data in pieces]
    with ScanRunner(threads=1, depth=2) as runner:
        pending = [
            start_scan(detectors.scan, io.BytesIO(d), runner, SMALL_CHUNK, SMALL_OVERLAP)
            for d in pieces
        ]
        threaded = [p.result() for p in pending]
    assert threaded == inline
    assert all(len(found) == 1 for found in threaded)


def test_runner_holds_no_more_than_its_depth_and_stops_its_threads() -> None:
    held, most = 0, 0
    lock = threading.Lock()
    release = threading.Event()
    helpers: set[int] = set()

    def slow(data: bytes) -> list:
        nonlocal held, most
        with lock:
            held += 1
            most = max(most, held)
        if threading.current_thread() is not threading.main_thread():
            helpers.add(threading.get_native_id())
            release.wait()  # no timeout: a slow machine must not let it run on early
        with lock:
            held -= 1
        return []

    try:
        with ScanRunner(threads=1, depth=3) as runner:
            futures = [runner.submit(slow, b"x") for _ in range(10)]
            # three wait on the helper thread; the other seven ran in the caller, at once
            assert sum(f.done() for f in futures) == 7
            release.set()
    finally:
        release.set()
    assert all(f.done() for f in futures) and most <= 4
    # the runner's own thread is gone from the kernel's task list (other tests may leave
    # threads of their own in this process: only the helper's is checked). A joined thread
    # leaves it a moment later: wait for that, not for a length of time (a hang guard only)
    assert helpers
    deadline = time.monotonic() + 60
    while any(os.path.exists(f"/proc/self/task/{tid}") for tid in helpers):
        assert time.monotonic() < deadline, helpers
        time.sleep(0.001)


def test_a_scan_that_raises_raises_from_result(detectors: Detectors) -> None:
    def broken(data: bytes) -> list:
        raise RuntimeError("engine failed")

    with ScanRunner(threads=1, depth=2) as runner:
        pending = start_scan(broken, io.BytesIO(b"data"), runner)
        with pytest.raises(RuntimeError, match="engine failed"):
            pending.result()
