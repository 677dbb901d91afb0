"""Typed errors. Every error that reaches the user is one of these, with a message that
names what is wrong and where; anything else is a bug and shows a traceback only with
``--debug``."""

from __future__ import annotations


class LeakscanError(Exception):
    """Base of every error leakscan reports to the user (exit status 2)."""


class InputError(LeakscanError):
    """The image reference or the input it names cannot be used (missing, unrecognised)."""


class SourceError(LeakscanError):
    """An image source is malformed: bad JSON, a missing blob, a digest mismatch."""


class LayerError(LeakscanError):
    """A layer could not be read to the end (corrupt compression or tar stream)."""


class UnsafePathError(SourceError):
    """A blob name or in-archive link points outside the image it belongs to."""
