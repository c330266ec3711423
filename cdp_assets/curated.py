"""Curated Delta tables built with PySpark, partitioned by event date (UTC).

Partition D reads the raw files of day D (the edge files every record under its event day, late
ones included) and replaces partition D of the Delta table in one transaction (`replaceWhere`),
so reruns give the same table and a failed run leaves the previous version visible.
"""

from datetime import date, timedelta

from dagster import (
    AssetExecutionContext,
    AssetKey,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from cdp_assets.raw import read_manifest
from cdp_resources.lake import LakeResource
from cdp_resources.spark import SparkDeltaResource
from partitions import daily_partitions

CURATED_OWNERS = ["team:data-platform"]
EVENTS_SCHEMA = (
    "message_id string, type string, event string, user_id string, anonymous_id string, timestamp string, "
    "properties map<string,string>, traits struct<email: string, phone: string>"
)
_FILE_TS = r"_(\d{8}T\d{6}Z)_\d+\.ndjson\.gz$"
_TENANT = r"/raw/([^/]+)/"
_DAY = r"/year=(\d{4})/month=(\d{2})/day=(\d{2})/"


def parse_event_time(column: str) -> F.Column:
    """Epoch millis, ISO 8601 with Z or any offset, or naive `yyyy-MM-dd HH:mm:ss` (UTC) → UTC timestamp."""
    value = F.col(column)
    return F.when(value.rlike(r"^[0-9]{11,}$"), F.timestamp_millis(value.cast("long"))).otherwise(F.try_to_timestamp(value))


def with_lineage(frame: DataFrame, source: str, run_id: str) -> DataFrame:
    """Adds tenant_id and event_date (from the raw layout), _source, _source_file, _ingest_ts (the
    raw file's flush time) and _run_id."""
    path = F.col("_metadata.file_path")
    day = F.concat_ws("-", *(F.regexp_extract(path, _DAY, group) for group in (1, 2, 3)))
    return frame.select(
        "*",
        F.regexp_extract(path, _TENANT, 1).alias("tenant_id"),
        F.to_date(day).alias("event_date"),
        F.lit(source).alias("_source"),
        path.alias("_source_file"),
        F.to_timestamp(F.regexp_extract(path, _FILE_TS, 1), "yyyyMMdd'T'HHmmss'Z'").alias("_ingest_ts"),
        F.lit(run_id).alias("_run_id"),
    )


def first_delivery(frame: DataFrame, key: list[str]) -> DataFrame:
    """One row per key: the earliest delivered copy of an at-least-once duplicate."""
    order = Window.partitionBy(*key).orderBy("_ingest_ts", "_source_file")
    return frame.withColumn("_copy", F.row_number().over(order)).where("_copy = 1").drop("_copy")


def replace_partitions(frame: DataFrame, path: str, column: str, first: date, last: date) -> None:
    """Overwrite the date partitions first..last of the Delta table at `path` in one transaction."""
    (
        frame.write.format("delta")
        .mode("overwrite")
        .partitionBy(column)
        .option("replaceWhere", f"{column} >= '{first}' AND {column} <= '{last}'")
        .save(path)
    )


def raw_files_for(lake: LakeResource, provider: str, stream: str, first: date, last: date) -> tuple[list[str], list[str]]:
    """Spark paths of the readable raw files of days first..last as their manifests list them, and
    the keys of damaged ones (left out; the raw asset reports them)."""
    paths, damaged = [], []
    for offset in range((last - first).days + 1):
        manifest = read_manifest(lake, provider, stream, (first + timedelta(days=offset)).isoformat())
        for entry in manifest["files"] if manifest else []:
            if "error" in entry:
                damaged.append(entry["key"])
            else:
                paths.append(lake.spark_path(entry["key"]))
    return paths, damaged


def preview(frame: DataFrame, columns: list[str], rows: int = 5) -> MetadataValue:
    sample = frame.select(*columns).limit(rows).collect()
    header = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    body = "".join("| " + " | ".join(str(row[c]) for c in columns) + " |\n" for row in sample)
    return MetadataValue.md(header + body)


@asset(
    key=["curated", "events"],
    group_name="curated",
    owners=CURATED_OWNERS,
    kinds={"spark", "delta"},
    description=(
        "App events, one row per event: timestamps in UTC, at-least-once duplicates removed "
        "(first delivery kept), partitioned by event date; late arrivals land in their own event day."
    ),
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[AssetKey(["raw", "app", "events"])],
    tags={"layer": "curated"},
)
def curated_events(context: AssetExecutionContext, lake: LakeResource, spark: SparkDeltaResource) -> MaterializeResult:
    window = context.partition_time_window
    first, last = window.start.date(), window.end.date() - timedelta(days=1)
    session: SparkSession = spark.spark_session
    table_path = lake.spark_path("curated/events")
    files, damaged = raw_files_for(lake, "app", "events", first, last)
    context.log.info(f"events {first}..{last}: reading {len(files)} raw files")

    raw = session.read.schema(EVENTS_SCHEMA).json(files) if files else session.createDataFrame([], EVENTS_SCHEMA)
    events = with_lineage(raw, "app", context.run_id).withColumn("event_ts", parse_event_time("timestamp")).cache()
    curated = first_delivery(events, ["tenant_id", "message_id"]).drop("timestamp").cache()
    delivered = events.count()
    unparseable = events.where(F.col("event_ts").isNull()).count()
    rows = curated.count()
    replace_partitions(curated, table_path, "event_date", first, last)
    metadata = {
        "dagster/row_count": rows,
        "delivered_records": delivered,
        "duplicates_removed": delivered - rows,
        "unparseable_timestamps": unparseable,
        "raw_files_read": len(files),
        "damaged_raw_files_skipped": len(damaged),
        "table_path": MetadataValue.path(table_path),
        "preview": preview(curated, ["tenant_id", "event_date", "event", "user_id", "anonymous_id", "event_ts"]),
    }
    curated.unpersist()
    events.unpersist()
    return MaterializeResult(metadata=metadata)
