"""The daily schedule: after midnight UTC, materialise the day that just ended."""

from dagster import AssetSelection, build_schedule_from_partitioned_job, define_asset_job

from partitions import daily_partitions

lake_daily_job = define_asset_job(
    "lake_daily",
    selection=AssetSelection.groups(
        "raw",
        "curated",
        "identity",
        "profiles",
        "warehouse",
        "staging",
        "intermediate",
        "marts",
        "segments",
        "docs",
        "activation",
    ),
    partitions_def=daily_partitions,
    description="Raw manifests, curated Delta tables, the identity graph and resolution, profiles, the PostgreSQL "
    "warehouse, dbt's marts and segments, segment membership, the dbt docs, and the audience exports and destination syncs for a range of days.",
)

lake_daily_schedule = build_schedule_from_partitioned_job(lake_daily_job, hour_of_day=1, minute_of_hour=0)
