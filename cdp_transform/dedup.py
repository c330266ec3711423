"""Deduplication of at-least-once deliveries and repeated versions: one row per natural key."""

from functools import reduce
from operator import or_

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F


def latest_version(frame: DataFrame, key: list[str], newest_first: list[str]) -> DataFrame:
    """One row per (tenant, day, key): the latest by `newest_first` columns, then the latest delivery
    (`_ingest_ts`, `_source_file`), so identical redeliveries collapse to one. `_copies` counts the
    rows each kept row stands for. A row missing a key column matches no other and is kept on its
    own (a quality rule routes it), so records without ids are never counted as duplicates."""
    keyless = F.when(reduce(or_, (F.col(c).isNull() for c in key)), F.monotonically_increasing_id())
    order = [F.col(c).desc_nulls_last() for c in newest_first] + [F.col("_ingest_ts").desc(), F.col("_source_file").desc()]
    window = Window.partitionBy("tenant_id", "event_date", *key, "_keyless").orderBy(*order)
    whole = window.rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    return (frame.withColumn("_keyless", keyless)
            .select("*", F.row_number().over(window).alias("_version"), F.count(F.lit(1)).over(whole).alias("_copies"))
            .where("_version = 1").drop("_version", "_keyless"))
