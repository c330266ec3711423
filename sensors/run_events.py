"""Sensors on finished runs and freshness: alerts (run failures, failed blocking checks, new schema
drift, dead letters over a threshold, high-severity findings; missed freshness targets from the
daemon's freshness states) by the alerts file, and OpenLineage events for every asset a run
materialised. The run sensors read the finished run's own events from the instance's event log,
so a run is looked at once, when it is complete.

Both are off until configured: alerts by the alerts file (`cdp_insights/alerts.py`), lineage by
`OPENLINEAGE_URL` or `OPENLINEAGE_CONFIG`.
"""

from datetime import UTC, date, datetime

from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterRunStatus,
    DefaultSensorStatus,
    EventRecordsFilter,
    RunFailureSensorContext,
    RunStatusSensorContext,
    SensorEvaluationContext,
    SkipReason,
    run_failure_sensor,
    run_status_sensor,
    sensor,
)

from cdp_insights import incidents, lineage
from cdp_insights.alerts import load_alerts
from cdp_insights.notify import Alert, Notifier
from cdp_resources.warehouse import WarehouseResource

# The value of Dagster's FreshnessState.FAIL (the enum is not public API).
FRESHNESS_FAIL = "FAIL"
METRICS_ASSET = "insights/daily_metrics"
FINDINGS_ASSET = "insights/findings"


def _events(context: RunStatusSensorContext, kind: DagsterEventType) -> list:
    return [e for e in context.instance.all_logs(context.dagster_run.run_id, of_type=kind) if e.dagster_event]


def _materialised_days(records, asset: str) -> list[date]:
    days = set()
    for record in records:
        event = record.dagster_event
        if event.asset_key.to_user_string() == asset and event.partition:
            days.add(date.fromisoformat(event.partition))
    return sorted(days)


def _blocking(context: RunStatusSensorContext, asset: AssetKey, check: str) -> bool:
    """Whether the definitions declare this check blocking (for events that do not say)."""
    for checks_def in context.repository_def.asset_checks_defs:
        for spec in checks_def.check_specs:
            if spec.asset_key == asset and spec.name == check:
                return spec.blocking
    for assets_def in context.repository_def.assets_defs_by_key.values():
        for spec in assets_def.check_specs:
            if spec.asset_key == asset and spec.name == check:
                return spec.blocking
    return False


def run_alerts(context: RunStatusSensorContext) -> tuple[list[Alert], list[date], list[date]]:
    """The alerts a finished run raises by its events (run failure excluded), and the days it built
    of the daily metrics and of the findings (whose dead letters and findings may raise more)."""
    alerts: list[Alert] = []
    for record in _events(context, DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = record.dagster_event.event_specific_data
        blocking = evaluation.blocking
        if blocking is None:
            blocking = _blocking(context, evaluation.asset_key, evaluation.check_name)
        if evaluation.passed or not blocking:
            continue
        alerts.append(
            incidents.check_failure(
                evaluation.asset_key.to_user_string(),
                evaluation.check_name,
                context.dagster_run.run_id,
                evaluation.partition,
            )
        )
    materialisations = _events(context, DagsterEventType.ASSET_MATERIALIZATION)
    for record in materialisations:
        event = record.dagster_event
        drift = event.materialization.metadata.get("schema_drift")
        if event.asset_key.path[0] == "raw" and drift is not None and drift.value:
            alerts.extend(incidents.schema_drift(event.asset_key.to_user_string(), drift.value))
    return (
        alerts,
        _materialised_days(materialisations, METRICS_ASSET),
        _materialised_days(materialisations, FINDINGS_ASSET),
    )


def _send(context: RunStatusSensorContext, warehouse: WarehouseResource, extra: list[Alert] = ()) -> str:
    config = load_alerts()
    if config is None:
        return "no alerts file"
    alerts, metric_days, finding_days = run_alerts(context)
    alerts = [*extra, *alerts]
    with warehouse.connect(autocommit=True) as conn:
        notifier = Notifier(config, conn)
        notifier.resend_undeliverable()
        for rule in config.rules_for("dead_letters"):
            if metric_days:
                alerts.extend(incidents.dead_letters(conn, metric_days, rule.threshold))
        for rule in config.rules_for("finding"):
            severities = {"high"} if rule.severity == "high" else {"high", "medium"}
            if finding_days:
                alerts.extend(incidents.findings(conn, finding_days, severities))
        # One alert per incident: a raw asset reports the same drift for each day of the run.
        alerts = list({alert.incident: alert for alert in alerts}.values())
        outcomes = [notifier.raise_alert(alert, _accepts(alert)) for alert in alerts]
    context.log.info(f"run {context.dagster_run.run_id}: {len(alerts)} alerts, outcomes {outcomes}")
    return f"{len(alerts)} alerts"


def _accepts(alert: Alert):
    """A rule's own filter on an alert of its kind: a dead-letter count over its threshold, a finding of its severity."""

    def accepts(rule) -> bool:
        if alert.rule == "dead_letters":
            return alert.facts["count"] > rule.threshold
        if alert.rule == "finding":
            return rule.severity == "medium" or alert.severity == "high"
        return True

    return accepts


@run_status_sensor(
    name="alerts_on_success",
    run_status=DagsterRunStatus.SUCCESS,
    default_status=DefaultSensorStatus.RUNNING,
    description="Alerts for a run that succeeded: failed checks, schema drift, dead letters, findings (by the alerts file).",
)
def alerts_on_success(context: RunStatusSensorContext, warehouse: WarehouseResource):
    return SkipReason(_send(context, warehouse))


@run_failure_sensor(
    name="alerts_on_failure",
    default_status=DefaultSensorStatus.RUNNING,
    description="Alerts for a failed run: the failure itself, and what its events raise (by the alerts file).",
)
def alerts_on_failure(context: RunFailureSensorContext, warehouse: WarehouseResource):
    failures = context.get_step_failure_events()
    errors = [event.event_specific_data.error for event in failures if event.event_specific_data.error]
    if context.failure_event.event_specific_data and context.failure_event.event_specific_data.error:
        errors.append(context.failure_event.event_specific_data.error)
    failure = incidents.run_failure(
        context.dagster_run.job_name,
        context.dagster_run.run_id,
        [event.step_key for event in failures if event.step_key],
        _root_cause(errors[0]) if errors else None,
    )
    return SkipReason(_send(context, warehouse, [failure]))


def _root_cause(error) -> str:
    """The class name of the error that started it all (Dagster wraps user code's errors); its
    message is never used: it may quote a record."""
    while error.cause is not None:
        error = error.cause
    return error.cls_name


def materialised(context: RunStatusSensorContext) -> list[lineage.Materialised]:
    """What the run did to each asset it materialised, with upstream assets from the definitions."""
    graph = context.repository_def.asset_graph
    checks = lineage.checks_by_asset(
        (
            r.dagster_event.event_specific_data.asset_key.to_user_string(),
            r.dagster_event.event_specific_data.check_name,
            r.dagster_event.event_specific_data.passed,
        )
        for r in _events(context, DagsterEventType.ASSET_CHECK_EVALUATION)
    )
    done: dict[str, lineage.Materialised] = {}
    for record in _events(context, DagsterEventType.ASSET_MATERIALIZATION):
        key = record.dagster_event.asset_key
        name = key.to_user_string()
        metadata = record.dagster_event.materialization.metadata
        node = graph.get(key) if graph.has(key) else None
        schema = metadata.get("dagster/column_schema") or (node.metadata.get("dagster/column_schema") if node else None)
        rows = metadata.get("dagster/row_count")
        entry = done.setdefault(
            name,
            lineage.Materialised(
                asset=name,
                upstream=sorted(k.to_user_string() for k in node.parent_keys) if node else [],
                finished=datetime.fromtimestamp(record.timestamp, UTC),
            ),
        )
        entry.finished = max(entry.finished, datetime.fromtimestamp(record.timestamp, UTC))
        entry.row_count = rows.value if rows is not None else entry.row_count
        # A materialisation's metadata holds a TableSchemaMetadataValue, a definition's a TableSchema.
        entry.columns = lineage.columns_of(getattr(schema, "schema", schema)) or entry.columns
        entry.checks = checks.get(name, {})
    return list(done.values())


def _lineage(context: RunStatusSensorContext) -> SkipReason:
    if not lineage.configured():
        return SkipReason("OpenLineage is not configured (OPENLINEAGE_URL or OPENLINEAGE_CONFIG)")
    from openlineage.client import OpenLineageClient

    sent = lineage.emit(
        OpenLineageClient(), context.dagster_run.run_id, context.dagster_run.job_name, materialised(context)
    )
    return SkipReason(f"{sent} OpenLineage events")


@run_status_sensor(
    name="openlineage_on_success",
    run_status=DagsterRunStatus.SUCCESS,
    default_status=DefaultSensorStatus.RUNNING,
    description="OpenLineage run events for every asset a successful run materialised (when OPENLINEAGE_URL is set).",
)
def openlineage_on_success(context: RunStatusSensorContext):
    return _lineage(context)


@run_failure_sensor(
    name="openlineage_on_failure",
    default_status=DefaultSensorStatus.RUNNING,
    description="OpenLineage run events for the assets a failed run did materialise (when OPENLINEAGE_URL is set).",
)
def openlineage_on_failure(context: RunFailureSensorContext):
    return _lineage(context)


@sensor(
    name="freshness_alerts",
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Alerts when a mart or segment misses its freshness target (the daemon's freshness state changes to FAIL).",
)
def freshness_alerts(context: SensorEvaluationContext, warehouse: WarehouseResource):
    records = context.instance.get_event_records(
        EventRecordsFilter(event_type=DagsterEventType.FRESHNESS_STATE_CHANGE, after_cursor=int(context.cursor or 0)),
        ascending=True,
    )
    if not records:
        return SkipReason("no change of freshness state")
    context.update_cursor(str(records[-1].storage_id))
    failed = sorted(
        {
            r.event_log_entry.dagster_event.asset_key.to_user_string()
            for r in records
            if r.event_log_entry.dagster_event.event_specific_data.new_state.value == FRESHNESS_FAIL
        }
    )
    config = load_alerts()
    if not failed or config is None:
        return SkipReason(f"{len(failed)} assets turned stale; alerts file: {'none' if config is None else 'read'}")
    with warehouse.connect(autocommit=True) as conn:
        notifier = Notifier(config, conn)
        outcomes = {asset: notifier.raise_alert(incidents.freshness_missed(asset)) for asset in failed}
    return SkipReason(f"stale: {outcomes}")


run_event_sensors = [
    alerts_on_success,
    alerts_on_failure,
    freshness_alerts,
    openlineage_on_success,
    openlineage_on_failure,
]
