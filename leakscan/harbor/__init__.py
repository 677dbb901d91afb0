"""``leakscan serve --harbor``: a scanner adapter for Harbor's pluggable scanner API v1.2,
so that Harbor scans every pushed image for leaked secrets and can block pulls of leaking
ones. :mod:`api` holds the request and media types, :mod:`report` the mapping of findings
onto Harbor's vulnerability items, :mod:`jobs` the queue, :mod:`worker` the scan processes,
:mod:`server` the HTTP server. See docs/harbor.md."""
