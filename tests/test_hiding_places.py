"""Where secrets hide in real images, and each is found at the default gate: binaries,
minified files, UTF-16, base64, and the credential files people forget."""

from __future__ import annotations

import base64
import json
import secrets
import string
from pathlib import Path

from helpers import file_findings, only_image, scan_ref, write
from imagebuilder import Image, Layer, fake_token

from leakscan.detectors import Detectors

ALNUM = string.ascii_letters + string.digits


def _password(n: int = 22) -> str:
    return "".join(secrets.choice(ALNUM) for _ in range(n))


def _pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def test_every_hiding_place_is_found(tmp_path: Path, detectors: Detectors) -> None:
    gh = [fake_token("github") for _ in range(6)]
    pw = [_password() for _ in range(6)]
    pem, tls = _pem(), _pem()
    aws_id, aws_key = fake_token("aws"), fake_token("aws_secret")
    docker_auth = base64.b64encode(f"deploy:{pw[0]}".encode()).decode()
    sa = {"type": "service_account", "project_id": "demo", "private_key": pem,
          "client_email": "ci@demo.iam.example.internal"}  # fmt: skip
    expect = {
        "/usr/local/bin/tool": gh[0],
        "/app/__pycache__/settings.cpython-311.pyc": gh[1],
        "/app/static/app.min.js": gh[2],
        "/app/notes-utf16.txt": gh[3],
        "/app/k8s/secret.yaml": gh[4],
        "/root/.docker/config.json": docker_auth,
        "/root/.git-credentials": pw[1],
        "/root/.netrc": pw[2],
        "/root/.pypirc": pw[3],
        "/root/.aws/credentials": aws_key,
        "/root/.kube/config": pw[4],
        "/root/.ssh/id_ecdsa": tls.strip(),
        "/app/.env": pw[5],
    }
    layer = (
        Layer()
        .file("usr/local/bin/tool", b"\x7fELF\x02\x01" + b"\0" * 4000 + gh[0].encode() + b"\0")
        .file("app/__pycache__/settings.cpython-311.pyc",
              b"\xa7\r\r\n" + b"\0" * 12 + b"\xe3" + b"\0" * 40 + b"\xda\x28" + gh[1].encode())
        .file("app/static/app.min.js",
              "var a=1;" * 300_000 + f'const t="{gh[2]}";' + "var b=2;" * 300_000)
        .file("app/notes-utf16.txt", f"deploy with GITHUB_TOKEN={gh[3]}\n".encode("utf-16"))
        .file("app/k8s/secret.yaml",
              "apiVersion: v1\nkind: Secret\nmetadata:\n  name: gh\ndata:\n"
              f"  token: {base64.b64encode(gh[4].encode()).decode()}\n")
        .file("root/.docker/config.json",
              json.dumps({"auths": {"registry.example.internal": {"auth": docker_auth}}}))
        .file("root/.git-credentials", f"https://deploy:{pw[1]}@git.example.internal\n")
        .file("root/.netrc", f"machine api.example.internal login deploy password {pw[2]}\n")
        .file("root/.pypirc", f"[pypi]\nusername = deploy\npassword = {pw[3]}\n")
        .file("root/.aws/credentials",
              f"[default]\naws_access_key_id = {aws_id}\naws_secret_access_key = {aws_key}\n")
        .file("root/.kube/config",
              f"apiVersion: v1\nkind: Config\nusers:\n- name: ci\n  user:\n    password: {pw[4]}\n")
        .file("app/gcp-sa.json", json.dumps(sa, indent=2))
        .file("root/.ssh/id_ecdsa", tls)
        .file("app/.env", f"DATABASE_URL=postgres://app:{pw[5]}@db.example.internal:5432/app\n")
    )  # fmt: skip
    image = only_image(scan_ref(write("oci-dir", Image(layers=[layer]), tmp_path), detectors))
    found: dict[str, set[str]] = {}
    for f in file_findings(image):
        found.setdefault(f.location.path, set()).add(f.secret_sha256)
    import hashlib

    for path, secret in expect.items():
        sha = hashlib.sha256(secret.encode()).hexdigest()
        assert sha in found.get(path, set()), f"{path}: not found ({sorted(found.get(path, []))})"
    # inside JSON the key is JSON-escaped ("\\n"): found as such, by a private-key rule
    assert any("private-key" in f.rule_id for f in file_findings(image, "/app/gcp-sa.json"))
    # the AWS key id next to its secret is reported too: as the pair they make, high, with
    # kingfisher's AWS rule among those that found it
    assert any(
        f.rule_id == "leakscan.aws-credential-pair"
        and f.confidence == "high"
        and any(d.split(":", 1)[1].startswith("betterleaks.aws") for d in f.detectors)
        for f in file_findings(image, "/root/.aws/credentials")
    )


def test_places_only_a_file_name_or_a_whole_file_reveals(
    tmp_path: Path, detectors: Detectors
) -> None:
    """A NuGet password is found only in a file called nuget.config, a Terraform password
    only in .tf/.hcl; a docker config.json far past one chunk (600 KB: a build host logged
    in to many registries) only when read whole."""
    nuget_pw, tf_pw = (
        _password(),
        "".join(secrets.choice(string.ascii_lowercase) for _ in range(16)),
    )
    docker_auth = base64.b64encode(f"deploy:{_password()}".encode()).decode()
    helpers = {
        f"{100000000000 + n}.dkr.ecr.eu-west-1.amazonaws.com": "ecr-login" for n in range(10000)
    }
    config = json.dumps(
        {"credHelpers": helpers, "auths": {"registry.example.internal": {"auth": docker_auth}}}
    )
    assert len(config) > 600_000
    layer = (
        Layer()
        .file("src/app/nuget.config",
              '<?xml version="1.0" encoding="utf-8"?>\n<configuration>\n'
              "  <packageSourceCredentials>\n    <acme>\n"
              '      <add key="Username" value="ci" />\n'
              f'      <add key="ClearTextPassword" value="{nuget_pw}" />\n'
              "    </acme>\n  </packageSourceCredentials>\n</configuration>\n")
        .file("srv/infra/database.tf",
              'resource "azurerm_mssql_server" "db" {\n'
              f'  administrator_login_password = "{tf_pw}"\n}}\n')
        .file("root/.docker/config.json", config)
    )  # fmt: skip
    image = only_image(scan_ref(write("oci-dir", Image(layers=[layer]), tmp_path), detectors))
    import hashlib

    def found(path: str) -> set[str]:
        return {f.secret_sha256 for f in file_findings(image, path)}

    assert hashlib.sha256(nuget_pw.encode()).hexdigest() in found("/src/app/nuget.config")
    # the rule reports the value with its quotes
    assert hashlib.sha256(f'"{tf_pw}"'.encode()).hexdigest() in found("/srv/infra/database.tf")
    assert hashlib.sha256(docker_auth.encode()).hexdigest() in found("/root/.docker/config.json")
