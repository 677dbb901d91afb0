"""Git object stores inside layers: the history a ``COPY . /app`` drags in with ``.git/``.

:mod:`.objects` reads loose objects and pack files (leakscan's own reader: nothing of the
image is handed to git or to a library that trusts its input), :mod:`.history` walks the
commits to name each blob by the commit that brought it and its path in the repository,
:mod:`.collect` gathers a layer's object-store files during the streaming walk.
"""

from leakscan.layers.git.collect import GitCollector, GitLimits
from leakscan.layers.git.history import GitBlob, read_repository

__all__ = ["GitBlob", "GitCollector", "GitLimits", "read_repository"]
