"""The profile API's serving tables: built beside the live ones in `api_build` from the warehouse
(dbt's `marts.customer_360`, the identity map, the attributed events and orders, segment
membership) and identity resolution's merges and exclusions, indexed, then swapped in one
transaction (`api_build` becomes `api`), so the API reads one whole run or the one before.

Every table has `tenant_id` and goes through `cdp_security.protect` after the swap: row-level
security, the groups' column grants and a masked view in `tenant_views` (docs/security.md). Personal
values sit in columns the security module knows as personal (`email`, `phone`, `name`, `*_pii`), so
a key without the PII scope reads them masked, by the database's rules.
"""

import time
from dataclasses import dataclass

import psycopg
from psycopg import sql

from cdp_resources.warehouse_security import VIEWS_SCHEMA, ensure_security, protect

SCHEMA = "api"
BUILD_SCHEMA = "api_build"
# Identifier types whose values are personal data: held in `value_pii`, looked up only with the PII scope.
PERSONAL_ID_TYPES = ("email", "phone")
# Resolution's merges and exclusions as copied from Delta (their columns, in PostgreSQL types).
MERGES_RAW, EXCLUSIONS_RAW = "merges_raw", "exclusions_raw"
RAW_COLUMNS = {
    MERGES_RAW: (
        ("tenant_id", "text"),
        ("event", "text"),
        ("cdp_customer_id", "text"),
        ("surviving_id", "text"),
        ("caused_by", "jsonb"),
        ("merged_at", "timestamptz"),
    ),
    EXCLUSIONS_RAW: tuple(
        (name, "text") for name in ("tenant_id", "kind", "id_type", "id_value", "other_type", "other_value", "reason")
    ),
}
SWAP_LOCK_TIMEOUT_MS = 200
TABLES = ("profiles", "identifiers", "timeline", "memberships", "merges", "exclusions")


@dataclass
class ServingBuild:
    rows: dict[str, int]
    as_of_date: str | None


def start_build(conn: psycopg.Connection) -> None:
    """A fresh `api_build` schema with empty tables for the merges and exclusions to be copied into."""
    with conn.transaction():
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(BUILD_SCHEMA)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(BUILD_SCHEMA)))
        for table, columns in RAW_COLUMNS.items():
            conn.execute(
                sql.SQL("CREATE TABLE {} ({})").format(
                    sql.Identifier(BUILD_SCHEMA, table),
                    sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, t in columns),
                )
            )


_BUILD = """
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE api_build.profiles AS
SELECT tenant_id, cdp_customer_id, email, phone, name, city, country, company_name, industry,
       company_employees, accepts_marketing, preferred_channel, identifiers, first_seen, orders,
       lifetime_revenue_usd, average_order_value_usd, first_order_date, last_order_date,
       days_since_last_order, events_30d, page_views_30d, last_event_at, as_of_date,
       email_marketing_consent, sms_marketing_consent, advertising_consent,
       churn_probability, probability_alive, expected_purchases_12m, predicted_value_12m_usd, predicted_as_of,
       lower(email) AS search_email_pii, lower(name) AS search_name_pii
FROM marts.customer_360;

CREATE TABLE api_build.identifiers AS
SELECT tenant_id, cdp_customer_id, id_type,
       CASE WHEN id_type = ANY ({personal}) THEN NULL ELSE id_value END AS id_value,
       CASE WHEN id_type = ANY ({personal}) THEN id_value END AS value_pii,
       id_since, first_seen, last_seen
FROM raw_cdp.customer_ids;

CREATE TABLE api_build.timeline AS
SELECT tenant_id, cdp_customer_id, event_ts AS at, 'event'::text AS kind, message_id::text AS item_id,
       event_name AS label, event_type AS detail, NULL::numeric(18, 2) AS amount_usd
FROM intermediate.int_customer_events WHERE cdp_customer_id IS NOT NULL AND event_ts IS NOT NULL
UNION ALL
SELECT tenant_id, cdp_customer_id, coalesce(ordered_at, order_date::timestamptz), 'order', order_id::text,
       'order', financial_status, total_usd
FROM intermediate.int_customer_orders WHERE cdp_customer_id IS NOT NULL;

CREATE TABLE api_build.memberships AS
SELECT tenant_id, segment, cdp_customer_id, as_of_date, source_model FROM segments.segment_membership;

CREATE TABLE api_build.merges AS
SELECT tenant_id, event, cdp_customer_id, surviving_id, caused_by AS caused_by_pii, merged_at
FROM api_build.merges_raw;

-- An exclusion concerns the profiles holding either of its identifiers (a blocked or shared
-- identifier joins no profile, so it is listed only where an edge to it gave way).
CREATE TABLE api_build.exclusions AS
SELECT DISTINCT i.tenant_id, i.cdp_customer_id, e.kind, e.reason, e.id_type, e.id_value AS value_pii,
       e.other_type, e.other_value AS other_value_pii
FROM api_build.exclusions_raw e
JOIN raw_cdp.customer_ids i ON i.tenant_id = e.tenant_id
    AND ((i.id_type = e.id_type AND i.id_value = e.id_value)
         OR (i.id_type = e.other_type AND i.id_value = e.other_value));

DROP TABLE api_build.merges_raw, api_build.exclusions_raw;

CREATE UNIQUE INDEX ON api_build.profiles (tenant_id, cdp_customer_id);
CREATE INDEX ON api_build.profiles (tenant_id, search_email_pii COLLATE "C");
CREATE INDEX ON api_build.profiles (tenant_id, search_name_pii COLLATE "C");
CREATE INDEX ON api_build.profiles (tenant_id, phone COLLATE "C");
CREATE INDEX ON api_build.profiles USING gin (name gin_trgm_ops);
CREATE INDEX ON api_build.identifiers (tenant_id, id_type, id_value);
CREATE INDEX ON api_build.identifiers (tenant_id, id_type, value_pii);
CREATE INDEX ON api_build.identifiers (tenant_id, cdp_customer_id);
CREATE INDEX ON api_build.timeline (tenant_id, cdp_customer_id, at DESC, kind DESC, item_id DESC);
CREATE UNIQUE INDEX ON api_build.memberships (tenant_id, segment, as_of_date, cdp_customer_id);
CREATE INDEX ON api_build.memberships (tenant_id, cdp_customer_id, as_of_date);
CREATE INDEX ON api_build.memberships (tenant_id, as_of_date);
CREATE INDEX ON api_build.merges (tenant_id, surviving_id);
CREATE INDEX ON api_build.merges (tenant_id, cdp_customer_id);
CREATE INDEX ON api_build.exclusions (tenant_id, cdp_customer_id);
"""


def finish_build(conn: psycopg.Connection) -> ServingBuild:
    """Build the serving tables and their indexes in `api_build` (after `start_build` and the copy of
    the merges and exclusions), then swap them in: returns the rows per table."""
    with conn.transaction():
        # No parameters: the simple query protocol, which takes several statements at once.
        conn.execute(sql.SQL(_BUILD).format(personal=sql.Literal(list(PERSONAL_ID_TYPES))))
    for table in TABLES:  # the planner's statistics before the first request, not after autovacuum's turn
        conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(BUILD_SCHEMA, table)))
    rows = {
        table: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(BUILD_SCHEMA, table))).fetchone()[
            0
        ]
        for table in TABLES
    }
    (as_of,) = conn.execute("SELECT max(as_of_date)::text FROM api_build.profiles").fetchone()
    swap(conn)
    return ServingBuild(rows, as_of)


def swap(conn: psycopg.Connection, attempts: int = 100) -> None:
    """`api_build` becomes `api` in one transaction, protected before it commits: readers see the old
    tables until then, and wait only for the swap's locks, never for the build.

    Readers lock the tables in the order their queries touch them, which differs by route, so the
    swap takes its locks with a short `lock_timeout` and starts again when one is held: it gives way
    well before PostgreSQL's deadlock check (1 s) would cancel a reader's request instead."""
    ensure_security(conn)
    for attempt in range(attempts):
        try:
            with conn.transaction():
                conn.execute(f"SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT_MS}ms'")
                live = conn.execute(
                    "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE c.relkind IN ('r', 'v') AND (n.nspname = %s OR (n.nspname = %s AND c.relname LIKE %s)) "
                    "ORDER BY c.relkind DESC, c.relname",  # the masked views first, as readers reach them
                    (SCHEMA, VIEWS_SCHEMA, f"{SCHEMA}\\_\\_%"),
                ).fetchall()
                if live:
                    conn.execute(f"LOCK TABLE {', '.join(name for (name,) in live)} IN ACCESS EXCLUSIVE MODE")
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
                conn.execute(
                    sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(sql.Identifier(BUILD_SCHEMA), sql.Identifier(SCHEMA))
                )
                for table in TABLES:
                    protect(conn, SCHEMA, table)
            return
        except psycopg.errors.LockNotAvailable:
            if attempt == attempts - 1:
                raise
            time.sleep(min(0.05 * (attempt + 1), 1.0))
