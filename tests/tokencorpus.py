"""A labelled corpus of leaked tokens and look-alikes, generated at run time.

Every token is made up here from its issuer's documented format (prefix, alphabet, length,
structure) with fresh random characters: none was ever issued. Each kind of token is
written into realistic files (``.env``, YAML, JSON, Python, JavaScript, Go, Java, Kotlin,
Java properties, Makefiles, shell, PHP...), and beside them are look-alike files that hold
no secret: the same formats filled with ``x``, repeated or sequential characters, redacted
(``****``) and templated values, documentation examples, hashes, UUIDs, test fixtures and
PEM blocks whose body is not base64. ``bench/labelled.py`` scores leakscan on it; the tests
hold the default gate to it.
"""

from __future__ import annotations

import base64
import json
import random
import re
import string
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from imagebuilder import Image, Layer

from leakscan import model as m
from leakscan.terms import CONFIDENCE_RANK

LOWER = string.ascii_lowercase
UPPER = string.ascii_uppercase
DIGITS = string.digits
ALNUM = LOWER + UPPER + DIGITS
HEX = DIGITS + "abcdef"
B64URL = ALNUM + "-_"
B64 = ALNUM + "+/"
BASE32 = UPPER + "234567"

Make = Callable[[random.Random], str]


def pick(r: random.Random, n: int, alphabet: str = ALNUM) -> str:
    """``n`` random characters of ``alphabet``."""
    return "".join(r.choice(alphabet) for _ in range(n))


def mixed(r: random.Random, n: int, alphabet: str = ALNUM) -> str:
    """Like :func:`pick`, with at least one digit and one letter when the alphabet has
    both (a real random token of 16+ characters has both; a placeholder need not)."""
    while True:
        out = pick(r, n, alphabet)
        has_digit = any(c.isdigit() for c in out) or not any(c in DIGITS for c in alphabet)
        has_alpha = any(c.isalpha() for c in out) or not any(c.isalpha() for c in alphabet)
        if has_digit and has_alpha:
            return out


def uuid4(r: random.Random) -> str:
    h = pick(r, 32, HEX)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{r.choice('89ab')}{h[17:20]}-{h[20:]}"


def b64json(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


def _pem(r: random.Random, label: str) -> str:
    body = "\n".join(mixed(r, 64, B64) for _ in range(12)) + "\n" + mixed(r, 24, B64) + "=="
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----"


@dataclass(frozen=True)
class Kind:
    """One kind of secret of one provider.

    ``var`` is the name a configuration gives it; ``prefix`` is the literal start of the
    token that look-alikes keep (their random part is replaced); ``syntaxes`` are the file
    kinds it is written in (two are used per kind); ``render`` writes a whole special file
    (path, text) instead, for formats that only live in one kind of file. ``extra`` makes
    a companion line (an app id, a key id) written before it, as configs do.
    """

    provider: str
    kind: str
    var: str
    make: Make
    prefix: str = ""
    syntaxes: tuple[str, ...] = ()
    render: Callable[[str, random.Random], tuple[str, str]] | None = None
    template: str = "{}"
    extra: Callable[[random.Random], tuple[str, str]] | None = None


# --- the kinds ----------------------------------------------------------------------------


def _k(provider: str, kind: str, var: str, make: Make, prefix: str = "", **kw: object) -> Kind:
    return Kind(provider, kind, var, make, prefix, **kw)  # type: ignore[arg-type]


def _aws_id(prefix: str) -> Make:
    return lambda r: prefix + mixed(r, 16, BASE32)


def _aws_pair_extra(r: random.Random) -> tuple[str, str]:
    return ("AWS_ACCESS_KEY_ID", _aws_id("AKIA")(r))


def _alibaba_extra(r: random.Random) -> tuple[str, str]:
    return ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI" + mixed(r, 20))


def _nuget_config(value: str, r: random.Random) -> tuple[str, str]:
    return (
        "nuget.config",
        '<?xml version="1.0" encoding="utf-8"?>\n<configuration>\n  <packageSources>\n'
        '    <add key="internal" value="https://pkgs.acme.internal/nuget/v3/index.json" />\n'
        "  </packageSources>\n  <packageSourceCredentials>\n    <internal>\n"
        '      <add key="Username" value="build-agent" />\n'
        f'      <add key="ClearTextPassword" value="{value}" />\n'
        "    </internal>\n  </packageSourceCredentials>\n</configuration>\n",
    )


def _freemius_php(value: str, r: random.Random) -> tuple[str, str]:
    return (
        "wp-content/plugins/acme-pro/init.php",
        "<?php\n// Freemius SDK integration\nfunction acme_fs() {\n    global $acme_fs;\n"
        "    if ( ! isset( $acme_fs ) ) {\n"
        "        $acme_fs = fs_dynamic_init( array(\n"
        f"            'id'         => '{r.randint(1000, 99999)}',\n"
        "            'slug'       => 'acme-pro',\n"
        f"            'public_key' => 'pk_{pick(r, 29, HEX)}',\n"
        f"            'secret_key' => '{value}',\n"
        "        ) );\n    }\n    return $acme_fs;\n}\n",
    )


def _clickhouse_users(value: str, r: random.Random) -> tuple[str, str]:
    return (
        "etc/clickhouse-server/users.d/app.xml",
        "<clickhouse>\n  <users>\n    <app>\n"
        f"      <password>{value}</password>\n"
        "      <networks><ip>::/0</ip></networks>\n      <profile>default</profile>\n"
        "    </app>\n  </users>\n</clickhouse>\n",
    )


def _docker_config(value: str, r: random.Random) -> tuple[str, str]:
    return (
        "root/.docker/config.json",
        json.dumps({"auths": {"registry.acme.internal": {"auth": value}}}, indent=2) + "\n",
    )


def _docker_auth(r: random.Random) -> str:
    return base64.b64encode(f"deploy:{mixed(r, 20)}".encode()).decode()


def _gcp_sa(value: str, r: random.Random) -> tuple[str, str]:
    doc = {
        "type": "service_account",
        "project_id": "acme-prod-311",
        "private_key_id": pick(r, 40, HEX),
        "private_key": value + "\n",
        "client_email": "deployer@acme-prod-311.iam.gserviceaccount.com",
        "client_id": pick(r, 21, DIGITS),
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    return ("secrets/gcp-deployer.json", json.dumps(doc, indent=2) + "\n")


def _pem_file(value: str, r: random.Random) -> tuple[str, str]:
    return ("etc/ssl/private/api.acme.key", value + "\n")


def _kube_secret(encoded: str, r: random.Random) -> tuple[str, str]:
    return (
        "deploy/k8s/db-secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ntype: Opaque\n"
        f"data:\n  password: {encoded}\n",
    )


def _netrc(value: str, r: random.Random) -> tuple[str, str]:
    return ("root/.netrc", f"machine git.acme.internal\nlogin ci-bot\npassword {value}\n")


def _git_credentials(value: str, r: random.Random) -> tuple[str, str]:
    return ("root/.git-credentials", f"https://ci-bot:{value}@git.acme.internal\n")


def _url(scheme: str, host: str, path: str) -> Callable[[str, random.Random], tuple[str, str]]:
    def render(value: str, r: random.Random) -> tuple[str, str]:
        return (
            "srv/app/config/database.yml",
            "production:\n  adapter: primary\n"
            f"  url: {scheme}://app:{value}@{host}/{path}\n  pool: 10\n",
        )

    return render


def _sentry_org(r: random.Random) -> str:
    claims = {
        "iat": r.randint(1_700_000_000, 1_800_000_000),
        "url": "https://sentry.io",
        "org": "acme",
    }
    return f"sntrys_{b64json(claims)}_{mixed(r, 43, B64URL)}"


def _fly(r: random.Random) -> str:
    return "FlyV1 fm2_" + mixed(r, 300, B64 + "=") + ",fm2_" + mixed(r, 200, B64 + "=")


def _atlassian(r: random.Random) -> str:
    return "ATATT3xFfGF0" + mixed(r, 168, B64URL) + "=" + pick(r, 8, DIGITS + "ABCDEF")


def _azure_ad(r: random.Random) -> str:
    return pick(r, 3, ALNUM) + r.choice(DIGITS) + "Q~" + mixed(r, 34, ALNUM + "_~.-")


def _openai(r: random.Random) -> str:
    return "sk-proj-" + mixed(r, 74, B64URL) + "T3BlbkFJ" + mixed(r, 74, B64URL)


def _discord(r: random.Random) -> str:
    uid = base64.b64encode(str(r.randint(10**17, 10**18)).encode()).decode().rstrip("=")
    return f"{uid}.{mixed(r, 6, B64URL)}.{mixed(r, 38, B64URL)}"


def _jwtish(r: random.Random, prefix: str) -> str:
    return prefix + b64json({"k": mixed(r, 24), "u": mixed(r, 10)}) + "." + mixed(r, 22, B64URL)


KINDS: tuple[Kind, ...] = (
    # AWS
    _k("AWS", "access key id", "AWS_ACCESS_KEY_ID", _aws_id("AKIA"), "AKIA"),
    _k("AWS", "temporary key id (ASIA)", "AWS_ACCESS_KEY_ID", _aws_id("ASIA"), "ASIA",
       syntaxes=("java", "kotlin", "makefile")),
    _k("AWS", "key id (ABIA)", "AWS_ACCESS_KEY_ID", _aws_id("ABIA"), "ABIA",
       syntaxes=("kotlin", "makefile", "java")),
    _k("AWS", "key id (ACCA)", "AWS_ACCESS_KEY_ID", _aws_id("ACCA"), "ACCA",
       syntaxes=("makefile", "java", "kotlin")),
    _k("AWS", "secret access key", "AWS_SECRET_ACCESS_KEY", lambda r: mixed(r, 40, B64),
       extra=_aws_pair_extra, syntaxes=("env", "dockerfile", "properties", "yaml")),
    _k("AWS", "session token", "AWS_SESSION_TOKEN",
       lambda r: "IQoJb3JpZ2luX2VjE" + mixed(r, 300, B64), "IQoJb3JpZ2luX2VjE"),
    # source forges and package registries
    _k("GitHub", "classic PAT", "GITHUB_TOKEN", lambda r: "ghp_" + mixed(r, 36), "ghp_"),
    _k("GitHub", "OAuth token", "GH_OAUTH_TOKEN", lambda r: "gho_" + mixed(r, 36), "gho_"),
    _k("GitHub", "app user token", "GITHUB_APP_TOKEN", lambda r: "ghu_" + mixed(r, 36), "ghu_"),
    _k("GitHub", "app installation token", "GH_INSTALL_TOKEN",
       lambda r: "ghs_" + mixed(r, 36), "ghs_"),
    _k("GitHub", "refresh token", "GITHUB_REFRESH_TOKEN", lambda r: "ghr_" + mixed(r, 36), "ghr_"),
    _k("GitHub", "fine-grained PAT", "GITHUB_PAT",
       lambda r: "github_pat_" + mixed(r, 22) + "_" + mixed(r, 59), "github_pat_"),
    _k("GitLab", "PAT", "GITLAB_TOKEN", lambda r: "glpat-" + mixed(r, 20, B64URL), "glpat-"),
    _k("GitLab", "runner token", "CI_RUNNER_TOKEN", lambda r: "glrt-" + mixed(r, 20, B64URL),
       "glrt-"),
    _k("GitLab", "deploy token", "GITLAB_DEPLOY_TOKEN", lambda r: "gldt-" + mixed(r, 20, B64URL),
       "gldt-"),
    _k("GitLab", "pipeline trigger token", "GITLAB_TRIGGER_TOKEN",
       lambda r: "glptt-" + mixed(r, 40, HEX), "glptt-"),
    _k("Bitbucket", "app password", "BITBUCKET_APP_PASSWORD",
       lambda r: "ATBB" + mixed(r, 32), "ATBB"),
    _k("npm", "access token", "NPM_TOKEN", lambda r: "npm_" + mixed(r, 36), "npm_"),
    _k("PyPI", "upload token", "PYPI_API_TOKEN",
       lambda r: "pypi-AgEIcHlwaS5vcmc" + mixed(r, 120, B64URL), "pypi-AgEIcHlwaS5vcmc"),
    _k("RubyGems", "API key", "GEM_HOST_API_KEY", lambda r: "rubygems_" + mixed(r, 48, HEX),
       "rubygems_"),
    _k("crates.io", "API token", "CARGO_REGISTRY_TOKEN", lambda r: "cio" + mixed(r, 32), "cio"),
    _k("NuGet", "API key", "NUGET_API_KEY", lambda r: "oy2" + mixed(r, 43, LOWER + DIGITS), "oy2"),
    _k("NuGet", "nuget.config password", "ClearTextPassword", lambda r: mixed(r, 24),
       render=_nuget_config),
    _k("Docker Hub", "PAT", "DOCKERHUB_TOKEN", lambda r: "dckr_pat_" + mixed(r, 27, B64URL),
       "dckr_pat_"),
    _k("Docker", "registry auth", "auth", _docker_auth, render=_docker_config),
    _k("Clojars", "deploy token", "CLOJARS_TOKEN",
       lambda r: "CLOJARS_" + mixed(r, 60, LOWER + DIGITS), "CLOJARS_"),
    _k("JFrog", "Artifactory API key", "ARTIFACTORY_API_KEY", lambda r: "AKCp" + mixed(r, 69),
       "AKCp"),
    _k("JFrog", "identity token", "JFROG_ACCESS_TOKEN",
       lambda r: "cmVmdGtuOjAxOjE3" + mixed(r, 48), "cmVmdGtuOjAxOjE3"),
    _k("Sonar", "user token", "SONAR_TOKEN", lambda r: "squ_" + mixed(r, 40, HEX), "squ_"),
    _k("Snyk", "API token", "SNYK_TOKEN", uuid4),
    _k("CircleCI", "personal token", "CIRCLECI_TOKEN",
       lambda r: "CCIPAT_" + mixed(r, 22) + "_" + mixed(r, 40, HEX), "CCIPAT_"),
    _k("Buildkite", "API token", "BUILDKITE_API_TOKEN", lambda r: "bkua_" + mixed(r, 40, HEX),
       "bkua_"),
    _k("Travis CI", "API token", "TRAVIS_API_TOKEN", lambda r: mixed(r, 22)),
    _k("Codecov", "upload token", "CODECOV_TOKEN", uuid4),
    _k("Harness", "PAT", "HARNESS_API_KEY",
       lambda r: f"pat.{mixed(r, 22, B64URL)}.{mixed(r, 24, HEX)}.{mixed(r, 20)}", "pat."),
    _k("Harness", "service account token", "HARNESS_SAT",
       lambda r: f"sat.{mixed(r, 22, B64URL)}.{mixed(r, 24, HEX)}.{mixed(r, 20)}", "sat."),
    _k("Terraform Cloud", "API token", "TFE_TOKEN",
       lambda r: mixed(r, 14) + ".atlasv1." + mixed(r, 67)),
    _k("Pulumi", "access token", "PULUMI_ACCESS_TOKEN", lambda r: "pul-" + mixed(r, 40, HEX),
       "pul-"),
    _k("HashiCorp Vault", "service token", "VAULT_TOKEN", lambda r: "hvs." + mixed(r, 90, B64URL),
       "hvs."),
    _k("Doppler", "personal token", "DOPPLER_TOKEN", lambda r: "dp.pt." + mixed(r, 43), "dp.pt."),
    _k("Docker Swarm", "join token", "SWARM_JOIN_TOKEN",
       lambda r: f"SWMTKN-1-{mixed(r, 50, LOWER + DIGITS)}-{mixed(r, 25, LOWER + DIGITS)}",
       "SWMTKN-1-"),
    # chat and messaging
    _k("Slack", "bot token", "SLACK_BOT_TOKEN",
       lambda r: f"xoxb-{pick(r, 12, DIGITS)}-{pick(r, 13, DIGITS)}-{mixed(r, 24)}", "xoxb-"),
    _k("Slack", "user token", "SLACK_USER_TOKEN",
       lambda r: f"xoxp-{pick(r, 12, DIGITS)}-{pick(r, 12, DIGITS)}-{pick(r, 13, DIGITS)}-"
       f"{mixed(r, 32, HEX)}", "xoxp-"),
    _k("Slack", "app token", "SLACK_APP_TOKEN",
       lambda r: f"xapp-1-A{mixed(r, 10, UPPER + DIGITS)}-{pick(r, 13, DIGITS)}-"
       f"{mixed(r, 64, HEX)}", "xapp-1-"),
    _k("Slack", "webhook URL", "SLACK_WEBHOOK_URL",
       lambda r: f"https://hooks.slack.com/services/T{mixed(r, 10, UPPER + DIGITS)}/"
       f"B{mixed(r, 10, UPPER + DIGITS)}/{mixed(r, 24)}", "https://hooks.slack.com/services/"),
    _k("Discord", "bot token", "DISCORD_BOT_TOKEN", _discord),
    _k("Discord", "webhook URL", "DISCORD_WEBHOOK",
       lambda r: f"https://discord.com/api/webhooks/{pick(r, 18, DIGITS)}/{mixed(r, 68, B64URL)}",
       "https://discord.com/api/webhooks/"),
    _k("Telegram", "bot token", "TELEGRAM_BOT_TOKEN",
       lambda r: f"{r.randint(10**9, 8 * 10**9)}:AA{mixed(r, 33, B64URL)}"),
    _k("Microsoft Teams", "webhook URL", "TEAMS_WEBHOOK_URL",
       lambda r: f"https://acme.webhook.office.com/webhookb2/{uuid4(r)}@{uuid4(r)}/"
       f"IncomingWebhook/{mixed(r, 32, HEX)}/{uuid4(r)}"),
    _k("Twilio", "API key", "TWILIO_API_KEY", lambda r: "SK" + mixed(r, 32, HEX), "SK"),
    _k("Twilio", "auth token", "TWILIO_AUTH_TOKEN", lambda r: mixed(r, 32, HEX)),
    _k("SendGrid", "API key", "SENDGRID_API_KEY",
       lambda r: f"SG.{mixed(r, 22, B64URL)}.{mixed(r, 43, B64URL)}", "SG."),
    _k("Mailgun", "API key", "MAILGUN_API_KEY", lambda r: "key-" + mixed(r, 32, HEX), "key-"),
    _k("Mailchimp", "API key", "MAILCHIMP_API_KEY",
       lambda r: mixed(r, 32, HEX) + f"-us{r.randint(1, 21)}"),
    _k("Postmark", "server token", "POSTMARK_SERVER_TOKEN", uuid4),
    _k("Brevo", "API key", "BREVO_API_KEY",
       lambda r: f"xkeysib-{mixed(r, 64, HEX)}-{mixed(r, 16)}", "xkeysib-"),
    _k("MailerSend", "API token", "MAILERSEND_API_TOKEN", lambda r: "mlsn." + mixed(r, 64, HEX),
       "mlsn."),
    _k("Intercom", "access token", "INTERCOM_ACCESS_TOKEN",
       lambda r: "dG9rOj" + mixed(r, 50, B64) + "=", "dG9rOj"),
    # payments
    _k("Stripe", "live secret key", "STRIPE_SECRET_KEY", lambda r: "sk_live_" + mixed(r, 99),
       "sk_live_"),
    _k("Stripe", "test secret key", "STRIPE_TEST_SECRET_KEY", lambda r: "sk_test_" + mixed(r, 99),
       "sk_test_"),
    _k("Stripe", "restricted key", "STRIPE_RESTRICTED_KEY", lambda r: "rk_live_" + mixed(r, 99),
       "rk_live_"),
    _k("Square", "access token", "SQUARE_ACCESS_TOKEN", lambda r: "EAAA" + mixed(r, 60, B64URL),
       "EAAA"),
    _k("Braintree", "access token", "BRAINTREE_ACCESS_TOKEN",
       lambda r: f"access_token$production${mixed(r, 16, LOWER + DIGITS)}${mixed(r, 32, HEX)}",
       "access_token$production$"),
    _k("Plaid", "secret", "PLAID_SECRET", lambda r: mixed(r, 30, HEX)),
    _k("GoCardless", "access token", "GOCARDLESS_ACCESS_TOKEN",
       lambda r: "live_" + mixed(r, 40, B64URL), "live_"),
    _k("Shippo", "live token", "SHIPPO_API_TOKEN", lambda r: "shippo_live_" + mixed(r, 40, HEX),
       "shippo_live_"),
    _k("Lob", "live API key", "LOB_API_KEY", lambda r: "live_" + mixed(r, 35, HEX), "live_"),
    _k("EasyPost", "API key", "EASYPOST_API_KEY", lambda r: "EZAK" + mixed(r, 54), "EZAK"),
    _k("Freemius", "secret key", "secret_key", lambda r: "sk_" + mixed(r, 29, ALNUM + "#&*@$"),
       render=_freemius_php),
    _k("Etsy", "API keystring", "ETSY_API_KEY", lambda r: mixed(r, 24, LOWER + DIGITS)),
    _k("Shopify", "admin API token", "SHOPIFY_ACCESS_TOKEN", lambda r: "shpat_" + mixed(r, 32, HEX),
       "shpat_"),
    _k("Shopify", "shared secret", "SHOPIFY_API_SECRET", lambda r: "shpss_" + mixed(r, 32, HEX),
       "shpss_"),
    # clouds
    _k("Google Cloud", "API key", "GOOGLE_API_KEY", lambda r: "AIza" + mixed(r, 35, B64URL),
       "AIza"),
    _k("Google Cloud", "service account key", "private_key",
       lambda r: _pem(r, "PRIVATE KEY"), render=_gcp_sa),
    _k("Azure", "storage account key", "AZURE_STORAGE_CONNECTION_STRING",
       lambda r: mixed(r, 86, B64) + "==",
       template="DefaultEndpointsProtocol=https;AccountName=acmeprod;AccountKey={};"
       "EndpointSuffix=core.windows.net"),
    _k("Azure", "AD client secret", "AZURE_CLIENT_SECRET", _azure_ad),
    _k("Azure", "DevOps PAT", "AZURE_DEVOPS_PAT", lambda r: mixed(r, 52, LOWER + "234567")),
    _k("Azure", "Service Bus key", "SERVICEBUS_CONNECTION",
       lambda r: "Endpoint=sb://acme-bus.servicebus.windows.net/;SharedAccessKeyName="
       f"RootManageSharedAccessKey;SharedAccessKey={mixed(r, 43, B64)}="),
    _k("Alibaba Cloud", "access key id", "ALIBABA_CLOUD_ACCESS_KEY_ID",
       lambda r: "LTAI" + mixed(r, 20), "LTAI"),
    _k("Alibaba Cloud", "access key secret", "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
       lambda r: mixed(r, 30), extra=_alibaba_extra),
    _k("DigitalOcean", "PAT", "DIGITALOCEAN_TOKEN", lambda r: "dop_v1_" + mixed(r, 64, HEX),
       "dop_v1_"),
    _k("DigitalOcean", "OAuth token", "DO_OAUTH_TOKEN", lambda r: "doo_v1_" + mixed(r, 64, HEX),
       "doo_v1_"),
    _k("Heroku", "API key", "HEROKU_API_KEY", lambda r: "HRKU-AA" + mixed(r, 58, B64URL),
       "HRKU-AA"),
    _k("Cloudflare", "API token", "CLOUDFLARE_API_TOKEN", lambda r: mixed(r, 40, B64URL)),
    _k("Cloudflare", "global API key", "CLOUDFLARE_API_KEY", lambda r: mixed(r, 37, HEX)),
    _k("Cloudflare", "origin CA key", "CF_ORIGIN_CA_KEY",
       lambda r: f"v1.0-{mixed(r, 24, HEX)}-{mixed(r, 146, HEX)}", "v1.0-"),
    _k("Fly.io", "macaroon token", "FLY_API_TOKEN", _fly, "FlyV1 fm2_"),
    _k("Fly.io", "API token", "FLY_ACCESS_TOKEN", lambda r: "fo1_" + mixed(r, 43, B64URL), "fo1_"),
    _k("Vercel", "access token", "VERCEL_TOKEN", lambda r: mixed(r, 24)),
    _k("Netlify", "access token", "NETLIFY_AUTH_TOKEN", lambda r: "nfp_" + mixed(r, 36), "nfp_"),
    _k("Render", "API key", "RENDER_API_KEY", lambda r: "rnd_" + mixed(r, 32), "rnd_"),
    _k("Supabase", "access token", "SUPABASE_ACCESS_TOKEN", lambda r: "sbp_" + mixed(r, 40, HEX),
       "sbp_"),
    _k("PlanetScale", "service token", "PLANETSCALE_TOKEN",
       lambda r: "pscale_tkn_" + mixed(r, 43, B64URL), "pscale_tkn_"),
    _k("PlanetScale", "password", "PLANETSCALE_PASSWORD",
       lambda r: "pscale_pw_" + mixed(r, 43, B64URL), "pscale_pw_"),
    _k("Linode", "API token", "LINODE_TOKEN", lambda r: mixed(r, 64, HEX)),
    _k("Hetzner Cloud", "API token", "HCLOUD_TOKEN", lambda r: mixed(r, 64)),
    _k("Vultr", "API key", "VULTR_API_KEY", lambda r: mixed(r, 36, UPPER + DIGITS)),
    _k("Scaleway", "secret key", "SCW_SECRET_KEY", uuid4),
    _k("Exoscale", "API key", "EXOSCALE_API_KEY", lambda r: "EXO" + mixed(r, 24, HEX), "EXO"),
    _k("Databricks", "PAT", "DATABRICKS_TOKEN", lambda r: "dapi" + mixed(r, 32, HEX), "dapi"),
    _k("ClickHouse", "cloud key secret", "CLICKHOUSE_KEY_SECRET",
       lambda r: "4b1d" + mixed(r, 38), "4b1d"),
    _k("ClickHouse", "server password", "password", lambda r: mixed(r, 20),
       render=_clickhouse_users),
    _k("Snowflake", "password", "SNOWFLAKE_PASSWORD", lambda r: mixed(r, 16, ALNUM + "!#%")),
    _k("PostgreSQL", "URL password", "url", lambda r: mixed(r, 20),
       render=_url("postgresql", "db-1.acme.internal:5432", "app")),
    _k("MongoDB", "URL password", "url", lambda r: mixed(r, 20),
       render=_url("mongodb+srv", "cluster0.ab1cd.mongodb.net", "app")),
    _k("Redis", "password", "REDIS_PASSWORD", lambda r: mixed(r, 32)),
    _k("RabbitMQ", "URL password", "url", lambda r: mixed(r, 20),
       render=_url("amqps", "mq.acme.internal:5671", "vhost")),
    # observability and ops
    _k("Datadog", "API key", "DD_API_KEY", lambda r: mixed(r, 32, HEX)),
    _k("Datadog", "application key", "DD_APP_KEY", lambda r: mixed(r, 40, HEX)),
    _k("New Relic", "user API key", "NEW_RELIC_API_KEY",
       lambda r: "NRAK-" + mixed(r, 27, UPPER + DIGITS), "NRAK-"),
    _k("Sentry", "user token", "SENTRY_AUTH_TOKEN", lambda r: "sntryu_" + mixed(r, 64, HEX),
       "sntryu_"),
    _k("Sentry", "org token", "SENTRY_ORG_TOKEN", _sentry_org, "sntrys_"),
    _k("Grafana", "service account token", "GRAFANA_TOKEN",
       lambda r: f"glsa_{mixed(r, 32)}_{mixed(r, 8, HEX)}", "glsa_"),
    _k("Dynatrace", "API token", "DT_API_TOKEN",
       lambda r: f"dt0c01.{mixed(r, 24, UPPER + DIGITS)}.{mixed(r, 64, UPPER + DIGITS)}",
       "dt0c01."),
    _k("Sumo Logic", "access key", "SUMO_ACCESS_KEY", lambda r: mixed(r, 64)),
    _k("Okta", "API token", "OKTA_API_TOKEN", lambda r: "00" + mixed(r, 40, B64URL)),
    _k("Tailscale", "API key", "TAILSCALE_API_KEY",
       lambda r: f"tskey-api-k{mixed(r, 10)}CNTRL-{mixed(r, 33)}", "tskey-api-"),
    _k("ngrok", "auth token", "NGROK_AUTHTOKEN", lambda r: "2" + mixed(r, 26) + "_" + mixed(r, 21)),
    _k("1Password", "service account token", "OP_SERVICE_ACCOUNT_TOKEN",
       lambda r: "ops_" + b64json({"signInAddress": "acme.1password.com", "email": mixed(r, 26),
                                   "secretKey": mixed(r, 40), "srpX": mixed(r, 64, HEX)}),
       "ops_"),
    _k("age", "secret key", "SOPS_AGE_KEY",
       lambda r: "AGE-SECRET-KEY-1" + mixed(r, 58, "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L"),
       "AGE-SECRET-KEY-1"),
    # productivity and SaaS
    _k("Atlassian", "API token", "ATLASSIAN_API_TOKEN", _atlassian, "ATATT3xFfGF0"),
    _k("Atlassian", "Jira API token (legacy)", "JIRA_API_TOKEN", lambda r: mixed(r, 24)),
    _k("Linear", "API key", "LINEAR_API_KEY", lambda r: "lin_api_" + mixed(r, 40), "lin_api_"),
    _k("Notion", "integration token", "NOTION_TOKEN",
       lambda r: "ntn_" + pick(r, 11, DIGITS) + mixed(r, 35), "ntn_"),
    _k("Postman", "API key", "POSTMAN_API_KEY",
       lambda r: f"PMAK-{mixed(r, 24, HEX)}-{mixed(r, 34, HEX)}", "PMAK-"),
    _k("Airtable", "PAT", "AIRTABLE_TOKEN", lambda r: f"pat{mixed(r, 14)}.{mixed(r, 64, HEX)}"),
    _k("Asana", "PAT", "ASANA_ACCESS_TOKEN",
       lambda r: f"2/{pick(r, 16, DIGITS)}/{pick(r, 16, DIGITS)}:{mixed(r, 32, HEX)}"),
    _k("Figma", "PAT", "FIGMA_TOKEN", lambda r: "figd_" + mixed(r, 40, B64URL), "figd_"),
    _k("Frame.io", "developer token", "FRAMEIO_TOKEN", lambda r: "fio-u-" + mixed(r, 64, B64URL),
       "fio-u-"),
    _k("HubSpot", "private app token", "HUBSPOT_ACCESS_TOKEN", lambda r: "pat-na1-" + uuid4(r),
       "pat-na1-"),
    _k("LaunchDarkly", "API token", "LAUNCHDARKLY_ACCESS_TOKEN", lambda r: "api-" + uuid4(r),
       "api-"),
    _k("Contentful", "management token", "CONTENTFUL_MANAGEMENT_TOKEN",
       lambda r: "CFPAT-" + mixed(r, 43, B64URL), "CFPAT-"),
    _k("Typeform", "PAT", "TYPEFORM_TOKEN", lambda r: "tfp_" + mixed(r, 44, B64URL) + "_" +
       mixed(r, 14), "tfp_"),
    _k("ReadMe", "API key", "README_API_KEY", lambda r: "rdme_" + mixed(r, 70, LOWER + DIGITS),
       "rdme_"),
    _k("Prefect", "API key", "PREFECT_API_KEY", lambda r: "pnu_" + mixed(r, 36), "pnu_"),
    _k("Adafruit", "IO key", "ADAFRUIT_IO_KEY", lambda r: "aio_" + mixed(r, 28), "aio_"),
    _k("Beamer", "API key", "BEAMER_API_KEY", lambda r: "b_" + mixed(r, 44, B64URL), "b_"),
    _k("Mapbox", "secret token", "MAPBOX_SECRET_TOKEN",
       lambda r: _jwtish(r, "sk.eyJ1Ijoi"), "sk.eyJ1Ijoi"),
    _k("Algolia", "admin API key", "ALGOLIA_ADMIN_API_KEY", lambda r: mixed(r, 32, HEX),
       extra=lambda r: ("ALGOLIA_APP_ID", mixed(r, 10, UPPER + DIGITS))),
    _k("Fastly", "API token", "FASTLY_API_TOKEN", lambda r: mixed(r, 32, B64URL)),
    _k("Facebook", "access token", "FACEBOOK_ACCESS_TOKEN", lambda r: "EAAB" + mixed(r, 180),
       "EAAB"),
    _k("Twitter", "bearer token", "TWITTER_BEARER_TOKEN",
       lambda r: "AAAAAAAAAAAAAAAAAAAAA" + mixed(r, 90), "AAAAAAAAAAAAAAAAAAAAA"),
    _k("Yandex", "API key", "YANDEX_API_KEY", lambda r: "AQVN" + mixed(r, 36, B64URL), "AQVN"),
    _k("Dropbox", "access token", "DROPBOX_ACCESS_TOKEN", lambda r: "sl." + mixed(r, 135, B64URL),
       "sl."),
    # AI providers
    _k("OpenAI", "project key", "OPENAI_API_KEY", _openai, "sk-proj-"),
    _k("Anthropic", "API key", "ANTHROPIC_API_KEY",
       lambda r: "sk-ant-api03-" + mixed(r, 93, B64URL) + "AA", "sk-ant-api03-"),
    _k("Hugging Face", "access token", "HF_TOKEN", lambda r: "hf_" + mixed(r, 34, LOWER + UPPER),
       "hf_"),
    _k("OpenRouter", "API key", "OPENROUTER_API_KEY", lambda r: "sk-or-v1-" + mixed(r, 64, HEX),
       "sk-or-v1-"),
    _k("Groq", "API key", "GROQ_API_KEY", lambda r: "gsk_" + mixed(r, 52), "gsk_"),
    _k("Perplexity", "API key", "PERPLEXITY_API_KEY", lambda r: "pplx-" + mixed(r, 48), "pplx-"),
    _k("Replicate", "API token", "REPLICATE_API_TOKEN", lambda r: "r8_" + mixed(r, 37), "r8_"),
    _k("xAI", "API key", "XAI_API_KEY", lambda r: "xai-" + mixed(r, 80), "xai-"),
    _k("Mistral", "API key", "MISTRAL_API_KEY", lambda r: mixed(r, 32)),
    _k("Cohere", "API key", "COHERE_API_KEY", lambda r: mixed(r, 40)),
    _k("ElevenLabs", "API key", "ELEVENLABS_API_KEY", lambda r: "sk_" + mixed(r, 48, HEX), "sk_"),
    _k("Pinecone", "API key", "PINECONE_API_KEY",
       lambda r: f"pcsk_{mixed(r, 6)}_{mixed(r, 63)}", "pcsk_"),
    # application secrets, credential files, keys
    _k("Django", "secret key", "SECRET_KEY", lambda r: mixed(r, 50, ALNUM + "!@#%^&*(-_=+)")),
    _k("JWT", "signing secret", "JWT_SECRET", lambda r: mixed(r, 64, HEX)),
    _k("SMTP", "password", "SMTP_PASSWORD", lambda r: mixed(r, 18)),
    _k("Consul", "ACL token", "CONSUL_HTTP_TOKEN", uuid4),
    _k("Private key", "RSA PEM", "key", lambda r: _pem(r, "RSA PRIVATE KEY"), render=_pem_file),
    _k("Kubernetes", "Secret data", "password",
       lambda r: base64.b64encode(mixed(r, 20).encode()).decode(), render=_kube_secret),
    _k("netrc", "password", "password", lambda r: mixed(r, 20), render=_netrc),
    _k("Git", "credentials URL", "url", lambda r: mixed(r, 20), render=_git_credentials),
)  # fmt: skip


# --- the files ------------------------------------------------------------------------------

SYNTAXES = (
    "env", "yaml", "python", "js", "go", "properties", "kotlin", "java", "makefile", "json",
    "shell", "toml", "ruby", "dockerfile",
)  # fmt: skip


def _words(var: str) -> list[str]:
    return [w for w in re.split(r"[_\W]+", var.lower()) if w]


def _camel(var: str) -> str:
    words = _words(var)
    return words[0] + "".join(w.capitalize() for w in words[1:])


def render(syntax: str, pairs: list[tuple[str, str]]) -> tuple[str, str]:
    """A realistic file of ``syntax`` that assigns each (name, value) of ``pairs``; returns
    (relative path, text)."""
    if syntax == "env":
        body = "".join(f"{k}={v}\n" for k, v in pairs)
        return ".env", f"APP_ENV=production\nLOG_LEVEL=info\n{body}PORT=8080\n"
    if syntax == "yaml":
        body = "".join(f'  {k.lower()}: "{v}"\n' for k, v in pairs)
        return "config/settings.yaml", f"service:\n  name: billing\n  replicas: 3\n{body}"
    if syntax == "python":
        body = "".join(f'{k} = "{v}"\n' for k, v in pairs)
        return "app/settings.py", f'import os\n\nDEBUG = False\nALLOWED_HOSTS = ["*"]\n{body}'
    if syntax == "js":
        body = "".join(f"  {_camel(k)}: '{v}',\n" for k, v in pairs)
        return "src/config.js", f"module.exports = {{\n  port: 3000,\n{body}}};\n"
    if syntax == "go":
        body = "".join(f'\t{_camel(k)} = "{v}"\n' for k, v in pairs)
        return "internal/config/keys.go", f"package config\n\nconst (\n{body})\n"
    if syntax == "properties":
        body = "".join(f"{'.'.join(_words(k))}={v}\n" for k, v in pairs)
        return (
            "src/main/resources/application.properties",
            f"server.port=8080\nspring.application.name=billing\n{body}",
        )
    if syntax == "kotlin":
        body = "".join(f'    const val {k} = "{v}"\n' for k, v in pairs)
        return "src/main/kotlin/com/acme/Keys.kt", f"package com.acme\n\nobject Keys {{\n{body}}}\n"
    if syntax == "java":
        body = "".join(f'    private static final String {k} = "{v}";\n' for k, v in pairs)
        return (
            "src/main/java/com/acme/Keys.java",
            f"package com.acme;\n\npublic final class Keys {{\n{body}}}\n",
        )
    if syntax == "makefile":
        body = "".join(f"{k} ?= {v}\n" for k, v in pairs)
        names = " ".join(f"{k}=$({k})" for k, _ in pairs)
        return "Makefile", f"{body}\n.PHONY: deploy\ndeploy:\n\t{names} ./scripts/deploy.sh\n"
    if syntax == "json":
        doc = {"name": "billing", "port": 8080, **{_camel(k): v for k, v in pairs}}
        return "config/app.json", json.dumps(doc, indent=2) + "\n"
    if syntax == "shell":
        body = "".join(f'export {k}="{v}"\n' for k, v in pairs)
        return "scripts/deploy.sh", f"#!/bin/sh\nset -eu\n{body}exec ./bin/server\n"
    if syntax == "toml":
        body = "".join(f'{k.lower()} = "{v}"\n' for k, v in pairs)
        return "config/app.toml", f'[service]\nname = "billing"\n{body}'
    if syntax == "ruby":
        body = "".join(f"  config.{k.lower()} = '{v}'\n" for k, v in pairs)
        return "config/initializers/keys.rb", f"Rails.application.configure do\n{body}end\n"
    if syntax == "dockerfile":
        body = "".join(f"ENV {k}={v}\n" for k, v in pairs)
        return "Dockerfile", f'FROM python:3.11-slim\n{body}CMD ["python", "-m", "app"]\n'
    raise ValueError(syntax)


@dataclass(frozen=True)
class Sample:
    """One file of the corpus: the secrets it holds (empty for a look-alike)."""

    path: str
    text: str
    provider: str = ""
    kind: str = ""
    secrets: tuple[str, ...] = ()
    deleted: bool = False


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")


def lookalike_values(kind: Kind, real: str) -> list[str]:
    """Placeholder forms of ``kind``'s format: documentation examples, x's, repeated and
    sequential characters, redacted and templated values."""
    out: list[str] = []
    prefix = kind.prefix if kind.prefix and real.startswith(kind.prefix) else ""
    rest = real[len(prefix) :]

    def fill(chars: str) -> str:
        it = iter(chars * (len(rest) // max(len(chars), 1) + 1))
        # the format's separators stay, everything else is filled
        return prefix + "".join(c if c in "-_.:/~$@=," else next(it) for c in rest)

    out.append(fill("x"))
    out.append(fill("X"))
    out.append(fill("0"))
    out.append(fill("1234567890abcdef"))
    out.append(prefix + rest[:4] + "*" * 16)
    var = kind.var.upper()
    out.append("${" + var + "}")
    out.append(f"<your-{_slug(kind.provider)}-{_slug(kind.kind)}>")
    out.append(f"your_{_slug(kind.kind).replace('-', '_')}_here")
    return out


# look-alike files that belong to no provider: hashes, UUIDs, fixtures, PEM stand-ins...
def _common_lookalikes(r: random.Random) -> list[tuple[str, str]]:
    sha = pick(r, 64, HEX)
    return [
        ("srv/app/.env", "DB_PASSWORD=changeme\nAPI_TOKEN=${API_TOKEN}\nSECRET_KEY=<secret>\n"
         "REDIS_PASSWORD=\nSMTP_PASSWORD=********\nAPI_KEY=your-api-key-here\n"),
        ("srv/app/config/hashes.yaml",
         f"image: registry.acme.internal/billing@sha256:{sha}\n"
         f"checksum: {pick(r, 64, HEX)}\nmd5: {pick(r, 32, HEX)}\ncommit: {pick(r, 40, HEX)}\n"
         f"build_id: {uuid4(r)}\n"),
        ("srv/app/config/ids.json", json.dumps({
            "request_id": uuid4(r), "tenant_id": uuid4(r), "client_id": uuid4(r),
            "subscription_id": uuid4(r), "trace_id": pick(r, 32, HEX),
            "sha256": pick(r, 64, HEX), "etag": pick(r, 32, HEX)}, indent=2) + "\n"),
        ("srv/app/Makefile", f"GIT_COMMIT ?= {pick(r, 40, HEX)}\nIMAGE_DIGEST ?= sha256:{sha}\n"
         "REGISTRY_PASSWORD ?= $(shell cat /run/secrets/registry)\n"
         "API_TOKEN ?= $(API_TOKEN)\n\nbuild:\n\tdocker build .\n"),
        ("srv/app/go.sum", f"github.com/acme/lib v1.2.3 h1:{mixed(r, 43, B64)}=\n"
         f"github.com/acme/lib v1.2.3/go.mod h1:{mixed(r, 43, B64)}=\n"),
        ("srv/app/package.json", json.dumps({
            "name": "billing", "version": "1.0.0",
            "dependencies": {"left-pad": "1.3.0"},
            "integrity": "sha512-" + mixed(r, 86, B64) + "=="}, indent=2) + "\n"),
        ("srv/app/config/aws.properties",
         "aws.access.key.id=AKIAIOSFODNN7EXAMPLE\n"
         "aws.secret.access.key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"),
        ("srv/app/config/aws-template.env",
         "AWS_ACCESS_KEY_ID=AKIAXXXXXXXXXXXXXXXX\nAWS_SECRET_ACCESS_KEY=" + "X" * 40 + "\n"),
        ("srv/app/keys/placeholder.pem",
         "-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----\n"),
        ("srv/app/keys/template.key",
         "-----BEGIN PRIVATE KEY-----\n<paste your private key here>\n"
         "-----END PRIVATE KEY-----\n"),
        ("srv/app/keys/redacted.key",
         "-----BEGIN OPENSSH PRIVATE KEY-----\n" + "*" * 70 + "\n" + "*" * 70 +
         "\n-----END OPENSSH PRIVATE KEY-----\n"),
        ("srv/app/src/pem.py",
         'HEADER = "-----BEGIN RSA PRIVATE KEY-----"\nFOOTER = "-----END RSA PRIVATE KEY-----"\n'
         "def is_key(text):\n    return text.startswith(HEADER)\n"),
        ("srv/app/docs/slack.md",
         "Set `SLACK_BOT_TOKEN=xoxb-000000000000-0000000000000-xxxxxxxxxxxxxxxxxxxxxxxx`.\n"),
        ("srv/app/config/telegram.yaml",
         'telegram:\n  token: "123456789:ABCdefGhIJKlmNoPQRsTUVwxyZ"\n'),
        ("srv/app/config/mailchimp.env",
         "MAILCHIMP_API_KEY=00000000000000000000000000000000-us1\n"),
        ("srv/app/tests/fixtures/users.json",
         json.dumps({"users": [{"name": "alice", "password": "password123"},
                               {"name": "bob", "password": "hunter2"}]}) + "\n"),
        ("srv/app/tests/fixtures/jwt.txt",
         "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c\n"),
        ("srv/app/config/redacted.yaml",
         "database:\n  password: \"****\"\n  token: \"[REDACTED]\"\n  api_key: \"••••••••\"\n"),
        ("srv/app/src/main/resources/application.properties",
         "spring.datasource.password=${DB_PASSWORD}\nspring.mail.password=ENC(secretref)\n"
         "app.api.token=#{environment.API_TOKEN}\n"),
        ("srv/app/config/client.yaml",
         "auth:\n  token_url: https://auth.acme.internal/oauth/token\n"
         "  password_file: /run/secrets/db_password\n  token_ttl: 3600\n"
         "  api_key_header: X-Api-Key\n"),
    ]  # fmt: skip


@dataclass(frozen=True)
class Corpus:
    """The files of the corpus, in two layers: ``files`` written in the first, ``deleted``
    (paths of true positives) removed by the second."""

    samples: tuple[Sample, ...]
    providers: frozenset[str] = field(default_factory=frozenset)

    @property
    def positives(self) -> tuple[Sample, ...]:
        return tuple(s for s in self.samples if s.secrets)

    @property
    def lookalikes(self) -> tuple[Sample, ...]:
        return tuple(s for s in self.samples if not s.secrets)


def build(seed: int | None = None, per_kind: int = 2) -> Corpus:
    """The corpus: ``per_kind`` true-positive files per kind (every other one deleted by the
    later layer), and look-alike files. A seed gives the same corpus; None a fresh one."""
    r = random.Random(seed)
    samples: list[Sample] = []
    count = 0
    for i, kind in enumerate(KINDS):
        base = f"srv/{_slug(kind.provider)}-{_slug(kind.kind)}"
        syntaxes = kind.syntaxes or tuple(SYNTAXES[(i + j * 5) % len(SYNTAXES)] for j in range(3))
        for j in range(per_kind):
            value = kind.make(r)
            secrets = [value]
            if kind.render is not None:
                rel, text = kind.render(value, r)
                path = f"{base}/{j}/{rel}"
            else:
                pairs = []
                if kind.extra is not None:
                    name, extra = kind.extra(r)
                    pairs.append((name, extra))
                pairs.append((kind.var, kind.template.format(value)))
                rel, text = render(syntaxes[j % len(syntaxes)], pairs)
                path = f"{base}/{j}/{rel}"
            samples.append(
                Sample(path, text, kind.provider, kind.kind, tuple(secrets), count % 2 == 1)
            )
            count += 1
        # look-alikes in this kind's format
        real = kind.make(r)
        for j, fake in enumerate(lookalike_values(kind, real)):
            if kind.render is not None:
                rel, text = kind.render(fake, r)
            else:
                rel, text = render(
                    SYNTAXES[(i + j) % len(SYNTAXES)], [(kind.var, kind.template.format(fake))]
                )
            samples.append(
                Sample(
                    f"srv/lookalike/{_slug(kind.provider)}-{_slug(kind.kind)}/{j}/{rel}",
                    text,
                    kind.provider,
                    kind.kind,
                )
            )
    for path, text in _common_lookalikes(r):
        samples.append(Sample(f"{path}", text, "(common)", "look-alike"))
    return Corpus(tuple(samples), frozenset(k.provider for k in KINDS))


# --- scoring ---------------------------------------------------------------------------------

WRITE_LAYER, DELETE_LAYER = 1, 2


def image_of(corpus: Corpus) -> Image:
    """Base layer, a layer that writes every file, a layer that deletes half the secrets."""
    base = Layer(created_by="/bin/sh -c #(nop) ADD file:rootfs in / ").file(
        "etc/os-release", "ID=debian\nVERSION_ID=12\n"
    )
    wrote = Layer(created_by="/bin/sh -c #(nop) COPY dir:app in / ")
    for sample in corpus.samples:
        wrote.file(sample.path, sample.text)
    cleanup = Layer(created_by="/bin/sh -c rm -rf leaked files")
    for sample in corpus.positives:
        if sample.deleted:
            cleanup.whiteout(sample.path)
    return Image(layers=[base, wrote, cleanup])


@dataclass
class Row:
    """One kind's figures."""

    provider: str
    kind: str
    positives: int = 0
    found_default: int = 0
    found_low: int = 0
    placed_right: int = 0
    engines: Counter[str] = field(default_factory=Counter)  # hits each engine had a part in
    only: Counter[str] = field(default_factory=Counter)  # hits no other engine found
    lookalikes: int = 0
    flagged: int = 0


def _overlaps(secret: str, found: str | None) -> bool:
    if found is None:
        return False
    if secret.startswith("-----BEGIN"):
        # a key is found whole or by its block as the file spells it (escaped in JSON)
        first = secret.split("\n")[1]
        return first in found
    return secret in found or (len(found) >= 8 and found in secret)


def score(corpus: Corpus, report: m.ScanReport) -> tuple[list[Row], list[str]]:
    """Rows per kind, and the problems (misplaced hits, look-alike flags) to print."""
    by_path: dict[str, list[m.Finding]] = defaultdict(list)
    for image in report.images:
        for finding in image.findings:
            if isinstance(finding.location, m.FileLocation):
                by_path[finding.location.path.lstrip("/")].append(finding)
    rows: dict[tuple[str, str], Row] = {}
    notes: list[str] = []
    medium = CONFIDENCE_RANK["medium"]
    for sample in corpus.samples:
        row = rows.setdefault((sample.provider, sample.kind), Row(sample.provider, sample.kind))
        found = by_path.get(sample.path, [])
        if not sample.secrets:
            row.lookalikes += 1
            loud = [f for f in found if CONFIDENCE_RANK[f.confidence] >= medium]
            if loud:
                row.flagged += 1
                notes.append(
                    f"look-alike flagged: {sample.path}: "
                    + ", ".join(f"{f.rule_id} {f.redacted} ({f.confidence})" for f in loud)
                )
            continue
        for secret in sample.secrets:
            row.positives += 1
            hits = [f for f in found if _overlaps(secret, f.secret)]
            if hits:
                row.found_low += 1
            loud = [f for f in hits if CONFIDENCE_RANK[f.confidence] >= medium]
            if not loud:
                continue
            row.found_default += 1
            engines = {_engine(d) for f in loud for d in f.detectors}
            row.engines.update(engines)
            if len(engines) == 1:
                row.only.update(engines)
            if all(_placed(sample, f) for f in loud):
                row.placed_right += 1
            else:
                notes.append(f"misplaced: {sample.path}: {[f.location for f in loud]}")
    return list(rows.values()), notes


def _engine(detector: str) -> str:
    """The engine of a finding's ``engine:rule``; leakscan's values found by their name
    apart from its formats and files."""
    engine, _, rule = detector.partition(":")
    return "leakscan(named)" if rule.startswith("leakscan.named-") else engine


def _placed(sample: Sample, finding: m.Finding) -> bool:
    loc = finding.location
    if not isinstance(loc, m.FileLocation) or loc.layer_index != WRITE_LAYER:
        return False
    if sample.deleted:
        return loc.status == "deleted" and loc.removed_in_layer == DELETE_LAYER
    return loc.status == "present" and loc.removed_in_layer is None
