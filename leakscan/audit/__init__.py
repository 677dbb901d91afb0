"""Audits of a whole registry (or a docker engine): every tag covered, each layer scanned
once however many images share it, only new layers scanned by the next audit.

``catalog`` walks repositories and tags, ``fanout`` says where layers are scanned (here,
local processes, a Dask cluster), ``db`` is the audit database, ``core`` runs the audit and
``report`` renders it (the HTML page is :mod:`leakscan.report.html`)."""

from __future__ import annotations

from leakscan.audit.core import (
    AuditedImage,
    AuditOptions,
    AuditProgress,
    AuditReport,
    AuditStats,
    audit,
)

__all__ = [
    "AuditOptions",
    "AuditProgress",
    "AuditReport",
    "AuditStats",
    "AuditedImage",
    "audit",
]
