"""Provenance predicates shaped as BuildKit writes them (its attestation storage and SLSA
definitions documents give the fields), SLSA v0.2 and v1, ``mode=max``: build arguments,
the LLB build steps, the Dockerfile embedded in base64 with its source locations, layers
by step. Every digest is made up here; secrets are whatever the test passes."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

V02 = "https://slsa.dev/provenance/v0.2"
V1 = "https://slsa.dev/provenance/v1"
BUILDKIT_V02_TYPE = "https://mobyproject.org/buildkit@v1"
BUILDKIT_V1_TYPE = (
    "https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md"
)
METADATA_V02 = "https://mobyproject.org/buildkit@v1#metadata"

DOCKERFILE = """# syntax=docker/dockerfile:1
FROM alpine:3.19
ARG NPM_TOKEN
WORKDIR /app
COPY package.json .
RUN npm ci --registry https://npm.example.internal/
CMD ["node", "server.js"]
"""


def _hex(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def _steps(env: list[str]) -> list[dict[str, Any]]:
    """Two LLB steps as mode=max records them: the base image, then an exec."""
    return [
        {
            "id": "step0",
            "op": {
                "Op": {
                    "source": {
                        "identifier": "docker-image://docker.io/library/alpine:3.19@sha256:"
                        + _hex("alpine")
                    }
                },
                "platform": {"Architecture": "amd64", "OS": "linux"},
                "constraints": {},
            },
        },
        {
            "id": "step1",
            "op": {
                "Op": {
                    "exec": {
                        "meta": {
                            "args": [
                                "/bin/sh",
                                "-c",
                                "npm ci --registry https://npm.example.internal/",
                            ],
                            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin", *env],
                            "cwd": "/app",
                        },
                        "mounts": [{"input": 0, "dest": "/", "output": 0}],
                        "network": 1,
                    }
                },
                "platform": {"Architecture": "amd64", "OS": "linux"},
                "constraints": {},
            },
            "inputs": ["step0:0"],
        },
    ]


def _source(dockerfile: str) -> dict[str, Any]:
    return {
        "locations": {
            "step1": {"locations": [{"ranges": [{"start": {"line": 6}, "end": {"line": 6}}]}]}
        },
        "infos": [
            {
                "filename": "Dockerfile",
                "language": "Dockerfile",
                "data": base64.b64encode(dockerfile.encode()).decode(),
                "llbDefinition": [
                    {"id": "step0", "op": {"Op": {"source": {"identifier": "local://dockerfile"}}}}
                ],
                "digestMapping": {f"sha256:{_hex('df')}": "step0"},
            }
        ],
    }


def _layers() -> dict[str, Any]:
    return {
        "step1:0": [
            [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": f"sha256:{_hex('layer1')}",
                    "size": 3401,
                }
            ]
        ]
    }


def predicate_v02(
    args: dict[str, str] | None = None,
    env: list[str] | None = None,
    dockerfile: str = DOCKERFILE,
    started: str = "2026-12-04T10:00:00.000000001Z",
) -> dict[str, Any]:
    """SLSA v0.2 provenance of a Dockerfile build, mode=max: ``args`` are the build
    arguments without the ``build-arg:`` prefix BuildKit records them under."""
    return {
        "builder": {"id": ""},
        "buildType": BUILDKIT_V02_TYPE,
        "materials": [
            {
                "uri": "pkg:docker/alpine@3.19?platform=linux%2Famd64",
                "digest": {"sha256": _hex("alpine")},
            }
        ],
        "invocation": {
            "configSource": {"entryPoint": "Dockerfile"},
            "parameters": {
                "frontend": "dockerfile.v0",
                "args": {f"build-arg:{k}": v for k, v in (args or {}).items()},
                "locals": [{"name": "context"}, {"name": "dockerfile"}],
            },
            "environment": {"platform": "linux/amd64"},
        },
        "buildConfig": {
            "llbDefinition": _steps(env or []),
            "digestMapping": {f"sha256:{_hex('s0')}": "step0", f"sha256:{_hex('s1')}": "step1"},
        },
        "metadata": {
            "buildInvocationID": "4xv8mp0o6l1xqpq1k2hr0ocfh",
            "buildStartedOn": started,
            "buildFinishedOn": started.replace("10:00", "10:02"),
            "completeness": {"parameters": True, "environment": True, "materials": False},
            "reproducible": False,
            METADATA_V02: {
                "vcs": {
                    "revision": _hex("rev")[:40],
                    "source": "https://git.example.internal/team/app.git",
                },
                "source": _source(dockerfile),
                "layers": _layers(),
            },
        },
    }


def predicate_v1(
    args: dict[str, str] | None = None,
    env: list[str] | None = None,
    dockerfile: str = DOCKERFILE,
    started: str = "2026-12-04T10:00:00.000000001Z",
) -> dict[str, Any]:
    """SLSA v1 provenance of the same build, mode=max."""
    return {
        "buildDefinition": {
            "buildType": BUILDKIT_V1_TYPE,
            "externalParameters": {
                "configSource": {"path": "Dockerfile"},
                "request": {
                    "frontend": "dockerfile.v0",
                    "args": {f"build-arg:{k}": v for k, v in (args or {}).items()},
                    "locals": [{"name": "context"}, {"name": "dockerfile"}],
                },
            },
            "internalParameters": {
                "buildConfig": {
                    "llbDefinition": _steps(env or []),
                    "digestMapping": {f"sha256:{_hex('s0')}": "step0"},
                },
                "builderPlatform": "linux/amd64",
            },
            "resolvedDependencies": [
                {
                    "uri": "pkg:docker/alpine@3.19?platform=linux%2Famd64",
                    "digest": {"sha256": _hex("alpine")},
                }
            ],
        },
        "runDetails": {
            "builder": {"id": ""},
            "metadata": {
                "invocationID": "4xv8mp0o6l1xqpq1k2hr0ocfh",
                "startedOn": started,
                "finishedOn": started.replace("10:00", "10:02"),
                "buildkit_metadata": {
                    "vcs": {
                        "revision": _hex("rev")[:40],
                        "source": "https://git.example.internal/team/app.git",
                    },
                    "source": _source(dockerfile),
                    "layers": _layers(),
                },
                "buildkit_hermetic": False,
                "buildkit_completeness": {"request": True, "resolvedDependencies": False},
                "buildkit_reproducible": False,
            },
        },
    }


def predicate(version: str, **kw: Any) -> tuple[str, dict[str, Any]]:
    """(predicateType, predicate) of ``version`` ``v0.2`` or ``v1``."""
    if version == "v1":
        return V1, predicate_v1(**kw)
    return V02, predicate_v02(**kw)


ARGS_PATH = {
    V02: "predicate.invocation.parameters.args.build-arg:{}",
    V1: "predicate.buildDefinition.externalParameters.request.args.build-arg:{}",
}
DOCKERFILE_PATH = {
    V02: f"predicate.metadata.{METADATA_V02}.source.infos[0].data",
    V1: "predicate.runDetails.metadata.buildkit_metadata.source.infos[0].data",
}
