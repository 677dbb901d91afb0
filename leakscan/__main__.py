"""Entry point for ``python -m leakscan`` and the ``leakscan`` command."""

import sys


def main() -> None:
    """Start loading the rule catalog, then run the CLI.

    The catalog takes ~0.3 s to load and releases the GIL while it does: started before
    the CLI's own imports, it is ready by the time the first layer is read.
    """
    args = sys.argv[1:2]
    if not args or args[0] not in ("--version", "-h", "--help"):
        from leakscan.detectors.kingfisher import preload

        preload()
    from leakscan.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
