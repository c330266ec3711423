"""Weekly Delta maintenance: OPTIMIZE with Z-order on the usual filter columns, then VACUUM (Delta's
SQL, so it runs on Spark Connect too).

Runs every Sunday 03:00 UTC over every curated table and its dead-letter table. VACUUM keeps
`retention_hours` (default 168, Delta's own safe minimum) of history for time travel and readers.
"""

from dagster import (
    Config,
    DefaultScheduleStatus,
    MetadataValue,
    OpExecutionContext,
    Output,
    ScheduleDefinition,
    job,
    op,
)

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


class MaintenanceConfig(Config):
    retention_hours: float = 168.0
    tables: list[str] = []  # lake paths such as "curated/events"; empty means every curated table


@op(description="OPTIMIZE … ZORDER BY and VACUUM every curated Delta table.")
def optimize_and_vacuum(
    context: OpExecutionContext, config: MaintenanceConfig, lake: LakeResource, spark: SparkDeltaResource
) -> Output[None]:
    session = spark.session_for(lake)
    if config.retention_hours < 168:
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
        session.sql(f"VACUUM {table} RETAIN {config.retention_hours} HOURS").collect()
        report[path] = {"files_added": metrics[0], "files_removed": metrics[1]}
        context.log.info(
            f"{path}: optimized ({metrics[1]} files → {metrics[0]}), vacuumed ({config.retention_hours} h kept)"
        )
    return Output(None, metadata={"tables": len(report), "optimize": MetadataValue.json(report)})


@job(description="Weekly Delta maintenance of the curated zone.")
def delta_maintenance():
    optimize_and_vacuum()


weekly_maintenance_schedule = ScheduleDefinition(
    job=delta_maintenance,
    cron_schedule="0 3 * * 0",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
)
