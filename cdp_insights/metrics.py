"""The daily metrics per tenant and day, with the dimensions to break them down, in one long table
`insights.daily_metrics` (tenant_id, day, metric, dimension, member, value). Totals have dimension
"total" and member "all"; a breakdown over two dimensions has them joined by commas
("country,channel" / "DE,shop").

Orders, revenue, customers and events come from dbt's models; dead letters from each curated
table's dead-letter Delta table in the lake (read with delta-rs, no Spark); a curated table's
quality score is the share of the day's records that passed its critical rules (loaded rows over
loaded plus dead-lettered).
"""

from collections import Counter
from collections.abc import Iterable
from datetime import date

import psycopg
import pyarrow.dataset as ds
from psycopg import sql

from cdp_resources.lake import LakeResource
from cdp_resources.lake_paths import dead_letter_path
from cdp_resources.warehouse_security import ensure_security, protect
from cdp_transform.entities import ENTITIES

SCHEMA = "insights"
METRICS_TABLE = "daily_metrics"
# Sums and counts: a day's total is the sum of its members, so a gap can be split by member.
ADDITIVE = {"orders", "revenue_usd", "new_customers", "active_customers", "events", "sessions", "dead_letters"}
# Counts vary at least as Poisson counts do (the detector's floor on their spread).
COUNTS = ADDITIVE - {"revenue_usd"}
# Levels are reported as movements, not scored against a baseline (they grow by design).
LEVELS = {"segment_size"}

CREATE = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.{METRICS_TABLE} (
    tenant_id text NOT NULL,
    day date NOT NULL,
    metric text NOT NULL,
    dimension text NOT NULL,
    member text NOT NULL,
    value double precision NOT NULL,
    PRIMARY KEY (tenant_id, day, metric, dimension, member)
);
"""

# Each query yields (tenant_id, day, metric, dimension, member, value) for days %(first)s..%(last)s.
_ORDERS = """
WITH o AS (
    SELECT o.tenant_id, o.order_date AS day, o.total_usd,
           coalesce(c.country, 'unknown') AS country, coalesce(c.industry, 'unknown') AS industry,
           coalesce(c.preferred_channel, 'unknown') AS channel
    FROM intermediate.int_customer_orders AS o
    LEFT JOIN marts.customer_360 AS c USING (tenant_id, cdp_customer_id)
    WHERE o.order_date BETWEEN %(first)s AND %(last)s
)
SELECT tenant_id, day, m.metric, d.dimension, d.member, sum(m.amount)
FROM o
CROSS JOIN LATERAL (VALUES ('total', 'all'), ('country', country), ('industry', industry), ('channel', channel),
                           ('country,channel', country || ',' || channel)) AS d (dimension, member)
CROSS JOIN LATERAL (VALUES ('orders', 1::numeric), ('revenue_usd', total_usd)) AS m (metric, amount)
GROUP BY 1, 2, 3, 4, 5
"""
_AVERAGE_ORDER_VALUE = """
SELECT tenant_id, order_date, 'average_order_value_usd', 'total', 'all', avg(total_usd)
FROM intermediate.int_customer_orders
WHERE order_date BETWEEN %(first)s AND %(last)s
GROUP BY 1, 2
"""
_CUSTOMERS = """
WITH active AS (
    SELECT tenant_id, cdp_customer_id, order_date AS day FROM intermediate.int_customer_orders
    WHERE cdp_customer_id IS NOT NULL AND order_date BETWEEN %(first)s AND %(last)s
    UNION
    SELECT tenant_id, cdp_customer_id, event_day FROM intermediate.int_customer_events
    WHERE cdp_customer_id IS NOT NULL AND event_day BETWEEN %(first)s AND %(last)s
), new AS (
    SELECT tenant_id, cdp_customer_id, first_seen::date AS day FROM marts.customer_360
    WHERE first_seen::date BETWEEN %(first)s AND %(last)s
), both_ AS (
    SELECT 'active_customers' AS metric, * FROM active UNION ALL SELECT 'new_customers', * FROM new
)
SELECT b.tenant_id, b.day, b.metric, d.dimension, d.member, count(*)
FROM both_ AS b
LEFT JOIN marts.customer_360 AS c USING (tenant_id, cdp_customer_id)
CROSS JOIN LATERAL (VALUES ('total', 'all'), ('country', coalesce(c.country, 'unknown'))) AS d (dimension, member)
GROUP BY 1, 2, 3, 4, 5
"""
# Sessions are counted as devices (anonymous ids) active in the day, and conversion as the share
# of them with a purchase: the app's events carry no session id.
_EVENTS = """
WITH e AS (
    SELECT tenant_id, event_day AS day, coalesce(event_name, event_type, 'unknown') AS event, anonymous_id
    FROM marts.fct_events WHERE event_day BETWEEN %(first)s AND %(last)s
), devices AS (
    SELECT tenant_id, day, anonymous_id, bool_or(event = 'purchase') AS purchased
    FROM e WHERE anonymous_id IS NOT NULL GROUP BY 1, 2, 3
)
SELECT tenant_id, day, 'events', d.dimension, d.member, count(*)
FROM e CROSS JOIN LATERAL (VALUES ('total', 'all'), ('event', event)) AS d (dimension, member)
GROUP BY 1, 2, 3, 4, 5
UNION ALL
SELECT tenant_id, day, 'sessions', 'total', 'all', count(*) FROM devices GROUP BY 1, 2
UNION ALL
SELECT tenant_id, day, 'conversion', 'total', 'all', avg(purchased::int) FROM devices GROUP BY 1, 2
"""
_SEGMENTS = """
SELECT tenant_id, as_of_date, 'segment_size', 'segment', segment, count(*)
FROM segments.segment_membership WHERE as_of_date BETWEEN %(first)s AND %(last)s
GROUP BY 1, 2, 3, 4, 5
"""
_LOADED = "SELECT tenant_id, event_date, count(*) FROM raw_cdp.{} WHERE event_date BETWEEN %(first)s AND %(last)s GROUP BY 1, 2"


def _relation_exists(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]


def dead_letters(lake: LakeResource, first: date, last: date) -> Counter:
    """(tenant_id, day, table, rule) -> dead-lettered records, from every curated table's dead letters."""
    counts: Counter = Counter()
    for spec in ENTITIES:
        table = lake.delta_log(dead_letter_path(spec.table))
        if table is None:
            continue
        day = ds.field("event_date")
        frame = table.to_pyarrow_dataset().to_table(
            columns=["tenant_id", "event_date", "rule"], filter=(day >= first) & (day <= last)
        )
        grouped = frame.group_by(["tenant_id", "event_date", "rule"]).aggregate([([], "count_all")])
        for row in grouped.to_pylist():
            counts[(row["tenant_id"], row["event_date"], spec.table, row["rule"])] += row["count_all"]
    return counts


def _dead_letter_rows(counts: Counter) -> Iterable[tuple]:
    by_member: Counter = Counter()
    for (tenant, day, table, rule), count in counts.items():
        for dimension, member in (
            ("total", "all"),
            ("source", table),
            ("rule", rule),
            ("source,rule", f"{table},{rule}"),
        ):
            by_member[(tenant, day, dimension, member)] += count
    for (tenant, day, dimension, member), count in by_member.items():
        yield tenant, day, "dead_letters", dimension, member, count


def _quality_rows(conn: psycopg.Connection, counts: Counter, first: date, last: date) -> Iterable[tuple]:
    dead: Counter = Counter()
    for (tenant, day, table, _), count in counts.items():
        dead[(tenant, day, table)] += count
    for spec in ENTITIES:
        if not _relation_exists(conn, f"raw_cdp.{spec.table}"):
            continue
        loaded = conn.execute(
            sql.SQL(_LOADED).format(sql.Identifier(spec.table)), {"first": first, "last": last}
        ).fetchall()
        for tenant, day, rows in loaded:
            rejected = dead[(tenant, day, spec.table)]
            yield tenant, day, "quality_score", "source", spec.table, rows / (rows + rejected)


def compute(conn: psycopg.Connection, lake: LakeResource, first: date, last: date) -> int:
    """Replace days first..last of `insights.daily_metrics` in one transaction; returns the rows written.

    `conn` is in autocommit mode: each read is a transaction of its own, so reading years of days
    never holds a lock on every day's partition of every `raw_cdp` table at once (PostgreSQL's
    lock table holds 64 per connection by default; 13 tables of 1,096 days exhausted it)."""
    if not conn.autocommit:
        raise ValueError("metrics.compute needs a connection in autocommit mode")
    ensure_security(conn)
    conn.execute(CREATE)
    protect(conn, SCHEMA, METRICS_TABLE)
    window = {"first": first, "last": last}
    rows: list[tuple] = []
    needs = {
        _ORDERS: ["intermediate.int_customer_orders", "marts.customer_360"],
        _AVERAGE_ORDER_VALUE: ["intermediate.int_customer_orders"],
        _CUSTOMERS: ["intermediate.int_customer_orders", "intermediate.int_customer_events", "marts.customer_360"],
        _EVENTS: ["marts.fct_events"],
        _SEGMENTS: ["segments.segment_membership"],
    }
    for query, relations in needs.items():
        if all(_relation_exists(conn, r) for r in relations):
            rows += conn.execute(query, window).fetchall()
    counts = dead_letters(lake, first, last)
    rows += _dead_letter_rows(counts)
    rows += _quality_rows(conn, counts, first, last)
    with conn.transaction():
        conn.execute(f"DELETE FROM {SCHEMA}.{METRICS_TABLE} WHERE day BETWEEN %(first)s AND %(last)s", window)
        with conn.cursor().copy(
            f"COPY {SCHEMA}.{METRICS_TABLE} (tenant_id, day, metric, dimension, member, value) FROM STDIN"
        ) as copy:
            for row in rows:
                copy.write_row((*row[:5], float(row[5])))
    return len(rows)


def history(conn: psycopg.Connection, first: date, last: date) -> list[dict]:
    """The metrics of days first..last as dicts (the detector's input)."""
    cursor = conn.execute(
        f"SELECT tenant_id, day, metric, dimension, member, value FROM {SCHEMA}.{METRICS_TABLE} "
        "WHERE day BETWEEN %s AND %s",
        (first, last),
    )
    names = [c.name for c in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor]
