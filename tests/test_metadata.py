"""History lines split into pieces that are judged one by one."""

from __future__ import annotations

import pytest

from leakscan.metadata import (
    MAX_STRINGS,
    config_texts,
    history_texts,
    image_texts,
    map_history,
    split_created_by,
)
from leakscan.model import LayerBlob, SourceImage


@pytest.mark.parametrize(
    ("line", "pieces"),
    [
        (
            "|2 A=x NPM_TOKEN=npm_abc /bin/sh -c npm ci",
            ["A=x", "NPM_TOKEN=npm_abc", "/bin/sh -c npm ci"],
        ),
        (
            "RUN |1 NPM_TOKEN=npm_abc /bin/sh -c npm ci # buildkit",
            ["NPM_TOKEN=npm_abc", "/bin/sh -c npm ci # buildkit"],
        ),
        ("/bin/sh -c #(nop)  ENV A=1 B=two", ["A=1", "B=two", "/bin/sh -c #(nop)  ENV A=1 B=two"]),
        ("ENV TOKEN some value here", ["TOKEN=some value here", "ENV TOKEN some value here"]),
        (
            'LABEL "ci.token"="a b" other=c',
            ["ci.token=a b", "other=c", 'LABEL "ci.token"="a b" other=c'],
        ),
        ('LABEL broken="unterminated', ['broken="unterminated', 'LABEL broken="unterminated']),
        ("/bin/sh -c #(nop)  ARG NPM_TOKEN", ["NPM_TOKEN", "/bin/sh -c #(nop)  ARG NPM_TOKEN"]),
        ("COPY file:abc in /", ["COPY file:abc in /"]),
        # a count larger than the arguments present stops at the command
        ("|3 A=1 /bin/sh -c x", ["A=1", "/bin/sh -c x"]),
    ],
)
def test_split_created_by(line: str, pieces: list[str]) -> None:
    assert split_created_by(line) == pieces


def test_map_history_skips_empty_layers() -> None:
    config = {
        "history": [
            {"created_by": "a"},
            {"created_by": "b", "empty_layer": True},
            {"created_by": "c"},
        ]
    }
    mapped = map_history(config, 2)
    assert mapped.layer_history == (0, 2) and mapped.problem is None
    assert [h.layer_index for h in mapped.entries] == [0, None, 1]


def test_map_history_tolerates_junk_entries() -> None:
    mapped = map_history({"history": ["junk", {"created_by": 5}]}, 2)
    assert mapped.problem is None
    assert [h.created_by for h in mapped.entries] == [None, None]


def test_config_texts_cover_every_field() -> None:
    config = {
        "config": {
            "Env": ["A=1", "B=2"],
            "Labels": {"l": "v"},
            "Cmd": ["run", "x"],
            "Entrypoint": "sh",
            "User": "app",
            "Healthcheck": {"Test": ["CMD", "curl", "-u", "u:p", "x"]},
            "OnBuild": ["RUN x"],
        },
        "container_config": {"Cmd": ["|1 T=v /bin/sh -c x"]},
        "author": "someone",
    }
    got = {(t.location.field, t.location.key, t.text) for t in config_texts(config, [])}  # type: ignore[union-attr]
    assert ("Env", "A", "A=1") in got and ("Labels", "l", "l=v") in got
    assert ("Cmd", None, "run x") in got and ("Entrypoint", None, "sh") in got
    assert ("Healthcheck", "Test", "CMD curl -u u:p x") in got
    assert ("container_config.Cmd", None, "T=v") in got
    assert ("container_config.Cmd", None, "/bin/sh -c x") in got
    assert ("author", None, "someone") in got and ("User", None, "app") in got
    assert ("OnBuild", None, "RUN x") in got


def test_every_other_config_and_history_string_is_scanned() -> None:
    """Strings no field rule names (variant, created, os.features, map keys, what a builder
    adds to a history entry) are texts too: a report shows them, so they are scanned."""
    config = {
        "architecture": "arm",
        "variant": "v-secret",
        "created": "c-secret",
        "os.features": ["f-secret"],
        "rootfs": {"type": "layers", "diff_ids": ["sha256:d-secret"]},
        "config": {"Env": ["A=1"], "ExposedPorts": {"k-secret/tcp": {}}, "Hostname": "h-secret"},
        "history": [{"created_by": "RUN x", "created": "hc-secret", "x-builder": ["hx-secret"]}],
    }
    got = {(t.location.field, t.text) for t in config_texts(config, [])}  # type: ignore[union-attr]
    for field, text in [
        ("variant", "v-secret"),
        ("created", "c-secret"),
        ("os.features", "f-secret"),
        ("rootfs", "sha256:d-secret"),
        ("config.ExposedPorts", "k-secret/tcp"),
        ("config.Hostname", "h-secret"),
    ]:
        assert (field, text) in got, (field, text)
    # Env is still split by config_texts' own rule, once
    assert [t for t in config_texts(config, []) if t.text == "A=1"] != []
    assert sum(1 for _, text in got if text == "A=1") == 1
    history = map_history(config, 1)
    texts = {t.text for t in history_texts(history, config["history"])}
    assert {"hc-secret", "hx-secret", "RUN x"} <= texts


def test_image_texts_cover_manifest_strings() -> None:
    blob = LayerBlob(0, "sha256:a", "sha256:b", "x/media-secret", 1, opener=lambda: None)  # type: ignore[arg-type,return-value]
    image = SourceImage("r", "oci", "linux/arm/p-secret", "sha256:m", "sha256:c", {}, (blob,))
    got = {(t.location.key, t.text) for t in image_texts(image)}  # type: ignore[union-attr]
    assert ("platform", "linux/arm/p-secret") in got
    assert ("layers[0].media_type", "x/media-secret") in got


def test_config_strings_are_bounded() -> None:
    config = {"x": [str(i) for i in range(MAX_STRINGS + 10)]}
    assert sum(1 for _ in config_texts(config, [])) == MAX_STRINGS
