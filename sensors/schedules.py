"""The daily schedule: after midnight UTC, one run over the day that just ended and the
`CDP_LATE_DAYS` days before it, so records that arrive late land in their own day the next night
even when no sensor saw them."""

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    schedule,
)

from partitions import daily_partitions, late_days, range_tags

lake_daily_job = define_asset_job(
    "lake_daily",
    selection=AssetSelection.groups(
        "raw",
        "curated",
        "identity",
        "profiles",
        "predictions",
        "warehouse",
        "staging",
        "intermediate",
        "marts",
        "segments",
        "docs",
        "activation",
        "insights",
        "api",
        "privacy",
    ),
    partitions_def=daily_partitions,
    description="Raw manifests, curated Delta tables, the identity graph and resolution, profiles, predictions, the PostgreSQL "
    "warehouse, dbt's marts and segments, segment membership, the dbt docs, the audience exports and destination syncs, the insights (daily metrics, anomaly findings), and the profile API's serving tables for a range of days, and the queue of forget requests.",
)


@schedule(
    job=lake_daily_job,
    cron_schedule="0 1 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Every night at 01:00 UTC: one run over yesterday and the CDP_LATE_DAYS days before it.",
)
def lake_daily_schedule(context: ScheduleEvaluationContext):
    # The partitions that exist at the tick end with yesterday; the first partition bounds the window.
    days = daily_partitions.get_partition_keys(current_time=context.scheduled_execution_time)[-(late_days() + 1) :]
    if not days:
        return SkipReason(f"no complete day yet (the first partition is {daily_partitions.start:%Y-%m-%d})")
    return RunRequest(run_key=f"{days[0]}..{days[-1]}", tags=range_tags(days[0], days[-1]))
