"""The receiver: a Starlette app served by uvicorn.

`POST /webhooks/{tenant}/{provider}` answers 200 only once the event is durably queued:
`{"status": "queued" | "duplicate" | "dead_lettered", "event_id": …}` (an authentic payload that
fails validation is acknowledged and dead-lettered, so the provider stops retrying). Refusals are
JSON `{"error": reason, "message": …}`: 400 a tenant or provider name that breaks the name rule
(`cdp_resources.names`), 404 unknown tenant or provider, 415 not JSON, 429 over the
tenant's rate (with Retry-After), 413 body too large, 401 not authentic (nothing stored), 503
queue unavailable (the provider retries). `GET /health` and `GET /metrics` (Prometheus text).
"""

import gc
import math
import time
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from cdp_common.signatures import Unauthentic
from cdp_ingest.registry import SchemaRegistry
from cdp_ingest.webhooks.config import Secrets, WebhookSettings
from cdp_ingest.webhooks.metrics import Metrics
from cdp_ingest.webhooks.pg_queue import QueuedEvent, QueueUnavailable
from cdp_ingest.webhooks.providers import PROVIDERS, validated
from cdp_ingest.webhooks.ratelimit import RateLimiter
from cdp_resources.names import InvalidName, checked_name


class Refused(Exception):
    def __init__(self, status: int, reason: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.reason, self.headers = status, reason, headers


def _json(status: int, content: dict, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(content), status, headers, media_type="application/json")


async def read_body(request: Request, headers: dict[str, str], limit: int) -> bytes:
    """The body, read straight from the ASGI messages, refused as soon as it passes `limit`."""
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Refused(413, "body_too_large", f"body is larger than {limit} bytes")
    chunks, size = [], 0
    while True:
        message = await request.receive()
        if message["type"] != "http.request":
            raise Refused(400, "client_disconnected", "the client went away before sending the body")
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > limit:
            raise Refused(413, "body_too_large", f"body is larger than {limit} bytes")
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _check_content_type(value: str) -> None:
    if value == "application/json":
        return
    media, _, params = value.partition(";")
    charset = next(
        (
            p.split("=", 1)[1].strip().strip('"').lower()
            for p in params.split(";")
            if "=" in p and p.split("=", 1)[0].strip().lower() == "charset"
        ),
        "utf-8",
    )
    if media.strip().lower() != "application/json" or charset not in ("utf-8", "utf8"):
        raise Refused(415, "unsupported_media_type", "send application/json in UTF-8")


def create_app(settings: WebhookSettings, secrets: Secrets, queue, registry: SchemaRegistry | None = None) -> Starlette:
    """The receiver over `queue` (a `GroupCommitQueue` or `SqsQueue`)."""
    registry = registry or SchemaRegistry.configured()
    for provider, stream in registry.streams():  # compile every validator now, not in a request
        _ = registry.latest(provider, stream).check
    metrics, limiter = Metrics(), RateLimiter(settings.rate_per_second, settings.burst)

    async def receive(request: Request) -> Response:
        started = time.perf_counter()
        tenant, provider_name = request.path_params["tenant"], request.path_params["provider"]
        try:
            try:
                checked_name("tenant", tenant)
                checked_name("provider", provider_name)
            except InvalidName as error:
                raise Refused(400, "invalid_name", str(error)) from None
            provider = PROVIDERS.get(provider_name)
            if provider is None:
                raise Refused(404, "unknown_provider", f"unknown provider {provider_name[:50]!r}")
            secret = secrets.get(tenant, provider_name)
            if secret is None:
                raise Refused(404, "unknown_tenant", f"tenant {tenant[:50]!r} has no {provider_name} webhooks")
            metrics.count("received", tenant, provider_name)
            headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in request.scope["headers"]}
            _check_content_type(headers.get("content-type", ""))
            wait = limiter.take(tenant)
            if wait:
                raise Refused(
                    429,
                    "rate_limited",
                    "too many requests for this tenant",
                    {"Retry-After": str(max(1, math.ceil(wait)))},
                )
            body = await read_body(request, headers, settings.max_body_bytes)
            now = time.time()
            try:
                provider.verify(headers, body, secret, now, settings.tolerance_seconds)
            except Unauthentic as error:
                raise Refused(401, error.reason, str(error)) from None
            delivery = validated(registry, provider_name, provider.read(headers, body))
            event = QueuedEvent(
                tenant,
                provider_name,
                delivery.event_id,
                delivery.stream,
                orjson.dumps(delivery.payload).decode(),
                delivery.rule,
                delivery.reason,
                datetime.fromtimestamp(now, UTC),
                delivery.body_key,
            )
            try:
                new = await queue.put(event)
            except QueueUnavailable as error:
                raise Refused(503, "queue_unavailable", str(error)) from None
        except Refused as refusal:
            metrics.count("rejected", refusal.reason)
            metrics.observe(time.perf_counter() - started)
            return _json(refusal.status, {"error": refusal.reason, "message": str(refusal)}, refusal.headers)
        if not new:
            status = "duplicate"
            metrics.count("duplicates", tenant, provider_name)
        else:
            metrics.count("queued", tenant, provider_name)
            if delivery.rule:
                status = "dead_lettered"
                metrics.count("dead_lettered", tenant, provider_name, delivery.rule)
            else:
                status = "queued"
                metrics.count("accepted", tenant, provider_name)
        metrics.observe(time.perf_counter() - started)
        answer = {"status": status, "event_id": delivery.event_id}
        if delivery.rule and new:
            answer |= {"rule": delivery.rule, "reason": delivery.reason}
        return _json(200, answer)

    async def health(request: Request) -> Response:
        return _json(200 if queue.healthy else 503, {"status": "ok" if queue.healthy else "queue_unavailable"})

    async def metrics_page(request: Request) -> Response:
        extra = []
        if hasattr(queue, "depth_and_flushed"):
            depth, totals = await queue.depth_and_flushed()
            extra += [
                "# HELP cdp_webhooks_queue_depth Events waiting for the batcher.",
                "# TYPE cdp_webhooks_queue_depth gauge",
                f"cdp_webhooks_queue_depth {depth}",
                "# HELP cdp_webhooks_flushed_total Events the batcher published, by outcome.",
                "# TYPE cdp_webhooks_flushed_total counter",
            ]
            for tenant, provider, landed, dead, suppressed in totals:
                extra += [
                    f'cdp_webhooks_flushed_total{{tenant="{tenant}",provider="{provider}",outcome="raw"}} {landed}',
                    f'cdp_webhooks_flushed_total{{tenant="{tenant}",provider="{provider}",outcome="dlq"}} {dead}',
                    f'cdp_webhooks_flushed_total{{tenant="{tenant}",provider="{provider}",outcome="suppressed"}} {suppressed}',
                ]
        return PlainTextResponse(metrics.render(extra), media_type="text/plain; version=0.0.4")

    async def not_found(request: Request, exc) -> Response:
        return _json(
            exc.status_code,
            {"error": "not_found" if exc.status_code == 404 else "method_not_allowed", "message": str(exc.detail)},
        )

    @asynccontextmanager
    async def lifespan(app):
        await queue.start()
        gc.freeze()  # what start-up built lives as long as the process: keep it out of every collection
        yield
        await queue.close()

    return Starlette(
        routes=[
            Route("/webhooks/{tenant}/{provider}", receive, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/metrics", metrics_page, methods=["GET"]),
        ],
        exception_handlers={404: not_found, 405: not_found},
        lifespan=lifespan,
    )
