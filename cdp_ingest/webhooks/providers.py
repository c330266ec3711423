"""What each provider's webhook carries (headers as a dict with lower-case names): its signature, its event id, and the registered stream its
payload belongs to. An authentic delivery always becomes a `Delivery`: a record for its stream, or
a dead letter with the rule and reason (malformed JSON, unknown topic, schema violation).

| provider | signature | event id | stream | record |
| --- | --- | --- | --- | --- |
| shopify | X-Shopify-Hmac-Sha256 | X-Shopify-Event-Id, else X-Shopify-Webhook-Id, and the body's hash | X-Shopify-Topic `orders/…` → orders, `customers/…`, `products/…` | the body |
| stripe | Stripe-Signature | the event's `id` | `type` `customer.…` → customers, `charge.…` → charges | `data.object` |
| app | X-CDP-Signature | the event's `message_id` | events | the body |

With no id in the delivery, the SHA-256 of the body stands in, so a retried body is still recognised;
an id too long or holding control characters (PostgreSQL text cannot hold NUL) is replaced by its own hash.
Stripe's and the app's ids are inside the signed body, so a replay cannot change them; Shopify's are
headers nobody signs, so a Shopify delivery also carries `body_key` (the body's SHA-256) and is a
duplicate when either its id or its body was seen.
"""

import hashlib
from dataclasses import dataclass, replace

import orjson

from cdp_common.dead_letters import MALFORMED_JSON, SCHEMA_VIOLATION, UNKNOWN_STREAM
from cdp_common.signatures import verify_shopify, verify_timestamped
from cdp_ingest.registry import SchemaRegistry

SHOPIFY_STREAMS = {"orders": "orders", "customers": "customers", "products": "products"}  # topic resource → stream
STRIPE_STREAMS = {"customer": "customers", "charge": "charges"}  # event type object → stream
_MAX_ID = 200


@dataclass(frozen=True)
class Delivery:
    """One authentic webhook: the record for `stream`, or (with `rule`) the payload to dead-letter."""

    event_id: str
    stream: str | None
    payload: object
    rule: str | None = None
    reason: str | None = None
    body_key: str | None = None  # a second de-duplication key, from signed content, when the id is not signed


def _body_hash(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def _event_id(candidate: object, body: bytes) -> str:
    if isinstance(candidate, (str, int)) and not isinstance(candidate, bool) and str(candidate).strip():
        text = str(candidate).strip()
        if len(text) <= _MAX_ID and text.isprintable():
            return text
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return _body_hash(body)


def _readable(reason: str) -> str:
    return reason.replace("\x00", "\\x00")[:2_000]


def _malformed(event_id: str, stream: str | None, body: bytes, error: Exception) -> Delivery:
    try:
        payload: object = body.decode("utf-8")
    except UnicodeDecodeError:
        payload = {"body_hex": body.hex()}
    return Delivery(event_id, stream, payload, MALFORMED_JSON, _readable(f"body is not UTF-8 JSON: {error}"))


class Shopify:
    name = "shopify"

    def verify(self, headers, body: bytes, secret: bytes, now: float, tolerance: float) -> None:
        verify_shopify(headers, body, secret)  # no time check: see `cdp_common.signatures`

    def read(self, headers, body: bytes) -> Delivery:
        event_id = _event_id(headers.get("x-shopify-event-id") or headers.get("x-shopify-webhook-id"), body)
        body_key = _body_hash(body)
        return replace(self._read(event_id, headers, body), body_key=None if body_key == event_id else body_key)

    def _read(self, event_id: str, headers, body: bytes) -> Delivery:
        topic = headers.get("x-shopify-topic", "")
        stream = SHOPIFY_STREAMS.get(topic.split("/")[0])
        try:
            record = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            return _malformed(event_id, stream, body, error)
        if stream is None:
            return Delivery(event_id, None, record, UNKNOWN_STREAM, f"no stream for Shopify topic {topic[:100]!r}")
        return Delivery(event_id, stream, record)


class _Timestamped:
    """Providers signed with the `t=…,v1=…` scheme."""

    header = ""

    def verify(self, headers, body: bytes, secret: bytes, now: float, tolerance: float) -> None:
        verify_timestamped(headers.get(self.header.lower()), self.header, body, secret, now, tolerance)


class Stripe(_Timestamped):
    name, header = "stripe", "Stripe-Signature"

    def read(self, headers, body: bytes) -> Delivery:
        try:
            event = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            return _malformed(_event_id(None, body), None, body, error)
        if not isinstance(event, dict):
            return Delivery(_event_id(None, body), None, event, SCHEMA_VIOLATION, "(event): not an object")
        event_id = _event_id(event.get("id"), body)
        kind = event.get("type") if isinstance(event.get("type"), str) else ""
        stream = STRIPE_STREAMS.get(kind.split(".")[0])
        data = event.get("data")
        record = data.get("object") if isinstance(data, dict) else None
        if stream is None:
            return Delivery(event_id, None, event, UNKNOWN_STREAM, f"no stream for Stripe event type {kind[:100]!r}")
        if not isinstance(record, dict):
            return Delivery(event_id, stream, event, SCHEMA_VIOLATION, "data.object: missing or not an object")
        return Delivery(event_id, stream, record)


class App(_Timestamped):
    name, header = "app", "X-CDP-Signature"

    def read(self, headers, body: bytes) -> Delivery:
        try:
            event = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            return _malformed(_event_id(None, body), "events", body, error)
        event_id = _event_id(event.get("message_id") if isinstance(event, dict) else None, body)
        return Delivery(event_id, "events", event)


PROVIDERS = {provider.name: provider for provider in (Shopify(), Stripe(), App())}


def validated(registry: SchemaRegistry, provider: str, delivery: Delivery) -> Delivery:
    """The delivery, turned into a dead letter when its record breaks the stream's registered schema."""
    if delivery.rule is not None:
        return delivery
    if not registry.knows(provider, delivery.stream):
        return replace(delivery, rule=UNKNOWN_STREAM, reason=f"no schema registered for {provider}/{delivery.stream}")
    if not isinstance(delivery.payload, dict):
        return replace(delivery, rule=SCHEMA_VIOLATION, reason="(record): not an object")
    errors = registry.latest(provider, delivery.stream).errors(delivery.payload)
    if errors:
        return replace(delivery, rule=SCHEMA_VIOLATION, reason=_readable("; ".join(errors)))
    return delivery
