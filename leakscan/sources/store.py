"""Blob stores: named files inside an image directory or an image tar, opened safely.

A name that climbs out of the store (``../``, an absolute path, a link that points
outside) is refused with :class:`UnsafePathError`: leakscan reads nothing outside the input
it was given.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import stat
import tarfile
from typing import Any, BinaryIO, Protocol

from leakscan.errors import SourceError, UnsafePathError
from leakscan.streams import PieceStream

# manifests, indexes and configs are small; a bigger one is hostile or broken
MAX_JSON_BYTES = 32 << 20
MAX_LINK_HOPS = 40


class BlobStore(Protocol):
    """Read access to the files of one image layout."""

    location: str

    def exists(self, name: str) -> bool:
        """Whether ``name`` names a readable file in the store; UnsafePathError when the
        name or a link on the way leaves the store."""
        ...

    def open(self, name: str) -> BinaryIO:
        """Open ``name`` for reading; SourceError if it is missing or unsafe."""
        ...

    def size(self, name: str) -> int | None:
        """Size of ``name`` in bytes, when the store knows it cheaply."""
        ...

    def close(self) -> None:
        """Release what the store holds open."""
        ...


def _relative(name: str, location: str) -> str:
    """Check a name from a manifest and make it a clean path relative to the store."""
    if not name or "\x00" in name:
        raise UnsafePathError(f"{location}: empty or invalid blob name {name!r}")
    if name.startswith("/"):
        raise UnsafePathError(f"{location}: blob name {name!r} is an absolute path")
    clean = posixpath.normpath(name)
    if clean == ".." or clean.startswith("../"):
        raise UnsafePathError(f"{location}: blob name {name!r} points outside the image")
    return clean


def read_json(store: BlobStore, name: str, what: str) -> Any:
    """Read and parse a small JSON file from ``store``; ``what`` names it in errors."""
    with store.open(name) as fh:
        data = fh.read(MAX_JSON_BYTES + 1)
    if len(data) > MAX_JSON_BYTES:
        raise SourceError(f"{store.location}: {what} {name} is larger than 32 MiB")
    return parse_json(data, f"{store.location}: {what} {name}")


def parse_json(data: bytes, where: str) -> Any:
    """Parse JSON bytes, naming ``where`` in the error."""
    try:
        return _printable(json.loads(data))
    except (ValueError, UnicodeDecodeError) as exc:
        raise SourceError(f"{where} is not valid JSON: {exc}") from None
    except RecursionError:
        raise SourceError(f"{where} is nested too deeply") from None


def _printable(value: Any) -> Any:
    """JSON may spell lone surrogates (``"\\ud800"``), which no output can encode: they
    become U+FFFD here, once, instead of failing wherever the string is printed."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if isinstance(value, list):
        return [_printable(v) for v in value]
    if isinstance(value, dict):
        return {_printable(k): _printable(v) for k, v in value.items()}
    return value


class DirStore:
    """Files under a directory (an OCI layout or an unpacked docker save)."""

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)
        self.location = root

    def _resolve(self, name: str) -> str:
        path = os.path.join(self.root, _relative(name, self.location))
        real = os.path.realpath(path)
        if real != self.root and not real.startswith(self.root + os.sep):
            raise UnsafePathError(f"{self.location}: {name} links outside the image directory")
        return real

    def exists(self, name: str) -> bool:
        # an unsafe name is not "missing": UnsafePathError goes up to name the escape
        return os.path.isfile(self._resolve(name))

    def open(self, name: str) -> BinaryIO:
        real = self._resolve(name)
        try:
            st = os.stat(real)
        except FileNotFoundError:
            raise SourceError(f"{self.location}: {name} is missing") from None
        except OSError as exc:
            raise SourceError(f"{self.location}: cannot read {name}: {exc.strerror}") from None
        if not stat.S_ISREG(st.st_mode):
            raise SourceError(f"{self.location}: {name} is not a regular file")
        try:
            return open(real, "rb")  # noqa: SIM115 - the caller closes it
        except OSError as exc:
            raise SourceError(f"{self.location}: cannot read {name}: {exc.strerror}") from None

    def size(self, name: str) -> int | None:
        try:
            return os.stat(self._resolve(name)).st_size
        except (OSError, UnsafePathError):
            return None

    def close(self) -> None:
        return None


class TarStore:
    """Members of an image tar (``docker save`` output, an OCI archive), read in place.

    Members are read straight out of the tar file; nothing is extracted. Symlinks inside
    the archive are followed (skopeo's docker-archive links ``<id>/layer.tar`` to a
    top-level blob) as long as they stay inside it.
    """

    def __init__(self, path: str) -> None:
        self.location = path
        try:
            self._tar = tarfile.open(path, mode="r:*")  # noqa: SIM115 - closed in close()
            members = self._tar.getmembers()
        except (tarfile.TarError, ValueError) as exc:
            raise SourceError(f"{path}: not a readable tar archive: {exc}") from None
        except EOFError:
            raise SourceError(f"{path}: tar archive is truncated") from None
        except OSError as exc:
            raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from None
        self._members: dict[str, tarfile.TarInfo] = {}
        for info in members:
            clean = posixpath.normpath(info.name.lstrip("/"))
            if clean == ".." or clean.startswith("../"):
                continue  # a member outside the archive root is never a blob we read
            self._members[clean] = info

    def __getstate__(self) -> dict[str, object]:
        # a worker process re-opens the archive itself; the member index (with each
        # member's offset) travels along, so the archive is not listed again
        return {"location": self.location, "members": self._members}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.location = str(state["location"])
        self._members = state["members"]  # type: ignore[assignment]
        try:
            self._tar = tarfile.open(self.location, mode="r:*")  # noqa: SIM115
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise SourceError(f"{self.location}: cannot reopen: {exc}") from None

    def names(self) -> list[str]:
        """Every member name, normalised."""
        return list(self._members)

    def _member(self, name: str) -> tarfile.TarInfo:
        clean = _relative(name, self.location)
        for _ in range(MAX_LINK_HOPS):
            info = self._members.get(clean)
            if info is None:
                raise SourceError(f"{self.location}: {name} is missing from the archive")
            if info.isfile():
                return info
            if info.issym() or info.islnk():
                if info.issym():
                    target = posixpath.join(posixpath.dirname(clean), info.linkname)
                else:
                    target = info.linkname
                if info.linkname.startswith("/"):
                    raise UnsafePathError(
                        f"{self.location}: {name} links to an absolute path outside the archive"
                    )
                clean = posixpath.normpath(target)
                if clean == ".." or clean.startswith("../"):
                    raise UnsafePathError(f"{self.location}: {name} links outside the archive")
                continue
            raise SourceError(f"{self.location}: {name} is not a regular file")
        raise UnsafePathError(f"{self.location}: {name} is a link loop")

    def exists(self, name: str) -> bool:
        try:
            self._member(name)
        except UnsafePathError:
            raise  # an escape is not "missing": say what it is
        except SourceError:
            return False
        return True

    def open(self, name: str) -> BinaryIO:
        info = self._member(name)
        # an uncompressed archive (what docker save writes) is read in place through a
        # descriptor of the member's own; tarfile's reader copies every byte twice more
        # (0.14 s of CPU for a 400 MiB image). A compressed archive or a sparse member goes
        # through tarfile
        if isinstance(self._tar.fileobj, io.BufferedReader) and info.sparse is None:
            try:
                return _Member(self.location, info.offset_data, info.size)  # type: ignore[return-value]
            except OSError as exc:
                raise SourceError(f"{self.location}: cannot read: {exc.strerror or exc}") from None
        fh = self._tar.extractfile(info)
        if fh is None:  # pragma: no cover - regular members always have a reader
            raise SourceError(f"{self.location}: {name} cannot be read")
        return fh  # type: ignore[return-value]

    def size(self, name: str) -> int | None:
        try:
            return self._member(name).size
        except SourceError:
            return None

    def close(self) -> None:
        self._tar.close()


class _Member(PieceStream):
    """``size`` bytes at ``offset`` of the file at ``path``: a member of an uncompressed
    tar, each read one copy out of the page cache. Ends early where the file does (a
    truncated archive): the layer's reader says the tar ends too soon."""

    def __init__(self, path: str, offset: int, size: int) -> None:
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        self._next = offset
        self._end = offset + size

    def read(self, size: int | None = -1, /) -> bytes:
        left = self._end - self._next
        want = left if size is None or size < 0 else min(size, left)
        if want <= 0:
            return b""
        data = os.pread(self._fd, want, self._next)
        if not data:
            self._end = self._next  # the file ends here: so does the member
        self._next += len(data)
        return data

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()
