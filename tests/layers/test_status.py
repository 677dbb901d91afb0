"""The whiteout interpreter, on layer records written by hand."""

from __future__ import annotations

from leakscan.layers.status import Fate, ancestors, fate
from leakscan.layers.walker import EntryRecord, LayerRecord

SECRET = b"a" * 32
OTHER = b"b" * 32


def rec(
    files: dict[str, bytes] | None = None,
    dirs: tuple[str, ...] = (),
    whiteouts: tuple[str, ...] = (),
    opaques: tuple[str, ...] = (),
    kinds: dict[str, str] | None = None,
) -> LayerRecord:
    r = LayerRecord()
    for d in dirs:
        r.entries[d] = EntryRecord("dir")
    for path, digest in (files or {}).items():
        r.entries[path] = EntryRecord("file", digest)
    for path, kind in (kinds or {}).items():
        r.entries[path] = EntryRecord(kind)  # type: ignore[arg-type]
    r.whiteouts.update(whiteouts)
    r.opaques.update(opaques)
    return r


BASE = rec({"/root/.npmrc": SECRET}, dirs=("/root",))


def test_ancestors_end_at_root() -> None:
    assert ancestors("/a/b/c") == ["/a/b", "/a", "/"]
    assert ancestors("/a") == ["/"]


def test_untouched_file_is_present() -> None:
    assert fate([BASE, rec({"/other": OTHER})], 0, "/root/.npmrc", SECRET) == Fate("present", None)


def test_last_layer_file_is_present() -> None:
    assert fate([BASE], 0, "/root/.npmrc", SECRET) == Fate("present", None)


def test_file_whiteout_deletes() -> None:
    layers = [BASE, rec(), rec(whiteouts=("/root/.npmrc",))]
    assert fate(layers, 0, "/root/.npmrc", SECRET) == Fate("deleted", 2)


def test_parent_whiteout_deletes_subtree() -> None:
    deep = rec({"/app/conf/keys/id_rsa": SECRET})
    assert fate([deep, rec(whiteouts=("/app",))], 0, "/app/conf/keys/id_rsa", SECRET) == Fate(
        "deleted", 1
    )


def test_opaque_parent_hides_lower_children() -> None:
    deep = rec({"/app/conf/.env": SECRET})
    assert fate([deep, rec(opaques=("/app",))], 0, "/app/conf/.env", SECRET) == Fate("deleted", 1)


def test_opaque_keeps_same_layer_children() -> None:
    # the layer that carries the opaque marker re-adds the same bytes: still present
    layers = [rec({"/app/.env": SECRET}), rec({"/app/.env": SECRET}, opaques=("/app",))]
    assert fate(layers, 0, "/app/.env", SECRET) == Fate("present", None)


def test_opaque_at_root_hides_everything() -> None:
    assert fate([BASE, rec(opaques=("/",))], 0, "/root/.npmrc", SECRET) == Fate("deleted", 1)


def test_opaque_on_unrelated_dir_changes_nothing() -> None:
    assert fate([BASE, rec(opaques=("/rootfs",))], 0, "/root/.npmrc", SECRET).status == "present"


def test_whiteout_of_sibling_prefix_changes_nothing() -> None:
    # "/root/.npm" is a prefix of "/root/.npmrc" as a string, not as a path
    assert fate([BASE, rec(whiteouts=("/root/.npm",))], 0, "/root/.npmrc", SECRET).status == (
        "present"
    )


def test_overwrite_with_other_bytes() -> None:
    assert fate([BASE, rec({"/root/.npmrc": OTHER})], 0, "/root/.npmrc", SECRET) == Fate(
        "overwritten", 1
    )


def test_overwrite_with_identical_bytes_is_present() -> None:
    assert fate([BASE, rec({"/root/.npmrc": SECRET})], 0, "/root/.npmrc", SECRET) == Fate(
        "present", None
    )


def test_replaced_by_directory_or_symlink_is_overwritten() -> None:
    assert fate([BASE, rec(dirs=("/root/.npmrc",))], 0, "/root/.npmrc", SECRET).status == (
        "overwritten"
    )
    layers = [BASE, rec(kinds={"/root/.npmrc": "symlink"})]
    assert fate(layers, 0, "/root/.npmrc", SECRET) == Fate("overwritten", 1)


def test_parent_replaced_by_file_removes_subtree() -> None:
    assert fate([BASE, rec({"/root": OTHER})], 0, "/root/.npmrc", SECRET) == Fate("deleted", 1)


def test_deleted_then_restored_is_present() -> None:
    layers = [BASE, rec(whiteouts=("/root/.npmrc",)), rec({"/root/.npmrc": SECRET})]
    assert fate(layers, 0, "/root/.npmrc", SECRET) == Fate("present", None)


def test_deleted_then_recreated_differently_reports_the_deletion() -> None:
    layers = [BASE, rec(whiteouts=("/root/.npmrc",)), rec({"/root/.npmrc": OTHER})]
    assert fate(layers, 0, "/root/.npmrc", SECRET) == Fate("deleted", 1)


def test_restored_then_deleted_again_names_the_last_removal() -> None:
    layers = [
        BASE,
        rec(whiteouts=("/root/.npmrc",)),
        rec({"/root/.npmrc": SECRET}),
        rec(whiteouts=("/root",)),
    ]
    assert fate(layers, 0, "/root/.npmrc", SECRET) == Fate("deleted", 3)


def test_whiteout_and_readd_in_one_layer() -> None:
    # the whiteout applies to lower layers; the same layer's new file is what remains
    layers = [BASE, rec({"/root/.npmrc": OTHER}, whiteouts=("/root/.npmrc",))]
    assert fate(layers, 0, "/root/.npmrc", SECRET) == Fate("overwritten", 1)


def test_same_path_twice_in_one_layer_last_wins() -> None:
    # the walker keeps the last copy; a finding in the first copy is overwritten in place
    layer = rec({"/etc/app.conf": OTHER})
    assert fate([layer], 0, "/etc/app.conf", SECRET) == Fate("overwritten", 0)


def test_hardlink_with_same_bytes_counts_as_same_content() -> None:
    later = LayerRecord()
    later.entries["/root/.npmrc"] = EntryRecord("hardlink", SECRET)
    assert fate([BASE, later], 0, "/root/.npmrc", SECRET).status == "present"
