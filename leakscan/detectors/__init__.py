"""The seam between leakscan and its secret-detection engines.

Every engine is wrapped by one adapter module that imports it; nothing else in leakscan
imports an engine. An adapter turns the engine's results into :class:`Match` objects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Protocol

from leakscan.detectors.placeholders import is_placeholder
from leakscan.terms import CONFIDENCE_RANK as CONFIDENCE_RANK  # the seam's vocabulary
from leakscan.terms import Confidence as Confidence


@dataclass(frozen=True)
class Match:
    """One secret an engine found in a piece of text or bytes.

    ``start``/``end`` are offsets into what was scanned; ``line`` is 1-based. ``raw`` is the
    matched text as it stands in the input when that differs from ``secret`` (a base64
    encoded credential, say), so that redaction can mask that form too.
    """

    rule_id: str
    description: str
    secret: str
    start: int
    end: int
    line: int
    confidence: Confidence
    detector: str
    raw: str | None = None


@dataclass(frozen=True)
class Subject:
    """What a piece of scanned data is: a file of a layer (its path in the image, an archive
    member written ``OUTER!INNER``), or, with no path, a history or config string."""

    path: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class RuleInfo:
    """A rule an engine can report, for ``leakscan rules``."""

    rule_id: str
    description: str
    detector: str


Scan = Callable[[bytes], list[Match]]


class Detector(Protocol):
    """An engine behind the seam.

    ``whole_file`` says how the engine reads a file. None: any piece of it will do, so a
    long file is handed over in overlapping chunks. A number: the engine must see each file
    whole (a JSON document, say, only parses whole), and it reads files of at most that many
    bytes; the seam never gives it a larger file, nor a part of one. An engine that does not
    set the attribute reads pieces.
    """

    name: str
    whole_file: int | None

    def wants(self, subject: Subject) -> bool:
        """Whether this engine scans ``subject`` at all (an engine may keep to some files)."""
        ...

    def scan(self, data: bytes, subject: Subject) -> list[Match]:
        """Find secrets in ``data``, a part of ``subject``; offsets and lines are relative
        to ``data``."""
        ...

    def rules(self) -> list[RuleInfo]:
        """Every rule this engine can report."""
        ...


class Scanners(Protocol):
    """What a layer scan asks of the engines: how to scan one file (None: no engine
    wants it)."""

    def scanner(self, subject: Subject) -> FileScanner | None: ...


@dataclass(frozen=True)
class FileScanner:
    """How to scan the bytes of one subject.

    ``pieces`` scans any part of it (a long file is read in overlapping chunks); ``whole``
    scans all of it at once and only files of at most ``whole_limit`` bytes: it runs each
    whole-file engine whose own limit the data is within. Either may be None.
    """

    pieces: Scan | None
    whole: Scan | None = None
    whole_limit: int = 0


def whole_file(engine: Detector) -> int | None:
    """The largest file ``engine`` must read whole, or None when it reads pieces."""
    # getattr: engines written before the attribute existed (or that need nothing) omit it
    limit: int | None = getattr(engine, "whole_file", None)
    return limit


def _scan_with(engines: Sequence[Detector], subject: Subject) -> Scan:
    def scan(data: bytes) -> list[Match]:
        out: list[Match] = []
        for engine in engines:
            out.extend(m for m in engine.scan(data, subject) if not is_placeholder(m.secret))
        return out

    return scan


class Detectors:
    """All engines in use, scanned as one."""

    def __init__(self, engines: Sequence[Detector]) -> None:
        self.engines = tuple(engines)

    def scanner(self, subject: Subject) -> FileScanner | None:
        """How to scan the data of ``subject`` with every engine that wants it (a whole-file
        engine only when the size, if known, is within its limit), or None when no engine
        does."""
        pieces: list[Detector] = []
        whole: list[tuple[int, Detector]] = []
        for engine in self.engines:
            limit = whole_file(engine)
            if limit is not None and subject.size is not None and subject.size > limit:
                continue
            if not engine.wants(subject):
                continue
            if limit is None:
                pieces.append(engine)
            else:
                whole.append((limit, engine))
        if not pieces and not whole:
            return None
        whole_scan = None
        if whole:

            def whole_scan(data: bytes) -> list[Match]:
                # the size was not known up front (an archive member): only now is it known
                # which engines take this file
                fits = [engine for limit, engine in whole if len(data) <= limit]
                return _scan_with(fits, subject)(data)

        return FileScanner(
            _scan_with(pieces, subject) if pieces else None,
            whole_scan,
            max((limit for limit, _ in whole), default=0),
        )

    def scan(self, data: bytes, subject: Subject | None = None) -> list[Match]:
        """Matches of every engine that wants ``subject`` over ``data``, scanned in one
        piece (history and config strings, which the caller holds whole anyway; no size
        limit applies)."""
        subject = subject or Subject()
        return _scan_with([e for e in self.engines if e.wants(subject)], subject)(data)

    def rules(self) -> list[RuleInfo]:
        """Rules of every engine."""
        return [rule for engine in self.engines for rule in engine.rules()]


@dataclass(frozen=True)
class DetectorConfig:
    """Which engines to build, and how; plain data, so that it pickles to worker processes,
    which build their own engines from it."""

    detect_secrets: bool = True
    detect_secrets_plugins: tuple[str, ...] = ()
    detect_secrets_max_file_size: int = 1 << 20


def build_detectors(config: DetectorConfig = DetectorConfig()) -> Detectors:
    """The engines ``config`` asks for: kingfisher and leakscan's own (credential-file
    readers and token rules) always, detect-secrets when enabled.

    Raises ValueError when a detect-secrets plugin file cannot be loaded.
    """
    # adapters are imported here: each imports its engine, which costs time to load
    from leakscan.detectors.credfiles import CredentialFilesDetector
    from leakscan.detectors.kingfisher import KingfisherDetector
    from leakscan.detectors.tokens import TokenRulesDetector

    others: list[Detector] = [CredentialFilesDetector()]
    if config.detect_secrets:
        # before kingfisher: importing detect-secrets takes ~0.15 s, done while kingfisher's
        # catalog may still be loading on the thread kingfisher.preload started
        from leakscan.detectors.detect_secrets import DetectSecretsDetector

        others.append(
            DetectSecretsDetector(
                plugin_files=config.detect_secrets_plugins,
                max_file_size=config.detect_secrets_max_file_size,
            )
        )
    # leakscan's token rules last: where another engine reports the same secret at the same
    # confidence, that engine's rule names the finding, as before these rules existed
    return Detectors([KingfisherDetector(), *others, TokenRulesDetector()])


@cache
def default_detectors() -> Detectors:
    """The engines leakscan runs unless told otherwise; built once per process (compiling
    kingfisher's rules takes a while)."""
    return build_detectors(DetectorConfig())
