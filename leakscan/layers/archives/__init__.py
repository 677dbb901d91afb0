"""Archives inside layer files, opened recursively and streamed, with budgets against bombs.

A layer file may be a zip (jar, war, ear, whl, egg, nupkg, ...), a tar, or a single-stream
gzip / bzip2 / xz / zstd file, and those may nest. :func:`expand` turns one layer file into
the leaf members to scan, named ``OUTER!/INNER`` (``/srv/b.tar.gz!/lib/x.jar!/creds``).

Everything is read once, front to back, from a stream that cannot seek (the file is itself
a member of a streaming layer tar): zip is walked through its local file headers, never its
central directory. Nothing is written to disk and no archive or member is held whole in
memory; every decoder is asked for a bounded amount of output at a time, so a decompression
bomb runs into a budget before it runs into the heap. Damage and limits never raise: they
become :class:`Skipped` items, and what was yielded before them stands.

Modules: ``limits`` (formats, limits, what comes out), ``sources`` (byte plumbing),
``decoders`` (and the budget they are charged to), ``zips`` and ``tars`` (walks of one
archive), ``expand`` (the recursion).
"""

from leakscan.layers.archives.expand import expand
from leakscan.layers.archives.limits import (
    ArchiveKind,
    ArchiveLimits,
    Member,
    Skipped,
    archive_kind,
)

__all__ = ["ArchiveKind", "ArchiveLimits", "Member", "Skipped", "archive_kind", "expand"]
