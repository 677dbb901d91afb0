"""Base root filesystems, as plain folders, for the bench images: made on this machine from
Debian's own packages, so that their content is real and nobody here wrote it.

Usage: python bench/rootfs.py busybox DIR   # busybox and a link per applet: ~2 MB, < 1 s
       python bench/rootfs.py debian DIR    # debootstrap --variant=minbase bookworm: ~200 MB

``busybox`` needs the busybox-static package (the busybox on PATH is copied). ``debian`` needs
debootstrap, root, and a Debian mirror: ``DEBIAN_MIRROR``, else the one apt uses here; its
output goes to ``DIR.log``. Exit status 0 when DIR was made, 1 when it could not be.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

SUITE = "bookworm"


class RootfsError(Exception):
    """The root filesystem could not be made; the message says why."""


def apt_mirror() -> str | None:
    """The Debian mirror to bootstrap from: ``DEBIAN_MIRROR``, else the first one apt is
    configured with (deb822 ``.sources`` files first, then the one-line ``sources.list``)."""
    if os.environ.get("DEBIAN_MIRROR"):
        return os.environ["DEBIAN_MIRROR"]
    apt = Path("/etc/apt")
    for sources in sorted((apt / "sources.list.d").glob("*.sources")):
        for line in sources.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "URIs" and value.split():
                return value.split()[0]
    lists = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]
    for path in lists:
        if not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            words = line.split()
            if words[:1] != ["deb"]:
                continue
            words = words[1:]
            if words and words[0].startswith("["):  # options: [arch=amd64 signed-by=...]
                while words and not words[0].endswith("]"):
                    words.pop(0)
                words = words[1:]
            if words:
                return words[0]
    return None


def make_busybox(folder: Path) -> None:
    """``folder`` as a minimal busybox system: ``/bin/busybox``, a relative link per applet
    (an absolute one would point at this machine's busybox), root's passwd and group lines,
    ``/root`` and a sticky ``/tmp``."""
    busybox = shutil.which("busybox")
    if busybox is None:
        raise RootfsError("no busybox on PATH (apt-get install busybox-static)")
    listed = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=False)
    applets = [name for name in listed.stdout.split() if name != "busybox"]
    if listed.returncode != 0 or not applets:
        raise RootfsError(f"{busybox} --list gave no applets (a busybox without the list?)")
    for sub in ("bin", "etc", "root", "tmp"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "root").chmod(0o700)
    (folder / "tmp").chmod(0o1777)
    shutil.copy2(busybox, folder / "bin" / "busybox")
    for name in applets:
        link = folder / "bin" / name
        link.unlink(missing_ok=True)
        link.symlink_to("busybox")
    (folder / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (folder / "etc" / "group").write_text("root:x:0:\n")


def make_debian(folder: Path, log: Path, mirror: str | None = None) -> None:
    """``debootstrap --variant=minbase`` of Debian bookworm into ``folder`` (which must not
    exist yet, or be empty), its output appended to ``log``; the downloaded .deb files are
    removed afterwards, as an image build would."""
    if shutil.which("debootstrap") is None:
        raise RootfsError("debootstrap is not installed (apt-get install debootstrap)")
    mirror = mirror or apt_mirror()
    if not mirror:
        raise RootfsError("no Debian mirror: apt has none configured here; set DEBIAN_MIRROR")
    cmd = ["debootstrap", "--variant=minbase", SUITE, str(folder), mirror]
    with open(log, "ab") as out:
        out.write(f"$ {' '.join(cmd)}\n".encode())
        out.flush()
        done = subprocess.run(cmd, stdout=out, stderr=out, check=False)
    if done.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise RootfsError(f"debootstrap failed ({done.returncode}): {' / '.join(tail)}")
    for deb in (folder / "var" / "cache" / "apt" / "archives").glob("*.deb"):
        deb.unlink()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in ("busybox", "debian"):
        print("usage: python bench/rootfs.py busybox|debian DIR", file=sys.stderr)
        return 2
    kind, folder = args[0], Path(args[1])
    try:
        if kind == "busybox":
            make_busybox(folder)
        else:
            make_debian(folder, folder.with_name(folder.name + ".log"))
    except (RootfsError, OSError) as exc:
        print(f"rootfs.py: {kind}: {exc}", file=sys.stderr)
        return 1
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
