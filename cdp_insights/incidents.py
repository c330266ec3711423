"""What raises an alert, turned into `Alert`s: run failures, failed blocking checks, missed
freshness targets, dead letters over a threshold, new schema drift and high-severity findings.

Each alert's `incident` is what makes two alerts the same (deduplicated within the window): a
job's failures, one check of one asset, one field's drift, one tenant's source on one day, one
finding. Texts hold names, days and counts only: never a record, an example value (the drift
report's examples may be personal data) or an error message (it may quote one).
"""

from collections.abc import Iterable, Mapping
from datetime import date

import psycopg

from cdp_insights.findings import FINDINGS_TABLE
from cdp_insights.metrics import METRICS_TABLE, SCHEMA
from cdp_insights.notify import Alert


def run_failure(job: str, run_id: str, failed_steps: list[str], error_kind: str | None) -> Alert:
    steps = ", ".join(failed_steps) or "none recorded"
    return Alert(
        rule="run_failure",
        incident=f"run_failure:{job}",
        title=f"Run of {job} failed",
        text=f"Run {run_id} of job {job} failed. Failed steps: {steps}."
        + (f" Error type: {error_kind}." if error_kind else ""),
        facts={"job": job, "run_id": run_id},
    )


def freshness_missed(asset: str) -> Alert:
    return Alert(
        rule="freshness",
        incident=f"freshness:{asset}",
        title=f"{asset} missed its freshness target",
        text=f"{asset} was not materialised with the previous day by its deadline (08:00 UTC).",
        facts={"asset": asset},
    )


def check_failure(asset: str, check: str, run_id: str | None, partition: str | None) -> Alert:
    where = f" (partition {partition})" if partition else ""
    return Alert(
        rule="check_failure",
        incident=f"check_failure:{asset}:{check}",
        title=f"Blocking check {check} failed on {asset}",
        text=f"The blocking check {check} of {asset} failed{where}; downstream assets of the run were not built.",
        facts={"asset": asset, "check": check, "run_id": run_id or ""},
    )


def schema_drift(asset: str, drift: Mapping[str, Mapping]) -> list[Alert]:
    """One alert per drifting field (its path and count; never the example value)."""
    return [
        Alert(
            rule="schema_drift",
            incident=f"schema_drift:{asset}:{path}",
            title=f"New field {path} in {asset}",
            text=f"{asset}: {seen.get('count', 0)} records carry the field {path}, which its schema does not declare.",
            severity="medium",
            facts={"asset": asset, "field": path},
        )
        for path, seen in sorted(drift.items())
    ]


def dead_letters(conn: psycopg.Connection, days: Iterable[date], threshold: int) -> list[Alert]:
    """One alert per tenant, source (curated table) and day whose dead letters exceed `threshold`."""
    rows = conn.execute(
        f"SELECT tenant_id, day, member, value FROM {SCHEMA}.{METRICS_TABLE} WHERE metric = 'dead_letters' "
        "AND dimension = 'source' AND day = ANY(%s) AND value > %s ORDER BY 1, 2, 3",
        (list(days), threshold),
    ).fetchall()
    return [
        Alert(
            rule="dead_letters",
            incident=f"dead_letters:{tenant}:{source}:{day}",
            title=f"{int(count)} dead letters in {source} for {tenant} on {day}",
            text=f"{int(count)} records of {source} were dead-lettered for tenant {tenant} on {day} "
            f"(threshold {threshold}). See `cdp dlq` and the curated dead-letter tables.",
            tenant=tenant,
            facts={"tenant": tenant, "source": source, "day": str(day), "count": int(count)},
        )
        for tenant, day, source, count in rows
    ]


def findings(conn: psycopg.Connection, days: Iterable[date], severities: set[str]) -> list[Alert]:
    rows = conn.execute(
        f"SELECT tenant_id, day, metric, severity, explanation FROM {SCHEMA}.{FINDINGS_TABLE} "
        "WHERE day = ANY(%s) AND severity = ANY(%s) ORDER BY 1, 2, 3",
        (list(days), sorted(severities)),
    ).fetchall()
    return [
        Alert(
            rule="finding",
            incident=f"finding:{tenant}:{metric}:{day}",
            title=f"{metric} anomaly for {tenant} on {day}",
            text=explanation,
            severity=severity,
            tenant=tenant,
            facts={"tenant": tenant, "metric": metric, "day": str(day)},
        )
        for tenant, day, metric, severity, explanation in rows
    ]
