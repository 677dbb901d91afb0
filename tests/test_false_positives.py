"""Never cry wolf: upstream sample keys, examples, placeholders and the labelled corpus's
look-alikes pass the default gate, while its made-up tokens do not."""

from __future__ import annotations

from pathlib import Path

from helpers import only_image, scan_ref, write
from imagebuilder import Image, Layer
from test_hiding_places import _pem
from tokencorpus import build, image_of, score

from leakscan.detectors import Detectors


def test_vendored_samples_and_placeholders_pass_the_default_gate(
    tmp_path: Path, detectors: Detectors
) -> None:
    pem = _pem()
    layer = (
        Layer()
        .file("usr/local/lib/python3.11/test/certdata/keycert.pem", pem)
        .file("app/node_modules/some-lib/test/fixtures/server.key", pem)
        .file("usr/share/doc/libfoo/examples/rsakey.pem", pem)
        .file("app/node_modules/sdk/apis/sso.examples.json",
              '{"token": "postgres://admin:hunter2hunter2@db.example.internal/app"}')
        .file("app/.env", "DB_PASSWORD=changeme\nAPI_TOKEN=${API_TOKEN}\nSECRET=<secret>\n")
        .file("app/config.yaml", "password: {{ .Values.password }}\n")
        .file("root/.aws/credentials", "[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\n"
              "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n")
    )  # fmt: skip
    ref = write("oci-dir", Image(layers=[layer]), tmp_path)
    default = only_image(scan_ref(ref, detectors))
    assert default.findings == ()
    assert default.below_threshold >= 3  # the sample keys and URL: still counted
    low = only_image(scan_ref(ref, detectors, min_confidence="low"))
    paths = {f.location.path for f in low.findings}  # type: ignore[union-attr]
    # placeholders are silent even at low confidence
    assert not paths & {"/app/.env", "/app/config.yaml", "/root/.aws/credentials"}
    assert "/usr/local/lib/python3.11/test/certdata/keycert.pem" in paths


def test_labelled_corpus_at_the_default_gate(tmp_path: Path, detectors: Detectors) -> None:
    """The labelled corpus (tests/tokencorpus.py): made-up tokens of 100+ providers in
    realistic files, half of them deleted by a later layer, beside look-alike files. At the
    default confidence: at least 97% found, each at its layer with its status, and not one
    look-alike file flagged."""
    corpus = build(seed=13)
    assert len(corpus.providers) >= 100
    ref = write("oci-dir", image_of(corpus), tmp_path)
    report = scan_ref(ref, detectors, min_confidence="low", show_secrets=True)
    rows, notes = score(corpus, report)
    positives = sum(r.positives for r in rows)
    found = sum(r.found_default for r in rows)
    assert found >= 0.97 * positives, notes
    assert sum(r.placed_right for r in rows) == found, notes
    assert sum(r.flagged for r in rows) == 0, notes
    assert sum(r.lookalikes for r in rows) >= 1000
