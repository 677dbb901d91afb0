"""The kingfisher adapter: one catalog per process, safe to share between threads, base64
decoded in text."""

from __future__ import annotations

import base64
import random
import threading

from imagebuilder import fake_token

from leakscan.detectors import Subject
from leakscan.detectors.kingfisher import KingfisherDetector, catalog, preload

_SUBJECT = Subject("/app/config.txt", None)


def _secrets(found: list) -> list[tuple[str, int, int]]:
    return sorted((m.secret, m.start, m.end) for m in found)


def test_catalog_is_loaded_once_even_when_preloaded() -> None:
    thread = preload()
    first = catalog()
    thread.join()
    assert catalog() is first
    assert KingfisherDetector()._rules is first


def test_one_detector_scanned_from_two_threads_finds_what_one_thread_finds() -> None:
    rng = random.Random(7)
    pieces = []
    for n in range(40):
        filler = bytes(rng.randrange(256) for _ in range(2000 + 37 * n))
        token = fake_token(rng.choice(["github", "gitlab", "npm", "slack"]), rng)
        pieces.append(filler[: 300 + n] + f"\ntoken = {token}\n".encode() + filler)
    detector = KingfisherDetector()
    alone = [_secrets(detector.scan(p, _SUBJECT)) for p in pieces]
    assert all(alone), "every piece holds a token"
    together: list[list[tuple[str, int, int]] | None] = [None] * len(pieces)

    def work(start: int) -> None:
        for _ in range(5):
            for i in range(start, len(pieces), 2):
                together[i] = _secrets(detector.scan(pieces[i], _SUBJECT))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together == alone


def test_token_in_binary_bytes_and_base64_in_text() -> None:
    detector = KingfisherDetector()
    token = fake_token("github")
    binary = b"\x7fELF\x02\x01\x01\0" + b"\0" * 200 + token.encode() + b"\0" * 64
    assert token in {m.secret for m in detector.scan(binary, _SUBJECT)}
    encoded = base64.b64encode(f"password: {token}\n".encode()).decode()
    text = f"# deploy settings\ncredentials: {encoded}\n".encode()
    found = detector.scan(text, _SUBJECT)
    assert token in {m.secret for m in found}
