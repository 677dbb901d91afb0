"""Reports made by hand for the renderers' tests: a classic npm leak (a build argument in the
history, the file it wrote deleted later) and a GitHub token in ENV, as a scan reports them."""

from __future__ import annotations

import hashlib

from leakscan import model as m
from leakscan.terms import Confidence

NPM_SHA = hashlib.sha256(b"npm-token").hexdigest()
GH_SHA = hashlib.sha256(b"gh-token").hexdigest()
RUN_NPM = (
    'RUN |1 NPM_TOKEN=npm_******** /bin/sh -c echo "//npm.example.internal/:_authToken='
    '${NPM_TOKEN}" > /root/.npmrc && npm ci --no-audit --no-fund && npm run build # buildkit'
)
DIFF = "sha256:" + "5a65b035a01f" + "0" * 52


def finding(
    loc: m.Location,
    sha: str = NPM_SHA,
    rule: str = "detect-secrets.npm-tokens",
    confidence: Confidence = "high",
    n: int = 0,
    fix: str = "Rotate it.",
) -> m.Finding:
    return m.Finding(
        rule_id=rule,
        description="npm token",
        secret_sha256=sha,
        redacted="npm_********" if sha == NPM_SHA else "ghp_********",
        fingerprint=hashlib.sha256(f"{sha}{loc}{n}".encode()).hexdigest(),
        location=loc,
        confidence=confidence,
        detectors=(f"x:{rule}",),
        remediation=fix,
    )


def npm_file(status: str = "deleted") -> m.FileLocation:
    removed = 3 if status != "present" else None
    return m.FileLocation(1, DIFF, "/root/.npmrc", 1, status, removed)  # type: ignore[arg-type]


def leaky_image(**extra: object) -> m.ImageReport:
    findings = (
        finding(npm_file()),
        finding(
            m.HistoryLocation(3, 1, RUN_NPM),
            rule="veles.secrets/npmjsaccesstoken",
            confidence="medium",
            fix="Build argument NPM_TOKEN is recorded in the image history. Drop ARG NPM_TOKEN "
            "and pass it as a secret: RUN --mount=type=secret,id=NPM_TOKEN,env=NPM_TOKEN npm ci "
            "(docker build --secret id=NPM_TOKEN,env=NPM_TOKEN). Rotate it: it has shipped.",
        ),
        finding(m.HistoryLocation(7, None, "ENV GITHUB_TOKEN=ghp_********"), GH_SHA, "gh-pat"),
        finding(m.ConfigLocation("Env", "GITHUB_TOKEN"), GH_SHA, "gh-pat", fix="Inject it."),
    )
    layers = tuple(
        m.LayerInfo(i, None, DIFF, None, 10, i, RUN_NPM if i == 1 else "ADD x /")
        for i in range(4)
    )
    fields: dict[str, object] = {
        "reference": "registry.example.internal/team/app:3",
        "source": "registry",
        "platform": "linux/amd64",
        "manifest_digest": None,
        "config_digest": DIFF,
        "layers": layers,
        "history": (),
        "findings": findings,
        "errors": (),
        "skipped": (),
    }
    fields.update(extra)
    return m.ImageReport(**fields)  # type: ignore[arg-type]


def leaky_report(**extra: object) -> m.ScanReport:
    return m.ScanReport("registry.example.internal/team/app:3", (leaky_image(**extra),))
