"""Entry point for ``python -m leakscan`` and the ``leakscan`` command."""

import atexit
import gc
import os
import sys

# commands that never scan: no rule catalog for them
# (serve scans in processes of its own, each loading the catalog)
_NO_SCAN = (
    "--version",
    "-h",
    "--help",
    "rules",
    "schema",
    "cache",
    "dockerfile",
    "warm-up",
    "serve",
)

_WARM_UP_HELP = """Usage: leakscan warm-up [--cache-dir DIR]

  Compile the kingfisher rule catalog now, beside the result store ($KF_RULE_CACHE_DIR
  when set, else DIR/rules, else rules/ beside the default store), so that no scan pays
  for it: run it when building an image, after installing on a runner, or before saving
  a CI cache. A built leakscan ships the catalog compiled: then it is copied there (and
  compiled only if it does not suit this machine). Prints which catalog it is.
"""


def _flag(argv: list[str], name: str) -> str | None:
    """The value of the option ``name`` (``--name VALUE`` or ``--name=VALUE``), if given."""
    found = None
    for n, arg in enumerate(argv):
        if arg == name and n + 1 < len(argv):
            found = argv[n + 1]
        elif arg.startswith(name + "="):
            found = arg.split("=", 1)[1]
    return found


def _store_known(argv: list[str]) -> bool:
    """Whether the scan's result store file exists already: then this image, or most of it,
    may be known, and the catalog is better loaded only once something needs scanning."""
    if "--no-cache" in argv:
        return False
    # the CLI's order (cli._cache_spec): --cache, then --cache-dir, then the default
    spec = _flag(argv, "--cache")
    folder = _flag(argv, "--cache-dir")
    if spec is None and folder is not None:
        spec = os.path.join(folder, "results.sqlite3")
    if spec is None:
        from leakscan.store import default_location

        spec = str(default_location())
    # a shared (Redis) store may know anything: load the catalog on the side as when cold
    return "://" not in spec and os.path.exists(spec)


def _rules_beside(argv: list[str]) -> None:
    """With ``--cache-dir DIR``, the compiled catalog is kept in ``DIR/rules`` too: one
    folder for a CI job to cache. Through kingfisher's own variable, so that worker
    processes (which do not see the flag) load it from there as well. A variable the user
    set wins. Not with ``--no-cache``: that scan leaves DIR alone (it is not even made)."""
    folder = _flag(argv, "--cache-dir")
    if folder is not None and "--no-cache" not in argv:
        os.environ.setdefault("KF_RULE_CACHE_DIR", os.path.join(folder, "rules"))


def _warm_up(argv: list[str]) -> int:
    """``leakscan warm-up``: handled here, before the CLI's imports, which it needs none of."""
    if any(arg in ("-h", "--help") for arg in argv):
        sys.stdout.write(_WARM_UP_HELP)
        return 0
    rest = list(argv)
    while rest:
        arg = rest.pop(0)
        if arg == "--cache-dir" and rest:
            rest.pop(0)
        elif not arg.startswith("--cache-dir="):
            sys.stderr.write(f"{_WARM_UP_HELP}\nError: unexpected argument {arg!r}\n")
            return 2
    _rules_beside(argv)
    from leakscan.detectors.kingfisher import catalog_origin, rules_dir, warm_up

    info = warm_up()
    how = {
        "loaded": "compiled already in",
        "shipped": "the compiled form leakscan ships, copied into",
        "uncached": "compiled, not kept: cannot write",
    }.get(catalog_origin() or "", "compiled in")
    print(f"rule catalog: {info} ({how} {rules_dir()})")
    if catalog_origin() == "uncached":
        from leakscan.catalog import open_to_others

        unsafe = open_to_others(rules_dir())
        if unsafe is not None:
            # the reason, else every scan compiles it again (3-4 s of CPU) with no word said
            print(
                f"  {unsafe} is writable by others: the compiled catalog is kept only in a "
                "folder no other user can write to, nor any folder above it "
                "(chmod go-w it, or set KF_RULE_CACHE_DIR)"
            )
    return 0


def _preload() -> None:
    from leakscan.detectors.kingfisher import preload

    preload()


def main() -> None:
    """Start loading the rule catalog, then run the CLI.

    The catalog takes ~0.3 s to load and releases the GIL while it does: started before
    the CLI's own imports, it is ready by the time the first layer is read. Not when a
    result store is there already: an image it knows needs no catalog at all, and is
    answered by :mod:`leakscan.quick` without the CLI when it can be.
    """
    # the last thing done at exit (atexit calls the last registered first): every object
    # still there is put out of the collector's sight, so that the interpreter's teardown
    # does not walk them all once more. 37 ms off every command that loaded the engines,
    # 83 ms with a Dask client (2 cores). Nothing here waits for a collection to be closed:
    # files, stores and temporary folders are closed by their own code or atexit callbacks
    atexit.register(gc.freeze)
    args = sys.argv[1:]
    if args and args[0] == "warm-up":
        sys.exit(_warm_up(args[1:]))
    if args and args[0] == "audit":
        # a registry unchanged since the last audit is answered from the audit database
        # before the CLI's and the scanners' imports (leakscan.audit.quick)
        from leakscan.audit.quick import answer as reaudit

        status = reaudit(args[1:])
        if status is not None:
            sys.exit(status)
    _rules_beside(args)
    # an audit with --dask: the cluster's workers scan the layers and the images' strings,
    # and this process loads the catalog only if they fail it (0.3 s of CPU otherwise taken
    # from them)
    dask_audit = bool(args) and args[0] == "audit" and _flag(args, "--dask") is not None
    if args and args[0] not in _NO_SCAN and not dask_audit:
        if _store_known(args):
            # an image the store knows whole is answered before the CLI's imports, which
            # cost a re-scan more than the re-scan itself
            from leakscan.quick import answer

            # something of the image is not in the store: the catalog loads (GIL released)
            # while the CLI is imported, as for a cold scan
            status = answer(args, on_miss=_preload)
            if status is not None:
                sys.exit(status)
        else:
            _preload()
    from leakscan.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
