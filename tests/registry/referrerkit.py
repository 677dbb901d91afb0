"""A signed image and its referrer in a real registry, and a proxy that gives the registry
the referrers API (OCI distribution 1.1) that Debian's distribution registry lacks."""

from __future__ import annotations

import hashlib
import json
import socket
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from imagebuilder import MT, Image, Layer, fake_token, write_oci_layout
from provenancekit import V02, predicate
from regkit import FaultProxy, Registry

from leakscan.sources.attestations import tag_schema


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def put_referrer(
    registry: Registry, repo: str, subject: dict[str, Any], statement: bytes, tag: bool
) -> tuple[str, dict[str, Any]]:
    """An artifact manifest whose subject is ``subject``, pushed by digest; with ``tag``
    the tag schema's index listing it too (what a client pushes when the registry has no
    referrers API). Returns its digest and the referrers index that lists it."""
    registry.upload_blob(repo, statement)
    registry.upload_blob(repo, b"{}")
    artifact = {
        "schemaVersion": 2,
        "mediaType": MT.OCI_MANIFEST,
        "artifactType": "application/vnd.in-toto+json",
        "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": sha(b"{}"),
            "size": 2,
        },
        "layers": [
            {
                "mediaType": "application/vnd.in-toto+json",
                "digest": sha(statement),
                "size": len(statement),
                "annotations": {"in-toto.io/predicate-type": V02},
            }
        ],
        "subject": subject,
    }
    body = json.dumps(artifact).encode()
    digest = sha(body)
    registry.put_manifest(repo, digest, artifact)
    index = {
        "schemaVersion": 2,
        "mediaType": MT.OCI_INDEX,
        "manifests": [
            {
                "mediaType": MT.OCI_MANIFEST,
                "digest": digest,
                "size": len(body),
                "artifactType": artifact["artifactType"],
            }
        ],
    }
    if tag:
        registry.put_manifest(repo, tag_schema(subject["digest"]), index)
    return digest, index


def signed(
    registry: Registry, tmp_path: Path, tag: bool
) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """A clean image pushed as signed/app:1 and a referrer of it whose SLSA v0.2 statement
    records GH_TOKEN: the image's descriptor, the referrer's digest, the referrers index."""
    single = Image(layers=[Layer().file("etc/app", "clean\n")])
    layout = write_oci_layout(tmp_path / "single", single, tag="1")
    registry.push(f"oci:{layout}:1", "signed/app:1")
    status, body = registry.raw_get("/v2/signed/app/manifests/1", {"Accept": MT.OCI_MANIFEST})
    assert status == 200
    subject = {"mediaType": MT.OCI_MANIFEST, "digest": sha(body), "size": len(body)}
    _, pred = predicate("v0.2", args={"GH_TOKEN": fake_token("github")})
    statement = json.dumps(
        {
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": V02,
            "subject": [],
            "predicate": pred,
        }
    ).encode()
    referrer, index = put_referrer(registry, "signed/app", subject, statement, tag)
    return subject, referrer, index


class ReferrersApi(FaultProxy):
    """The registry behind a proxy that answers the referrers API (OCI distribution 1.1)
    itself, from ``answers`` (subject digest -> index), 404 for any other subject's tag."""

    def __init__(self, upstream: Registry, answers: dict[str, dict[str, Any]]) -> None:
        super().__init__(upstream)
        self.answers = answers

    def handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        if "/referrers/" not in h.path:
            super().handle(h, method)
            return
        # the head and the body go out in two writes: without this the body waits for the
        # client's delayed ACK of the head (40 ms a request), which no registry makes it wait
        h.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        subject = h.path.rsplit("/", 1)[-1]
        empty = {"schemaVersion": 2, "mediaType": MT.OCI_INDEX, "manifests": []}
        body = json.dumps(self.answers.get(subject, empty)).encode()
        h.send_response(200)
        h.send_header("Content-Type", MT.OCI_INDEX)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
        self.log.append((method, h.path, None, 200))
