"""The seam between leakscan and its secret-detection engines.

Every engine is wrapped by one adapter module that imports it; nothing else in leakscan
imports an engine. An adapter turns the engine's results into :class:`Match` objects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Literal, Protocol

from leakscan.detectors.placeholders import is_placeholder

Confidence = Literal["high", "medium", "low"]
CONFIDENCE_RANK: dict[str, int] = {"low": 0, "medium": 1, "high": 2}


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


class Detector(Protocol):
    """An engine behind the seam."""

    name: str

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


class Detectors:
    """All engines in use, scanned as one."""

    def __init__(self, engines: Sequence[Detector]) -> None:
        self.engines = tuple(engines)

    def scanner(self, subject: Subject) -> Callable[[bytes], list[Match]] | None:
        """A function that scans data of ``subject`` with every engine that wants it, or
        None when no engine does."""
        engines = [engine for engine in self.engines if engine.wants(subject)]
        if not engines:
            return None

        def scan(data: bytes) -> list[Match]:
            out: list[Match] = []
            for engine in engines:
                out.extend(m for m in engine.scan(data, subject) if not is_placeholder(m.secret))
            return out

        return scan

    def scan(self, data: bytes, subject: Subject | None = None) -> list[Match]:
        """Matches of every engine that wants ``subject`` over ``data``."""
        scan = self.scanner(subject or Subject())
        return scan(data) if scan is not None else []

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
    """The engines ``config`` asks for: kingfisher and leakscan's credential-file readers
    always, detect-secrets when enabled.

    Raises ValueError when a detect-secrets plugin file cannot be loaded.
    """
    # adapters are imported here: each imports its engine, which costs time to load
    from leakscan.detectors.credfiles import CredentialFilesDetector
    from leakscan.detectors.kingfisher import KingfisherDetector

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
    return Detectors([KingfisherDetector(), *others])


@cache
def default_detectors() -> Detectors:
    """The engines leakscan runs unless told otherwise; built once per process (compiling
    kingfisher's rules takes a while)."""
    return build_detectors(DetectorConfig())
