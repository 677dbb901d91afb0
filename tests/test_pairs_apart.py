"""An AWS (or Alibaba Cloud) key id and its secret in two history or config strings of one
image are one credential: both reported together at high, like the two in one file; the
documented examples and placeholders pair with nothing. Baselines made before a pair (or a
named value) outranked a finding's rule still accept it."""

from __future__ import annotations

import json
import secrets
import string
from pathlib import Path

import pytest
from helpers import only_image, scan_ref, write
from imagebuilder import Image, Layer, fake_token

from leakscan import model as m
from leakscan.detectors import Detectors
from leakscan.detectors import tokens as token_rules
from leakscan.detectors.tokens import ALIBABA_PAIR, AWS_PAIR, NAMED
from leakscan.suppress import Suppressions, baseline_json, load_baseline

# the values AWS's documentation uses for its examples
DOC_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
DOC_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def aws_secret() -> str:
    """40 random characters of a secret access key's alphabet, with a digit."""
    alphabet = string.ascii_letters + string.digits + "/+"
    while True:
        value = "".join(secrets.choice(alphabet) for _ in range(40))
        if any(c.isdigit() for c in value) and any(c.isupper() for c in value):
            return value


def alibaba() -> tuple[str, str]:
    alnum = string.ascii_letters + string.digits
    key_id = "LTAI5t" + "".join(secrets.choice(alnum) for _ in range(18))
    while True:
        secret = "".join(secrets.choice(alnum) for _ in range(30))
        if any(c.isdigit() for c in secret):
            return key_id, secret


def base() -> Layer:
    return Layer(created_by="ADD file:base in / ").file("bin/sh", "sh")


def env_history(*pairs: tuple[str, str], env: bool = False) -> Image:
    """Each ``ENV K=v`` its own history entry (and, with ``env``, its own Env string)."""
    first = base()
    history: list[dict[str, object]] = [{"created_by": first.created_by}]
    for key, value in pairs:
        history.append({"created_by": f"ENV {key}={value}", "empty_layer": True})
    return Image(
        layers=[first],
        history=history,
        env=[f"{k}={v}" for k, v in pairs] if env else [],
    )


def _scan(image: Image, tmp: Path, detectors: Detectors, **options: object) -> m.ImageReport:
    tmp.mkdir()
    return only_image(scan_ref(write("docker-legacy", image, tmp), detectors, **options))


def _seen(image: m.ImageReport, kind: str) -> dict[str, tuple[str, str]]:
    """secret_sha256 -> (rule, confidence) of the findings of one kind."""
    return {
        f.secret_sha256: (f.rule_id, f.confidence)
        for f in image.findings
        if f.location.kind == kind
    }


def _sha(value: str) -> str:
    import hashlib

    return hashlib.sha256(value.encode()).hexdigest()


def test_history_entries_pair_an_id_and_its_secret(tmp_path: Path, detectors: Detectors) -> None:
    key_id, secret = fake_token("aws"), aws_secret()
    image = env_history(("AWS_ACCESS_KEY_ID", key_id), ("AWS_SECRET_ACCESS_KEY", secret))
    found = _scan(image, tmp_path / "1", detectors)
    history = _seen(found, "history")
    assert history[_sha(key_id)] == (AWS_PAIR, "high")
    assert history[_sha(secret)] == (AWS_PAIR, "high")
    # the two stay two findings, each at its own entry
    places = {f.location.history_index for f in found.findings if f.secret_sha256 == _sha(secret)}
    assert places == {2}


def test_config_env_strings_pair(tmp_path: Path, detectors: Detectors) -> None:
    key_id, secret = fake_token("aws"), aws_secret()
    first = base()
    image = Image(
        layers=[first],
        history=[{"created_by": first.created_by}],
        env=[f"AWS_ACCESS_KEY_ID={key_id}", "PATH=/bin", f"AWS_SECRET_ACCESS_KEY={secret}"],
    )
    found = _scan(image, tmp_path / "1", detectors)
    config = _seen(found, "config")
    assert config == {_sha(key_id): (AWS_PAIR, "high"), _sha(secret): (AWS_PAIR, "high")}
    assert [f.location.key for f in found.findings if f.secret_sha256 == _sha(secret)] == [
        "AWS_SECRET_ACCESS_KEY"
    ]


def test_build_arguments_of_two_layers_pair(tmp_path: Path, detectors: Detectors) -> None:
    key_id, secret = fake_token("aws"), aws_secret()
    first = base()
    one = Layer(created_by=f"|1 AWS_ACCESS_KEY_ID={key_id} /bin/sh -c aws configure").file("a", "1")
    two = Layer(created_by=f"|1 AWS_SECRET_ACCESS_KEY={secret} /bin/sh -c ./deploy.sh").file(
        "b", "2"
    )
    image = Image(
        layers=[first, one, two],
        history=[{"created_by": x.created_by} for x in (first, one, two)],
    )
    found = _scan(image, tmp_path / "1", detectors)
    history = _seen(found, "history")
    assert history[_sha(key_id)] == (AWS_PAIR, "high")
    assert history[_sha(secret)] == (AWS_PAIR, "high")
    layers = {f.location.layer_index for f in found.findings if f.location.kind == "history"}
    assert layers == {1, 2}


def test_alibaba_id_and_secret_in_two_env_strings(tmp_path: Path, detectors: Detectors) -> None:
    key_id, secret = alibaba()
    image = env_history(
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", key_id),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", secret),
        env=True,
    )
    found = _scan(image, tmp_path / "1", detectors)
    for kind in ("history", "config"):
        seen = _seen(found, kind)
        assert seen[_sha(key_id)] == (ALIBABA_PAIR, "high")
        assert seen[_sha(secret)] == (ALIBABA_PAIR, "high")


@pytest.mark.parametrize(
    ("key_id", "secret", "id_shown", "secret_shown"),
    [
        (DOC_KEY_ID, "real", False, True),  # the documented id with a random secret
        ("real", DOC_SECRET, True, False),  # a random id with the documented secret
        ("AKIAXXXXXXXXXXXXXXXX", "x" * 40, False, False),
        ("AKIA" + "0" * 16, "<your-secret-access-key>", False, False),
        ("real", "${AWS_SECRET_ACCESS_KEY}", True, False),
    ],
)
def test_look_alikes_pair_with_nothing(
    tmp_path: Path,
    detectors: Detectors,
    key_id: str,
    secret: str,
    id_shown: bool,
    secret_shown: bool,
) -> None:
    key_id = fake_token("aws") if key_id == "real" else key_id
    secret = aws_secret() if secret == "real" else secret
    image = env_history(("AWS_ACCESS_KEY_ID", key_id), ("AWS_SECRET_ACCESS_KEY", secret), env=True)
    found = _scan(image, tmp_path / "1", detectors, min_confidence="low")
    assert not [f for f in found.findings if f.rule_id == AWS_PAIR]
    # what is real is still reported alone (the id by its format, the secret by its name);
    # an example or a placeholder is not reported at medium or above
    shown = {f.secret_sha256 for f in found.findings if f.confidence != "low"}
    assert (_sha(key_id) in shown) is id_shown
    assert (_sha(secret) in shown) is secret_shown


def test_a_secret_without_an_id_is_a_named_value(tmp_path: Path, detectors: Detectors) -> None:
    secret = aws_secret()
    found = _scan(env_history(("AWS_SECRET_ACCESS_KEY", secret)), tmp_path / "1", detectors)
    assert _seen(found, "history") == {_sha(secret): (NAMED, "medium")}


# --- baselines made before the pair ---------------------------------------------------------


def test_a_baseline_from_before_pairing_still_accepts_the_pair(
    tmp_path: Path, detectors: Detectors, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_id, secret = fake_token("aws"), aws_secret()
    in_file = f"AWS_ACCESS_KEY_ID={key_id}\nAWS_SECRET_ACCESS_KEY={secret}\n"
    first = base()
    files = Layer(created_by="COPY .env /app/.env").file("app/.env", in_file)
    image = Image(
        layers=[first, files],
        history=[
            {"created_by": first.created_by},
            {"created_by": files.created_by},
            {"created_by": f"ENV AWS_ACCESS_KEY_ID={key_id}", "empty_layer": True},
            {"created_by": f"ENV AWS_SECRET_ACCESS_KEY={secret}", "empty_layer": True},
        ],
        env=[f"AWS_ACCESS_KEY_ID={key_id}", f"AWS_SECRET_ACCESS_KEY={secret}"],
    )
    # leakscan as it was: no pairs, in one file or apart (in process, so the patch holds)
    with monkeypatch.context() as patch:
        patch.setattr("leakscan.scan.pairs_apart", lambda hits: [])
        patch.setattr(token_rules, "_pairs", lambda text, named: iter(()))
        before = _scan(image, tmp_path / "1", detectors, workers=1)
    assert {f.rule_id for f in before.findings if f.secret_sha256 == _sha(secret)} == {NAMED}
    baseline = tmp_path / "baseline.json"
    baseline.write_text(baseline_json(m.ScanReport("app:1", (before,))))
    accepted = load_baseline(baseline)

    now = _scan(image, tmp_path / "2", detectors, workers=1)
    assert {f.rule_id for f in now.findings if f.secret_sha256 == _sha(secret)} == {AWS_PAIR}
    assert {f.fingerprint for f in now.findings}.isdisjoint(accepted.fingerprints)
    kept = _scan(
        image, tmp_path / "3", detectors, workers=1,
        suppressions=Suppressions(fingerprints=accepted.fingerprints),
    )  # fmt: skip
    assert kept.findings == ()
    assert dict(kept.suppressed) == {"baseline": len(now.findings)}
    # the aliases are no part of the JSON report
    assert "aliases" not in json.dumps(baseline_json(m.ScanReport("app:1", (now,))))


def test_a_new_secret_is_not_accepted_by_an_alias(tmp_path: Path, detectors: Detectors) -> None:
    key_id = fake_token("aws")
    old = env_history(("AWS_ACCESS_KEY_ID", key_id), ("AWS_SECRET_ACCESS_KEY", aws_secret()))
    first = _scan(old, tmp_path / "1", detectors)
    accepted = frozenset(f.fingerprint for f in first.findings)
    for f in first.findings:
        accepted |= frozenset(f.aliases)
    rotated = env_history(("AWS_ACCESS_KEY_ID", key_id), ("AWS_SECRET_ACCESS_KEY", aws_secret()))
    again = _scan(rotated, tmp_path / "2", detectors, suppressions=Suppressions(accepted))
    assert [f.rule_id for f in again.findings] == [AWS_PAIR]
