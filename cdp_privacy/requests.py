"""The queue of forget requests, a PostgreSQL table anyone may insert into (the `cdp privacy
forget` command, a support tool, a regulation API), and each request's audit receipt.

`cdp_privacy.forget_requests`: the request (tenant, identifier type and value), its status and
times, and once done its receipt: counts removed per zone, the files rewritten, no personal data.
The identifier itself is cleared when the request is done, so the table keeps no one's identifier
after they are forgotten; a request that fails stays pending (its error is the exception's class
only, since messages can quote data) and is tried again by the next run.
"""

from dataclasses import dataclass

import psycopg
from psycopg.types.json import Jsonb

from cdp_resources.names import checked_name

ID_TYPES = (
    "email",
    "phone",
    "cdp_customer_id",
    "shopify_customer_id",
    "stripe_customer_id",
    "salesforce_contact_id",
    "app_user_id",
    "anonymous_id",
)

SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS cdp_privacy;
CREATE TABLE IF NOT EXISTS cdp_privacy.forget_requests (
    id bigserial PRIMARY KEY,
    tenant text NOT NULL,
    id_type text NOT NULL,
    identifier text,  -- cleared once done
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done')),
    requested_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz,
    attempts int NOT NULL DEFAULT 0,
    last_error text,
    receipt jsonb);
"""


class InvalidRequest(ValueError):
    """A forget request that names no known identifier type or no tenant by the name rule."""


@dataclass(order=True)
class ForgetRequest:
    id: int
    tenant: str
    id_type: str
    identifier: str


def ensure_schema(conn: psycopg.Connection) -> None:
    conn.execute(SCHEMA_SQL)


def enqueue(conn: psycopg.Connection, tenant: str, id_type: str, identifier: str) -> int:
    """Queue a request to forget the person `id_type`/`identifier` of `tenant`; its id."""
    checked_name("tenant", tenant)
    if id_type not in ID_TYPES:
        raise InvalidRequest(f"unknown identifier type {id_type!r}; one of {', '.join(ID_TYPES)}")
    if not identifier.strip():
        raise InvalidRequest(f"the {id_type} to forget is empty")
    ensure_schema(conn)
    return conn.execute(
        "INSERT INTO cdp_privacy.forget_requests (tenant, id_type, identifier) VALUES (%s, %s, %s) RETURNING id",
        (tenant, id_type, identifier),
    ).fetchone()[0]


def claim(conn: psycopg.Connection) -> list[ForgetRequest]:
    """Every pending request of the tenant with the oldest one, marked running (empty when none is
    pending); a request left running by a run that died is pending again after an hour."""
    rows = conn.execute(
        "WITH waiting AS (SELECT id, tenant FROM cdp_privacy.forget_requests "
        "                 WHERE status = 'pending' OR status = 'running' AND started_at < now() - interval '1 hour' "
        "                 FOR UPDATE SKIP LOCKED), "
        "     first AS (SELECT tenant FROM waiting ORDER BY id LIMIT 1) "
        "UPDATE cdp_privacy.forget_requests r SET status = 'running', started_at = now(), attempts = attempts + 1 "
        "FROM waiting JOIN first USING (tenant) WHERE r.id = waiting.id "
        "RETURNING r.id, r.tenant, r.id_type, r.identifier"
    ).fetchall()
    return sorted(ForgetRequest(*row) for row in rows)


def complete(conn: psycopg.Connection, request_id: int, receipt: dict) -> dict:
    """Mark a request done with its receipt, and forget its identifier; the receipt as stored."""
    return conn.execute(
        "UPDATE cdp_privacy.forget_requests SET status = 'done', finished_at = now(), identifier = NULL, "
        "last_error = NULL, receipt = %s || jsonb_build_object('request_id', id, 'requested_at', requested_at, "
        "'started_at', started_at, 'finished_at', now()) WHERE id = %s RETURNING receipt",
        (Jsonb(receipt), request_id),
    ).fetchone()[0]


def fail(conn: psycopg.Connection, request_id: int, error: BaseException) -> None:
    conn.execute(
        "UPDATE cdp_privacy.forget_requests SET status = 'pending', last_error = %s WHERE id = %s",
        (type(error).__name__, request_id),
    )


def receipts(conn: psycopg.Connection, tenant: str | None = None) -> list[dict]:
    """Every request's status and receipt (no identifiers), oldest first."""
    ensure_schema(conn)
    rows = conn.execute(
        "SELECT id, tenant, id_type, status, requested_at, finished_at, attempts, last_error, receipt "
        "FROM cdp_privacy.forget_requests WHERE %s::text IS NULL OR tenant = %s ORDER BY id",
        (tenant, tenant),
    )
    names = [column.name for column in rows.description]
    return [dict(zip(names, row, strict=True)) for row in rows.fetchall()]
