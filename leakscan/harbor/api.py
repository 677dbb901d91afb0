"""The shapes of Harbor's pluggable scanner adapter API v1.2: media types, the scan request
and its validation, the error body. Nothing here scans or serves."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from leakscan.sources.auth import Credentials, RegistryOptions

MIME_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MIME_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
CONSUMES = (MIME_OCI_MANIFEST, MIME_DOCKER_MANIFEST)

MIME_METADATA = "application/vnd.scanner.adapter.metadata+json; version=1.1"
MIME_SCAN_RESPONSE = "application/vnd.scanner.adapter.scan.response+json; version=1.0"
MIME_ERROR = "application/vnd.scanner.adapter.error+json; version=1.0"
MIME_REPORT = "application/vnd.security.vulnerability.report; version=1.1"
# the v1.0 name of the same report: older Harbor releases ask for it
MIME_REPORT_V10 = "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0"
MIME_RAW = "application/vnd.scanner.adapter.vuln.report.raw"
PRODUCES = (MIME_REPORT, MIME_RAW)

# the origin credentials carry: error messages name it, never the credentials
ORIGIN = "the scan request's authorization"

_DIGEST = re.compile(r"(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})")
# the distribution spec's repository name grammar
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(f"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# larger bodies are refused before they are read
MAX_REQUEST_BYTES = 64 << 10


class RequestError(Exception):
    """A request the adapter refuses: the HTTP status and a message for Harbor's error body.
    The message never quotes a credential."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_body(message: str) -> bytes:
    """Harbor's ``ErrorResponse``."""
    return json.dumps({"error": {"message": message}}).encode()


@dataclass(frozen=True, repr=False)
class ScanRequest:
    """One validated scan request; ``authorization`` is the header value Harbor gives for
    its registry (a robot account's Basic pair or a Bearer token)."""

    registry_url: str
    repository: str
    digest: str
    tag: str | None
    mime_type: str | None
    authorization: str | None

    def __repr__(self) -> str:
        # never the authorization
        return f"ScanRequest({self.registry_url!r}, {self.repository!r}, {self.digest!r})"

    @property
    def host(self) -> str:
        """``HOST[:PORT]`` of the registry."""
        return urlsplit(self.registry_url).netloc

    @property
    def key(self) -> tuple[str, str, str, str]:
        """What makes two requests the same scan: registry, repository, digest, and the
        credentials (by their hash). A request never gets the report of a scan made with
        other credentials than its own, which might not open the image; a second scan with
        other credentials is cheap: the result store answers for the layers, and the
        registry checks the credentials on the manifest and config."""
        given = hashlib.sha256((self.authorization or "").encode()).hexdigest()
        return (self.host.lower(), self.repository, self.digest, given)

    @property
    def reference(self) -> str:
        """The image as leakscan's registry source takes it."""
        return f"docker://{self.host}/{self.repository}@{self.digest}"

    def artifact(self) -> dict[str, str]:
        """The ``artifact`` object of Harbor's report."""
        out = {"repository": self.repository, "digest": self.digest}
        if self.tag:
            out["tag"] = self.tag
        if self.mime_type:
            out["mime_type"] = self.mime_type
        return out

    def credentials(self) -> Credentials | None:
        """The registry credentials the authorization carries."""
        return parse_authorization(self.authorization)

    def registry_options(self, ca_file: str | None, tls_verify: bool) -> RegistryOptions:
        """How to reach the registry: its scheme, the adapter's TLS settings, the credentials."""
        plain = urlsplit(self.registry_url).scheme == "http"
        return RegistryOptions(
            creds=self.credentials(), ca_file=ca_file, tls_verify=tls_verify, plain_http=plain
        )


def parse_authorization(value: str | None) -> Credentials | None:
    """Credentials from an Authorization header value: ``Basic base64(user:pass)`` or
    ``Bearer TOKEN``. Raises RequestError (422) for anything else; never quotes the value."""
    if value is None or value == "":
        return None
    scheme, _, rest = value.strip().partition(" ")
    rest = rest.strip()
    if scheme.lower() == "basic" and rest:
        try:
            pair = base64.b64decode(rest, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise RequestError(422, "registry.authorization: Basic value is not base64") from None
        user, colon, password = pair.partition(":")
        if not colon or not user:
            raise RequestError(422, "registry.authorization: Basic value is not user:password")
        return Credentials(user, password, origin=ORIGIN)
    if scheme.lower() == "bearer" and rest:
        return Credentials(origin=ORIGIN, registry_token=rest)
    raise RequestError(422, "registry.authorization: expected 'Basic ...' or 'Bearer ...'")


def _string(obj: dict[str, Any], name: str, where: str, required: bool) -> str | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise RequestError(422, f"{where}.{name} is required")
        return None
    if not isinstance(value, str):
        raise RequestError(400, f"{where}.{name} must be a string")
    if required and not value:
        raise RequestError(422, f"{where}.{name} is required")
    return value


def _object(body: dict[str, Any], name: str) -> dict[str, Any]:
    value = body.get(name)
    if value is None:
        raise RequestError(422, f"{name} is required")
    if not isinstance(value, dict):
        raise RequestError(400, f"{name} must be an object")
    return value


def parse_scan_request(body: bytes) -> ScanRequest:
    """Validate a ``ScanRequest`` body: 400 for what is not JSON or has the wrong types,
    422 for a missing or invalid field, 501 when it asks for no capability of ours."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise RequestError(400, "the body is not JSON") from None
    if not isinstance(doc, dict):
        raise RequestError(400, "the body must be a JSON object")
    registry = _object(doc, "registry")
    artifact = _object(doc, "artifact")
    url = _string(registry, "url", "registry", required=True) or ""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise RequestError(422, "registry.url must be http(s)://HOST[:PORT]")
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise RequestError(422, "registry.url must be http(s)://HOST[:PORT]")
    authorization = _string(registry, "authorization", "registry", required=False)
    repository = _string(artifact, "repository", "artifact", required=True) or ""
    if len(repository) > 255 or not _REPOSITORY.fullmatch(repository):
        raise RequestError(422, "artifact.repository is not a repository name")
    digest = _string(artifact, "digest", "artifact", required=True) or ""
    if not _DIGEST.fullmatch(digest):
        raise RequestError(422, "artifact.digest must be sha256:<64 hex> or sha512:<128 hex>")
    tag = _string(artifact, "tag", "artifact", required=False)
    if tag and not _TAG.fullmatch(tag):
        raise RequestError(422, "artifact.tag is not a tag")
    mime = _string(artifact, "mime_type", "artifact", required=False)
    if mime and mime.split(";", 1)[0].strip() not in CONSUMES:
        raise RequestError(422, f"artifact.mime_type must be one of {', '.join(CONSUMES)}")
    _capabilities(doc.get("enabled_capabilities"))
    request = ScanRequest(url.rstrip("/"), repository, digest, tag or None, mime, authorization)
    request.credentials()  # a malformed authorization is refused now, not in the scan
    return request


def _capabilities(value: Any) -> None:
    """Without the field, every capability is enabled; with it, ours must be among them."""
    if value is None:
        return
    if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
        raise RequestError(400, "enabled_capabilities must be an array of objects")
    types = {x.get("type") for x in value}
    if "vulnerability" not in types:
        raise RequestError(501, "this scanner has only the vulnerability capability")
    for one in value:
        if one.get("type") != "vulnerability":
            continue
        produces = one.get("produces_mime_types")
        if produces is None:
            continue
        if not isinstance(produces, list) or not all(isinstance(p, str) for p in produces):
            raise RequestError(400, "produces_mime_types must be an array of strings")
        ours = {_normal(x) for x in (*PRODUCES, MIME_REPORT_V10)}
        if produces and not any(_normal(p) in ours for p in produces):
            raise RequestError(501, f"this scanner produces {', '.join(PRODUCES)}")


def _normal(mime: str) -> str:
    """A media type compared without spaces or case (``a; version=1.1``)."""
    return "".join(mime.split()).lower()


def report_kind(accept: str | None) -> str | None:
    """Which report an ``Accept`` header asks for: ``harbor``, ``raw``, or None (none we
    produce). No header or ``*/*`` is Harbor's report."""
    if not accept:
        return "harbor"
    for part in accept.split(","):
        wanted = _normal(part.split(";q=", 1)[0])
        if wanted in ("*/*", "application/*", _normal(MIME_REPORT), _normal(MIME_REPORT_V10)):
            return "harbor"
        if wanted == _normal(MIME_RAW):
            return "raw"
    return None
