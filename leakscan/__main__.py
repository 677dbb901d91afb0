"""Entry point for ``python -m leakscan`` and the ``leakscan`` command."""

import os
import sys

# commands that never scan: no rule catalog for them
_NO_SCAN = ("--version", "-h", "--help", "rules", "schema", "cache")


def _store_known(argv: list[str]) -> bool:
    """Whether the scan's result store file exists already: then this image, or most of it,
    may be known, and the catalog is better loaded only once something needs scanning."""
    if "--no-cache" in argv:
        return False
    spec = None
    for n, arg in enumerate(argv):
        for flag, name in (("--cache", ""), ("--cache-dir", "results.sqlite3")):
            if arg == flag and n + 1 < len(argv):
                spec = os.path.join(argv[n + 1], name) if name else argv[n + 1]
            elif arg.startswith(flag + "="):
                value = arg.split("=", 1)[1]
                spec = os.path.join(value, name) if name else value
    if spec is None:
        from leakscan.store import default_location

        spec = str(default_location())
    # a shared (Redis) store may know anything: load the catalog on the side as when cold
    return "://" not in spec and os.path.exists(spec)


def main() -> None:
    """Start loading the rule catalog, then run the CLI.

    The catalog takes ~0.3 s to load and releases the GIL while it does: started before
    the CLI's own imports, it is ready by the time the first layer is read. Not when a
    result store is there already: an image it knows needs no catalog at all.
    """
    args = sys.argv[1:]
    if args and args[0] not in _NO_SCAN and not _store_known(args):
        from leakscan.detectors.kingfisher import preload

        preload()
    from leakscan.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
