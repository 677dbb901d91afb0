"""Plumbing shared by the harnesses: run one under atheris (libFuzzer), or replay inputs
through it without atheris (for a plain traceback, a debugger, or coverage.py).

    python fuzz/fuzz_layer.py [libFuzzer flags] [CORPUS_DIR...]    # fuzz
    python fuzz/fuzz_layer.py --replay FILE_OR_DIR...               # replay, no atheris

An exception the harness does not expect is a crash. ``FUZZ_IGNORE`` lists crashes already
reported (``TypeError@oci.py:52``, or a bare exception type), so that a long run goes on
past them; a replay ignores nothing.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

FUZZ_DIR = Path(__file__).resolve().parent
REPO = FUZZ_DIR.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

REPLAY = "--replay" in sys.argv[1:]
# what the fuzzer instruments for coverage feedback: leakscan, and the pure-Python parsers
# of the standard library that read image bytes on leakscan's behalf
INSTRUMENTED = ["leakscan", "tarfile", "json"]


# fuzz_manifest's input: up to six parts (see fuzz/fuzz_manifest.py)
SEPARATOR = b"\n====\n"
PARTS = ("index", "manifest", "config", "docker", "layer", "tag")


def split_parts(data: bytes) -> dict[str, bytes]:
    """The parts of a fuzz_manifest input, by name (missing ones are absent)."""
    return dict(zip(PARTS, data.split(SEPARATOR, len(PARTS) - 1), strict=False))


def join_parts(parts: dict[str, bytes]) -> bytes:
    """A fuzz_manifest input from its parts."""
    present = [name for name in PARTS if name in parts]
    last = PARTS.index(present[-1]) if present else -1
    return SEPARATOR.join(parts.get(name, b"") for name in PARTS[: last + 1])


def fuzz_imports() -> contextlib.AbstractContextManager[Any]:
    """Wrap the imports of the code under test: instrumented when fuzzing."""
    if REPLAY:
        return contextlib.nullcontext()
    import atheris

    return atheris.instrument_imports(include=INSTRUMENTED)


def work_dir(name: str) -> Path:
    """A private scratch directory for one process (on tmpfs when there is one), removed
    at exit."""
    parent = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix=f"leakscan-fuzz-{name}-", dir=parent))
    atexit.register(shutil.rmtree, path, True)
    return path


def signature(exc: BaseException) -> str:
    """``Type@file.py:line`` of the innermost leakscan frame (else the innermost frame)."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if f"{os.sep}leakscan{os.sep}" in f.filename] or frames[-1:]
    if not ours:
        return type(exc).__name__
    return f"{type(exc).__name__}@{Path(ours[-1].filename).name}:{ours[-1].lineno}"


def _ignored(exc: BaseException) -> bool:
    wanted = [s.strip() for s in os.environ.get("FUZZ_IGNORE", "").split(",") if s.strip()]
    sig = signature(exc)
    return any(sig == w or type(exc).__name__ == w for w in wanted)


def _inputs(paths: list[str]) -> Iterator[Path]:
    for name in paths:
        path = Path(name)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file())
        else:
            yield path


def replay(test_one_input: Callable[[bytes], None], paths: list[str]) -> int:
    """Run every input once; print each crash with its traceback and the slowest inputs."""
    crashes: dict[str, list[Path]] = {}
    timings: list[tuple[float, Path]] = []
    count = 0
    for path in _inputs(paths):
        count += 1
        started = time.monotonic()
        try:
            test_one_input(path.read_bytes())
        except Exception as exc:  # noqa: BLE001 - a crash: report it, go on with the rest
            sig = signature(exc)
            if sig not in crashes:
                print(f"=== crash {sig} on {path}", file=sys.stderr)
                traceback.print_exc()
            crashes.setdefault(sig, []).append(path)
        timings.append((time.monotonic() - started, path))
    timings.sort(reverse=True)
    print(f"replayed {count} inputs, {len(crashes)} distinct crashes", file=sys.stderr)
    for seconds, path in timings[:3]:
        print(f"  slowest: {seconds:.2f} s  {path}", file=sys.stderr)
    for sig, where in sorted(crashes.items()):
        print(f"  {sig}: {len(where)} inputs, e.g. {where[0]}", file=sys.stderr)
    return 1 if crashes else 0


def main(test_one_input: Callable[[bytes], None]) -> None:
    """Fuzz ``test_one_input`` with atheris, or replay files with ``--replay``."""
    if REPLAY:
        paths = [a for a in sys.argv[1:] if a != "--replay"]
        sys.exit(replay(test_one_input, paths))
    import atheris

    def one(data: bytes) -> None:
        try:
            test_one_input(data)
        except Exception as exc:
            if _ignored(exc):
                return
            raise

    atheris.Setup(sys.argv, one)
    atheris.Fuzz()
