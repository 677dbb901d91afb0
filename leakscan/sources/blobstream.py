"""A registry blob as a stream, for the scan to read in this process or a worker: the bytes
as the registry sends them (never decoded), resumed where the connection broke off, with a
``Range`` request when the registry honours one and by reading past what was had when it
does not. The scan verifies each blob against its digest."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import BinaryIO

import requests
import urllib3

from leakscan.errors import SourceError
from leakscan.sources.registry_client import RegistryClient, Transient, backoff, describe

READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class BlobOpener:
    """Opens one layer blob of a registry as a stream; picklable, so that a worker process
    can open the layer itself. The client it holds carries the auth material."""

    client: RegistryClient
    digest: str
    size: int | None

    def __call__(self) -> BinaryIO:
        return io.BufferedReader(_BlobStream(self.client, self.digest, self.size), READ_CHUNK)


class _BlobStream(io.RawIOBase):
    """A blob's bytes as the registry sends them (never decoded), resumed where they broke
    off: with ``Range`` when the registry honours it, else by reading past what we had."""

    def __init__(self, client: RegistryClient, digest: str, size: int | None) -> None:
        super().__init__()
        self._client = client
        self._digest = digest
        self._size = size
        self._pos = 0
        # failures since the last byte that moved the stream forward, and the last reason
        self._failures = 0
        self._reason = ""
        # the registry answered a Range request with the whole blob
        self._no_range = False
        self._resp: requests.Response | None = None

    def readable(self) -> bool:
        return True

    def _broke_off(self) -> str:
        of = f" of {self._size}" if self._size is not None else ""
        why = self._reason
        if self._no_range:
            why += "; the registry does not resume downloads (no Range support)"
        return (
            f"{self._client.where}: blob {self._digest} broke off at byte {self._pos}{of} ({why})"
        )

    def _open(self) -> requests.Response:
        resp = self._client.open_blob(self._digest, self._pos)
        self._resp = resp
        if self._pos == 0:
            return resp
        if resp.status_code == 206:
            start = resp.headers.get("Content-Range", "").removeprefix("bytes ").split("-")[0]
            if start.strip() != str(self._pos):
                raise SourceError(f"{self._broke_off()}: the registry resumed at the wrong place")
            return resp
        # the registry ignored Range and sends the whole blob: skip what we already have
        self._no_range = True
        left = self._pos
        while left:
            data = resp.raw.read(min(left, READ_CHUNK), decode_content=False)
            if not data:
                raise Transient("connection closed early")
            left -= len(data)
        return resp

    def _drop(self, reason: str) -> None:
        """The connection broke: close it, and wait before the next attempt."""
        if self._resp is not None:
            self._resp.close()
            self._resp = None
        self._failures += 1
        self._reason = reason
        retries = self._client.options.retries
        if self._failures > retries:
            raise SourceError(f"{self._broke_off()}; gave up after {retries} retries")
        time.sleep(backoff(self._failures - 1))

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        want = len(b)
        if self._size is not None:
            want = min(want, self._size - self._pos)
        if want <= 0:
            return 0
        while True:
            data = b""
            failure: str | None = None
            try:
                resp = self._resp if self._resp is not None else self._open()
                data = resp.raw.read(want, decode_content=False)
            except SourceError as exc:
                if self._failures == 0:
                    raise
                raise SourceError(f"{self._broke_off()} and could not resume: {exc}") from None
            except Transient as exc:
                failure = exc.reason
            except (urllib3.exceptions.HTTPError, OSError, requests.RequestException) as exc:
                failure = describe(exc).reason
            if data:
                n = len(data)
                b[:n] = data
                self._pos += n
                self._failures = 0
                return n
            if failure is None:
                if self._size is None or self._pos >= self._size:
                    return 0  # the end of the body is the end of the blob
                failure = "connection closed early"
            self._drop(failure)

    def close(self) -> None:
        if self._resp is not None:
            self._resp.close()
            self._resp = None
        super().close()
