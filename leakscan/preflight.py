"""Refusals before anything heavy: a path that names nothing, or a file that cannot be an
image, is refused in a few milliseconds, before the rule catalog, the result store or the
engines load (they take a second or more), with a message in our words.

Only what the first bytes prove is refused here: a file that starts like a tar or a
compressed stream goes on to the source, which says what is wrong with it if anything is.
"""

from __future__ import annotations

import os

from leakscan.errors import InputError

_PATH_TRANSPORTS = ("docker-archive:", "oci-archive:", "oci:")
# magic numbers of the compressions a saved image may come in
_COMPRESSED = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")
_NOT_AN_IMAGE = (
    "not an image: neither a tar archive (docker save, an OCI archive) nor an image folder"
)


def _tar_header(block: bytes) -> bool:
    """Whether ``block`` (512 bytes) is a tar header: its checksum field matches the sum
    of its bytes (with the field itself counted as spaces), as every tar format has it."""
    if len(block) < 512 or not block.strip(b"\0"):
        return False
    field = block[148:156].replace(b"\0", b" ").strip()
    try:
        recorded = int(field, 8)
    except ValueError:
        return False
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:512])
    return recorded == unsigned


def check_file(path: str, shown: str) -> None:
    """Refuse ``path`` unless its first bytes are a tar header or a compressed stream."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except IsADirectoryError:
        return
    except OSError as exc:
        raise InputError(f"{shown}: cannot read it ({exc.strerror})") from None
    if not head:
        raise InputError(f"{shown}: empty file, not an image")
    if head.startswith(_COMPRESSED) or _tar_header(head):
        return
    raise InputError(f"{shown}: {_NOT_AN_IMAGE}")


def check_folder(path: str, shown: str) -> None:
    """Refuse a folder that holds neither an OCI layout nor an unpacked docker save."""
    if not os.path.isfile(os.path.join(path, "index.json")) and not os.path.isfile(
        os.path.join(path, "manifest.json")
    ):
        raise InputError(
            f"{shown}: not an image folder: it has neither index.json nor manifest.json "
            "(an OCI layout, an unpacked docker save)"
        )


def _existing_prefix(rest: str) -> str | None:
    """``PATH[:REF]``: the longest prefix that exists (paths may hold colons)."""
    if os.path.exists(rest):
        return rest
    cut = len(rest)
    while (cut := rest.rfind(":", 0, cut)) > 0:
        if os.path.exists(rest[:cut]):
            return rest[:cut]
    return None


def refuse_early(image: str) -> None:
    """Raise InputError when ``image`` can be told not to be an image from the file system
    alone: a transport path or a path-looking name that does not exist, an empty or
    non-tar file, a folder with no image layout. Names of registries and daemons pass."""
    if not image:
        raise InputError("no image given")
    for prefix in _PATH_TRANSPORTS:
        if image.startswith(prefix):
            rest = image[len(prefix) :]
            if not rest:
                raise InputError(f"{image}: no path after {prefix}")
            path = _existing_prefix(rest)
            if path is None:
                raise InputError(f"{image}: no such file or directory: {rest}")
            _check_path(path, image)
            return
    if image.startswith(("docker://", "docker-daemon:")):
        return
    if os.path.exists(image):
        _check_path(image, image)
        return
    if image.startswith(("/", ".", "~")) or image.endswith((".tar", ".tgz", ".tar.gz")):
        raise InputError(f"{image}: no such file or directory")


def _check_path(path: str, shown: str) -> None:
    if os.path.isdir(path):
        check_folder(path, shown)
    else:
        check_file(path, shown)
