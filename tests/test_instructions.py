"""History instructions read back into one spelling whatever the builder, and their
occurrence among identical ones (what a history finding's fingerprint is keyed by)."""

from __future__ import annotations

import pytest

from leakscan import model as m
from leakscan.instructions import HistoryKeys, history_keys, normalised, parse

TOKEN = "npm_" + "Zq7Xw2Lk9Rt4Vb6Nm1Pc3Hd8Jf5Gs0Ya2Ue"


@pytest.mark.parametrize(
    "created_by",
    [
        # classic docker builder and buildah
        f"|1 NPM_TOKEN={TOKEN} /bin/sh -c npm ci",
        # BuildKit
        f"RUN |1 NPM_TOKEN={TOKEN} /bin/sh -c npm ci # buildkit",
        # another build argument in scope (an ARG added elsewhere), in either order
        f"|2 NPM_TOKEN={TOKEN} VERSION=3 /bin/sh -c npm ci",
        f"RUN |2 A=1 NPM_TOKEN={TOKEN} /bin/sh -c   npm    ci  # buildkit",
    ],
)
def test_run_with_build_arg_one_spelling(created_by: str) -> None:
    assert normalised(created_by, TOKEN) == "NPM_TOKEN=<secret> RUN npm ci"
    assert normalised(created_by) == "RUN npm ci"
    assert TOKEN not in normalised(created_by, TOKEN)


@pytest.mark.parametrize(
    ("created_by", "text"),
    [
        ("/bin/sh -c #(nop)  ENV A=b", "ENV A=b"),
        ("ENV A=b", "ENV A=b"),
        ("/bin/sh -c echo hi > /app/BUILD", "RUN echo hi > /app/BUILD"),
        ("RUN /bin/sh -c echo hi > /app/BUILD # buildkit", "RUN echo hi > /app/BUILD"),
        (f"/bin/sh -c #(nop) COPY file:{'ab' * 32} in /app/.npmrc ", "COPY file: in /app/.npmrc"),
        ("COPY .npmrc /app/.npmrc # buildkit", "COPY .npmrc /app/.npmrc"),
        ('/bin/sh -c #(nop)  CMD ["node" "index.js"]', 'CMD ["node" "index.js"]'),
        (None, ""),
        ("", ""),
        ("something a builder wrote", "something a builder wrote"),
    ],
)
def test_normalised_spellings(created_by: str | None, text: str) -> None:
    assert normalised(created_by) == text


def test_secret_masked_in_command() -> None:
    created_by = f"/bin/sh -c echo //r/:_authToken={TOKEN} > /root/.npmrc"
    assert normalised(created_by, TOKEN) == "RUN echo //r/:_authToken=<secret> > /root/.npmrc"


def test_parse_keeps_build_args() -> None:
    inst = parse(f"|2 NPM_TOKEN={TOKEN} VERSION=3 /bin/sh -c npm ci")
    assert (inst.keyword, inst.body) == ("RUN", "npm ci")
    assert inst.build_args == (("NPM_TOKEN", TOKEN), ("VERSION", "3"))


def _history(*created_by: str) -> tuple[m.HistoryInfo, ...]:
    return tuple(
        m.HistoryInfo(index=i, created_by=c, created=None, empty_layer=False, layer_index=i)
        for i, c in enumerate(created_by)
    )


def test_occurrence_counts_identical_instructions_only() -> None:
    history = _history(
        "/bin/sh -c npm ci", "/bin/sh -c echo 1 > /app/BUILD", "RUN /bin/sh -c npm ci # buildkit"
    )
    keys = HistoryKeys(history)
    assert [keys.occurrence(i) for i in range(3)] == [0, 0, 1]
    assert keys.occurrence(7) is None
    assert keys.layer_instruction(1) == "/bin/sh -c echo 1 > /app/BUILD"
    assert keys.layer_instruction(None) is None


def test_history_keys_cached_per_history() -> None:
    history = _history("/bin/sh -c npm ci")
    assert history_keys(history) is history_keys(history)
    other = _history("/bin/sh -c npm ci")
    assert history_keys(other) is not history_keys(history)
