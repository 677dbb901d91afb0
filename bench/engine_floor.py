"""The fastest any scan of an image can be while kingfisher reads every byte leakscan must
give it: a lower bound, measured, for the speed target of bench/compare.py.

It walks the image with leakscan's own walker and archive reader (so the bytes are exactly
those a scan hands the engines: every file of every layer and every member of the archives
in them, in the same chunks) and times only kingfisher's scan of them, one chunk at a time
on one core. Nothing else is timed: not reading, decompressing, hashing, walking or any of
leakscan's own work. It also times loading kingfisher's rule catalog (from its disk cache)
and starting a bare Python interpreter.

The bound printed is: interpreter start + catalog load + engine time / cores. No design that
runs this engine over these bytes on this machine can finish sooner, whatever else it does
(the catalog must be loaded before the first byte is scanned; the engine's work can at best
be spread evenly over every core).

Usage: python bench/engine_floor.py [IMAGE] [--trivy-seconds S] [--no-base64]
IMAGE defaults to bench/out/compare/docker-archive.tar (run bench/compare.py once first).
With --trivy-seconds (Trivy's median wall time from bench/compare.py) it also prints the
best wall ratio the bound allows against the target of 0.75.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from leakscan.detectors import Subject
from leakscan.detectors.kingfisher import KingfisherDetector, catalog
from leakscan.detectors.stream import CHUNK_SIZE, OVERLAP
from leakscan.layers.archives import ArchiveLimits, Skipped, expand
from leakscan.layers.compression import HashingReader, decompressed
from leakscan.layers.walker import LayerRecord, walk
from leakscan.sources import open_source

HERE = Path(__file__).resolve().parent
TARGET = 0.75


def _chunks(stream: object) -> list[bytes]:
    """The chunks start_scan would hand the engines for this stream."""

    def read(want: int) -> bytes:
        parts = []
        while want > 0 and (part := stream.read(want)):  # type: ignore[attr-defined]
            parts.append(part)
            want -= len(part)
        return b"".join(parts)

    out = []
    data = read(CHUNK_SIZE)
    while True:
        more = read(CHUNK_SIZE - OVERLAP) if len(data) == CHUNK_SIZE else b""
        out.append(data)
        if not more:
            return out
        data = data[CHUNK_SIZE - OVERLAP :] + more


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "image", nargs="?", default=str(HERE / "out" / "compare" / "docker-archive.tar")
    )
    parser.add_argument("--trivy-seconds", type=float, default=None)
    parser.add_argument(
        "--no-base64",
        action="store_true",
        help="time the engine without decoding base64 in text too (what that would save)",
    )
    args = parser.parse_args(argv)
    if not os.path.exists(args.image):
        print(f"no image at {args.image}: run bench/compare.py first", file=sys.stderr)
        return 2

    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    python_start = time.perf_counter() - started

    catalog()  # kingfisher compiles and caches the catalog the first time: not timed
    loads = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", "from kingfisher_sdk import Rules; Rules(confidence='low')"],
            check=True,
        )
        loads.append(time.perf_counter() - started)
    catalog_load = min(loads) - python_start

    engine = KingfisherDetector()
    if args.no_base64:
        engine._text = engine._binary  # noqa: SLF001 - a what-if, for this figure only
    engine_seconds = 0.0
    scanned = files = members = 0
    source = open_source(args.image)
    try:
        for image in source.images(()):
            for blob in image.layers:
                with blob.opener() as fh:
                    _, stream = decompressed(HashingReader(fh))  # type: ignore[arg-type]
                    for entry in walk(HashingReader(stream), LayerRecord()):  # type: ignore[arg-type]
                        files += 1
                        for item in expand(entry.path, entry.stream, ArchiveLimits()):
                            if isinstance(item, Skipped):
                                continue
                            members += item.path != entry.path
                            subject = Subject(item.path, item.size)
                            for chunk in _chunks(item.stream):
                                scanned += len(chunk)
                                started = time.perf_counter()
                                engine.scan(chunk, subject)
                                engine_seconds += time.perf_counter() - started
    finally:
        source.close()

    cores = os.cpu_count() or 1
    bound = python_start + catalog_load + engine_seconds / cores
    print(f"image: {args.image}")
    print(f"bytes given to kingfisher: {scanned / (1 << 20):.1f} MiB in {files} files")
    print(f"  ({members} of the pieces are archive members)")
    print(f"kingfisher scan time, one core: {engine_seconds:.2f} s")
    print(f"  ({scanned / (1 << 20) / engine_seconds:.0f} MiB/s)")
    print(f"python start: {python_start:.3f} s; kingfisher catalog load: {catalog_load:.3f} s")
    print(f"lower bound on {cores} cores: {bound:.2f} s")
    if args.trivy_seconds:
        ratio = bound / args.trivy_seconds
        verdict = "reachable" if ratio <= TARGET else "NOT reachable"
        print(
            f"best ratio against Trivy's {args.trivy_seconds:.2f} s: {ratio:.2f} "
            f"(target <= {TARGET}: {verdict})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
