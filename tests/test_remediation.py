"""Remediation said for the place and the instruction that put the secret there."""

from __future__ import annotations

from leakscan import model as m
from leakscan.instructions import HistoryKeys
from leakscan.remediation import ROTATE, remediation

TOKEN = "npm_" + "Zq7Xw2Lk9Rt4Vb6Nm1Pc3Hd8Jf5Gs0Ya2Ue"
DIFF = "sha256:" + "1" * 64
WRITE = f'|1 NPM_TOKEN={TOKEN} /bin/sh -c echo "//r/:_authToken=$NPM_TOKEN" > /root/.npmrc'


def _keys(*created_by: str) -> HistoryKeys:
    return HistoryKeys(
        tuple(
            m.HistoryInfo(index=i, created_by=c, created=None, empty_layer=False, layer_index=i)
            for i, c in enumerate(created_by)
        )
    )


def _file(status: str, layer: int = 1, path: str = "/root/.npmrc") -> m.FileLocation:
    removed = None if status == "present" else 2
    return m.FileLocation(layer, DIFF, path, 1, status, removed)  # type: ignore[arg-type]


def test_build_argument_gets_the_exact_secret_mount_line() -> None:
    text = remediation(m.HistoryLocation(1, 1, WRITE), _keys(), TOKEN)
    assert "Build argument NPM_TOKEN" in text
    assert 'RUN --mount=type=secret,id=NPM_TOKEN,env=NPM_TOKEN echo "//r/:_authToken=' in text
    assert "docker build --secret id=NPM_TOKEN,env=NPM_TOKEN" in text
    assert TOKEN not in text and text.endswith(ROTATE)


def test_file_written_then_deleted_same_run_or_stage() -> None:
    keys = _keys("ADD file:x in /", WRITE, "/bin/sh -c rm /root/.npmrc")
    text = remediation(_file("deleted"), keys, TOKEN)
    assert "Deleting /root/.npmrc in layer 2 does not remove it: layer 1 still ships it" in text
    assert "RUN --mount=type=secret,id=NPM_TOKEN,env=NPM_TOKEN echo" in text
    assert "same RUN" in text and "build stage the final image does not copy from" in text
    # a secret the RUN did not get as a build argument: mount the file itself
    other = remediation(_file("deleted"), keys, "npm_" + "Q" * 36)
    assert "RUN --mount=type=secret,id=npmrc,target=/root/.npmrc echo" in other


def test_copied_credentials_file_goes_to_dockerignore() -> None:
    spellings = ("COPY .npmrc /root/.npmrc # buildkit", "/bin/sh -c #(nop) COPY file:ab in /root/")
    for spelling in spellings:
        keys = _keys("ADD file:x in /", spelling)
        text = remediation(_file("present"), keys, TOKEN)
        assert ".dockerignore" in text and "COPY in layer 1" in text, spelling
        assert text.startswith("/root/.npmrc is in the final image.")


def test_env_label_and_commands_are_injected_at_run_time() -> None:
    env = remediation(m.HistoryLocation(3, None, f"ENV A=1 NPM_TOKEN={TOKEN}"), _keys(), TOKEN)
    assert env.startswith("ENV NPM_TOKEN is in the history") and "run time" in env
    label = remediation(m.HistoryLocation(3, None, f'LABEL tok="{TOKEN}"'), _keys(), TOKEN)
    assert label.startswith("LABEL tok is public image metadata")
    for field in ("Cmd", "Entrypoint"):
        text = remediation(m.ConfigLocation(field, None), _keys(), TOKEN)
        assert "inject the secret at run time" in text and text.endswith(ROTATE)
    assert "docker run -e GH" in remediation(m.ConfigLocation("Env", "GH"), _keys(), TOKEN)
    run = remediation(m.HistoryLocation(2, 2, f"/bin/sh -c curl -H 'x: {TOKEN}' h"), _keys(), TOKEN)
    assert "curl -H 'x: $TOKEN' h" in run and TOKEN not in run


def test_always_rotate() -> None:
    places: list[m.Location] = [
        _file("present"),
        _file("overwritten"),
        _file("present", path="/app/lib.jar!/conf/app.properties"),
        m.HistoryLocation(0, None, None),
        m.ConfigLocation("manifest", "layers[0].digest"),
        m.ConfigLocation("config.User", None),
    ]
    for loc in places:
        assert remediation(loc, _keys(), None).endswith(ROTATE), loc
