"""Receiver and batcher settings: environment variables with safe local defaults, and the secrets.

Secrets come from `CDP_WEBHOOK_SECRETS_FILE` (JSON: `{"tenant": {"provider": "secret"}}`) and from
variables `CDP_WEBHOOK_SECRET__{TENANT}__{PROVIDER}` (which win). A tenant is known to the receiver
for a provider exactly when it has a secret for it; a tenant or provider name that breaks the name
rule (`cdp_resources.names`) is refused when the secrets load. Secret values never appear in a repr or
a log.
"""

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import SecretBytes

from cdp_resources.names import checked_name

SECRET_PREFIX = "CDP_WEBHOOK_SECRET__"


def _key(tenant: str, provider: str) -> tuple[str, str]:
    return checked_name("tenant", tenant), checked_name("provider", provider)


@dataclass(frozen=True)
class Secrets:
    """Signing secrets by (tenant, provider)."""

    by_key: dict[tuple[str, str], SecretBytes] = field(default_factory=dict)

    @classmethod
    def load(cls, environ: Mapping[str, str] = os.environ) -> "Secrets":
        found: dict[tuple[str, str], SecretBytes] = {}
        path = environ.get("CDP_WEBHOOK_SECRETS_FILE")
        if path:
            with open(path) as handle:
                for tenant, providers in json.load(handle).items():
                    for provider, secret in providers.items():
                        found[_key(tenant, provider)] = SecretBytes(secret.encode())
        for name, value in environ.items():
            if name.startswith(SECRET_PREFIX) and "__" in name[len(SECRET_PREFIX) :]:
                tenant, provider = name[len(SECRET_PREFIX) :].rsplit("__", 1)
                found[_key(tenant.lower(), provider.lower())] = SecretBytes(value.encode())
        return cls(found)

    def get(self, tenant: str, provider: str) -> bytes | None:
        secret = self.by_key.get((tenant, provider))
        return None if secret is None else secret.get_secret_value()


def _number(environ: Mapping[str, str], name: str, default: float) -> float:
    return float(environ.get(name) or default)


@dataclass(frozen=True)
class WebhookSettings:
    """Everything the receiver and the batcher read from the environment."""

    postgres_url: str | None = None  # CDP_POSTGRES_URL; default: the embedded PostgreSQL
    sqs_queue_url: str | None = None  # CDP_WEBHOOK_SQS_QUEUE_URL: queue through SQS instead
    sqs_endpoint_url: str | None = None  # CDP_SQS_ENDPOINT_URL (moto, LocalStack)
    max_body_bytes: int = 262_144  # CDP_WEBHOOK_MAX_BODY_BYTES → 413 above it
    tolerance_seconds: float = 300.0  # CDP_WEBHOOK_TOLERANCE_SECONDS: replay window
    rate_per_second: float = 500.0  # CDP_WEBHOOK_RATE: per tenant → 429 above it
    burst: float = 1_000.0  # CDP_WEBHOOK_BURST
    max_records: int = 20_000  # CDP_WEBHOOK_MAX_RECORDS: flush when this many wait
    max_age_seconds: float = 300.0  # CDP_WEBHOOK_MAX_AGE_SECONDS: … or the oldest waited this long
    dedup_hours: float = 72.0  # CDP_WEBHOOK_DEDUP_HOURS: how long event ids are remembered
    writer_connections: int = 2  # CDP_WEBHOOK_PG_CONNECTIONS: group-commit writers

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "WebhookSettings":
        return cls(
            postgres_url=environ.get("CDP_POSTGRES_URL") or None,
            sqs_queue_url=environ.get("CDP_WEBHOOK_SQS_QUEUE_URL") or None,
            sqs_endpoint_url=environ.get("CDP_SQS_ENDPOINT_URL") or None,
            max_body_bytes=int(_number(environ, "CDP_WEBHOOK_MAX_BODY_BYTES", cls.max_body_bytes)),
            tolerance_seconds=_number(environ, "CDP_WEBHOOK_TOLERANCE_SECONDS", cls.tolerance_seconds),
            rate_per_second=_number(environ, "CDP_WEBHOOK_RATE", cls.rate_per_second),
            burst=_number(environ, "CDP_WEBHOOK_BURST", cls.burst),
            max_records=int(_number(environ, "CDP_WEBHOOK_MAX_RECORDS", cls.max_records)),
            max_age_seconds=_number(environ, "CDP_WEBHOOK_MAX_AGE_SECONDS", cls.max_age_seconds),
            dedup_hours=_number(environ, "CDP_WEBHOOK_DEDUP_HOURS", cls.dedup_hours),
            writer_connections=int(_number(environ, "CDP_WEBHOOK_PG_CONNECTIONS", cls.writer_connections)),
        )

    def database_url(self) -> str:
        """The queue's PostgreSQL: `CDP_POSTGRES_URL`, else the embedded server (started if needed)."""
        if self.postgres_url:
            return self.postgres_url
        from cdp_resources.postgres_server import EmbeddedPostgres

        return EmbeddedPostgres.default().start().url("cdp")
