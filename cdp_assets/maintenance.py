"""Weekly maintenance: retention of the lake's files, then Delta's OPTIMIZE with Z-order on the
usual filter columns and VACUUM (Delta's SQL, so it runs on Spark Connect too).

Runs every Sunday 03:00 UTC. First `expire_files` applies the retention periods
(`cdp_privacy/retention.py`, per tenant): raw files, dead letters, exports and activation's dead
letters older than their tenant's period are deleted, and the run reports how many. Then every
curated table and its dead-letter table is optimized and vacuumed, keeping `retention_hours`
(default 168, Delta's own safe minimum) of history for time travel and readers, or less when a
tenant's `delta_version_hours` asks for less.
"""

from datetime import UTC, date, datetime

from dagster import (
    Config,
    DefaultScheduleStatus,
    In,
    MetadataValue,
    Nothing,
    OpExecutionContext,
    Output,
    ScheduleDefinition,
    job,
    op,
)

from cdp_privacy.retention import apply_retention, delta_retention_hours, policies
from cdp_resources.lake import LakeResource
from cdp_resources.lake_paths import curated_path, dead_letter_path
from cdp_resources.spark import SparkDeltaResource, delta_table_name
from cdp_transform.curated_store import DEAD_LETTER_FILTER_COLUMNS
from cdp_transform.generic import CURATED_ENTITIES

# Table path in the lake -> columns queries filter on (the partition column, event_date, is not Z-ordered).
ZORDER = {
    **{curated_path(spec.table): spec.filter_columns[:2] for spec in CURATED_ENTITIES},
    **{dead_letter_path(spec.table): DEAD_LETTER_FILTER_COLUMNS for spec in CURATED_ENTITIES},
}


class RetentionConfig(Config):
    today: str | None = None  # the day ages are counted to (YYYY-MM-DD); default: today, UTC


@op(description="Delete raw files, dead letters and exports older than their tenant's retention period.")
def expire_files(context: OpExecutionContext, config: RetentionConfig, lake: LakeResource) -> Output[None]:
    policy = policies()  # refuses periods shorter than the late-data window before anything is deleted
    today = date.fromisoformat(config.today) if config.today else datetime.now(UTC).date()
    removed = apply_retention(lake, policy, today)
    context.log.info(f"retention to {today}: removed {removed or 'nothing'}")
    return Output(None, metadata={"removed": MetadataValue.json(removed), "today": today.isoformat()})


class MaintenanceConfig(Config):
    retention_hours: float = 168.0
    tables: list[str] = []  # lake paths such as "curated/events"; empty means every curated table


@op(
    description="OPTIMIZE … ZORDER BY and VACUUM every curated Delta table.",
    ins={"after_retention": In(Nothing)},
)
def optimize_and_vacuum(
    context: OpExecutionContext, config: MaintenanceConfig, lake: LakeResource, spark: SparkDeltaResource
) -> Output[None]:
    retention_hours = min(config.retention_hours, delta_retention_hours(policies()))
    session = spark.session_for(lake)
    if retention_hours < 168:
        session.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
    report = {}
    for path, columns in ZORDER.items():
        if (config.tables and path not in config.tables) or not lake.is_delta_table(path):
            continue
        table = delta_table_name(lake.spark_path(path))
        metrics = (
            session.sql(f"OPTIMIZE {table} ZORDER BY ({', '.join(columns)})")
            .select("metrics.numFilesAdded", "metrics.numFilesRemoved")
            .first()
        )
        session.sql(f"VACUUM {table} RETAIN {retention_hours} HOURS").collect()
        report[path] = {"files_added": metrics[0], "files_removed": metrics[1]}
        context.log.info(f"{path}: optimized ({metrics[1]} files → {metrics[0]}), vacuumed ({retention_hours} h kept)")
    return Output(None, metadata={"tables": len(report), "optimize": MetadataValue.json(report)})


@job(description="Weekly maintenance: retention of the lake's files, Delta OPTIMIZE and VACUUM of the curated zone.")
def delta_maintenance():
    optimize_and_vacuum(after_retention=expire_files())


weekly_maintenance_schedule = ScheduleDefinition(
    job=delta_maintenance,
    cron_schedule="0 3 * * 0",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
)
