"""Deduplication of at-least-once deliveries and repeated versions: one row per natural key."""

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F


def latest_version(frame: DataFrame, key: list[str], newest_first: list[str]) -> DataFrame:
    """One row per (tenant, key): the latest by `newest_first` columns, then the latest delivery
    (`_ingest_ts`, `_source_file`), so identical redeliveries collapse to one."""
    order = [F.col(c).desc_nulls_last() for c in newest_first] + [F.col("_ingest_ts").desc(), F.col("_source_file").desc()]
    window = Window.partitionBy("tenant_id", "event_date", *key).orderBy(*order)
    return frame.withColumn("_version", F.row_number().over(window)).where("_version = 1").drop("_version")
