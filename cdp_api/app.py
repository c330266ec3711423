"""The profile API: a FastAPI app over the serving tables (`cdp api serve`; OpenAPI at /docs).

Each request: the key (header `Authorization: Bearer …` or `X-API-Key`) is checked, its rate
limit taken, and its queries run in one transaction as its tenant role (`SET LOCAL ROLE`), so the
database's row-level security decides which tenant's rows come back. Bad input is a 400 with a
JSON error that never repeats the input; every request is logged with key id, route template and
status, never a path or query value.
"""

import json
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import psycopg
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from psycopg import sql
from psycopg_pool import AsyncConnectionPool
from starlette.exceptions import HTTPException as StarletteHTTPException

from cdp_api import cursors, profiles
from cdp_api.keys import KEY_CACHE_SECONDS, ApiKey, verify_key
from cdp_resources.names import is_valid_name

REQUEST_LOG = logging.getLogger("cdp_api.requests")
UI_PAGE = Path(__file__).parent / "ui" / "index.html"
MAX_PAGE = 100
MAX_QUERY = 100
# Identifier values: printable, no control characters, at most 320 characters (an email's limit).
_VALUE = re.compile(r"[^\x00-\x1f\x7f]{1,320}")


class ApiError(HTTPException):
    """An HTTP error with a machine-readable code."""

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None):
        super().__init__(status, detail, headers)
        self.code = code


def _json(status: int, code: str, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


class RequestLog:
    """ASGI middleware: one log line per request (key id, tenant, method, route template, status,
    milliseconds). The route template (`/v1/{tenant}/profiles/{identifier}`), never the path: paths
    and query strings hold emails and phones."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), [500]

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            state = scope.get("state", {})
            REQUEST_LOG.info(
                json.dumps(
                    {
                        "key_id": state.get("key_id"),
                        "tenant": state.get("tenant"),
                        "method": scope["method"],
                        "route": getattr(route, "path", "(unmatched)"),
                        "status": status[0],
                        "ms": round((time.perf_counter() - started) * 1000, 2),
                    }
                )
            )


def create_app(database_url: str, pool_size: int = 8) -> FastAPI:
    """The API over the database at `database_url` (the `cdp_api` role, or one like it)."""
    keys: dict[str, tuple[ApiKey | None, float]] = {}
    limiter = MovingWindowRateLimiter(MemoryStorage())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncConnectionPool(database_url, min_size=2, max_size=pool_size, open=False) as pool:
            app.state.pool = pool
            yield

    app = FastAPI(
        title="CDP profile API",
        description="Profiles, timelines, segments and identity explanations of one tenant per key. See docs/api.md.",
        version="1",
        lifespan=lifespan,
    )
    app.add_middleware(RequestLog)

    @app.exception_handler(RequestValidationError)
    async def bad_input(request: Request, error: RequestValidationError) -> JSONResponse:
        # FastAPI's own answer repeats the input, which may be an email: only where and what.
        detail = [{"loc": [str(part) for part in e["loc"]], "msg": e["msg"]} for e in error.errors()]
        return _json(400, "bad_request", detail)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = getattr(error, "code", {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "error"))
        return _json(error.status_code, code, error.detail, error.headers)

    @app.exception_handler(psycopg.errors.InsufficientPrivilege)
    async def refused(request: Request, error: Exception) -> JSONResponse:
        return _json(403, "forbidden", "this key's scopes do not cover that")

    @app.exception_handler(psycopg.errors.UndefinedTable)
    async def not_built(request: Request, error: Exception) -> JSONResponse:
        return _json(503, "not_ready", "the serving tables are not built yet (asset api/serving_tables)")

    @app.exception_handler(psycopg.OperationalError)
    async def database_down(request: Request, error: Exception) -> JSONResponse:
        return _json(503, "unavailable", "the database is unavailable", {"Retry-After": "5"})

    async def api_key(request: Request) -> ApiKey:
        presented = request.headers.get("x-api-key") or ""
        authorization = request.headers.get("authorization", "")
        if authorization.lower().startswith("bearer "):
            presented = authorization[7:].strip()
        if not presented:
            raise ApiError(401, "unauthorized", "an API key is required", {"WWW-Authenticate": "Bearer"})
        cached = keys.get(presented)
        if cached is None or cached[1] < time.monotonic():
            async with request.app.state.pool.connection() as conn:
                cached = (await verify_key(conn, presented), time.monotonic() + KEY_CACHE_SECONDS)
            if len(keys) > 10_000:  # unknown keys are cached too: a flood of them must not grow this forever
                keys.clear()
            keys[presented] = cached
        key = cached[0]
        if key is None:
            raise ApiError(401, "unauthorized", "unknown or revoked API key", {"WWW-Authenticate": "Bearer"})
        request.state.key_id = key.key_id
        limit = RateLimitItemPerSecond(key.rate_per_second)
        if not await limiter.hit(limit, key.key_id):
            reset, _ = await limiter.get_window_stats(limit, key.key_id)
            retry = max(1, int(reset - time.time() + 0.999))
            raise ApiError(
                429, "rate_limited", f"over {key.rate_per_second} requests per second", {"Retry-After": str(retry)}
            )
        return key

    async def tenant_key(
        request: Request, tenant: Annotated[str, PathParam(max_length=63)], key: Annotated[ApiKey, Depends(api_key)]
    ) -> ApiKey:
        if not is_valid_name(tenant):
            raise ApiError(400, "bad_request", "not a tenant name")
        request.state.tenant = tenant
        if tenant != key.tenant_id:
            raise ApiError(403, "forbidden", "this key belongs to another tenant")
        return key

    Key = Annotated[ApiKey, Depends(tenant_key)]

    @asynccontextmanager
    async def as_tenant(request: Request, key: ApiKey) -> AsyncIterator[psycopg.AsyncConnection]:
        async with request.app.state.pool.connection() as conn, conn.transaction():
            await conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(key.role)))
            yield conn

    def identifier(value: str) -> tuple[str, str]:
        id_type, _, id_value = value.partition(":")
        if id_type not in profiles.ID_TYPES:
            raise ApiError(400, "bad_identifier", f"identifier type must be one of {', '.join(profiles.ID_TYPES)}")
        if not _VALUE.fullmatch(id_value):
            raise ApiError(400, "bad_identifier", "identifier value missing, too long or with control characters")
        return id_type, id_value

    async def customer_of(conn, key: ApiKey, value: str) -> str:
        id_type, id_value = identifier(value)
        if id_type in profiles.PERSONAL_ID_TYPES and not key.pii:
            raise ApiError(403, "forbidden", f"lookups by {id_type} need the pii scope")
        customer = await profiles.find_customer(conn, key.tenant_id, id_type, id_value)
        if customer is None:
            raise ApiError(404, "not_found", "no profile with that identifier")
        return customer

    Identifier = Annotated[str, PathParam(max_length=400, description="`type:value`, e.g. `email:ann@example.com`")]
    Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]
    Cursor = Annotated[str | None, Query(max_length=cursors.MAX_CURSOR_LENGTH)]

    def position(cursor: str | None, *kinds: type) -> list | None:
        try:
            return cursors.decode(cursor, *kinds) if cursor else None
        except cursors.CursorError as error:
            raise ApiError(400, "bad_cursor", str(error)) from None

    @app.get("/v1/{tenant}/profiles/{identifier}", summary="A profile by any of its identifiers")
    async def get_profile(request: Request, tenant: str, identifier: Identifier, key: Key) -> dict:
        async with as_tenant(request, key) as conn:
            found = await profiles.profile(conn, tenant, await customer_of(conn, key, identifier))
        if found is None:
            raise ApiError(404, "not_found", "no profile with that identifier")
        return found

    @app.get("/v1/{tenant}/profiles/{identifier}/timeline", summary="Events and orders, newest first")
    async def get_timeline(
        request: Request, tenant: str, identifier: Identifier, key: Key, cursor: Cursor = None, limit: Limit = 25
    ) -> dict:
        after = position(cursor, str, str, str)
        if after:
            try:
                after = (datetime.fromisoformat(after[0]), after[1], after[2])
            except (TypeError, ValueError):
                raise ApiError(400, "bad_cursor", "malformed cursor") from None
        async with as_tenant(request, key) as conn:
            customer = await customer_of(conn, key, identifier)
            rows = await profiles.timeline(conn, tenant, customer, after, limit + 1)
        last = rows[limit - 1] if len(rows) > limit else None
        return {
            "cdp_customer_id": customer,
            "items": rows[:limit],
            "next_cursor": cursors.encode(last["at"].isoformat(), last["kind"], last["item_id"]) if last else None,
        }

    @app.get("/v1/{tenant}/profiles/{identifier}/segments", summary="Segment memberships, now or as of a day")
    async def get_segments(
        request: Request, tenant: str, identifier: Identifier, key: Key, as_of: date | None = None
    ) -> dict:
        async with as_tenant(request, key) as conn:
            customer = await customer_of(conn, key, identifier)
            found = await profiles.segments_on(conn, tenant, customer, as_of or date.max)
        return {"cdp_customer_id": customer, **found}

    @app.get("/v1/{tenant}/profiles/{identifier}/explanation", summary="Why it is one person")
    async def get_explanation(request: Request, tenant: str, identifier: Identifier, key: Key) -> dict:
        async with as_tenant(request, key) as conn:
            customer = await customer_of(conn, key, identifier)
            return {"cdp_customer_id": customer, **await profiles.explanation(conn, tenant, customer)}

    @app.get("/v1/{tenant}/profiles", summary="Search by email, name or phone prefix and name similarity")
    async def search_profiles(
        request: Request,
        tenant: str,
        key: Key,
        q: Annotated[str, Query(min_length=2, max_length=MAX_QUERY, pattern=r"^[^\x00-\x1f\x7f]*$")],
        cursor: Cursor = None,
        limit: Limit = 20,
    ) -> dict:
        if not key.pii:
            raise ApiError(403, "forbidden", "search matches personal values: it needs the pii scope")
        offset = (position(cursor, int) or [0])[0]
        async with as_tenant(request, key) as conn:
            rows = await profiles.search(conn, tenant, q, offset, limit + 1)
        more = len(rows) > limit and offset + limit <= 10_000 - limit
        return {"items": rows[:limit], "next_cursor": cursors.encode(offset + limit) if more else None}

    @app.get("/v1/{tenant}/segments/{segment}/members", summary="A segment's members")
    async def segment_members(
        request: Request,
        tenant: str,
        segment: Annotated[str, PathParam(max_length=63)],
        key: Key,
        as_of: date | None = None,
        cursor: Cursor = None,
        limit: Limit = 100,
    ) -> dict:
        if not is_valid_name(segment):
            raise ApiError(400, "bad_request", "not a segment name")
        after = position(cursor, str)
        async with as_tenant(request, key) as conn:
            found = await profiles.members(conn, tenant, segment, as_of, after[0] if after else None, limit + 1)
        if found is None:
            raise ApiError(404, "not_found", "no such segment (or no members on or before that day)")
        members = found["members"]
        return {
            "segment": segment,
            "as_of": found["as_of"],
            "members": members[:limit],
            "next_cursor": cursors.encode(members[limit - 1]) if len(members) > limit else None,
        }

    @app.get("/ui", response_class=HTMLResponse, include_in_schema=False)
    async def ui() -> HTMLResponse:
        return HTMLResponse(UI_PAGE.read_text())

    @app.get("/healthz", include_in_schema=False)
    async def health() -> dict:
        return {"status": "ok"}

    return app
