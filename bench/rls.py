"""Benchmark: the marts' typical queries as a tenant's analyst role, under row-level security,
against the same queries without it (the superuser, whom RLS does not apply to), on the same data.

The marts are generated in PostgreSQL with `generate_series` (not the pipeline, to stay quick),
shaped as dbt builds them (same keys and indexes): `--orders` orders (default 1.2M) for
`--customers` people over `--tenants` tenants, `customer_360`, `revenue_by_geography`, and
segment membership. `cdp_security.protect` then puts them under the platform's policies and a
tenant analyst role with the PII grant is made. Each query runs `--rounds` times per role (and
more, until `--seconds` have passed), alternating, after a warm-up; the medians are compared
(goal: tenant ≤ 1.2× the superuser). The pipeline's role (subject to the policies, admitted by
them) is timed too.

    .venv/bin/python bench/rls.py
    .venv/bin/python bench/rls.py --orders 200000   # quick
"""

import argparse
import statistics
import time

import psycopg
from psycopg import sql

from cdp_resources.postgres_server import EmbeddedPostgres
from cdp_resources.warehouse_security import (
    PIPELINE_ROLE,
    add_tenant,
    ensure_roles,
    ensure_security,
    protect,
    set_pii,
)

DATABASE = "bench_rls"
TENANT = "tenant_03"
ROLE = f"{TENANT}_analyst"
PASSWORD = "bench-only-password"

SCHEMA_SQL = """
CREATE SCHEMA marts;
CREATE SCHEMA segments;
CREATE TABLE marts.customer_360 AS
SELECT format('tenant_%%s', lpad((n %% %(tenants)s)::text, 2, '0')) AS tenant_id,
       md5(n::text) AS cdp_customer_id,
       format('person%%s@example.com', n) AS email,
       format('+1555%%s', lpad(n::text, 7, '0')) AS phone,
       format('First%%s', n) AS first_name,
       format('Last%%s', n) AS last_name,
       (ARRAY['US', 'GB', 'DE', 'FR', 'JP', 'BR', 'IN', 'CA'])[1 + n %% 8] AS country,
       format('city_%%s', n %% 97) AS city,
       0 AS orders, 0::numeric(18, 2) AS lifetime_revenue_usd, NULL::date AS last_order_date
FROM generate_series(1, %(customers)s) AS n;
CREATE UNIQUE INDEX ON marts.customer_360 (tenant_id, cdp_customer_id);
CREATE TABLE marts.fct_orders AS
SELECT c.tenant_id, format('o%%s', n) AS order_id, c.cdp_customer_id,
       DATE '2026-01-01' + (n %% 90) AS event_date, DATE '2026-01-01' + (n %% 90) AS order_date,
       ((n::bigint * 7919) %% 50000 / 100.0)::numeric(18, 2) AS total_usd, 'paid' AS financial_status
FROM generate_series(1, %(orders)s) AS n
JOIN marts.customer_360 c ON c.cdp_customer_id = md5((1 + (n * 31) %% %(customers)s)::text);
CREATE UNIQUE INDEX ON marts.fct_orders (tenant_id, order_id);
CREATE INDEX ON marts.fct_orders (tenant_id, cdp_customer_id);
UPDATE marts.customer_360 c SET orders = o.orders, lifetime_revenue_usd = o.revenue, last_order_date = o.last
FROM (SELECT tenant_id, cdp_customer_id, count(*) AS orders, sum(total_usd) AS revenue, max(order_date) AS last
      FROM marts.fct_orders GROUP BY 1, 2) o
WHERE o.tenant_id = c.tenant_id AND o.cdp_customer_id = c.cdp_customer_id;
CREATE TABLE marts.revenue_by_geography AS
SELECT o.tenant_id, o.order_date, c.country, count(*)::bigint AS orders,
       count(DISTINCT o.cdp_customer_id)::bigint AS customers, sum(o.total_usd)::numeric(18, 2) AS revenue_usd
FROM marts.fct_orders o JOIN marts.customer_360 c USING (tenant_id, cdp_customer_id) GROUP BY 1, 2, 3;
CREATE TABLE segments.segment_membership AS
SELECT tenant_id, CASE WHEN lifetime_revenue_usd > (
           SELECT percentile_cont(0.8) WITHIN GROUP (ORDER BY lifetime_revenue_usd) FROM marts.customer_360
       ) THEN 'champions' ELSE 'others' END AS segment,
       cdp_customer_id, DATE '2026-03-31' AS as_of_date, 'segment_rfm' AS source_model
FROM marts.customer_360 WHERE orders > 0;
ALTER TABLE segments.segment_membership ADD PRIMARY KEY (as_of_date, tenant_id, segment, cdp_customer_id);
"""

# The marts' typical queries; analysts name their tenant as the owner must (RLS adds its own filter).
QUERIES = {
    "customer 360 of one person": (
        "SELECT * FROM marts.customer_360 WHERE tenant_id = %(tenant)s AND cdp_customer_id = %(person)s"
    ),
    "customer 360: the tenant's top 100": (
        "SELECT * FROM marts.customer_360 WHERE tenant_id = %(tenant)s ORDER BY lifetime_revenue_usd DESC LIMIT 100"
    ),
    "revenue by geography (mart)": (
        "SELECT country, sum(orders), sum(revenue_usd) FROM marts.revenue_by_geography "
        "WHERE tenant_id = %(tenant)s AND order_date >= DATE '2026-02-01' GROUP BY country ORDER BY 3 DESC"
    ),
    "revenue by geography (from fct_orders)": (
        "SELECT c.country, count(*), sum(o.total_usd) FROM marts.fct_orders o "
        "JOIN marts.customer_360 c USING (tenant_id, cdp_customer_id) WHERE o.tenant_id = %(tenant)s "
        "GROUP BY c.country ORDER BY 3 DESC"
    ),
    "a segment's members": (
        "SELECT c.cdp_customer_id, c.email, c.lifetime_revenue_usd FROM segments.segment_membership m "
        "JOIN marts.customer_360 c USING (tenant_id, cdp_customer_id) WHERE m.tenant_id = %(tenant)s "
        "AND m.segment = 'champions' AND m.as_of_date = DATE '2026-03-31'"
    ),
}


def build(server: EmbeddedPostgres, orders: int, customers: int, tenants: int) -> None:
    with psycopg.connect(server.url("postgres"), autocommit=True) as admin:
        ensure_roles(admin)
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(ROLE)))
        admin.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(DATABASE), sql.Identifier(PIPELINE_ROLE))
        )
    started = time.perf_counter()
    with psycopg.connect(server.url(DATABASE, PIPELINE_ROLE), autocommit=True) as conn:
        conn.execute(
            SCHEMA_SQL % {"orders": orders, "customers": customers, "tenants": tenants}  # numbers only
        )
        # dbt builds each model with CREATE TABLE AS; the UPDATE above left a dead copy of every
        # person, which the tenant's plan (an index scan) would read and the superuser's (a
        # sequential scan) would skip over, unlike on a real warehouse.
        conn.execute("VACUUM ANALYZE")
        ensure_security(conn)
        for schema, table in (
            ("marts", "customer_360"),
            ("marts", "fct_orders"),
            ("marts", "revenue_by_geography"),
            ("segments", "segment_membership"),
        ):
            protect(conn, schema, table)
        (count,) = conn.execute("SELECT count(*) FROM marts.fct_orders").fetchone()
    with psycopg.connect(server.url(DATABASE), autocommit=True) as admin:
        add_tenant(admin, TENANT, PASSWORD)
        set_pii(admin, TENANT, True)
    print(f"{count:,} orders, {customers:,} people, {tenants} tenants built in {time.perf_counter() - started:.0f}s")


def timed(conn: psycopg.Connection, query: str, params: dict) -> float:
    started = time.perf_counter()
    conn.execute(query, params).fetchall()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=1_200_000)
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=15, help="at least this many rounds per query")
    parser.add_argument("--seconds", type=float, default=3.0, help="and rounds until this long per query")
    args = parser.parse_args()
    server = EmbeddedPostgres.default().start()
    build(server, args.orders, args.customers, args.tenants)
    connections = {
        "superuser (no RLS)": psycopg.connect(server.url(DATABASE), autocommit=True),
        "tenant analyst (RLS)": psycopg.connect(server.url(DATABASE, ROLE), password=PASSWORD, autocommit=True),
        "pipeline (RLS, admitted)": psycopg.connect(server.url(DATABASE, PIPELINE_ROLE), autocommit=True),
    }
    superuser = connections["superuser (no RLS)"]
    (person,) = superuser.execute(
        "SELECT cdp_customer_id FROM marts.customer_360 WHERE tenant_id = %s AND orders > 0 LIMIT 1", (TENANT,)
    ).fetchone()
    params = {"tenant": TENANT, "person": person}
    sizes = [superuser.execute(f"SELECT count(*) FROM ({query}) q", params).fetchone()[0] for query in QUERIES.values()]
    tenant_sizes = [
        connections["tenant analyst (RLS)"].execute(f"SELECT count(*) FROM ({query}) q", params).fetchone()[0]
        for query in QUERIES.values()
    ]
    assert sizes == tenant_sizes, "the tenant role must get the rows the superuser gets for its tenant"
    print(f"{'query':42} {'rows':>6} " + " ".join(f"{name:>26}" for name in connections) + "  tenant/superuser")
    ratios = []
    for (name, query), rows in zip(QUERIES.items(), sizes, strict=True):
        for conn in connections.values():  # warm-up: caches and plans
            timed(conn, query, params)
        times = {role: [] for role in connections}
        started = time.perf_counter()
        # Sub-millisecond queries get more rounds: their medians are noise at 15 samples.
        while len(times["superuser (no RLS)"]) < args.rounds or time.perf_counter() - started < args.seconds:
            for role, conn in connections.items():
                times[role].append(timed(conn, query, params))
        medians = {role: statistics.median(values) for role, values in times.items()}
        ratio = medians["tenant analyst (RLS)"] / medians["superuser (no RLS)"]
        ratios.append(ratio)
        print(
            f"{name:42} {rows:>6} "
            + " ".join(f"{medians[role] * 1000:>24.2f}ms" for role in connections)
            + f"  {ratio:.2f}x"
        )
    for conn in connections.values():
        conn.close()
    print(f"worst ratio {max(ratios):.2f}x, geometric mean {statistics.geometric_mean(ratios):.2f}x (goal ≤ 1.2x)")


if __name__ == "__main__":
    main()
