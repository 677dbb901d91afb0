"""Audits of a whole registry (or a docker engine): every tag covered, each layer scanned
once however many images share it, only new layers scanned by the next audit.

``catalog`` walks repositories and tags, ``fanout`` says where layers are scanned (here,
local processes, a Dask cluster), ``db`` is the audit database, ``core`` runs the audit and
``report`` renders it (the HTML page is :mod:`leakscan.report.html`); ``quick`` answers the
re-audit of an unchanged registry without the scanners and the registry client.

The names below are imported when first used: importing a light submodule (the database,
the kept reports, the quick re-audit) must not load the audit's scanners."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from leakscan.audit.core import AuditOptions, audit
    from leakscan.audit.result import AuditedImage, AuditProgress, AuditReport, AuditStats

__all__ = [
    "AuditOptions",
    "AuditProgress",
    "AuditReport",
    "AuditStats",
    "AuditedImage",
    "audit",
]


def __getattr__(name: str) -> Any:
    # import statements, not importlib: -X importtime (and its readers) see them
    if name in ("AuditOptions", "audit"):
        from leakscan.audit import core

        return getattr(core, name)
    if name in __all__:
        from leakscan.audit import result

        return getattr(result, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
