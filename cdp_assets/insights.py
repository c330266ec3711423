"""Insights assets: `insights/daily_metrics` (the tenants' daily metrics and their breakdowns in
PostgreSQL) and `insights/findings` (anomalies against a weekday-seasonal baseline, explained by
their dimensions, with the day's segment movements and a markdown digest). The library code is in
`cdp_insights`."""

from datetime import timedelta

from dagster import AssetExecutionContext, AssetKey, BackfillPolicy, MaterializeResult, MetadataValue, asset

from cdp_assets.keys import FINDINGS_KEY, MEMBERSHIP_KEY, METRICS_KEY, warehouse_key
from cdp_insights import anomalies, findings, metrics
from cdp_resources.lake import LakeResource
from cdp_resources.warehouse import WarehouseResource
from cdp_transform.entities import ENTITIES
from partitions import daily_partitions

INSIGHTS_OWNERS = ["team:analytics"]
_MODELS = [
    AssetKey(["intermediate", "int_customer_orders"]),
    AssetKey(["intermediate", "int_customer_events"]),
    AssetKey(["marts", "customer_360"]),
    AssetKey(["marts", "fct_events"]),
]


def _window(context: AssetExecutionContext):
    window = context.partition_time_window
    return window.start.date(), window.end.date() - timedelta(days=1)


@asset(
    key=METRICS_KEY,
    deps=[*_MODELS, MEMBERSHIP_KEY, *(warehouse_key(spec.table) for spec in ENTITIES)],
    group_name="insights",
    owners=INSIGHTS_OWNERS,
    kinds={"postgres"},
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    description="`insights.daily_metrics`: per tenant and day, revenue, orders, average order value, new and "
    "active customers, events, sessions, conversion, dead letters per source and rule, each curated table's "
    "quality score and the segment sizes, with their breakdowns (country, industry, channel, event, segment, "
    "source, rule) in one long table.",
    metadata={"dagster/table_name": f"cdp.{metrics.SCHEMA}.{metrics.METRICS_TABLE}"},
)
def daily_metrics(context: AssetExecutionContext, lake: LakeResource, warehouse: WarehouseResource):
    first, last = _window(context)
    with warehouse.connect(autocommit=True) as conn:
        written = metrics.compute(conn, lake, first, last)
        totals = conn.execute(
            f"SELECT tenant_id, metric, sum(value) FROM {metrics.SCHEMA}.{metrics.METRICS_TABLE} "
            "WHERE day BETWEEN %s AND %s AND dimension = 'total' GROUP BY 1, 2 ORDER BY 1, 2",
            (first, last),
        ).fetchall()
    return MaterializeResult(
        metadata={
            "dagster/row_count": written,
            "first_day": first.isoformat(),
            "last_day": last.isoformat(),
            "totals": MetadataValue.json({f"{t}/{m}": round(v, 2) for t, m, v in totals}),
        }
    )


@asset(
    key=FINDINGS_KEY,
    deps=[METRICS_KEY],
    group_name="insights",
    owners=INSIGHTS_OWNERS,
    kinds={"postgres"},
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    description="`insights.findings`: each metric's days outside the range its weekday-seasonal baseline "
    "(median and MAD of the 28 days before) expects, with direction, severity and an explanation by the "
    "dimensions' contributions to the gap; the digest (markdown) adds the day's largest segment movements.",
    metadata={"dagster/table_name": f"cdp.{metrics.SCHEMA}.{findings.FINDINGS_TABLE}"},
)
def anomaly_findings(context: AssetExecutionContext, warehouse: WarehouseResource):
    first, last = _window(context)
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    with warehouse.connect() as conn:
        rows = metrics.history(conn, first - timedelta(days=anomalies.HISTORY_DAYS), last)
        found = anomalies.detect(rows, days, metrics.ADDITIVE, metrics.COUNTS)
        findings.store(conn, found, first, last)
    movements = findings.segment_movements(rows, days)
    return MaterializeResult(
        metadata={
            "dagster/row_count": len(found),
            "high_severity": sum(f.severity == "high" for f in found),
            "digest": MetadataValue.md(findings.digest(found, movements, first, last)),
        }
    )


insights_assets = [daily_metrics, anomaly_findings]
