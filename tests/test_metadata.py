"""History lines split into pieces that are judged one by one."""

from __future__ import annotations

import pytest

from leakscan.metadata import config_texts, map_history, split_created_by


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
