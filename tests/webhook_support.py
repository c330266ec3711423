"""Helpers for the webhook tests: a fresh database, the receiver and batcher as real processes,
signed requests in each provider's scheme, and readers of what landed in the lake."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import requests

from cdp_common.dead_letters import DLQ_KEY
from cdp_common.signatures import shopify_signature, sign_timestamped
from cdp_resources.local_ports import free_port
from cdp_resources.raw_zone import RAW_KEY, decode_ndjson_gz

SECRETS = {
    "acme": {"shopify": "shpss_acme_test", "stripe": "whsec_acme_test", "app": "app_acme_test"},
    "globex": {"shopify": "shpss_globex_test", "stripe": "whsec_globex_test", "app": "app_globex_test"},
    "initech": {"shopify": "shpss_initech", "stripe": "whsec_initech", "app": "app_initech"},
    "flood": {"app": "app_flood_test"},
    "umbrella": {"shopify": "shpss_umbrella_test"},
}


def fresh_database(postgres) -> str:
    name = f"wh_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres.url("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return postgres.url(name)


def secrets_file(directory: Path) -> Path:
    path = directory / "webhook_secrets.json"
    path.write_text(json.dumps(SECRETS))
    return path


class Process:
    """`python -m cdp_ingest.webhooks {args}` with `env` added to this process's environment."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path):
        self.args, self.env, self.log = args, {**os.environ, **env}, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Process":
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cdp_ingest.webhooks", *self.args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def log_lines(self, text: str) -> int:
        return self.log.read_text(errors="replace").count(text) if self.log.exists() else 0

    def wait_for_log(self, text: str, count: int, timeout: float = 60) -> None:
        """Until `text` has appeared `count` times in the log (the process is ready, has flushed …)."""
        deadline = time.monotonic() + timeout
        while self.log_lines(text) < count:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"no {text!r} in time: {self.log.read_text()[-3000:]}"
            time.sleep(0.05)

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class Service(Process):
    """The receiver on a free port of 127.0.0.1; `start` returns once /health answers."""

    def __init__(self, env: dict[str, str], log: Path, port: int | None = None):
        self.port = port or free_port()
        super().__init__(["serve", "--host", "127.0.0.1", "--port", str(self.port)], env, log)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Service":
        super().start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                if requests.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"receiver did not start: {self.log.read_text()[-3000:]}")


# signed requests ------------------------------------------------------------------------------
def _json(payload) -> bytes:
    return payload if isinstance(payload, bytes) else json.dumps(payload).encode()


def shopify(
    tenant: str,
    topic: str,
    payload,
    event_id: str | None,
    secret: str | None = None,
    triggered_at: datetime | None = None,
) -> tuple[bytes, dict]:
    body = _json(payload)
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": shopify_signature((secret or SECRETS[tenant]["shopify"]).encode(), body),
        "X-Shopify-Triggered-At": (triggered_at or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
        "X-Shopify-Shop-Domain": f"{tenant}.myshopify.com",
    }
    if event_id:
        headers["X-Shopify-Event-Id"] = event_id
    return body, headers


def stripe(
    tenant: str, event: dict | bytes, secret: str | None = None, timestamp: int | None = None
) -> tuple[bytes, dict]:
    body = _json(event)
    signature = sign_timestamped((secret or SECRETS[tenant]["stripe"]).encode(), body, timestamp or int(time.time()))
    return body, {"Content-Type": "application/json; charset=utf-8", "Stripe-Signature": signature}


def app(tenant: str, event, secret: str | None = None, timestamp: int | None = None) -> tuple[bytes, dict]:
    body = _json(event)
    signature = sign_timestamped((secret or SECRETS[tenant]["app"]).encode(), body, timestamp or int(time.time()))
    return body, {"Content-Type": "application/json", "X-CDP-Signature": signature}


def post(base: str, tenant: str, provider: str, signed: tuple[bytes, dict], session=requests) -> requests.Response:
    body, headers = signed
    return session.post(f"{base}/webhooks/{tenant}/{provider}", data=body, headers=headers, timeout=30)


# sample payloads ------------------------------------------------------------------------------
def shopify_order(order_id: int) -> dict:
    return {
        "id": order_id,
        "created_at": "2026-01-05T10:00:00-05:00",
        "currency": "USD",
        "total_price": "19.90",
        "email": f"buyer{order_id}@example.com",
        "line_items": [{"id": order_id * 10, "sku": "A1", "quantity": 1, "price": "19.90"}],
    }


def shopify_customer(customer_id: int) -> dict:
    return {"id": customer_id, "updated_at": "2026-01-05T12:00:00Z", "email": f"c{customer_id}@example.com"}


def stripe_charge_event(event_id: str, charge_id: str, created: int = 1767607200) -> dict:
    return {
        "id": event_id,
        "object": "event",
        "type": "charge.succeeded",
        "created": created,
        "data": {
            "object": {
                "id": charge_id,
                "object": "charge",
                "amount": 1990,
                "currency": "usd",
                "created": created,
                "status": "succeeded",
            }
        },
    }


def app_event(message_id: str) -> dict:
    return {
        "message_id": message_id,
        "type": "track",
        "event": "Signed Up",
        "user_id": "u1",
        "timestamp": "2026-01-05T09:30:00Z",
        "properties": {"plan": "pro"},
    }


# what landed ----------------------------------------------------------------------------------
def raw_files(lake, tenant: str, provider: str) -> dict[str, list[dict]]:
    out = {}
    for obj in lake.list(f"raw/{tenant}/{provider}/"):
        assert RAW_KEY.match(obj.key), obj.key
        out[obj.key] = list(decode_ndjson_gz(lake.read_bytes(obj.key)))
    return out


def raw_records(lake, tenant: str, provider: str) -> list[dict]:
    return [record for records in raw_files(lake, tenant, provider).values() for record in records]


def dead_letters(lake, tenant: str, provider: str | None = None) -> list[dict]:
    prefix = f"dlq/{tenant}/{provider}/" if provider else f"dlq/{tenant}/"
    letters = []
    for obj in lake.list(prefix):
        assert DLQ_KEY.match(obj.key), obj.key
        letters += list(decode_ndjson_gz(lake.read_bytes(obj.key)))
    return letters


def queued_rows(url: str, tenant: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM cdp_webhooks.queue WHERE tenant = %s", (tenant,)).fetchone()[0]
