"""Tars inside layer files, read by the same header parser as the layer walk
(:mod:`leakscan.layers.tarparse`): pax global headers, long names and damage mean the same
thing in both."""

from __future__ import annotations

from leakscan.layers import tarparse
from leakscan.layers.archives.limits import Budget, Entry, Skipped, Walk, human, join
from leakscan.layers.archives.sources import Limited, Source


class _Blocks:
    """A source as the header parser reads it."""

    def __init__(self, src: Source) -> None:
        self._src = src

    def exact(self, n: int, /) -> bytes:
        return self._src.read_exact(n)

    def skip(self, n: int, /) -> bool:
        return self._src.skip(n) == n


def walk_tar(budget: Budget, path: str, src: Source) -> Walk:
    """Walk the tar at ``path``, handing out its regular files. Links, directories and
    devices are not members, and links are never followed."""
    limits = budget.limits
    headers = tarparse.Headers(_Blocks(src))
    count = 0
    while not budget.halted:
        offset = src.pos
        try:
            header = headers.next()
        except tarparse.TarError as exc:
            # an early end is this tar's fault only if nothing under it was cut short
            if isinstance(exc, tarparse.Corrupt) or not src.cut():
                yield Skipped(path, f"unreadable tar: {exc} at offset {offset}")
            return
        if header is None:
            return  # (no end-of-archive marker at all is accepted, as tar(1) does)
        kind, size, name, _ = header
        count += 1
        if count > limits.max_members:
            yield Skipped(path, f"more than {limits.max_members} members")
            return
        span = size + (-size % tarparse.BLOCK)
        member_path = join(path, name)
        if tarparse.entry_kind(kind, name) != "file" or member_path.endswith("!/"):
            ok = src.skip(span) == span
        elif limits.max_member_size is not None and size > limits.max_member_size:
            yield Skipped(member_path, f"larger than {human(limits.max_member_size)}")
            ok = src.skip(span) == span
        else:
            data = Limited(src, size)
            yield Entry(member_path, size, data)
            if budget.halted:
                return
            ok = data.skip_rest() and src.skip(span - size) == span - size
        if not ok:
            if not src.cut():
                yield Skipped(path, f"unreadable tar: truncated in {member_path}")
            return
